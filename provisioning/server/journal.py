"""Journal upload (issue 11, item 7): a kiosk sends its journal rows in batches, keyed by
(kiosk, seq); the server checks each batch against the chain it already holds with the
kiosk's own rules (kiosk.journal.chain: the same entry hash; kiosk.journal.states: the same
moves) and stores it only when the chain holds.

Idempotent: a row already stored and sent again identical is skipped. Refused, stored
nowhere, and kept as a problem for the managers (with an audit entry and an alert):
  gap      rows missing between the server's head and the batch
  fork     the first new row does not link to the server's head (another chain)
  rewrite  a row the server holds sent again with other content
  edited   a row that does not match its own hash
  reorder  rows out of order inside the batch (or a link broken inside it)
  illegal_transition  a state move the kiosk's tables do not allow
  bad_row  a row of the wrong shape
  rewind   (from a heartbeat) the kiosk's journal head is behind, or differs from, the rows
           the server holds — its journal was cut or replaced
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session, sessionmaker

from kiosk.journal.chain import GENESIS_HASH, decode_json, entry_hash
from kiosk.journal.states import is_allowed, parse_state
from provisioning.server.models import JournalProblem, JournalRow, utcnow
from provisioning.server.service import FleetError, audit

MAX_BATCH = 1000
_HEX64 = set("0123456789abcdef")


class JournalRefused(FleetError):
    def __init__(self, kiosk_id: str, kind: str, seq: int | None, detail: str) -> None:
        super().__init__(409, f"journal.{kind}", detail, action="journal.upload", target=kiosk_id)
        self.kiosk_id, self.kind, self.seq = kiosk_id, kind, seq


_JT = JournalRow.__table__
_SELECT_HEAD = select(_JT.c.seq, _JT.c.hash).where(_JT.c.kiosk_id == bindparam("kid")).order_by(
    _JT.c.seq.desc()).limit(1)


def head(session: Session, kiosk_id: str) -> tuple[int, str]:
    row = session.connection().execute(_SELECT_HEAD, {"kid": kiosk_id}).first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)


def _shape(row: Any) -> str | None:
    if not isinstance(row, list) or len(row) != 9:
        return "a row is a list of 9 columns (seq, tx_id, state, at, kind, amount_rials, data, prev_hash, hash)"
    seq, tx_id, state, at, kind, amount, data, prev, digest = row
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return "seq must be a whole number from 1"
    for name, value, limit in (("tx_id", tx_id, 100), ("state", state, 32), ("kind", kind, 64)):
        if not isinstance(value, str) or not value or len(value) > limit:
            return f"row {seq}: {name} must be text of 1-{limit} characters"
    if not isinstance(at, float) or isinstance(amount, bool) or not isinstance(amount, int):
        return f"row {seq}: at or amount_rials has the wrong type"
    for name, value in (("prev_hash", prev), ("hash", digest)):
        if not isinstance(value, str) or len(value) != 64 or not set(value) <= _HEX64:
            return f"row {seq}: {name} must be 64 hex digits"
    if not isinstance(data, str):
        return f"row {seq}: data must be the row's JSON text"
    try:
        parsed = decode_json(data)
    except ValueError:
        return f"row {seq}: data is not JSON"
    if not isinstance(parsed, dict):
        return f"row {seq}: data is not a JSON object"
    return None


_SELECT_TX_STATES = select(_JT.c.tx_id, _JT.c.seq, _JT.c.state, _JT.c.kind).where(
    _JT.c.kiosk_id == bindparam("kid"), _JT.c.tx_id.in_(bindparam("ids", expanding=True)))


def _last_states(session: Session, kiosk_id: str, tx_ids: set[str]) -> dict[str, tuple[str, str]]:
    """The held last (state, kind) of each of these transactions, in one query (the batch's
    transactions are looked up together, not one round trip each: that was most of a batch's
    time). Rows come by the (kiosk_id, tx_id) index; a transaction has a handful of rows."""
    out: dict[str, tuple[int, str, str]] = {}
    if not tx_ids:
        return {}
    conn = session.connection()
    ids = sorted(tx_ids)
    for start in range(0, len(ids), 500):
        chunk = {"kid": kiosk_id, "ids": ids[start:start + 500]}
        for tx_id, seq, state, kind in conn.execute(_SELECT_TX_STATES, chunk):
            held = out.get(tx_id)
            if held is None or seq > held[0]:
                out[tx_id] = (int(seq), str(state), str(kind))
    return {tx_id: (state, kind) for tx_id, (_, state, kind) in out.items()}


def verify_batch(session: Session, kiosk_id: str, rows: Sequence[Any]) -> tuple[list[list[Any]], int, int, str]:
    """Check one batch against the chain held: (the new rows, how many were duplicates, the
    head after them); JournalRefused naming the first problem. Stores nothing."""
    if not isinstance(rows, list) or len(rows) > MAX_BATCH:
        raise JournalRefused(kiosk_id, "bad_row", None, f"a batch is a list of at most {MAX_BATCH} rows")
    head_seq, head_hash = head(session, kiosk_id)
    expected, prev = head_seq + 1, head_hash
    states: dict[str, tuple[str, str]] = {}
    new: list[list[Any]] = []
    duplicates = 0
    stored = {}
    old_seqs = [r[0] for r in rows if isinstance(r, list) and r and isinstance(r[0], int) and r[0] <= head_seq]
    if old_seqs:
        stored = {r.seq: r for r in session.scalars(select(JournalRow).where(
            JournalRow.kiosk_id == kiosk_id, JournalRow.seq.in_(old_seqs)))}
    # every transaction a new row names, looked up at once (what a held transaction's last
    # row says; rows in this batch come after them all)
    held_states = _last_states(session, kiosk_id, {
        r[1] for r in rows if isinstance(r, list) and len(r) == 9 and isinstance(r[0], int) and r[0] > head_seq
        and isinstance(r[1], str) and 0 < len(r[1]) <= 100})

    def no(kind: str, seq: int | None, detail: str) -> JournalRefused:
        return JournalRefused(kiosk_id, kind, seq, detail)

    for row in rows:
        problem = _shape(row)
        if problem:
            raise no("bad_row", row[0] if isinstance(row, list) and row and isinstance(row[0], int) else None,
                     problem)
        seq, tx_id, state, at, kind, amount, data, row_prev, digest = row
        if seq <= head_seq:
            held = stored.get(seq)
            if held is None or [held.tx_id, held.state, held.at, held.kind, held.amount_rials, held.data,
                                held.prev_hash, held.hash] != row[1:]:
                raise no("rewrite", seq, f"row {seq} was received before with other content: the journal was "
                         "rewritten")
            duplicates += 1
            continue
        if seq != expected:
            if seq > expected:
                raise no("gap", seq, f"rows {expected}..{seq - 1} are missing before row {seq}"
                         if seq > expected + 1 else f"row {expected} is missing before row {seq}")
            raise no("reorder", seq, f"row {seq} comes after row {expected - 1}: rows out of order")
        if entry_hash(row_prev, tx_id, state, at, kind, amount, data) != digest:
            raise no("edited", seq, f"row {seq} ({tx_id} {state}) does not match its hash")
        if row_prev != prev:
            if not new:
                raise no("fork", seq, f"row {seq} does not link to row {seq - 1} the server holds: "
                         "another chain (a fork)")
            raise no("reorder", seq, f"row {seq} does not link to row {seq - 1} in the batch")
        current = states.get(tx_id) or held_states.get(tx_id)
        new_state = parse_state(state)
        cur_state, tx_kind = (None, kind) if current is None else (parse_state(current[0]), current[1])
        if new_state is None or kind != tx_kind or not is_allowed(cur_state, new_state, tx_kind):
            raise no("illegal_transition", seq, f"row {seq}: {tx_id} {cur_state or '(new)'} → {state} "
                     f"is not a move a {tx_kind!r} transaction makes")
        states[tx_id] = (state, tx_kind)
        new.append(row)
        expected, prev = seq + 1, digest
    new_head = (new[-1][0], new[-1][8]) if new else (head_seq, head_hash)
    return new, duplicates, new_head[0], new_head[1]


def store(session: Session, kiosk_id: str, new: list[list[Any]]) -> None:
    """Add checked rows (verify_batch's) to the session's transaction: Core, one executemany —
    ORM objects for 500 rows cost more than checking them."""
    if new:
        now = utcnow()
        session.connection().execute(_JT.insert(), [
            {"kiosk_id": kiosk_id, "seq": r[0], "tx_id": r[1], "state": r[2], "at": r[3], "kind": r[4],
             "amount_rials": r[5], "data": r[6], "prev_hash": r[7], "hash": r[8], "received_at": now} for r in new])


def upload(session: Session, kiosk_id: str, rows: Sequence[Any]) -> dict[str, Any]:
    """Check and store one batch; JournalRefused naming the first problem (nothing stored)."""
    new, duplicates, head_seq, head_hash = verify_batch(session, kiosk_id, rows)
    store(session, kiosk_id, new)
    return {"head_seq": head_seq, "head_hash": head_hash, "stored": len(new), "duplicates": duplicates}


def record_problem(sessions: sessionmaker[Session], exc: JournalRefused) -> None:
    with sessions() as session, session.begin():
        session.add(JournalProblem(kiosk_id=exc.kiosk_id, at=utcnow(), kind=exc.kind, seq=exc.seq,
                                   detail=exc.message[:2000]))


def check_reported_head(session: Session, kiosk_id: str, reported: Any, held: tuple[int, str]) -> None:
    """A heartbeat's journal head [seq, hash] against the rows held: behind them, or another
    hash at the same seq, is a cut or replaced journal (recorded once, audited)."""
    if not (isinstance(reported, list) and len(reported) == 2 and isinstance(reported[0], int)
            and isinstance(reported[1], str)):
        return
    seq, digest = reported
    head_seq, head_hash = held
    if head_seq == 0 or seq > head_seq:  # nothing held yet, or rows still to upload
        return
    if seq < head_seq:
        detail = f"the kiosk's journal ends at row {seq}; the server holds rows up to {head_seq}"
    elif digest != head_hash:
        detail = f"the kiosk's row {seq} is not the row {seq} the server holds"
    else:
        return
    known = session.scalars(select(func.count()).select_from(JournalProblem).where(
        JournalProblem.kiosk_id == kiosk_id, JournalProblem.kind == "rewind", JournalProblem.seq == seq)).one()
    if known:
        return
    session.add(JournalProblem(kiosk_id=kiosk_id, at=utcnow(), kind="rewind", seq=seq, detail=detail))
    audit(session, f"kiosk:{kiosk_id}", "journal.check", kiosk_id, "journal.rewind", message=detail)


def problems(session: Session, kiosk_id: str, limit: int = 20) -> list[dict[str, Any]]:
    return [{"at": p.at.strftime("%Y-%m-%dT%H:%M:%SZ"), "kind": p.kind, "seq": p.seq, "detail": p.detail}
            for p in session.scalars(select(JournalProblem).where(JournalProblem.kiosk_id == kiosk_id)
                                     .order_by(JournalProblem.id.desc()).limit(limit))]


def problem_count(session: Session, kiosk_id: str) -> int:
    return int(session.scalars(select(func.count()).select_from(JournalProblem)
                               .where(JournalProblem.kiosk_id == kiosk_id)).one())


# --- the signed daily statement of chain heads ---------------------------------------------------
STATEMENT_TYPE = "journal-heads"
STATEMENT_TZ = "Asia/Tehran"
STATEMENT_LIFETIME = dt.timedelta(days=3650)  # evidence, kept for years: verify it against its date


def statement(session: Session, by: Any, day: dt.date, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The signed statement of every kiosk's journal head at the end of `day` (Tehran time, by
    the rows' own times), issued once: asked again, the same document comes back. An outside
    witness of the chains: a kiosk whose journal is later rewritten cannot match its head."""
    from provisioning.common import signing
    from provisioning.server.models import Role, Statement
    from provisioning.server.service import require, signing_key

    now = now or utcnow()
    key = day.isoformat()
    require(by, Role.OPERATOR, "statement.issue", key)
    held = session.get(Statement, key)
    if held is not None:
        return dict(held.document)
    zone = ZoneInfo(STATEMENT_TZ)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    if end > now:
        raise FleetError(409, "statement.day_open", f"{key} has not ended in Tehran yet; a statement covers a "
                         "whole day", action="statement.issue", target=key)
    last = (select(JournalRow.kiosk_id, func.max(JournalRow.seq).label("seq"))
            .where(JournalRow.at < end.timestamp()).group_by(JournalRow.kiosk_id).subquery())
    heads = {kid: {"seq": int(seq), "hash": digest, "at": at} for kid, seq, digest, at in session.execute(
        select(JournalRow.kiosk_id, JournalRow.seq, JournalRow.hash, JournalRow.at).join(
            last, (JournalRow.kiosk_id == last.c.kiosk_id) & (JournalRow.seq == last.c.seq)))}
    troubles = {kid: int(n) for kid, n in session.execute(
        select(JournalProblem.kiosk_id, func.count()).where(JournalProblem.at < end)
        .group_by(JournalProblem.kiosk_id))}
    doc = signing.sign_document(signing_key(session), {
        "_type": STATEMENT_TYPE, "spec": 1, "date": key, "timezone": STATEMENT_TZ,
        "version": day.toordinal(), "issued_at": signing.iso(now), "expires": signing.iso(now + STATEMENT_LIFETIME),
        "heads": {k: heads[k] for k in sorted(heads)}, "journal_problems": {k: troubles[k] for k in sorted(troubles)}})
    session.add(Statement(day=key, document=doc, issued_at=now))
    audit(session, by.actor, "statement.issue", key, kiosks=len(heads))
    return doc
