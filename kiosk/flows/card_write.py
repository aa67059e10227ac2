"""What every flow that writes value to a transit card does the same way: write the journaled
plan and verify it by re-reading; on a tear, journal UNCERTAIN, ask for the same card back
and let its counters decide (landed: verified; not landed: written again, idempotent by the
transaction id); and issue the receipt. Used by the top-up and the collection of top-ups paid
elsewhere (the card sale personalises instead, and shares the receipt step)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from devices.base import CommandTimeout, DeviceError
from devices.contracts import CardReader, CardRemoved, NoCard, WrongCard
from devices.transit_card import (
    AlreadyOnCard,
    CardBalance,
    CardChanged,
    OutcomeUnknown,
    TransitCard,
    WriteOutcome,
    WritePlan,
)
from kiosk.journal import TxState
from kiosk.ui_port import UIPort

log = logging.getLogger("kiosk.flows.card")


async def same_card_back(ctx: Any, ui: UIPort, uid: str, *, step: str) -> bool:
    """Show `step` (put the same card back) and wait up to card_return_wait_s for the card
    `uid`; True once it is on the reader. Another card is told it is not the same one."""
    reader = ctx.available(CardReader)
    if reader is None:
        return False
    await ui.show_step(step)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.settings.card_return_wait_s
    while (left := deadline - loop.time()) > 0:
        try:
            info = await reader.wait_for_card(timeout=min(left, 1.0))
        except (CommandTimeout, NoCard):
            continue
        except DeviceError:
            await asyncio.sleep(0.2)
            continue
        if info.uid.lower() == uid.lower():
            return True
        await ui.show_error("card.wrong_card")
        await asyncio.sleep(0.5)
    return False


async def plan_on_same_card(ctx: Any, ui: UIPort, card: TransitCard, read: CardBalance, tx_id: str, amount: int,
                            *, place_again: str) -> WritePlan | None:
    """The credit's write plan, made on the card read at the start (same UID, same counter);
    None when that card is not on the reader and does not come back, or has changed since it
    was read (then nothing is written). BalanceLimit over the card's maximum."""
    for _ in range(2):
        try:
            plan = await card.plan_credit(amount, tx_id)
        except (CardRemoved, NoCard, WrongCard, CommandTimeout):
            if not await same_card_back(ctx, ui, read.uid, step=place_again):
                return None
            continue
        if plan.uid != read.uid or plan.counter_before != read.seq:
            log.warning("card changed between reading and writing", extra={"tx": tx_id})
            return None
        return plan
    return None


async def write_verified(ctx: Any, ui: UIPort, card: TransitCard, plan: WritePlan, tx_id: str, *,
                         place_again: str) -> CardBalance | None:
    """Write `plan` and verify it by re-reading. A tear: UNCERTAIN (once), then the same card
    is asked for again (`place_again`, the flow's own words) and its counters decide. None
    when the card does not come back or its state cannot be told."""
    uncertain = False
    while True:
        try:
            await card.apply(plan)
            after = await card.read_balance()
            if (after.seq, after.balance) != (plan.counter_after, plan.balance_after):
                raise CardChanged(f"re-read shows counter {after.seq}, balance {after.balance}")
            return after
        except AlreadyOnCard:
            return await card.read_balance()
        except (CardRemoved, NoCard, WrongCard, CommandTimeout, CardChanged) as exc:
            log.warning("card write interrupted: %s", exc, extra={"tx": tx_id})
            if not uncertain:
                await ctx.money.writer.append(tx_id, TxState.UNCERTAIN, {"reason": type(exc).__name__})
                uncertain = True
            if not await same_card_back(ctx, ui, plan.uid, step=place_again):
                return None
            try:
                outcome = await card.outcome_of(plan)
            except (OutcomeUnknown, CardChanged, DeviceError) as why:
                log.error("write outcome cannot be told: %s", why, extra={"tx": tx_id})
                return None
            if outcome == WriteOutcome.APPLIED:
                return await card.read_balance()
            # not on the card: write it again (roll forward), on the same card


async def issue_receipt(ctx: Any, ui: UIPort, tx_id: str, *, pending: bool) -> tuple[str | None, bool]:
    """Sign and print the transaction's receipt; (payload, printed). A printer fault never
    undoes anything: the citizen is told, and the receipt can be reprinted."""
    await ui.show_step("receipt.printing")
    issued = await ctx.receipts.issue(ctx.journal.get(tx_id), pending=pending)
    if not issued.printed:
        await ui.show_error("receipt.not_printed", tracking=tx_id)
    return issued.payload, issued.printed
