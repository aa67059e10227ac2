"""Transit card accounts (issue 8): the load ledger per card serial, pending loads paid
elsewhere, pending actions for uncertain card writes, and the daily totals per kiosk.

Every write runs in one database transaction that first serialises on the card serial
(PostgreSQL: an advisory transaction lock on the serial, which also covers a serial with no
account yet; SQLite: every transaction is BEGIN IMMEDIATE). The checks then read committed
state, and unique constraints — (kiosk, transaction), (serial, counter_after), one load per
pending load — are the last word: an IntegrityError re-runs the whole transaction, which then
answers from what the winner stored (a replay or a typed refusal).

The ledger rows are their own idempotency records: a post under the same transaction id with
the same body gets the stored first answer byte for byte, with another body 409
idempotency.conflict."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import zoneinfo
from typing import Callable, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backoffice.errors import ApiError
from backoffice.models import (
    ActionStatus,
    LoadKind,
    Ticket,
    TransitAccount,
    TransitLoad,
    TransitPendingAction,
    TransitPendingLoad,
    utcnow,
)
from backoffice.settlement import MAX_KEY_LEN, iso_utc, new_tracking_code
from backoffice.transit_schemas import (
    CardAccountOut,
    CardLoadOut,
    DailyTotalsOut,
    KindTotalOut,
    KioskTotalsOut,
    LoadIn,
    LoadOut,
    PendingActionIn,
    PendingActionOut,
    PendingLoadIn,
    PendingLoadOut,
    SettleIn,
)

log = logging.getLogger("backoffice.transit")

T = TypeVar("T")

RECENT_LOADS = 20
# the kiosks' business day: a daily total is a Tehran calendar day
BUSINESS_TZ = "Asia/Tehran"
_ATTEMPTS = 3


# --- plumbing -------------------------------------------------------------------------------------
def request_hash(scope: str, data: dict[str, object]) -> str:
    """SHA-256 of a body's canonical JSON, salted by what it was posted to."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{scope}\n{canonical}".encode()).hexdigest()


def check_key(key: str | None, transaction_id: str) -> None:
    """The Idempotency-Key of a kiosk's transit post is its transaction id (issue 8)."""
    if not key or len(key) > MAX_KEY_LEN:
        raise ApiError(400, "idempotency.key_required")
    if key != transaction_id:
        raise ApiError(422, "idempotency.key_mismatch")


def lock_serial(session: Session, serial: str) -> None:
    """Serialise with every other write to this card serial until the transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(f"transit-card:{serial}".encode()).digest()
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": int.from_bytes(digest[:8], "big", signed=True)})


def in_transaction(sessions: sessionmaker[Session], work: Callable[[Session], T], what: str) -> T:
    """`work(session)` in one committed transaction, re-run when a unique constraint stopped
    it (another transaction won a race): the re-run sees the winner and answers from it."""
    for _attempt in range(_ATTEMPTS):
        try:
            with sessions() as session, session.begin():
                return work(session)
        except IntegrityError:
            log.info("%s: race lost, evaluating again", what)
    raise ApiError(503, "backoffice.busy")


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else iso_utc(moment)


def _open_action(session: Session, serial: str) -> TransitPendingAction | None:
    return session.scalars(select(TransitPendingAction).where(
        TransitPendingAction.card_serial == serial, TransitPendingAction.status == ActionStatus.OPEN)
        .order_by(TransitPendingAction.id)).first()


def _refuse_open_action(session: Session, serial: str) -> None:
    """A card with an uncertain write is settled before anything else is written to it: its
    counters could not tell which write happened otherwise."""
    action = _open_action(session, serial)
    if action is not None:
        raise ApiError(409, "transit.pending_action_open", transaction_id=action.transaction_id,
                       counter_before=action.counter_before)


def _check_card(session: Session, account: TransitAccount | None, card_uid: str, counter_before: int,
                counter_after: int, *, sale: bool = False) -> None:
    """The card is the one on the account, and no load holds this counter already: a counter is
    one write on the card, so a second load claiming it is a replayed or forged one. Loads may
    arrive out of counter order — a kiosk whose back-office link was down posts its queued load
    after others posted later ones — so a counter below the highest recorded is accepted when
    it is free (the unique (serial, counter_after) constraint is the database's last word).
    A write moves the card's counter by exactly one (a sold card is handed over at the counter
    personalisation left it at); any other step is not a write the card made."""
    if counter_after - counter_before != (0 if sale and counter_after == counter_before else 1):
        # last_counter 0: no load recorded for the card yet
        raise ApiError(409, "transit.counter_replay", last_counter=account.last_counter if account else 0)
    if account is None:
        return
    if account.card_uid != card_uid:
        raise ApiError(409, "transit.card_mismatch")
    taken = session.scalars(select(TransitLoad.id).where(
        TransitLoad.card_serial == account.card_serial, TransitLoad.counter_after == counter_after)).first()
    if taken is not None:
        raise ApiError(409, "transit.counter_replay", last_counter=account.last_counter)


def _usable_pending_load(session: Session, pending_load_id: int, serial: str, amount: int) -> TransitPendingLoad:
    pending = session.get(TransitPendingLoad, pending_load_id, with_for_update=True)
    if pending is None or pending.card_serial != serial:  # another card's: as if unknown
        raise ApiError(404, "transit.pending_load_not_found")
    if pending.applied_at is not None:
        raise ApiError(409, "transit.pending_load_applied", pending_load_id=pending.id,
                       applied_by_transaction_id=pending.applied_transaction_id)
    if amount != pending.amount_rials:
        raise ApiError(422, "transit.amount_mismatch", expected_rials=pending.amount_rials)
    return pending


def load_out(load: TransitLoad) -> LoadOut:
    return LoadOut(
        transaction_id=load.transaction_id, card_serial=load.card_serial, card_uid=load.card_uid,
        counter_before=load.counter_before, counter_after=load.counter_after, amount_rials=load.amount_rials,
        balance_after=load.balance_after, kind=str(load.kind), pending_load_id=load.pending_load_id,
        tracking_code=load.tracking_code, status="recorded", recorded_at=iso_utc(load.created_at),
    )


def _record_load(session: Session, kiosk_id: str, body: LoadIn, req_hash: str, *,
                 account: TransitAccount | None, pending: TransitPendingLoad | None,
                 tracking_code: str, settled_action_id: int | None = None) -> TransitLoad:
    """Write the ledger row, move the account on, mark the pending load applied."""
    now = utcnow()
    if account is None:
        account = TransitAccount(card_serial=body.card_serial, card_uid=body.card_uid,
                                 last_counter=body.counter_after, last_balance_rials=body.balance_after,
                                 status="active", concession="none", created_at=now, updated_at=now)
        session.add(account)
        session.flush()  # the ledger row's foreign key needs it
    elif body.counter_after > account.last_counter:  # a late load from before does not move it back
        account.last_counter, account.last_balance_rials = body.counter_after, body.balance_after
        account.updated_at = now
    load = TransitLoad(
        kiosk_id=kiosk_id, transaction_id=body.transaction_id, card_serial=body.card_serial,
        card_uid=body.card_uid, counter_before=body.counter_before, counter_after=body.counter_after,
        amount_rials=body.amount_rials, balance_after=body.balance_after, kind=LoadKind(body.kind),
        pending_load_id=body.pending_load_id, settled_action_id=settled_action_id,
        tracking_code=tracking_code, request_sha256=req_hash, response_json="", created_at=now,
    )
    load.response_json = load_out(load).model_dump_json()
    session.add(load)
    if pending is not None:
        pending.applied_at, pending.applied_kiosk_id = now, kiosk_id
        pending.applied_transaction_id = body.transaction_id
    session.flush()
    return load


# --- loads ----------------------------------------------------------------------------------------
LOAD_SCOPE = "transit.load"


def post_load(sessions: sessionmaker[Session], kiosk_id: str, key: str | None, body: LoadIn) -> tuple[int, str]:
    """Record a load `kiosk_id` wrote to a card; returns (status code, JSON text).

    Refusals: 400 idempotency.key_required, 422 idempotency.key_mismatch, 409
    idempotency.conflict, 409 transit.pending_action_open, 404 transit.pending_load_not_found,
    409 transit.pending_load_applied (+ applied_by_transaction_id), 422 transit.amount_mismatch
    (+ expected_rials), 409 transit.card_mismatch, 409 transit.counter_replay (+ last_counter),
    409 transit.card_already_sold, 409 transit.balance_mismatch (+ expected_balance)."""
    check_key(key, body.transaction_id)
    req_hash = request_hash(LOAD_SCOPE, body.canonical())

    def work(session: Session) -> tuple[int, str]:
        lock_serial(session, body.card_serial)
        existing = session.scalars(select(TransitLoad).where(
            TransitLoad.kiosk_id == kiosk_id, TransitLoad.transaction_id == body.transaction_id)).one_or_none()
        if existing is not None:
            if existing.request_sha256 != req_hash:
                raise ApiError(409, "idempotency.conflict")
            return 201, existing.response_json
        _refuse_open_action(session, body.card_serial)
        pending = None
        if body.pending_load_id is not None:
            pending = _usable_pending_load(session, body.pending_load_id, body.card_serial, body.amount_rials)
        account = session.get(TransitAccount, body.card_serial, with_for_update=True)
        _check_card(session, account, body.card_uid, body.counter_before, body.counter_after,
                    sale=body.kind == "card_sale")
        if account is not None and body.kind == "card_sale":
            raise ApiError(409, "transit.card_already_sold")
        prior = None if account is None else session.scalars(select(TransitLoad).where(
            TransitLoad.card_serial == body.card_serial, TransitLoad.counter_after == body.counter_before)).first()
        if prior is not None:
            # the load that left the counter where this one starts: nothing happened on the card
            # between the two, so this one starts from that balance
            expected = prior.balance_after + body.amount_rials
            if body.balance_after != expected:
                raise ApiError(409, "transit.balance_mismatch", expected_balance=expected)
        load = _record_load(session, kiosk_id, body, req_hash, account=account, pending=pending,
                            tracking_code=new_tracking_code())
        log.info("load of %d rials recorded on card %s (counter %d)", body.amount_rials, body.card_serial,
                 body.counter_after, extra={"tx": body.transaction_id, "event": "transit.load"})
        return 201, load.response_json

    return in_transaction(sessions, work, f"load {body.transaction_id}")


def load_status(session: Session, kiosk_id: str, transaction_id: str) -> LoadOut:
    """`kiosk_id`'s own load; another kiosk's reads exactly like an unknown one."""
    load = session.scalars(select(TransitLoad).where(
        TransitLoad.kiosk_id == kiosk_id, TransitLoad.transaction_id == transaction_id)).one_or_none()
    if load is None:
        raise ApiError(404, "transit.load_not_found")
    return load_out(load)


# --- the card's account -----------------------------------------------------------------------------
def _pending_load_out(pending: TransitPendingLoad, reserved: set[int] | None = None) -> PendingLoadOut:
    status = "applied" if pending.applied_at else ("reserved" if reserved and pending.id in reserved else "pending")
    return PendingLoadOut(
        pending_load_id=pending.id, card_serial=pending.card_serial, amount_rials=pending.amount_rials,
        source=pending.source, external_ref=pending.external_ref, status=status,
        created_at=iso_utc(pending.created_at), applied_at=_iso(pending.applied_at),
        applied_by_transaction_id=pending.applied_transaction_id,
    )


def action_out(action: TransitPendingAction) -> PendingActionOut:
    return PendingActionOut(
        transaction_id=action.transaction_id, card_serial=action.card_serial, card_uid=action.card_uid,
        counter_before=action.counter_before, intended_balance=action.intended_balance,
        amount_rials=action.amount_rials, pending_load_id=action.pending_load_id,
        tracking_code=action.tracking_code, status=str(action.status), created_at=iso_utc(action.created_at),
        settled_at=_iso(action.settled_at), counter_seen=action.counter_seen,
        settled_by_transaction_id=action.settled_by_transaction_id,
    )


def card_account(session: Session, serial: str) -> CardAccountOut:
    """What the back-office holds for a card serial. A serial it never saw is an empty
    account (200, `known` false), not a 404: a card sold elsewhere may have pending loads."""
    account = session.get(TransitAccount, serial)
    loads = session.scalars(select(TransitLoad).where(TransitLoad.card_serial == serial)
                            .order_by(TransitLoad.counter_after.desc()).limit(RECENT_LOADS)).all()
    actions = session.scalars(select(TransitPendingAction).where(
        TransitPendingAction.card_serial == serial, TransitPendingAction.status == ActionStatus.OPEN)
        .order_by(TransitPendingAction.id)).all()
    reserved = {a.pending_load_id for a in actions if a.pending_load_id is not None}
    pendings = session.scalars(select(TransitPendingLoad).where(
        TransitPendingLoad.card_serial == serial, TransitPendingLoad.applied_at.is_(None))
        .order_by(TransitPendingLoad.id)).all()
    return CardAccountOut(
        card_serial=serial, known=account is not None,
        card_uid=account.card_uid if account else None,
        last_counter=account.last_counter if account else None,
        last_balance=account.last_balance_rials if account else None,
        concession=account.concession if account else "none",
        loads=[CardLoadOut(transaction_id=ld.transaction_id, kind=str(ld.kind), amount_rials=ld.amount_rials,
                           counter_after=ld.counter_after, balance_after=ld.balance_after,
                           recorded_at=iso_utc(ld.created_at)) for ld in loads],
        pending_loads=[_pending_load_out(p, reserved) for p in pendings],
        pending_actions=[action_out(a) for a in actions],
    )


# --- pending loads ----------------------------------------------------------------------------------
PENDING_LOAD_SCOPE = "transit.pending_load"


def post_pending_load(sessions: sessionmaker[Session], client: str, body: PendingLoadIn) -> tuple[int, PendingLoadOut]:
    """Hold a top-up paid elsewhere for a card serial. (source, external_ref) is the payer
    system's idempotency key: the same body again answers 200 with the pending load as it is
    now (perhaps applied since); another body under that key is 409 idempotency.conflict."""
    req_hash = request_hash(PENDING_LOAD_SCOPE, body.canonical())

    def work(session: Session) -> tuple[int, PendingLoadOut]:
        lock_serial(session, body.card_serial)
        existing = session.scalars(select(TransitPendingLoad).where(
            TransitPendingLoad.source == body.source,
            TransitPendingLoad.external_ref == body.external_ref)).one_or_none()
        if existing is not None:
            if existing.request_sha256 != req_hash:
                raise ApiError(409, "idempotency.conflict")
            return 200, _pending_load_out(existing, _reserved(session, existing.card_serial))
        pending = TransitPendingLoad(card_serial=body.card_serial, amount_rials=body.amount_rials,
                                     source=body.source, external_ref=body.external_ref, created_by=client,
                                     request_sha256=req_hash, created_at=utcnow())
        session.add(pending)
        session.flush()
        log.info("pending load %d of %d rials for card %s from %s", pending.id, body.amount_rials,
                 body.card_serial, body.source, extra={"event": "transit.pending_load"})
        return 201, _pending_load_out(pending)

    return in_transaction(sessions, work, f"pending load {body.source}/{body.external_ref}")


def _reserved(session: Session, serial: str) -> set[int]:
    action = _open_action(session, serial)
    return {action.pending_load_id} if action is not None and action.pending_load_id is not None else set()


# --- pending actions ----------------------------------------------------------------------------------
ACTION_SCOPE = "transit.pending_action"
SETTLE_SCOPE = "transit.settle"


def post_pending_action(sessions: sessionmaker[Session], kiosk_id: str, key: str | None,
                        body: PendingActionIn) -> tuple[int, str]:
    """Record an uncertain card write whose card did not come back. One open action per card;
    the card's account shows it until a kiosk settles it.

    Refusals: the key rules of post_load, 409 transit.load_recorded (this transaction's load
    is already in the ledger: nothing is uncertain), 409 transit.pending_action_open (another
    one), 409 transit.card_mismatch / transit.counter_replay, and the pending-load refusals."""
    check_key(key, body.transaction_id)
    req_hash = request_hash(ACTION_SCOPE, body.canonical())

    def work(session: Session) -> tuple[int, str]:
        lock_serial(session, body.card_serial)
        existing = session.scalars(select(TransitPendingAction).where(
            TransitPendingAction.kiosk_id == kiosk_id,
            TransitPendingAction.transaction_id == body.transaction_id)).one_or_none()
        if existing is not None:
            if existing.request_sha256 != req_hash:
                raise ApiError(409, "idempotency.conflict")
            return 201, action_out(existing).model_dump_json()
        if session.scalars(select(TransitLoad.id).where(
                TransitLoad.kiosk_id == kiosk_id, TransitLoad.transaction_id == body.transaction_id)).first():
            raise ApiError(409, "transit.load_recorded")
        _refuse_open_action(session, body.card_serial)
        if body.pending_load_id is not None:
            _usable_pending_load(session, body.pending_load_id, body.card_serial, body.amount_rials)
        account = session.get(TransitAccount, body.card_serial, with_for_update=True)
        _check_card(session, account, body.card_uid, body.counter_before, body.counter_before + 1)
        action = TransitPendingAction(
            kiosk_id=kiosk_id, transaction_id=body.transaction_id, card_serial=body.card_serial,
            card_uid=body.card_uid, counter_before=body.counter_before, intended_balance=body.intended_balance,
            amount_rials=body.amount_rials, pending_load_id=body.pending_load_id,
            tracking_code=body.tracking_code or new_tracking_code(), status=ActionStatus.OPEN,
            request_sha256=req_hash, created_at=utcnow(),
        )
        session.add(action)
        session.flush()
        log.info("pending action on card %s (counter %d)", body.card_serial, body.counter_before,
                 extra={"tx": body.transaction_id, "event": "transit.pending_action"})
        return 201, action_out(action).model_dump_json()

    return in_transaction(sessions, work, f"pending action {body.transaction_id}")


def settle_pending_action(sessions: sessionmaker[Session], kiosk_id: str, transaction_id: str,
                          body: SettleIn) -> PendingActionOut:
    """Settle an open pending action exactly once.

    "applied": the intended value is on the card (the write had happened, or the settling
    kiosk rolled it forward): the load goes into the ledger under the original kiosk and
    transaction, as the top-up (or the pending-load application) it was, with the action's
    tracking code. "rolled_back": the value is not on the card and will not be; no load is
    recorded (the money goes back to the citizen) and a reserved pending load is free again.

    The same settlement again (same kiosk and body) answers the settled action; any other is
    409 transit.pending_action_settled naming the outcome and the settling transaction."""
    settle_hash = request_hash(SETTLE_SCOPE, {"kiosk_id": kiosk_id, **body.canonical()})

    def work(session: Session) -> PendingActionOut:
        lock_serial(session, body.card_serial)
        action = session.scalars(select(TransitPendingAction).where(
            TransitPendingAction.card_serial == body.card_serial,
            TransitPendingAction.transaction_id == transaction_id).with_for_update()).one_or_none()
        if action is None:
            raise ApiError(404, "transit.pending_action_not_found")
        if action.status != ActionStatus.OPEN:
            if action.settle_sha256 == settle_hash:
                return action_out(action)
            raise ApiError(409, "transit.pending_action_settled", outcome=str(action.status),
                           settled_by_transaction_id=action.settled_by_transaction_id)
        floor = action.counter_before + (1 if body.outcome == "applied" else 0)
        if body.counter_seen < floor:  # counters never go back: not this card's state
            raise ApiError(409, "transit.counter_replay", last_counter=floor)
        if body.outcome == "applied":
            # where the value went: as planned, or (the card had moved on) where the settling
            # kiosk credited it
            written_before = (action.counter_before if body.written_counter_before is None
                              else body.written_counter_before)
            balance_after = (action.intended_balance if body.written_balance_after is None
                             else body.written_balance_after)
            load = LoadIn(
                transaction_id=action.transaction_id, card_serial=action.card_serial, card_uid=action.card_uid,
                counter_before=written_before, counter_after=written_before + 1,
                amount_rials=action.amount_rials, balance_after=balance_after,
                kind="pending_load" if action.pending_load_id is not None else "topup",
                pending_load_id=action.pending_load_id,
            )
            account = session.get(TransitAccount, action.card_serial, with_for_update=True)
            _check_card(session, account, load.card_uid, load.counter_before, load.counter_after)
            pending = None
            if action.pending_load_id is not None:
                pending = _usable_pending_load(session, action.pending_load_id, action.card_serial,
                                               action.amount_rials)
            # hashed as the kiosk's own post of this load would be: if the original kiosk
            # posts it after all, it gets this record back instead of a refusal
            _record_load(session, action.kiosk_id, load, request_hash(LOAD_SCOPE, load.canonical()),
                         account=account, pending=pending, tracking_code=action.tracking_code,
                         settled_action_id=action.id)
        action.status = ActionStatus(body.outcome)
        action.settled_at, action.settled_kiosk_id = utcnow(), kiosk_id
        action.settled_by_transaction_id, action.counter_seen = body.settled_by_transaction_id, body.counter_seen
        action.settle_sha256 = settle_hash
        session.flush()
        log.info("pending action on card %s settled: %s", action.card_serial, body.outcome,
                 extra={"tx": transaction_id, "event": "transit.settle"})
        return action_out(action)

    return in_transaction(sessions, work, f"settle {transaction_id}")


# --- daily totals -------------------------------------------------------------------------------------
def day_bounds(day: dt.date, tz: str = BUSINESS_TZ) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a calendar day in `tz`, as UTC instants."""
    zone = zoneinfo.ZoneInfo(tz)
    start = dt.datetime.combine(day, dt.time(), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    return start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)


def daily_totals(session: Session, day: dt.date, kiosk_id: str | None) -> DailyTotalsOut:
    """Loads and tickets recorded on `day` (Tehran time, by when the back-office stored them),
    per kiosk: only `kiosk_id`'s own when a kiosk asks (it gets its row even when empty),
    every kiosk's when an integration asks (kiosk_id None)."""
    start, end = day_bounds(day)
    loads = select(TransitLoad.kiosk_id, TransitLoad.kind, func.count(TransitLoad.id),
                   func.coalesce(func.sum(TransitLoad.amount_rials), 0)).where(
        TransitLoad.created_at >= start, TransitLoad.created_at < end).group_by(TransitLoad.kiosk_id, TransitLoad.kind)
    tickets = select(Ticket.kiosk_id, func.count(Ticket.id), func.coalesce(func.sum(Ticket.amount_rials), 0)).where(
        Ticket.created_at >= start, Ticket.created_at < end).group_by(Ticket.kiosk_id)
    if kiosk_id is not None:
        loads, tickets = loads.where(TransitLoad.kiosk_id == kiosk_id), tickets.where(Ticket.kiosk_id == kiosk_id)
    rows: dict[str, KioskTotalsOut] = {}

    def row(kid: str) -> KioskTotalsOut:
        return rows.setdefault(kid, KioskTotalsOut(kiosk_id=kid, loads_count=0, loads_rials=0, loads_by_kind={},
                                                   tickets_count=0, tickets_rials=0))

    if kiosk_id is not None:
        row(kiosk_id)
    for kid, kind, n, rials in session.execute(loads):
        entry = row(kid)
        entry.loads_by_kind[str(kind)] = KindTotalOut(count=int(n), rials=int(rials))
        entry.loads_count += int(n)
        entry.loads_rials += int(rials)
    for kid, n, rials in session.execute(tickets):
        entry = row(kid)
        entry.tickets_count, entry.tickets_rials = int(n), int(rials)
    return DailyTotalsOut(date=day, timezone=BUSINESS_TZ, kiosks=[rows[k] for k in sorted(rows)])
