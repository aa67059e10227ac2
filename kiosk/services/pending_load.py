"""The pending-load kind (دریافت شارژ خریداری‌شده): a top-up paid elsewhere (USSD, the city's
app) against a card's serial, collected onto the card at a kiosk. No money moves here, value
does: the transaction's amount is the pending load's, and it has no payment (a value-only kind,
kiosk.journal.states.VALUE_ONLY_KINDS).

Journal states and what each holds:
  CREATED      PendingLoadOrder (which pending load, the card read at the tap)
  FULFILLING   the card write plan (devices.transit_card.WritePlan), journaled before the
               back-office is asked to reserve the pending load for it (the claim)
  CANCELLED    nothing was written: the back-office refused the claim (collected elsewhere,
               gone), or the card left before the plan; the pending load still waits (or was
               collected by someone else)
  UNCERTAIN    the card left the field during the write
  FULFILLED    the write is on the card (re-read) with the load post queued, one commit; or —
               the card did not come back — the claim stays open as the card's pending action,
               so its next tap at any kiosk settles it
  POSTED       the back-office recorded the load (tracking code)
  COMPLETED    receipt issued (or recovery finished it)

Exactly once. The back-office is the arbiter: before anything is written, the flow posts a
pending action carrying the pending load's id (the claim, `claim_payload`). It reserves the
pending load for this transaction — no other kiosk and no later tap can collect it — and it is
the record a torn write needs. The card is written only after the claim is confirmed, so:
  * two kiosks cannot both write it (the second claim is refused: the card has an open action);
  * a load post that cannot reach the back-office does not leave the load collectable again
    (it stays reserved; the card's next tap anywhere settles the action from the card's own
    counters and log, idempotent by this transaction id);
  * after a crash, "is there an open action or a recorded load of this transaction?" tells
    whether anything may be on the card; neither means nothing was written (`resume`).
The load post then settles the claim "applied" and posts the load of kind `pending_load` with
the pending load's id; the back-office answers both with the one record.

Nothing is ever reversed: there was no payment. `refusals` is empty, so a refused post is
retried and alerted, never a reason to call the money path's reverse(); and the journal's
table for value-only kinds has no PAYING, PAID or REVERSING, so a reversal cannot even be
journaled for this kind.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from devices.transit_card import WritePlan
from kiosk.backoffice_client import (
    BackofficeClient,
    BackofficeError,
    LoadNotFound,
    LoadPost,
    LoadRecord,
    PendingAction,
    PendingActionAlreadySettled,
    PendingActionNotFound,
    PendingActionPost,
)
from kiosk.fmt import format_rials
from kiosk.journal import JournalEntry, Transaction, TxState
from kiosk.receipts import ReceiptData
from kiosk.services.base import InvalidOrder, Order, Posted, TransactionKind

if TYPE_CHECKING:
    from kiosk.money_path import MoneyPath, SettleResult

log = logging.getLogger("kiosk.transit.pending_load")

#: the outbox kind of the load post of a collected pending load
COLLECTED_LOAD = "pending_load_post"
#: the receipt codec's kind (kiosk/receipts/codec.py _KIND_CODES)
RECEIPT_KIND = "pending_topup"


@dataclass(frozen=True)
class PendingLoadOrder(Order):
    """Which pending load is collected onto which card, as the card was read at the tap."""

    pending_load_id: int
    card_uid: str
    card_serial: str
    card_profile: str
    balance_before: int
    counter_before: int
    source: str = ""
    kiosk_id: str = ""

    def to_journal(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_journal(cls, data: Mapping[str, Any]) -> PendingLoadOrder:
        try:
            order = cls(int(data["pending_load_id"]), str(data["card_uid"]), str(data["card_serial"]),
                        str(data.get("card_profile", "regular")), int(data["balance_before"]),
                        int(data["counter_before"]), str(data.get("source") or ""), str(data.get("kiosk_id") or ""))
        except (KeyError, TypeError, ValueError):
            raise InvalidOrder("not a pending-load order", tx=str(data.get("tx_id", ""))) from None
        if order.pending_load_id < 1 or not (len(order.card_serial) == 10 and order.card_serial.isascii()
                                             and order.card_serial.isdigit()):
            raise InvalidOrder("not a pending-load order: id or card serial", tx=str(data.get("tx_id", "")))
        return order


def write_plan(tx: Transaction) -> WritePlan | None:
    """The card write plan FULFILLING journaled, or None."""
    for entry in tx.entries:
        if entry.state == TxState.FULFILLING and "write_plan" in entry.data:
            return WritePlan.from_dict(entry.data["write_plan"])
    return None


def claim_payload(tx: Transaction, plan: WritePlan) -> PendingActionPost:
    """The claim: a pending action reserving the pending load for this write (idempotent by
    the transaction id: the same body again answers the same action)."""
    order = PendingLoadOrder.from_journal(tx.data)
    return PendingActionPost(tx.tx_id, plan.serial, plan.uid, plan.counter_before, plan.balance_after,
                             plan.amount, pending_load_id=order.pending_load_id)


def load_payload(tx: Transaction, plan: WritePlan) -> dict[str, Any]:
    """The load post of the collected value (the same body the back-office builds when it
    settles the claim "applied", so either way the one record answers)."""
    order = PendingLoadOrder.from_journal(tx.data)
    return LoadPost(tx.tx_id, plan.serial, plan.uid, plan.counter_before, plan.counter_after, plan.amount,
                    plan.balance_after, "pending_load", order.pending_load_id).to_dict()


async def claim(backoffice: BackofficeClient, tx: Transaction, plan: WritePlan) -> PendingAction:
    """Reserve the pending load for this transaction's write. Raises a TransitRefused (the
    pending load is collected, gone, or the card has another open action: write nothing) or
    BackofficeUnavailable (it may or may not hold the claim: write nothing either)."""
    post = claim_payload(tx, plan)
    return await asyncio.to_thread(backoffice.post_pending_action, post, idempotency_key=tx.tx_id)


def own_action(actions: tuple[PendingAction, ...], tx_id: str) -> PendingAction | None:
    return next((a for a in actions if a.transaction_id == tx_id), None)


class PendingLoadKind(TransactionKind):
    name: ClassVar[str] = "pending_load"
    outbox_kind: ClassVar[str] = COLLECTED_LOAD
    order_type: ClassVar[type[Order]] = PendingLoadOrder
    # nothing was paid, so nothing is ever given back: a refused post is retried and alerted
    # (kiosk.money_path), never reversed
    refusals: ClassVar[tuple[type[BaseException], ...]] = ()

    def post_payload(self, tx: Transaction, *, paid_at: str) -> dict[str, Any]:
        plan = write_plan(tx)
        if plan is None:
            raise InvalidOrder("a pending load is posted only after its card write", tx=tx.tx_id)
        return load_payload(tx, plan)

    def post(self, backoffice: BackofficeClient, payload: Mapping[str, Any], *, idempotency_key: str,
             outbox_kind: str = COLLECTED_LOAD) -> Posted:
        """Settle the claim "applied" (the value is on the card, re-read), then post the load:
        the back-office recorded it when settling, so the post answers that record. A claim
        another kiosk settled first (the card's next tap got there before this post) is fine:
        the load is recorded the same way."""
        post = LoadPost.from_dict(payload)
        try:
            backoffice.settle_pending_action(post.transaction_id, card_serial=post.card_serial, outcome="applied",
                                             counter_seen=post.counter_after,
                                             settled_by_transaction_id=post.transaction_id)
        except (PendingActionAlreadySettled, PendingActionNotFound) as exc:
            log.info("claim already settled or absent (%s); posting the load", exc.key,
                     extra={"tx": post.transaction_id})
        return backoffice.post_load(post, idempotency_key=idempotency_key)

    def find_posted(self, backoffice: BackofficeClient, tx_id: str) -> Posted | None:
        try:
            return backoffice.load_status(tx_id)
        except LoadNotFound:
            return None

    def posted_from_json(self, data: Mapping[str, Any]) -> Posted:
        if "intended_balance" in data:
            return PendingAction.from_json(data)
        return LoadRecord.from_json(data)

    def ack_states(self, posted: Posted, outbox_kind: str) -> list[tuple[TxState, dict[str, Any] | None]]:
        # FULFILLED was journaled with the card write
        return [(TxState.POSTED, {"tracking_code": posted.tracking_code})]

    async def resume(self, money: MoneyPath, tx: Transaction) -> SettleResult | str:
        """After a restart the card is gone. A queued load post is posted. A planned (FULFILLING)
        or torn (UNCERTAIN) write with nothing queued: the back-office tells what may be on
        the card — this transaction's claim open → it is the card's pending action (its next
        tap settles it): FULFILLED + POSTED; its load recorded (a tap settled it already) →
        FULFILLED + POSTED with that record; neither → the claim never landed, so nothing
        was written: CANCELLED (from FULFILLING; an UNCERTAIN one is left for an operator)."""
        items = money.pending_posts(tx.tx_id)
        if items:
            return await money.settle(items[0])
        plan = write_plan(tx)
        if plan is None or tx.state == TxState.FULFILLED:
            return "left_open"
        try:
            found = await money.find_settlement(tx.tx_id, outbox=False)
            account = None if found is not None else await asyncio.to_thread(
                money.backoffice.card_account, plan.serial)
        except BackofficeError as exc:
            log.warning("cannot ask the back-office about the claim: %s", exc, extra={"tx": tx.tx_id})
            return "backoffice_unreachable"
        if found is not None:
            return await money.journal_settled(tx.tx_id, found)
        assert account is not None
        action = own_action(account.pending_actions, tx.tx_id)
        if action is not None:
            await journal_owed(money, tx.tx_id, action, reason="recovery: card gone")
            return await _posted(money, tx.tx_id)
        if tx.state == TxState.UNCERTAIN:
            log.error("torn write without a claim on record: left for an operator", extra={"tx": tx.tx_id})
            return "left_open"
        await money.writer.append(tx.tx_id, TxState.CANCELLED, {"reason": "recovery: no claim on record"})
        return "cancelled"

    # --- the receipt ------------------------------------------------------------------------------
    def receipt_data(self, tx: Transaction, *, kiosk_id: str, pending: bool) -> ReceiptData:
        """A zero-price slip: nothing was paid here. Signed fields are fixed at the FULFILLED
        row (the value on the card, or owed to it): the card serial, the pending load's id (the
        payment made elsewhere) and that row's seq and hash; the amount collected is printed
        in the service line."""
        fixed = fulfilled_entry(tx)
        order = PendingLoadOrder.from_journal(tx.data)
        return ReceiptData(
            tx_id=tx.tx_id,
            kiosk_id=kiosk_id,
            kind=RECEIPT_KIND,
            amount_rials=0,
            at=dt.datetime.fromtimestamp(int(fixed.at), dt.timezone.utc),
            bill_id=order.card_serial,
            payment_id=str(order.pending_load_id),
            service_label_fa=f"دریافت شارژ خریداری‌شده: {format_rials(tx.amount_rials, 'fa')}",
            service_label_en=f"Collected top-up: {format_rials(tx.amount_rials, 'en')}",
            tracking_code=str(tx.data.get("tracking_code", "")),
            rrn="",
            stan="",
            masked_pan="",
            status="pending_settlement" if pending or tx.data.get("pending_action") else "paid",
            journal_seq=fixed.seq,
            journal_hash=fixed.hash,
        )


def fulfilled_entry(tx: Transaction) -> JournalEntry:
    for entry in tx.entries:
        if entry.state == TxState.FULFILLED:
            return entry
    raise InvalidOrder("a pending load has a receipt only once FULFILLED", tx=tx.tx_id)


async def journal_owed(money: MoneyPath, tx_id: str, action: PendingAction, *, reason: str) -> None:
    """FULFILLED + POSTED, one commit: the claim is the card's open pending action at the
    back-office (its tracking code on the receipt); the card's next tap settles it."""
    await money.writer.append_many(tx_id, [
        (TxState.FULFILLED, {"pending_action": True, "reason": reason}),
        (TxState.POSTED, {"tracking_code": action.tracking_code}),
    ])


async def queue_load(money: MoneyPath, tx: Transaction, plan: WritePlan, *, balance_seen: int) -> Any:
    """FULFILLED (the write is on the card, re-read) with the load post queued, one commit."""
    item_id = await money.writer.outbox_enqueue(
        tx.tx_id, COLLECTED_LOAD, load_payload(tx, plan), idempotency_key=tx.tx_id,
        with_state=(TxState.FULFILLED, {"balance_after": balance_seen, "counter_after": plan.counter_after}),
        anchor=True)
    return money.journal.outbox_item(item_id)


async def _posted(money: MoneyPath, tx_id: str) -> SettleResult:
    from kiosk.money_path import SettleResult

    return SettleResult.SETTLED if money.journal.state_of(tx_id) == TxState.POSTED else SettleResult.PENDING


PENDING_LOAD = PendingLoadKind()
