"""The card top-up kind: value bought with a bank card and written to a transit card.

Journal states and what each holds:
  CREATED      TopupOrder (the card read before paying: UID, serial, balance, counter)
  PAYING/PAID  the shared money path
  FULFILLING   the card write plan (devices.transit_card.WritePlan), journaled before the write
  UNCERTAIN    the card left the field during the write: whether it landed is unknown
  FULFILLED    the write is on the card (verified by a re-read), or — the card did not come
               back — a pending action is queued so the card's next tap settles it; in the
               same commit the back-office post is queued (a load, or the pending action)
  POSTED       the back-office recorded it (tracking code)
  COMPLETED    receipt issued (or recovery finished it)

A paid top-up is never reversed once its write plan is journaled: from then on the value is
either on the card or owed to it by a pending action. Never both credited and refunded; never
neither.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from devices.transit_card import WritePlan
from kiosk.backoffice_client import (
    BackofficeClient,
    LoadNotFound,
    LoadPost,
    LoadRecord,
    PendingAction,
    PendingActionAlreadySettled,
    PendingActionPost,
)
from kiosk.journal import OutboxItem, Transaction, TxState
from kiosk.receipts import ReceiptData
from kiosk.services.base import InvalidOrder, Order, Posted, TransactionKind, fixed_at_paid

if TYPE_CHECKING:
    from kiosk.money_path import MoneyPath, SettleResult

CARD_LOAD = "card_load"
CARD_PENDING_ACTION = "card_pending_action"
#: the settlement of this kiosk's own pending action, queued when a tap of the card landed the
#: write before the pending action reached the back-office (kiosk.services.card_pending)
CARD_PENDING_SETTLE = "card_pending_settle"


@dataclass(frozen=True)
class TopupOrder(Order):
    card_uid: str
    card_serial: str
    card_profile: str
    balance_before: int
    counter_before: int
    kiosk_id: str = ""

    def to_journal(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_journal(cls, data: Mapping[str, Any]) -> TopupOrder:
        try:
            order = cls(str(data["card_uid"]), str(data["card_serial"]), str(data.get("card_profile", "regular")),
                        int(data["balance_before"]), int(data["counter_before"]), str(data.get("kiosk_id") or ""))
        except (KeyError, TypeError, ValueError):
            raise InvalidOrder("not a top-up order", tx=str(data.get("tx_id", ""))) from None
        if not (len(order.card_serial) == 10 and order.card_serial.isascii() and order.card_serial.isdigit()):
            raise InvalidOrder("not a top-up order: card serial", tx=str(data.get("tx_id", "")))
        return order


def write_plan(tx: Transaction) -> WritePlan | None:
    """The card write plan FULFILLING journaled, or None (not planned yet)."""
    for entry in tx.entries:
        if entry.state == TxState.FULFILLING and "write_plan" in entry.data:
            return WritePlan.from_dict(entry.data["write_plan"])
    return None


def load_payload(tx: Transaction, plan: WritePlan) -> dict[str, Any]:
    return LoadPost(tx.tx_id, plan.serial, plan.uid, plan.counter_before, plan.counter_after, plan.amount,
                    plan.balance_after, "topup").to_dict()


def pending_action_payload(tx: Transaction, plan: WritePlan) -> dict[str, Any]:
    return PendingActionPost(tx.tx_id, plan.serial, plan.uid, plan.counter_before, plan.balance_after,
                             plan.amount).to_dict()


class CardTopupKind(TransactionKind):
    name: ClassVar[str] = "card_topup"
    outbox_kind: ClassVar[str] = CARD_LOAD
    outbox_kinds: ClassVar[tuple[str, ...]] = (CARD_LOAD, CARD_PENDING_ACTION, CARD_PENDING_SETTLE)
    late_outbox_kinds: ClassVar[tuple[str, ...]] = (CARD_PENDING_SETTLE,)
    order_type: ClassVar[type[Order]] = TopupOrder
    # None: once value is on the card (or owed to it), a refused post is never a reason to
    # give the money back — it is retried and alerted (kiosk.money_path), for an operator
    refusals: ClassVar[tuple[type[BaseException], ...]] = ()

    def post_payload(self, tx: Transaction, *, paid_at: str) -> dict[str, Any]:
        plan = write_plan(tx)
        if plan is None:
            raise InvalidOrder("a top-up is posted only after its card write", tx=tx.tx_id)
        return load_payload(tx, plan)

    def post(self, backoffice: BackofficeClient, payload: Mapping[str, Any], *, idempotency_key: str,
             outbox_kind: str = CARD_LOAD) -> Posted:
        if outbox_kind == CARD_PENDING_ACTION:
            return backoffice.post_pending_action(PendingActionPost.from_dict(payload), idempotency_key=idempotency_key)
        if outbox_kind == CARD_PENDING_SETTLE:
            return settle_own_pending_action(backoffice, payload)
        return backoffice.post_load(LoadPost.from_dict(payload), idempotency_key=idempotency_key)

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
        if outbox_kind == CARD_PENDING_SETTLE:
            return []  # the pending action's own post moved the transaction on
        data: dict[str, Any] = {"tracking_code": posted.tracking_code}
        if outbox_kind == CARD_PENDING_ACTION:
            data["pending_action"] = True
        return [(TxState.POSTED, data)]

    async def resume(self, money: MoneyPath, tx: Transaction) -> SettleResult | str:
        """After a restart the citizen — and the card — are gone. A queued post is posted. A
        write planned (FULFILLING) or torn (UNCERTAIN) with nothing queued is owed to the card:
        a pending action is queued so its next tap at any kiosk settles it."""
        items = money.pending_posts(tx.tx_id)
        if items:
            return await money.settle(items[0])
        plan = write_plan(tx)
        if plan is None:
            return "left_open"  # FULFILLING without a plan is not something this kind writes
        if tx.state == TxState.FULFILLED:
            return "left_open"  # FULFILLED with nothing queued: acknowledged rows say the rest
        item = await queue_pending_action(money, tx, plan, reason="recovery: card gone")
        return await money.settle(item)

    def receipt_data(self, tx: Transaction, *, kiosk_id: str, pending: bool) -> ReceiptData:
        paid, fixed = fixed_at_paid(tx)
        return ReceiptData(
            tx_id=tx.tx_id,
            kiosk_id=kiosk_id,
            kind="transit_topup",
            amount_rials=paid.amount_rials,
            at=dt.datetime.fromtimestamp(int(paid.at), dt.timezone.utc),
            bill_id=str(fixed.get("card_serial", "")),
            payment_id="",
            service_label_fa="شارژ کارت بلیت",
            service_label_en="Transit card top-up",
            tracking_code=tx.data.get("tracking_code", ""),
            rrn=fixed.get("rrn", ""),
            stan=fixed.get("stan", ""),
            masked_pan=fixed.get("masked_pan", ""),
            status="pending_settlement" if pending or tx.data.get("pending_action") else "paid",
            journal_seq=paid.seq,
            journal_hash=paid.hash,
        )


async def queue_pending_action(money: MoneyPath, tx: Transaction, plan: WritePlan, *, reason: str) -> OutboxItem:
    """FULFILLED with the pending action queued, one commit: the value is owed to the card."""
    item_id = await money.writer.outbox_enqueue(
        tx.tx_id, CARD_PENDING_ACTION, pending_action_payload(tx, plan), idempotency_key=tx.tx_id,
        with_state=(TxState.FULFILLED, {"pending_action": True, "reason": reason}), anchor=True)
    return money.journal.outbox_item(item_id)


async def queue_load(money: MoneyPath, tx: Transaction, plan: WritePlan, *, balance_seen: int) -> OutboxItem:
    """FULFILLED (the write is on the card, re-read) with the load post queued, one commit."""
    item_id = await money.writer.outbox_enqueue(
        tx.tx_id, CARD_LOAD, load_payload(tx, plan), idempotency_key=tx.tx_id,
        with_state=(TxState.FULFILLED, {"balance_after": balance_seen, "counter_after": plan.counter_after}),
        anchor=True)
    return money.journal.outbox_item(item_id)


def settle_own_pending_action(backoffice: BackofficeClient, payload: Mapping[str, Any]) -> Posted:
    """Settle, as applied, a pending action this kiosk queued and whose write a later tap of
    the card landed (payload: transaction_id, card_serial, counter_seen, settled_by). Settled
    already by another tap (the same or another kiosk): the action as it stands."""
    try:
        return backoffice.settle_pending_action(
            str(payload["transaction_id"]), card_serial=str(payload["card_serial"]), outcome="applied",
            counter_seen=int(payload["counter_seen"]), settled_by_transaction_id=str(payload["settled_by"]))
    except PendingActionAlreadySettled:
        return _SettledElsewhere(str(payload["transaction_id"]))


@dataclass(frozen=True)
class _SettledElsewhere:
    """What a settlement another tap made first acknowledges (nothing more to record)."""

    transaction_id: str
    tracking_code: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"transaction_id": self.transaction_id, "settled_elsewhere": True}


CARD_TOPUP = CardTopupKind()
