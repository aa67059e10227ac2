"""What the back-office recorded on a day, transaction by transaction, for reconciliation
against the kiosks' journals (issue 11, item 7): fee payments, transit loads, QR tickets and
traffic-zone permits, each with the kiosk's own transaction id, its amount and its ids.

The daily totals (transit.daily_totals) are sums of loads and tickets only; a reconciliation
needs each record, and the fee payments too. A day is a calendar day in Tehran, by when the
back-office stored the record (created_at): a payment the kiosk made at 23:59 and posted at
00:01 is on the next day here; the fleet's reconciliation matches across the neighbouring days.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice.models import Payment, Ticket, TrafficPermit, TransitLoad
from backoffice.transit import BUSINESS_TZ, day_bounds

RecordKind = Literal["fee_payment", "transit_load", "ticket", "traffic_permit"]


class RecordOut(BaseModel):
    kind: RecordKind
    kiosk_id: str
    transaction_id: str
    amount_rials: int
    recorded_at: dt.datetime
    tracking_code: str
    bill_id: str | None = None  # fee payments
    payment_id: str | None = None  # fee payments
    load_kind: str | None = None  # transit loads: topup, card_sale, pending_load
    card_serial: str | None = None  # transit loads
    ticket_id: str | None = None  # tickets
    permit_id: str | None = None  # traffic-zone permits


class DayRecordsOut(BaseModel):
    date: dt.date
    timezone: str
    kiosk_id: str | None  # None: every kiosk's
    records: list[RecordOut]


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def day_records(session: Session, day: dt.date, kiosk_id: str | None) -> DayRecordsOut:
    """Every record stored on `day` (Tehran), of `kiosk_id` or of every kiosk (None), ordered by
    kiosk, time and transaction id."""
    start, end = day_bounds(day)
    out: list[RecordOut] = []

    def rows(model: type, *extra: object) -> list[object]:
        query = select(model).where(model.created_at >= start, model.created_at < end)  # type: ignore[attr-defined]
        if kiosk_id is not None:
            query = query.where(model.kiosk_id == kiosk_id)  # type: ignore[attr-defined]
        return list(session.scalars(query))

    for p in rows(Payment):
        assert isinstance(p, Payment)
        out.append(RecordOut(kind="fee_payment", kiosk_id=p.kiosk_id, transaction_id=p.transaction_id,
                             amount_rials=p.amount_rials, recorded_at=_utc(p.created_at), tracking_code=p.tracking_code,
                             bill_id=p.bill_id, payment_id=p.payment_id))
    for ld in rows(TransitLoad):
        assert isinstance(ld, TransitLoad)
        out.append(RecordOut(kind="transit_load", kiosk_id=ld.kiosk_id, transaction_id=ld.transaction_id,
                             amount_rials=ld.amount_rials, recorded_at=_utc(ld.created_at),
                             tracking_code=ld.tracking_code, load_kind=str(ld.kind.value), card_serial=ld.card_serial))
    for t in rows(Ticket):
        assert isinstance(t, Ticket)
        out.append(RecordOut(kind="ticket", kiosk_id=t.kiosk_id, transaction_id=t.transaction_id,
                             amount_rials=t.amount_rials, recorded_at=_utc(t.created_at), tracking_code=t.tracking_code,
                             ticket_id=t.ticket_id))
    for pm in rows(TrafficPermit):
        assert isinstance(pm, TrafficPermit)
        out.append(RecordOut(kind="traffic_permit", kiosk_id=pm.kiosk_id, transaction_id=pm.transaction_id,
                             amount_rials=pm.amount_rials, recorded_at=_utc(pm.created_at),
                             tracking_code=pm.tracking_code, permit_id=pm.permit_id))
    out.sort(key=lambda r: (r.kiosk_id, r.recorded_at, r.transaction_id))
    return DayRecordsOut(date=day, timezone=BUSINESS_TZ, kiosk_id=kiosk_id, records=out)
