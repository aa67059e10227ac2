"""The traffic-zone day permit kind (مجوز روزانه طرح ترافیک): a plate's permit for one day,
bought by card and fulfilled by being recorded at the back-office (POST /traffic-permits,
idempotent by transaction id), where an enforcement camera's check finds it. The receipt is
the citizen's proof.

Its states are the fee payment's: CREATED (PermitOrder) → PAYING → PAID → FULFILLING (the
post queued) → FULFILLED + POSTED (the back-office recorded it: permit id and tracking code)
→ COMPLETED. The back-office refusing the permit after payment (the plate got that day's
permit meanwhile, the day passed, the price changed) is a definite refusal: the money path
reverses the payment. The flow asks for a quote first, so that is rare."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from kiosk.backoffice_client import (
    BackofficeClient,
    PermitAmountMismatch,
    PermitDateInvalid,
    PermitExists,
    PermitNotFound,
    PermitPost,
    PermitRecord,
    PlateInvalid,
)
from kiosk.journal import Transaction
from kiosk.receipts import ReceiptData
from kiosk.services.base import InvalidOrder, Order, Posted, TransactionKind, fixed_at_paid

#: the outbox kind of a permit's back-office post
PERMIT_POST = "permit_post"


@dataclass(frozen=True)
class PermitOrder(Order):
    plate: str  # as kiosk.fee_types.plate_text spells it
    day: dt.date  # the permit's day (Tehran)
    kiosk_id: str = ""

    def to_journal(self) -> dict[str, Any]:
        return {"plate": self.plate, "permit_date": self.day.isoformat(), "kiosk_id": self.kiosk_id}

    @classmethod
    def from_journal(cls, data: Mapping[str, Any]) -> PermitOrder:
        try:
            plate, day = data["plate"], dt.date.fromisoformat(str(data["permit_date"]))
        except (KeyError, TypeError, ValueError):
            raise InvalidOrder("not a permit order", tx=str(data.get("tx_id", ""))) from None
        if not isinstance(plate, str) or not plate:
            raise InvalidOrder("not a permit order", tx=str(data.get("tx_id", "")))
        return cls(plate, day, str(data.get("kiosk_id") or ""))


class TrafficPermitKind(TransactionKind):
    name: ClassVar[str] = "traffic_permit"
    outbox_kind: ClassVar[str] = PERMIT_POST
    order_type: ClassVar[type[Order]] = PermitOrder
    refusals: ClassVar[tuple[type[BaseException], ...]] = (PermitExists, PermitDateInvalid, PermitAmountMismatch,
                                                          PlateInvalid)

    def post_payload(self, tx: Transaction, *, paid_at: str) -> dict[str, Any]:
        order = PermitOrder.from_journal(tx.data)
        data = tx.data
        return {
            "transaction_id": tx.tx_id, "plate": order.plate, "date": order.day.isoformat(),
            "amount_rials": tx.amount_rials, "paid_at": data.get("paid_at") or paid_at,
            "terminal": {k: data.get(k, "") for k in ("rrn", "stan", "poi_reference", "masked_pan")},
        }

    def post(self, backoffice: BackofficeClient, payload: Mapping[str, Any], *, idempotency_key: str,
             outbox_kind: str = PERMIT_POST) -> Posted:
        return backoffice.post_permit(PermitPost.from_dict(payload), idempotency_key=idempotency_key)

    def find_posted(self, backoffice: BackofficeClient, tx_id: str) -> Posted | None:
        try:
            return backoffice.permit_status(tx_id)
        except PermitNotFound:
            return None

    def posted_from_json(self, data: Mapping[str, Any]) -> Posted:
        return PermitRecord.from_json(data)

    def fulfilled_data(self, posted: Posted) -> dict[str, Any]:
        return {"tracking_code": posted.tracking_code, "permit_id": getattr(posted, "permit_id", "")}

    def receipt_data(self, tx: Transaction, *, kiosk_id: str, pending: bool) -> ReceiptData:
        paid, fixed = fixed_at_paid(tx)
        order = PermitOrder.from_journal(fixed)
        return ReceiptData(
            tx_id=tx.tx_id, kiosk_id=kiosk_id, kind=tx.kind, amount_rials=paid.amount_rials,
            at=dt.datetime.fromtimestamp(int(paid.at), dt.timezone.utc),
            bill_id=order.plate, payment_id=order.day.isoformat(),
            service_label_fa="مجوز روزانه طرح ترافیک", service_label_en="Traffic-zone day permit",
            tracking_code=tx.data.get("tracking_code", ""), rrn=fixed.get("rrn", ""), stan=fixed.get("stan", ""),
            masked_pan=fixed.get("masked_pan", ""), status="pending_settlement" if pending else "paid",
            journal_seq=paid.seq, journal_hash=paid.hash,
        )


TRAFFIC_PERMIT = TrafficPermitKind()
