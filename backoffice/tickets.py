"""QR tickets (issue 8): a kiosk records each ticket it sold; a gate redeems it, one trip at a
time (a single ticket once, a return ticket twice), before it expires. The QR itself is
signed by the kiosk and can be checked offline; what only the back-office can tell is whether
a trip was used already, so the redemptions live here, one row per trip, unique per
(ticket, trip number)."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backoffice.errors import ApiError
from backoffice.models import Ticket, TicketKind, TicketRedemption, utcnow
from backoffice.settlement import MAX_KEY_LEN, iso_utc, new_tracking_code
from backoffice.transit import check_key, in_transaction, request_hash
from backoffice.transit_schemas import RedeemIn, RedemptionOut, TicketIn, TicketOut

log = logging.getLogger("backoffice.tickets")

TICKET_SCOPE = "ticket"


def ticket_out(ticket: Ticket) -> TicketOut:
    return TicketOut(
        ticket_id=ticket.ticket_id, transaction_id=ticket.transaction_id, kind=str(ticket.kind),
        trips=ticket.trips, trips_used=ticket.trips_used, valid_until=iso_utc(ticket.valid_until),
        amount_rials=ticket.amount_rials, tracking_code=ticket.tracking_code, status="issued",
        issued_at=iso_utc(ticket.created_at),
    )


def post_ticket(sessions: sessionmaker[Session], kiosk_id: str, key: str | None, body: TicketIn) -> tuple[int, str]:
    """Record a sold ticket. Same transaction id + same body: the stored first answer; another
    body: 409 idempotency.conflict; a ticket id another sale holds: 409 ticket.duplicate_id."""
    check_key(key, body.transaction_id)
    req_hash = request_hash(TICKET_SCOPE, body.canonical())

    def work(session: Session) -> tuple[int, str]:
        existing = session.scalars(select(Ticket).where(
            Ticket.kiosk_id == kiosk_id, Ticket.transaction_id == body.transaction_id)).one_or_none()
        if existing is not None:
            if existing.request_sha256 != req_hash:
                raise ApiError(409, "idempotency.conflict")
            return 201, existing.response_json
        if session.scalars(select(Ticket.id).where(Ticket.ticket_id == body.ticket_id)).first() is not None:
            raise ApiError(409, "ticket.duplicate_id")
        ticket = Ticket(ticket_id=body.ticket_id, kiosk_id=kiosk_id, transaction_id=body.transaction_id,
                        kind=TicketKind(body.kind), trips=body.trips, trips_used=0, valid_until=body.valid_until,
                        amount_rials=body.amount_rials, tracking_code=new_tracking_code(),
                        request_sha256=req_hash, response_json="", created_at=utcnow())
        ticket.response_json = ticket_out(ticket).model_dump_json()
        session.add(ticket)
        session.flush()
        log.info("ticket %s (%s) recorded", body.ticket_id, body.kind,
                 extra={"tx": body.transaction_id, "event": "ticket.issued"})
        return 201, ticket.response_json

    return in_transaction(sessions, work, f"ticket {body.ticket_id}")


def ticket_status(session: Session, kiosk_id: str, ticket_id: str) -> TicketOut:
    """The issuing kiosk's own ticket, with the trips used so far; any other kiosk's reads
    like an unknown one (404 ticket.not_found)."""
    ticket = session.scalars(select(Ticket).where(Ticket.ticket_id == ticket_id,
                                                  Ticket.kiosk_id == kiosk_id)).one_or_none()
    if ticket is None:
        raise ApiError(404, "ticket.not_found")
    return ticket_out(ticket)


def _redemption_out(ticket: Ticket, row: TicketRedemption) -> RedemptionOut:
    return RedemptionOut(ticket_id=ticket.ticket_id, trip_no=row.trip_no, trips=ticket.trips,
                         trips_left=ticket.trips - row.trip_no, gate_id=row.gate_id,
                         redeemed_at=iso_utc(row.redeemed_at))


def redeem(sessions: sessionmaker[Session], gate_client: str, key: str | None, ticket_id: str,
           body: RedeemIn) -> tuple[int, RedemptionOut]:
    """Use one trip of a ticket at a gate. A gate's retry under the same Idempotency-Key (its
    own scan id, optional) answers the same redemption (200) instead of using a second trip.

    Refusals: 404 ticket.not_found, 409 ticket.expired (+ valid_until), 409 ticket.used
    (+ trips), 409 idempotency.conflict (the key was used for another ticket or gate)."""
    if key is not None and (not key or len(key) > MAX_KEY_LEN):
        raise ApiError(400, "idempotency.key_required")

    def work(session: Session) -> tuple[int, RedemptionOut]:
        # the ticket row is the lock: concurrent gates for one ticket take turns
        ticket = session.scalars(select(Ticket).where(Ticket.ticket_id == ticket_id).with_for_update()).one_or_none()
        if key is not None:
            earlier = session.scalars(select(TicketRedemption).where(
                TicketRedemption.gate_client == gate_client, TicketRedemption.request_key == key)).one_or_none()
            if earlier is not None:
                if ticket is None or earlier.ticket_id != ticket_id or earlier.gate_id != body.gate_id:
                    raise ApiError(409, "idempotency.conflict")
                return 200, _redemption_out(ticket, earlier)
        if ticket is None:
            raise ApiError(404, "ticket.not_found")
        now = utcnow()
        if now > ticket.valid_until:
            raise ApiError(409, "ticket.expired", valid_until=iso_utc(ticket.valid_until))
        if ticket.trips_used >= ticket.trips:
            raise ApiError(409, "ticket.used", trips=ticket.trips)
        row = TicketRedemption(ticket_id=ticket.ticket_id, trip_no=ticket.trips_used + 1, gate_id=body.gate_id,
                               gate_client=gate_client, request_key=key, redeemed_at=now)
        ticket.trips_used = row.trip_no
        session.add(row)
        session.flush()
        log.info("ticket %s trip %d used at gate %s", ticket_id, row.trip_no, body.gate_id,
                 extra={"event": "ticket.redeemed"})
        return 201, _redemption_out(ticket, row)

    return in_transaction(sessions, work, f"redeem {ticket_id}")
