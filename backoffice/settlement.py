"""Write side of the gateway: settle a kiosk's payment of a bill exactly once.

The idempotency record, the payment row and the bill's paid status are written in one
database transaction. Duplicates are stopped by unique constraints — (kiosk_id, key) on
idempotency, (bill_id, payment_id) and (kiosk_id, transaction_id) on payments — and a loser of a race
gets the winner's stored answer instead of an error."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backoffice.billing import canonical_ids
from backoffice.errors import ApiError
from backoffice.models import Bill, BillStatus, IdempotencyRecord, Payment, TrafficPermit, utcnow
from backoffice.schemas import JournalAnchorOut, JournalAnchorsOut, PaymentIn, SettlementOut
from kiosk.sensitive import find_card_number, is_masked_pan

log = logging.getLogger("backoffice.settlement")

MAX_KEY_LEN = 128
MAX_ANCHORS_PAGE = 1000


def request_sha256(body: PaymentIn) -> str:
    canonical = json.dumps(body.canonical(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def iso_utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_tracking_code() -> str:
    """12 random digits: short enough to read out on the phone, too many to guess."""
    return f"{secrets.randbelow(10**12):012d}"


def settlement_of(payment: Payment) -> SettlementOut:
    return SettlementOut(
        transaction_id=payment.transaction_id, bill_id=payment.bill_id, payment_id=payment.payment_id,
        amount_rials=payment.amount_rials, tracking_code=payment.tracking_code, status="settled",
        settled_at=iso_utc(payment.created_at),
    )


def card_data_in(body: PaymentIn) -> bool:
    """True when the terminal refs carry more of a card than a masked PAN may show: a masked
    PAN that is not masked (any grouping: "6037.9912.3456.7893"), or a card number hidden in
    another field. Empty masked_pan is allowed (a payment without card details)."""
    refs = body.terminal
    if refs.masked_pan and not is_masked_pan(refs.masked_pan):
        return True
    return any(find_card_number(text) for text in (refs.rrn, refs.stan, refs.poi_reference))


def _replay(record: IdempotencyRecord, req_hash: str) -> tuple[int, str]:
    if record.request_sha256 != req_hash:
        raise ApiError(409, "idempotency.conflict")
    return record.status_code, record.response_json


def _find_record(session: Session, kiosk_id: str, key: str) -> IdempotencyRecord | None:
    return session.scalars(
        select(IdempotencyRecord).where(IdempotencyRecord.kiosk_id == kiosk_id, IdempotencyRecord.key == key)
    ).one_or_none()


def post_payment(sessions: sessionmaker[Session], kiosk_id: str, key: str, body: PaymentIn) -> tuple[int, str]:
    """Settle `body` for `kiosk_id` under idempotency `key`; returns (status code, JSON text).

    Raises ApiError for refusals: 422 bill.invalid / payment.unmasked_pan /
    payment.amount_mismatch, 404 bill.not_found, 409 bill.already_paid / idempotency.conflict.
    """
    if not key or len(key) > MAX_KEY_LEN:
        raise ApiError(400, "idempotency.key_required")
    if card_data_in(body):
        # refuse to store it at all (not even in the idempotency record); the kiosk must
        # send the masked form. The value is not logged either.
        raise ApiError(422, "payment.unmasked_pan")
    bill_id, payment_id, _, _ = canonical_ids(body.bill_id, body.payment_id)
    req_hash = request_sha256(body)
    for _attempt in range(3):  # a second round only on a tracking-code collision
        try:
            with sessions() as session, session.begin():
                # Lock the bill first: on PostgreSQL a concurrent post for the same bill waits
                # here and, once the winner commits, sees its idempotency record below
                # (READ COMMITTED reads afresh per statement). SQLite: BEGIN IMMEDIATE already
                # serialises writers.
                bill = session.scalars(
                    select(Bill).where(Bill.bill_id == bill_id, Bill.payment_id == payment_id).with_for_update()
                ).one_or_none()
                record = _find_record(session, kiosk_id, key)
                if record is not None:
                    return _replay(record, req_hash)
                if bill is None:
                    raise ApiError(404, "bill.not_found")
                if bill.status == BillStatus.PAID:
                    raise ApiError(409, "bill.already_paid")
                if body.amount_rials != bill.amount_rials:
                    raise ApiError(422, "payment.amount_mismatch", expected_rials=bill.amount_rials)
                payment = Payment(
                    transaction_id=body.transaction_id, kiosk_id=kiosk_id, bill_id=bill_id,
                    payment_id=payment_id, amount_rials=body.amount_rials,
                    paid_at=body.paid_at,  # zone-aware: the schema refuses naive times
                    rrn=body.terminal.rrn, stan=body.terminal.stan,
                    poi_reference=body.terminal.poi_reference, masked_pan=body.terminal.masked_pan,
                    tracking_code=new_tracking_code(), created_at=utcnow(),
                    journal_seq=body.journal_seq, journal_head=body.journal_head,
                )
                session.add(payment)
                bill.status = BillStatus.PAID
                response = settlement_of(payment).model_dump_json()
                session.add(IdempotencyRecord(kiosk_id=kiosk_id, key=key, request_sha256=req_hash,
                                              status_code=201, response_json=response, created_at=utcnow()))
                session.flush()
            log.info("settled bill %s for %d rials", bill_id, body.amount_rials,
                     extra={"tx": body.transaction_id, "event": "payment.settled"})
            return 201, response
        except IntegrityError:
            # Another transaction committed first (same key, same bill or same transaction).
            log.info("settlement race lost; answering from the winner", extra={"tx": body.transaction_id})
            with sessions() as session:
                record = _find_record(session, kiosk_id, key)
                if record is not None:
                    return _replay(record, req_hash)
                taken = session.scalars(select(Payment).where(
                    Payment.bill_id == bill_id, Payment.payment_id == payment_id)).first()
                if taken is not None:
                    raise ApiError(409, "bill.already_paid") from None
                if session.scalars(select(Payment).where(Payment.transaction_id == body.transaction_id,
                                                         Payment.kiosk_id == kiosk_id)).first():
                    raise ApiError(409, "payment.duplicate_transaction") from None
    raise ApiError(503, "backoffice.busy")


def payment_status(session: Session, kiosk_id: str, transaction_id: str) -> SettlementOut:
    """The settlement of `kiosk_id`'s own transaction. Another kiosk's payment answers the
    same 404 payment.not_found as an unknown id, so its existence does not leak."""
    payment = session.scalars(select(Payment).where(Payment.transaction_id == transaction_id,
                                                    Payment.kiosk_id == kiosk_id)).one_or_none()
    if payment is None:
        raise ApiError(404, "payment.not_found")
    return settlement_of(payment)


def journal_anchors(session: Session, kiosk_id: str, after_seq: int = 0,
                    limit: int = MAX_ANCHORS_PAGE) -> JournalAnchorsOut:
    """`kiosk_id`'s anchored settlements with journal_seq > after_seq, in seq order; at most
    `limit` (the client pages on by the last seq it got). Traffic-zone permits (issue 9) carry
    anchors as payments do and are listed with them."""
    page = min(max(limit, 1), MAX_ANCHORS_PAGE)
    found: list[tuple[int, int, str, str, dt.datetime]] = []
    for table in (Payment, TrafficPermit):
        rows = session.execute(
            select(table.journal_seq, table.id, table.transaction_id, table.journal_head, table.created_at)
            .where(table.kiosk_id == kiosk_id, table.journal_seq.is_not(None), table.journal_seq > after_seq)
            .order_by(table.journal_seq, table.id)
            .limit(page))
        found.extend((int(seq), int(row_id), str(tx), str(head), at) for seq, row_id, tx, head, at in rows)
    # each list is the first `page` of its table in seq order, so the first `page` of both are too
    found.sort(key=lambda r: (r[0], r[1]))
    return JournalAnchorsOut(anchors=[
        JournalAnchorOut(transaction_id=tx, journal_seq=seq, journal_head=head, received_at=iso_utc(at))
        for seq, _id, tx, head, at in found[:page]
    ])
