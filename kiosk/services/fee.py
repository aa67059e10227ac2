"""The fee payment kind: a municipal bill (bill id + payment id) paid by card and fulfilled by
being settled at the back-office (POST /payments, idempotent by transaction id)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from kiosk.backoffice_client import (
    AmountMismatch,
    BackofficeClient,
    BillAlreadyPaid,
    BillNotFound,
    PaymentNotFound,
    PaymentPost,
    Settlement,
)
from kiosk.bills import ServiceType
from kiosk.journal import Transaction
from kiosk.receipts import ReceiptData
from kiosk.services.base import InvalidOrder, Order, Posted, TransactionKind, fixed_at_paid

#: the outbox kind of a fee settlement (the name journals already hold)
FEE_SETTLEMENT = "fee_settlement"
#: ServiceType of a municipal fee, when an order does not say (older journals)
_MUNICIPALITY = 6


@dataclass(frozen=True)
class FeeOrder(Order):
    bill_id: str
    payment_id: str
    service_type: int = _MUNICIPALITY
    description_fa: str = ""
    kiosk_id: str = ""

    def to_journal(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_journal(cls, data: Mapping[str, Any]) -> FeeOrder:
        try:
            bill_id, payment_id = data["bill_id"], data["payment_id"]
            service_type = int(data.get("service_type", _MUNICIPALITY))
        except (KeyError, TypeError, ValueError):
            raise InvalidOrder("not a fee order", tx=data.get("tx_id", "")) from None
        if not isinstance(bill_id, str) or not isinstance(payment_id, str):
            raise InvalidOrder("not a fee order", tx=data.get("tx_id", ""))
        return cls(bill_id, payment_id, service_type, str(data.get("description_fa") or ""),
                   str(data.get("kiosk_id") or ""))


class FeePaymentKind(TransactionKind):
    name: ClassVar[str] = "fee_payment"
    outbox_kind: ClassVar[str] = FEE_SETTLEMENT
    order_type: ClassVar[type[Order]] = FeeOrder
    # a definite refusal of this bill: paid elsewhere, amount changed, no such bill
    refusals: ClassVar[tuple[type[BaseException], ...]] = (BillAlreadyPaid, AmountMismatch, BillNotFound)

    def post_payload(self, tx: Transaction, *, paid_at: str) -> dict[str, Any]:
        order = FeeOrder.from_journal(tx.data)
        data = tx.data
        return {
            "transaction_id": tx.tx_id,
            "bill_id": order.bill_id,
            "payment_id": order.payment_id,
            "amount_rials": tx.amount_rials,
            "paid_at": data.get("paid_at") or paid_at,
            "terminal": {k: data.get(k, "") for k in ("rrn", "stan", "poi_reference", "masked_pan")},
        }

    def post(self, backoffice: BackofficeClient, payload: Mapping[str, Any], *, idempotency_key: str,
             outbox_kind: str = FEE_SETTLEMENT) -> Posted:
        return backoffice.post_payment(PaymentPost.from_dict(payload), idempotency_key=idempotency_key)

    def find_posted(self, backoffice: BackofficeClient, tx_id: str) -> Posted | None:
        try:
            return backoffice.payment_status(tx_id)
        except PaymentNotFound:
            return None  # the back-office's own answer: it holds no such payment

    def posted_from_json(self, data: Mapping[str, Any]) -> Posted:
        return Settlement.from_json(data)

    def receipt_data(self, tx: Transaction, *, kiosk_id: str, pending: bool) -> ReceiptData:
        paid, fixed = fixed_at_paid(tx)
        service = ServiceType(int(fixed.get("service_type", _MUNICIPALITY)))
        return ReceiptData(
            tx_id=tx.tx_id,
            kiosk_id=kiosk_id,
            kind=tx.kind,
            amount_rials=paid.amount_rials,
            at=dt.datetime.fromtimestamp(int(paid.at), dt.timezone.utc),
            bill_id=fixed.get("bill_id", ""),
            payment_id=fixed.get("payment_id", ""),
            service_label_fa=fixed.get("description_fa") or service.label("fa"),
            service_label_en=service.label("en"),
            tracking_code=tx.data.get("tracking_code", ""),
            rrn=fixed.get("rrn", ""),
            stan=fixed.get("stan", ""),
            masked_pan=fixed.get("masked_pan", ""),
            status="pending_settlement" if pending else "paid",
            journal_seq=paid.seq,
            journal_hash=paid.hash,
        )


FEE_PAYMENT = FeePaymentKind()
