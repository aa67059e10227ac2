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

from devices.base import DeviceError
from devices.transit_card import (
    CardBalance,
    CardChanged,
    OutcomeUnknown,
    TransitCard,
    TxType,
    WriteOutcome,
    WritePlan,
)
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


async def settle_pending_actions(backoffice: BackofficeClient, card: TransitCard, balance: CardBalance, *,
                                 settled_by: str) -> tuple[CardBalance, list[Settled]]:
    """Settle the open pending actions of the card on the reader. Returns the card as it is
    now and what was settled. The back-office unreachable, or an action that cannot be told:
    nothing is written, and the action stays open."""
    try:
        account = await asyncio.to_thread(backoffice.card_account, balance.serial)
    except BackofficeError as exc:
        log.warning("card account unavailable, pending actions not checked: %s", exc)
        return balance, []
    done: list[Settled] = []
    for action in account.pending_actions:
        if action.status != "open" or action.card_uid.lower() != balance.uid.lower():
            continue
        plan = plan_of(action)
        try:
            outcome = await card.outcome_of(plan)
            written_now = False
            if outcome == WriteOutcome.NOT_APPLIED:
                current = await card.read_balance()
                if (current.seq, current.balance) != (plan.counter_before, plan.balance_before):
                    log.error("card moved on since its torn top-up %s: left for an operator",
                              action.transaction_id)
                    continue
                await card.apply(plan)  # idempotent by the original transaction id
                written_now = True
            after = await card.read_balance()
            if after.seq < plan.counter_after:
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
                                    counter_seen=plan.counter_after, settled_by_transaction_id=settled_by)
        except PendingActionAlreadySettled:
            pass  # settled by another kiosk (or an earlier answer of ours that was lost)
        except BackofficeError as exc:
            # the value is on the card; the record waits for the next tap (idempotent)
            log.warning("pending action %s on the card, not yet settled: %s", action.transaction_id, exc)
        done.append(Settled(action.transaction_id, action.amount_rials, written_now))
        balance = after
    return balance, done
