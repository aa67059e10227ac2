"""Traffic-zone day permits (طرح ترافیک, issue 9): the back-office sets the price and how far
ahead a day may be bought (backoffice_settings); a kiosk quotes, sells and records a permit
against the plate's canonical spelling; an enforcement camera (a `camera` service credential)
asks whether a plate holds a permit for a day.

Days are Tehran calendar days. One permit per plate and day: (plate, permit_date) is unique, so
two kiosks selling the same day to one plate at once cannot both record it — the loser's
transaction re-runs and answers 409 permit.exists. The row is its own idempotency record per
(kiosk, transaction id); its Idempotency-Key is the transaction id (the transit habit)."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import zoneinfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backoffice.errors import ApiError
from backoffice.identity import canonical_plate, mask_plate
from backoffice.models import Setting, TrafficPermit, utcnow
from backoffice.municipal_schemas import PermitCheckOut, PermitIn, PermitOut, PermitQuoteOut
from backoffice.settlement import iso_utc, new_tracking_code
from backoffice.transit import check_key, in_transaction, request_hash
from kiosk.sensitive import find_card_number, is_masked_pan

log = logging.getLogger("backoffice.permits")

TEHRAN = zoneinfo.ZoneInfo("Asia/Tehran")
PRICE_KEY = "traffic_permit.price_rials"
HORIZON_KEY = "traffic_permit.horizon_days"
DEFAULT_PRICE_RIALS = 1_200_000
DEFAULT_HORIZON_DAYS = 7
PERMIT_SCOPE = "traffic_permit"


def tehran_today() -> dt.date:
    return dt.datetime.now(TEHRAN).date()


def _setting(session: Session, key: str, default: int) -> int:
    row = session.get(Setting, key)
    try:
        return int(row.value) if row is not None else default
    except ValueError:
        return default


def price_and_horizon(session: Session) -> tuple[int, int]:
    return _setting(session, PRICE_KEY, DEFAULT_PRICE_RIALS), _setting(session, HORIZON_KEY, DEFAULT_HORIZON_DAYS)


def plate_or_422(plate: str) -> str:
    canonical = canonical_plate(plate)
    if canonical is None:
        raise ApiError(422, "plate.invalid",
                       detail="a plate is two digits, a Persian letter, three digits and the two-digit region")
    return canonical


def _holds(session: Session, plate: str, day: dt.date) -> TrafficPermit | None:
    return session.scalars(select(TrafficPermit).where(TrafficPermit.plate == plate,
                                                       TrafficPermit.permit_date == day)).first()


def quote(session: Session, plate: str, day: dt.date) -> PermitQuoteOut:
    """The price, and whether `plate` can buy `day` now (today .. today + horizon, not held)."""
    canonical = plate_or_422(plate)
    price, horizon = price_and_horizon(session)
    first = tehran_today()
    last = first + dt.timedelta(days=horizon)
    reason = ""
    if not first <= day <= last:
        reason = "date_invalid"
    elif _holds(session, canonical, day) is not None:
        reason = "exists"
    return PermitQuoteOut(plate=canonical, date=day, price_rials=price, available=not reason, reason=reason,
                          min_date=first, max_date=last)


def permit_out(row: TrafficPermit) -> PermitOut:
    return PermitOut(permit_id=row.permit_id, transaction_id=row.transaction_id, plate=row.plate,
                     date=row.permit_date, amount_rials=row.amount_rials, tracking_code=row.tracking_code,
                     status="issued", issued_at=iso_utc(row.created_at), journal_seq=row.journal_seq,
                     journal_head=row.journal_head)


def post_permit(sessions: sessionmaker[Session], kiosk_id: str, key: str | None, body: PermitIn) -> tuple[int, str]:
    """Record a sold permit. The allowed days are counted from the Tehran day the citizen paid
    (paid_at), not the day the post arrives: a post queued while the link was down is still
    the permit that was paid for. Refusals: 422 plate.invalid / permit.date_invalid (+ min_date,
    max_date) / payment.unmasked_pan, 409 permit.exists / permit.amount_mismatch (+ expected_rials)
    / idempotency.conflict."""
    check_key(key, body.transaction_id)
    refs = body.terminal
    if (refs.masked_pan and not is_masked_pan(refs.masked_pan)) or any(
            find_card_number(t) for t in (refs.rrn, refs.stan, refs.poi_reference)):
        raise ApiError(422, "payment.unmasked_pan")
    plate = plate_or_422(body.plate)
    req_hash = request_hash(PERMIT_SCOPE, body.canonical(plate))

    def work(session: Session) -> tuple[int, str]:
        existing = session.scalars(select(TrafficPermit).where(
            TrafficPermit.kiosk_id == kiosk_id, TrafficPermit.transaction_id == body.transaction_id)).one_or_none()
        if existing is not None:
            if existing.request_sha256 != req_hash:
                raise ApiError(409, "idempotency.conflict")
            return 201, existing.response_json
        price, horizon = price_and_horizon(session)
        first = body.paid_at.astimezone(TEHRAN).date()
        last = first + dt.timedelta(days=horizon)
        if not first <= body.date <= last:
            raise ApiError(422, "permit.date_invalid", min_date=first.isoformat(), max_date=last.isoformat())
        if _holds(session, plate, body.date) is not None:
            raise ApiError(409, "permit.exists", date=body.date.isoformat())
        if body.amount_rials != price:
            raise ApiError(409, "permit.amount_mismatch", expected_rials=price)
        row = TrafficPermit(
            permit_id=f"TP{secrets.randbelow(10**12):012d}", kiosk_id=kiosk_id, transaction_id=body.transaction_id,
            plate=plate, permit_date=body.date, amount_rials=body.amount_rials, paid_at=body.paid_at,
            rrn=refs.rrn, stan=refs.stan, poi_reference=refs.poi_reference, masked_pan=refs.masked_pan,
            tracking_code=new_tracking_code(), journal_seq=body.journal_seq, journal_head=body.journal_head,
            request_sha256=req_hash, response_json="", created_at=utcnow())
        row.response_json = permit_out(row).model_dump_json()
        session.add(row)
        session.flush()
        log.info("traffic permit for %s on %s recorded", mask_plate(plate), body.date,
                 extra={"tx": body.transaction_id, "event": "permit.issued"})
        return 201, row.response_json

    return in_transaction(sessions, work, f"permit {body.transaction_id}")


def permit_status(session: Session, kiosk_id: str, transaction_id: str) -> PermitOut:
    """The kiosk's own permit for its transaction; another kiosk's reads like an unknown one
    (404 permit.not_found), as payment_status does."""
    row = session.scalars(select(TrafficPermit).where(TrafficPermit.kiosk_id == kiosk_id,
                                                      TrafficPermit.transaction_id == transaction_id)).one_or_none()
    if row is None:
        raise ApiError(404, "permit.not_found")
    return permit_out(row)


def check(session: Session, plate: str, day: dt.date | None) -> PermitCheckOut:
    """An enforcement camera's question: does `plate` hold a permit for `day` (default today)?"""
    canonical = plate_or_422(plate)
    day = day or tehran_today()
    return PermitCheckOut(plate=canonical, date=day, valid=_holds(session, canonical, day) is not None)
