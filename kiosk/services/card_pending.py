"""A card's next tap settles its pending actions (issue 8, item 2).

A pending action is a paid top-up whose card left mid-write and did not come back: the
back-office holds what the write was to do (card UID, counter before, intended balance,
amount, the original transaction id). That record *is* the write plan, so settling it needs no
journal of this kiosk: the plan is rebuilt from it, and everything below is idempotent by the
original transaction id (the card keeps 4 bytes of its hash with every commit):

  the write landed (outcome_of: APPLIED)          → settle "applied"
  it did not, the card is where the plan left it  → write it now (roll forward), verify, settle
  the card moved on since (another write took the counter), or its log no longer shows it
                                                  → left open for an operator: the value is
                                                    still owed, never written twice

Settling "applied" makes the back-office record the load under the original transaction, so
the card, the back-office and the citizen's payment agree. A tear during the roll-forward
leaves the action open; the next tap runs this again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devices.base import DeviceError
from devices.transit_card import (
    CardBalance,
    CardChanged,
    OutcomeUnknown,
    TransitCard,
    TxType,
    WriteOutcome,
    WritePlan,
    tx_ref_short,
)
from kiosk.journal import Journal, TxState

if TYPE_CHECKING:
    from kiosk.money_path import MoneyPath
from kiosk.backoffice_client import (
    BackofficeClient,
    BackofficeError,
    PendingAction,
    PendingActionAlreadySettled,
)

log = logging.getLogger("kiosk.transit.pending")


@dataclass(frozen=True)
class Settled:
    transaction_id: str
    amount_rials: int
    written_now: bool  # True: this tap wrote the value; False: it had landed already


def plan_of(action: PendingAction) -> WritePlan:
    """The write the torn top-up planned, rebuilt from the back-office's record of it."""
    return WritePlan(action.card_uid, action.counter_before, action.intended_balance - action.amount_rials,
                     action.counter_before + 1, action.intended_balance, action.transaction_id, TxType.TOPUP,
                     action.card_serial)


def local_pending(journal: Journal, uid: str) -> list[tuple[str, WritePlan]]:
    """This kiosk's own pending actions for the card `uid` that the back-office may not hold
    yet (queued while it was down): transactions FULFILLED with a pending action, and their
    journaled write plans."""
    found = []
    for tx in journal.open_transactions():
        if tx.state != TxState.FULFILLED or not tx.data.get("pending_action"):
            continue
        for entry in tx.entries:
            if entry.state == TxState.FULFILLING and "write_plan" in entry.data:
                plan = WritePlan.from_dict(entry.data["write_plan"])
                if plan.uid.lower() == uid.lower():
                    found.append((tx.tx_id, plan))
                break
    return found


async def _queue_own_settlement(money: MoneyPath, tx_id: str, plan: WritePlan, settled_by: str) -> None:
    """Queue "applied" for this kiosk's own pending action (once), behind its queued post."""
    from kiosk.services import kind_of
    from kiosk.services.topup import CARD_PENDING_SETTLE

    kind = kind_of(money.journal.get(tx_id).kind)
    if CARD_PENDING_SETTLE not in kind.outbox_kinds:
        return  # a kind whose pending action reached the back-office before the write
    if any(i.kind == CARD_PENDING_SETTLE for i in money.journal.outbox_for(tx_id)):
        return
    await money.writer.outbox_enqueue(
        tx_id, CARD_PENDING_SETTLE, {"transaction_id": tx_id, "card_serial": plan.serial,
                                     "counter_seen": plan.counter_after, "settled_by": settled_by},
        idempotency_key=settled_by)


async def _land(card: TransitCard, plan: WritePlan) -> bool | None:
    """Make sure `plan` is on the card: True when this tap wrote it, False when it had landed,
    None when it cannot be done (the card moved on, or its log no longer tells)."""
    outcome = await card.outcome_of(plan)
    if outcome == WriteOutcome.APPLIED:
        return False
    current = await card.read_balance()
    if (current.seq, current.balance) != (plan.counter_before, plan.balance_before):
        return None
    await card.apply(plan)  # idempotent by the original transaction id
    return True


async def _credit_moved_on(card: TransitCard, action: PendingAction) -> tuple[int, int] | None:
    """The torn write can no longer land where it was planned: another write has taken the
    counter the plan named (outcome_of said NOT_APPLIED, which is definite). The value is still
    owed, so it is credited now at the card's current counter, under the original transaction
    id; returns (counter before, balance after) of that write. Not twice: a credit of this
    transaction that is the card's latest record is answered as it stands, and one the log
    still shows further back (a tap that credited it and never settled, then the card was used
    again) is left for an operator, since its balance can no longer be read."""
    current = await card.read_balance()
    ref = tx_ref_short(action.transaction_id)
    if current.last_tx_ref == ref.hex():
        return current.seq - 1, current.balance
    for entry in await card.read_log():
        # (the planned write itself outcome_of would have found: a logged credit of this
        # transaction is an earlier credit-now that was never recorded)
        if entry.tx_ref == ref[:2] and entry.tx_type == TxType.TOPUP and entry.amount == action.amount_rials:
            log.error("pending action %s credited on the card earlier but never recorded: left for an operator",
                      action.transaction_id)
            return None
    plan = await card.plan_credit(action.amount_rials, action.transaction_id)
    after = await card.apply(plan)
    return plan.counter_before, after.balance


async def settle_pending_actions(backoffice: BackofficeClient, card: TransitCard, balance: CardBalance, *,
                                 settled_by: str, money: MoneyPath | None = None) -> tuple[CardBalance, list[Settled]]:
    """Settle the open pending actions of the card on the reader. Returns the card as it is
    now and what was settled. The back-office unreachable, or an action that cannot be told:
    nothing is written, and the action stays open.

    First this kiosk's own pending actions the back-office may not have yet (`money`'s journal): their
    value goes on the card before anything else is written to it — another write first would
    take the counter the plan names, and the plan could then never land. Their records reach
    the back-office with the queued post; the settlement ("applied", at the planned counter) is
    queued behind it in the same outbox, so it does not wait for a tap that may come when the
    card's log no longer shows the write."""
    done: list[Settled] = []
    for tx_id, plan in (local_pending(money.journal, balance.uid) if money is not None else []):
        try:
            landed = await _land(card, plan)
        except (OutcomeUnknown, CardChanged, DeviceError) as exc:
            log.warning("own pending action %s not landed now: %s", tx_id, type(exc).__name__)
            continue
        if landed is None:
            log.error("card moved on since its torn write %s: left for an operator", tx_id)
            continue
        assert money is not None
        await _queue_own_settlement(money, tx_id, plan, settled_by)
        if landed:
            done.append(Settled(tx_id, plan.amount, True))
            balance = await card.read_balance()
    try:
        account = await asyncio.to_thread(backoffice.card_account, balance.serial)
    except BackofficeError as exc:
        log.warning("card account unavailable, pending actions not checked: %s", exc)
        return balance, done
    for action in account.pending_actions:
        if action.status != "open" or action.card_uid.lower() != balance.uid.lower():
            continue
        plan = plan_of(action)
        written: tuple[int, int] | None = None
        try:
            landed = await _land(card, plan)
            if landed is None:  # not where planned, and the card moved on: credit it now
                written = await _credit_moved_on(card, action)
                if written is None:
                    continue
                landed = True
            written_now = bool(landed)
            after = await card.read_balance()
            if written is None and after.seq < plan.counter_after:
                continue
        except (OutcomeUnknown, CardChanged) as exc:
            log.error("pending action %s cannot be told from the card (%s): left for an operator",
                      action.transaction_id, type(exc).__name__)
            continue
        except DeviceError as exc:  # the card left again: the next tap tries again
            log.warning("pending action %s not settled: %s", action.transaction_id, exc)
            continue
        try:
            await asyncio.to_thread(backoffice.settle_pending_action, action.transaction_id,
                                    card_serial=action.card_serial, outcome="applied",
                                    counter_seen=after.seq, settled_by_transaction_id=settled_by, written=written)
        except PendingActionAlreadySettled:
            pass  # settled by another kiosk (or an earlier answer of ours that was lost)
        except BackofficeError as exc:
            # the value is on the card; the record waits for the next tap (idempotent)
            log.warning("pending action %s on the card, not yet settled: %s", action.transaction_id, exc)
        if action.transaction_id not in {d.transaction_id for d in done}:  # (landed by this tap above)
            done.append(Settled(action.transaction_id, action.amount_rials, written_now))
        balance = after
    return balance, done
