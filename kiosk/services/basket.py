"""The fee basket kind: several municipal fee slips paid with ONE card payment, each bill then
settled at the back-office on its own (POST /payments, its own transaction id and idempotency
key `<tx>.<i>`), and the share of a bill the back-office refuses given back to the card by a
partial referenced refund (kiosk.money_path.MoneyPath.refund_part).

Journal states (the basket's own table, kiosk.journal.states.BASKET_ALLOWED):
  CREATED      BasketOrder: the bills (id, payment id, amount, slip kind, period, label)
  PAYING/PAID  the shared money path: one payment of the total
  FULFILLING   one row per step of each bill, {bill: i, step: ...}, each journaled in the
               commit that queues, acknowledges or fails that bill's outbox row, or before
               and after the terminal is asked for its refund:
                 queued          the bill's post is in the outbox (the first one moves PAID →
                                 FULFILLING)
                 settled         the back-office settled it (bill_tracking_code)
                 refused         the back-office refused it (paid elsewhere, amount changed,
                                 no such bill) and does not hold it
                 refunding       its share's refund goes out under this message_ref
                 refunded        the terminal confirmed the share back on the card
                 refund_refused  the terminal refused (or cannot find the sale): an operator
  FULFILLED    every bill settled or its share refunded (+ POSTED in the same commit)
  REFUND_PENDING  every bill answered, and a share's refund was refused: an operator refunds
               it (the rows say which bills)
  REVERSING → REVERSED  every bill refused: the whole sale goes back, as for one fee

Refunds wait until every bill has its answer: a basket whose bills were all refused is one
reversal, not N partial refunds. Never a bill both settled and refunded: a refusal is
journaled only after the back-office said it does not hold that bill's payment.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import requests

from kiosk.backoffice_client import (
    AmountMismatch,
    BackofficeClient,
    BackofficeError,
    BillAlreadyPaid,
    BillNotFound,
    PaymentNotFound,
    PaymentPost,
    Settlement,
)
from kiosk.errors import KioskError
from kiosk.faults import fault_point
from kiosk.journal import OutboxItem, OutboxStatus, Transaction, TxState
from kiosk.receipts import ReceiptData
from kiosk.receipts.codec import ReceiptItem
from kiosk.services.base import InvalidOrder, Order, Posted, TransactionKind, fixed_at_paid

if TYPE_CHECKING:
    from kiosk.money_path import MoneyPath, SettleResult

log = logging.getLogger("kiosk.basket")

#: the outbox kind of one bill's settlement in a basket
BASKET_BILL = "basket_bill"
#: the most bills one basket pays (the receipt stays readable; a terminal payment stays small)
MAX_BILLS = 10
_MUNICIPALITY = 6


class BasketInvalid(KioskError):
    """What the citizen selected cannot be paid as one basket (none, too many, twice)."""

    key: ClassVar[str] = "basket.invalid"
    fa: ClassVar[str] = "فیش‌های انتخاب‌شده را نمی‌توان با هم پرداخت کرد: {why_fa}"
    en: ClassVar[str] = "The selected slips cannot be paid together: {why_en}"
    money: ClassVar[str] = "none"


class BillNothingDue(KioskError):
    """The back-office lists the bill with nothing to pay (0 rials or less): it is dropped
    before paying, never charged."""

    key: ClassVar[str] = "basket.bill_nothing_due"
    fa: ClassVar[str] = "برای این فیش مبلغی برای پرداخت نمانده است"
    en: ClassVar[str] = "nothing is due on this slip"
    money: ClassVar[str] = "none"


def bill_tx_id(tx_id: str, index: int) -> str:
    """The transaction id (and idempotency key) of bill `index` of basket `tx_id`."""
    return f"{tx_id}.{index}"


def _index_of(bill_tx: str) -> int:
    return int(bill_tx.rsplit(".", 1)[1])


@dataclass(frozen=True)
class BasketItem:
    bill_id: str
    payment_id: str
    amount_rials: int
    slip_kind: str = ""
    period: str = ""
    description_fa: str = ""
    service_type: int = _MUNICIPALITY

    @classmethod
    def from_journal(cls, data: Any) -> BasketItem:
        if not isinstance(data, Mapping):
            raise TypeError("not a bill")
        item = cls(str(data["bill_id"]), str(data["payment_id"]), int(data["amount_rials"]),
                   str(data.get("slip_kind") or ""), str(data.get("period") or ""),
                   str(data.get("description_fa") or ""), int(data.get("service_type", _MUNICIPALITY)))
        if item.amount_rials <= 0 or isinstance(data["amount_rials"], bool):
            raise ValueError("a bill's amount must be positive")
        return item


@dataclass(frozen=True)
class BasketOrder(Order):
    items: tuple[BasketItem, ...]
    kiosk_id: str = ""

    @property
    def total_rials(self) -> int:
        return sum(i.amount_rials for i in self.items)

    def to_journal(self) -> dict[str, Any]:
        return {"items": [asdict(i) for i in self.items], "kiosk_id": self.kiosk_id}

    @classmethod
    def from_journal(cls, data: Mapping[str, Any]) -> BasketOrder:
        try:
            items = tuple(BasketItem.from_journal(i) for i in data["items"])
        except (KeyError, TypeError, ValueError):
            raise InvalidOrder("not a fee basket order", tx=str(data.get("tx_id", ""))) from None
        if not 1 <= len(items) <= MAX_BILLS or len({(i.bill_id, i.payment_id) for i in items}) != len(items):
            raise InvalidOrder("not a fee basket order: bills", tx=str(data.get("tx_id", "")))
        return cls(items, str(data.get("kiosk_id") or ""))


# --- what the journal says of each bill ---------------------------------------------------------

#: a bill's step → what the citizen is told of it
OUTCOME_OF_STEP = {"new": "pending", "queued": "pending", "settled": "settled", "refused": "refund_pending",
                   "refunding": "refund_pending", "refunded": "refunded", "refund_refused": "refund_pending"}


@dataclass(frozen=True)
class BillOutcome:
    """What became of one bill of a basket. `step`: the journal's last step of it (new,
    queued, settled, refused, refunding, refunded, refund_refused); `outcome`: settled,
    pending (the back-office will be told), refunded, refund_pending (refused; its share is
    being given back or waits for an operator)."""

    index: int
    item: BasketItem
    step: str
    tracking_code: str = ""
    reason: str = ""

    @property
    def outcome(self) -> str:
        return OUTCOME_OF_STEP[self.step]


def bill_outcomes(tx: Transaction) -> list[BillOutcome]:
    """Each bill of the basket as its FULFILLING rows leave it (the last step wins)."""
    order = BasketOrder.from_journal(tx.data)
    steps = ["new"] * len(order.items)
    codes = [""] * len(order.items)
    reasons = [""] * len(order.items)
    for entry in tx.entries:
        if entry.state != TxState.FULFILLING:
            continue
        i, step = entry.data.get("bill"), entry.data.get("step")
        if not isinstance(i, int) or not 0 <= i < len(steps) or step not in OUTCOME_OF_STEP:
            continue
        if steps[i] in ("settled", "refunded", "refund_refused") and step != "settled":
            continue  # an answer is final (a settled bill is never refunded)
        steps[i] = step
        if step == "settled":
            codes[i] = str(entry.data.get("bill_tracking_code") or "")
        if step == "refused":
            reasons[i] = str(entry.data.get("reason") or "")
    return [BillOutcome(i, item, steps[i], codes[i], reasons[i]) for i, item in enumerate(order.items)]


# --- the kind -------------------------------------------------------------------------------------

class FeeBasketKind(TransactionKind):
    name: ClassVar[str] = "fee_basket"
    outbox_kind: ClassVar[str] = BASKET_BILL
    order_type: ClassVar[type[Order]] = BasketOrder
    # a definite refusal of one bill: paid elsewhere, amount changed, no such bill
    refusals: ClassVar[tuple[type[BaseException], ...]] = (BillAlreadyPaid, AmountMismatch, BillNotFound)

    def post_payload(self, tx: Transaction, *, paid_at: str) -> dict[str, Any]:
        raise InvalidOrder("a fee basket queues one post per bill (bill_payload)", tx=tx.tx_id)

    def bill_payload(self, tx: Transaction, index: int, *, paid_at: str) -> dict[str, Any]:
        item = BasketOrder.from_journal(tx.data).items[index]
        data = tx.data
        post = PaymentPost(bill_tx_id(tx.tx_id, index), item.bill_id, item.payment_id, item.amount_rials,
                           str(data.get("paid_at") or paid_at),
                           **{k: str(data.get(k) or "") for k in ("rrn", "stan", "poi_reference", "masked_pan")})
        return {**post.to_dict(), "bill_index": index, "basket": tx.tx_id}

    def post(self, backoffice: BackofficeClient, payload: Mapping[str, Any], *, idempotency_key: str,
             outbox_kind: str = BASKET_BILL) -> Posted:
        return backoffice.post_payment(PaymentPost.from_dict(payload), idempotency_key=idempotency_key)

    def ack_states(self, posted: Posted, outbox_kind: str) -> list[tuple[TxState, dict[str, Any] | None]]:
        index = _index_of(posted.transaction_id)  # type: ignore[attr-defined]
        return [(TxState.FULFILLING, {"bill": index, "step": "settled", "bill_tracking_code": posted.tracking_code})]

    def find_posted(self, backoffice: BackofficeClient, tx_id: str) -> Posted | None:
        """What the back-office holds of ONE bill (`tx_id` is the bill's own, `<tx>.<i>`)."""
        try:
            return backoffice.payment_status(tx_id)
        except PaymentNotFound:
            return None

    def posted_from_json(self, data: Mapping[str, Any]) -> Posted:
        return Settlement.from_json(data)

    # --- hooks the money path and the outbox worker call ---------------------------------------
    async def part_refused(self, money: MoneyPath, item: OutboxItem, exc: BaseException) -> SettleResult:
        """The back-office refused this bill's post. Unless it holds that very payment (a
        first post whose answer was lost), journal the bill refused with the failed row; its
        share is refunded once every bill has its answer (`finish`)."""
        from kiosk.money_path import SettleResult, _error_dict, _key

        index = int(item.payload["bill_index"])
        try:
            ours = await asyncio.to_thread(self.find_posted, money.backoffice, str(item.payload["transaction_id"]))
        except (BackofficeError, requests.RequestException, ValueError, KeyError) as unknown:
            await money.retry_later(item, f"refused ({_key(exc)}); status unknown: {unknown}"[:500])
            return SettleResult.PENDING
        if ours is not None:
            await money.writer.outbox_ack(item.id, ours.to_dict(), with_state=self.ack_states(ours, item.kind))
            return SettleResult.SETTLED
        log.warning("bill %d of the basket refused (%s): its share will be refunded", index, _key(exc),
                    extra={"tx": item.tx_id})
        await money.writer.outbox_fail(item.id, _error_dict(exc), with_state=[
            (TxState.FULFILLING, {"bill": index, "step": "refused", "reason": _key(exc)})])
        return SettleResult.REFUSED

    async def reverse_paid(self, money: MoneyPath, tx_id: str, reason: str) -> SettleResult:
        """MoneyPath.reverse of a PAID or FULFILLING basket. FULFILLING: carried on (its bills
        are settled or refunded one by one). PAID — recovery, the citizen gone: nothing queued
        and no bill held at the back-office: the whole sale is reversed. A bill post queued, or a bill the
        back-office holds (a journal whose FULFILLING rows were cut): this kiosk had committed
        to settling — the held bills are journaled settled and the rest carried on."""
        from kiosk.money_path import SettleResult

        if money.journal.state_of(tx_id) == TxState.FULFILLING:
            return await settle_basket(money, tx_id)  # committed to settling: carried on, never reversed blind
        if read_order(money.journal.get(tx_id)) is None:
            return await unreadable_order(money, tx_id)
        if money.pending_posts(tx_id):
            await money.writer.append(tx_id, TxState.FULFILLING, {"settlement_found": "outbox"})
            return await settle_basket(money, tx_id)
        order = BasketOrder.from_journal(money.journal.get(tx_id).data)
        held: dict[int, Posted] = {}
        for i in range(len(order.items)):
            try:
                found = await asyncio.to_thread(self.find_posted, money.backoffice, bill_tx_id(tx_id, i))
            except (BackofficeError, requests.RequestException, ValueError, KeyError) as exc:
                log.warning("not reversing: cannot ask the back-office (%s)", exc, extra={"tx": tx_id})
                return SettleResult.CHECK_PENDING
            if found is not None:
                held[i] = found
        if not held:
            return await money.reverse(tx_id, reason, ask_backoffice=False)
        log.warning("basket bills found settled at the back-office: carrying on, not reversing", extra={"tx": tx_id})
        steps: list[tuple[TxState, dict[str, Any] | None]] = [(TxState.FULFILLING, {"settlement_found": "backoffice"})]
        for posted in held.values():
            steps += self.ack_states(posted, BASKET_BILL)
        await money.writer.append_many(tx_id, steps)
        return await settle_basket(money, tx_id)

    async def after_post(self, money: MoneyPath, tx_id: str) -> SettleResult | None:
        """The outbox worker posted one of this basket's bills: when it was the last one
        waiting, finish the basket (refund refused shares, FULFILLED + POSTED)."""
        if money.journal.state_of(tx_id) != TxState.FULFILLING or money.pending_posts(tx_id):
            return None
        with money.claimed(tx_id):
            return await finish(money, tx_id)

    async def resume(self, money: MoneyPath, tx: Transaction) -> SettleResult | str:
        """After a crash: queue the bills not queued yet, post the queued ones (idempotent by
        their keys), then refund refused shares — each earlier refund request asked about by
        its own message reference first — and finish."""
        if tx.state != TxState.FULFILLING:
            return "left_open"
        return await settle_basket(money, tx.tx_id)

    # --- the receipt ------------------------------------------------------------------------------
    def receipt_data(self, tx: Transaction, *, kiosk_id: str, pending: bool) -> ReceiptData:
        paid, fixed = fixed_at_paid(tx)
        outcomes = bill_outcomes(tx) if tx.state != TxState.PAID else []
        items = tuple(
            ReceiptItem(label_fa=o.item.description_fa or "عوارض شهرداری", label_en=_slip_label_en(o.item),
                        bill_id=o.item.bill_id, payment_id=o.item.payment_id, amount_rials=o.item.amount_rials,
                        outcome=o.outcome, tracking_code=o.tracking_code)
            for o in outcomes)
        waiting = any(o.outcome == "pending" for o in outcomes)
        return ReceiptData(
            tx_id=tx.tx_id,
            kiosk_id=kiosk_id,
            kind=tx.kind,
            amount_rials=paid.amount_rials,
            at=dt.datetime.fromtimestamp(int(paid.at), dt.timezone.utc),
            bill_id="",
            payment_id="",
            service_label_fa=f"پرداخت {len(items) or ''} فیش عوارض شهرداری".replace("  ", " "),
            service_label_en=f"{len(items)} municipal fee slips" if items else "Municipal fee slips",
            tracking_code="",
            rrn=fixed.get("rrn", ""),
            stan=fixed.get("stan", ""),
            masked_pan=fixed.get("masked_pan", ""),
            status="pending_settlement" if pending or waiting else "paid",
            journal_seq=paid.seq,
            journal_hash=paid.hash,
            items=items,
        )


_SLIP_KIND_EN = {"renovation_tax": "Renovation fee", "business_tax": "Business fee", "waste_charge": "Waste charge",
                 "vehicle_tax": "Vehicle fee"}


def _slip_label_en(item: BasketItem) -> str:
    label = _SLIP_KIND_EN.get(item.slip_kind, "Municipal fee")
    return f"{label} {item.period}".strip()


FEE_BASKET = FeeBasketKind()


# --- the steps (the flow and recovery run the same code) ----------------------------------------

async def queue_bills(money: MoneyPath, tx_id: str) -> None:
    """Queue the post of every bill not queued (nor answered) yet, each in one commit with its
    FULFILLING row {bill, step: queued}; the first moves PAID → FULFILLING. Idempotent: a
    bill's key is `<tx>.<i>`, and a bill already answered is never queued again."""
    tx = money.journal.get(tx_id)
    items = {item.payload.get("bill_index"): item for item in money.journal.outbox_for(tx_id)
             if item.kind == BASKET_BILL}
    paid_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for outcome in bill_outcomes(tx):
        item = items.get(outcome.index)
        if outcome.step in ("new", "queued") and item is not None and item.status != OutboxStatus.PENDING:
            # answered, but the row saying so is gone (a journal cut back, whatever step it
            # left): the outbox's settled row is the answer (an acknowledged post, or a
            # refusal after asking)
            answer = await _answer_steps(money, outcome.index, item)
            if answer:
                await money.writer.append_many(tx_id, answer)
            continue
        if item is not None or outcome.step not in ("new", "queued"):
            continue
        # not in the outbox at all (never queued, or its row lost): queued (again) under the
        # bill's own key — the back-office answers a repeated post with the first answer
        await money.writer.outbox_enqueue(
            tx_id, BASKET_BILL, FEE_BASKET.bill_payload(tx, outcome.index, paid_at=paid_at),
            idempotency_key=bill_tx_id(tx_id, outcome.index),
            with_state=(TxState.FULFILLING, {"bill": outcome.index, "step": "queued"}), anchor=True)


async def _answer_steps(money: MoneyPath, index: int, item: OutboxItem) -> list[tuple[TxState, dict[str, Any] | None]]:
    """The journal rows of a bill's answer, rebuilt from its settled outbox row. An
    acknowledged row whose answer cannot be read is asked of the back-office; when that does
    not say, nothing (the bill stays unanswered: an operator looks) — an acknowledged post
    is never read as a refusal."""
    if item.status == OutboxStatus.ACKED:
        try:
            if item.response:
                return FEE_BASKET.ack_states(Settlement.from_json(item.response), BASKET_BILL)
        except (KeyError, TypeError, ValueError):
            pass
        try:
            found = await asyncio.to_thread(FEE_BASKET.find_posted, money.backoffice, bill_tx_id(item.tx_id, index))
        except (BackofficeError, requests.RequestException, ValueError, KeyError) as exc:
            log.warning("bill %d acknowledged, answer unreadable, back-office cannot say (%s)", index, exc,
                        extra={"tx": item.tx_id})
            return []
        return FEE_BASKET.ack_states(found, BASKET_BILL) if found is not None else []
    reason = str((item.response or {}).get("key") or (item.response or {}).get("error") or "refused")
    return [(TxState.FULFILLING, {"bill": index, "step": "refused", "reason": reason, "found": "outbox"})]


def read_order(tx: Transaction) -> BasketOrder | None:
    """The basket's order as CREATED journaled it, or None when it cannot be read (a bill of
    0 rials journaled by an older build, a damaged row)."""
    try:
        return BasketOrder.from_journal(tx.data)
    except InvalidOrder:
        return None


async def unreadable_order(money: MoneyPath, tx_id: str) -> SettleResult:
    """A paid basket whose order cannot be read: which bills it holds is unknown, so no bill
    can be posted or refunded by share. Never left PAID with the money taken:
      - PAID, nothing in the outbox, and the back-office holds none of `<tx>.0 … <tx>.9`:
        nothing was settled — the whole sale is reversed;
      - the back-office cannot be asked: left as it is (CHECK_PENDING), asked again;
      - anything settled or queued (or already FULFILLING): REFUND_PENDING — an operator
        works out what is owed (the whole amount at most)."""
    from kiosk.money_path import SettleResult

    tx = money.journal.get(tx_id)
    log.error("basket order cannot be read: no bill can be settled or refunded by share", extra={"tx": tx_id})
    if tx.state == TxState.PAID and not money.journal.outbox_for(tx_id):
        for i in range(MAX_BILLS):
            try:
                found = await asyncio.to_thread(FEE_BASKET.find_posted, money.backoffice, bill_tx_id(tx_id, i))
            except (BackofficeError, requests.RequestException, ValueError, KeyError) as exc:
                log.warning("not reversing: cannot ask the back-office (%s)", exc, extra={"tx": tx_id})
                return SettleResult.CHECK_PENDING
            if found is not None:
                break
        else:
            return await money.reverse(tx_id, "basket order unreadable; nothing settled", ask_backoffice=False)
    steps: list[tuple[TxState, dict[str, Any] | None]] = []
    if tx.state == TxState.PAID:
        steps.append((TxState.FULFILLING, {"order_unreadable": True}))
    steps.append((TxState.REFUND_PENDING, {"order_unreadable": True, "bills_refund_pending": [],
                                           "refund_pending_rials": tx.amount_rials}))
    await money.writer.append_many(tx_id, steps)
    return SettleResult.REFUND_PENDING


async def settle_basket(money: MoneyPath, tx_id: str) -> SettleResult:
    """Queue every bill, post each queued one in order, then finish. A bill the back-office
    cannot be reached for stays queued (the outbox worker posts it later): PENDING."""
    from kiosk.money_path import SettleResult

    with money.claimed(tx_id):
        state = money.journal.state_of(tx_id)
        if state not in (TxState.PAID, TxState.FULFILLING):
            return _result_of(state)
        if read_order(money.journal.get(tx_id)) is None:
            return await unreadable_order(money, tx_id)
        await queue_bills(money, tx_id)
        pending = {item.payload.get("bill_index"): item for item in money.journal.outbox_for(tx_id)
                   if item.kind == BASKET_BILL and item.status == OutboxStatus.PENDING}
        posted = False
        waiting = False
        for index in sorted(i for i in pending if isinstance(i, int)):
            if posted:
                fault_point("between-basket-settlements")
            result = await money.settle(pending[index])
            posted = True
            if result == SettleResult.PENDING:
                waiting = True  # the others are still tried: one bill's outage is not all of them
        if waiting:
            return SettleResult.PENDING
        return await finish(money, tx_id)


async def finish(money: MoneyPath, tx_id: str) -> SettleResult:
    """Every bill has its answer: refund each refused share, then FULFILLED + POSTED (one
    commit), or REFUND_PENDING when a refund was refused. Every bill refused: the whole sale
    is reversed (REVERSING → REVERSED)."""
    from kiosk.money_path import SettleResult

    tx = money.journal.get(tx_id)
    if tx.state != TxState.FULFILLING:
        return _result_of(tx.state)
    if read_order(tx) is None:
        return await unreadable_order(money, tx_id)
    outcomes = bill_outcomes(tx)
    if any(o.step in ("new", "queued") for o in outcomes):
        return SettleResult.PENDING
    if not any(o.step == "settled" for o in outcomes):
        return await money.reverse(tx_id, "every bill of the basket refused", ask_backoffice=False)
    for o in outcomes:
        if o.step in ("refused", "refunding"):
            result = await money.refund_part(tx_id, {"bill": o.index}, o.item.amount_rials,
                                             reason=o.reason or "bill refused")
            if result == SettleResult.REVERSAL_PENDING:
                return result  # the terminal cannot say now: asked again by recovery
    outcomes = bill_outcomes(money.journal.get(tx_id))
    refused = [o.index for o in outcomes if o.step == "refund_refused"]
    if refused:
        log.error("basket refund(s) refused by the terminal: an operator refunds bills %s", refused,
                  extra={"tx": tx_id})
        await money.writer.append(tx_id, TxState.REFUND_PENDING, {
            "bills_refund_pending": refused,
            "refund_pending_rials": sum(o.item.amount_rials for o in outcomes if o.step == "refund_refused")})
        return SettleResult.REFUND_PENDING
    settled = [o for o in outcomes if o.step == "settled"]
    refunded = [o for o in outcomes if o.step == "refunded"]
    await money.writer.append_many(tx_id, [
        (TxState.FULFILLED, {"bills_settled": len(settled), "bills_refunded": len(refunded),
                             "refunded_rials": sum(o.item.amount_rials for o in refunded)}),
        (TxState.POSTED, None)])
    return SettleResult.SETTLED


def _result_of(state: TxState) -> SettleResult:
    from kiosk.money_path import SettleResult

    return {TxState.POSTED: SettleResult.SETTLED, TxState.COMPLETED: SettleResult.SETTLED,
            TxState.REVERSED: SettleResult.REVERSED, TxState.REFUND_PENDING: SettleResult.REFUND_PENDING,
            TxState.REVERSING: SettleResult.REVERSAL_PENDING}.get(state, SettleResult.PENDING)
