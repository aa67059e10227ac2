"""The journal's hash chain as pure rules: canonical JSON, the entry hash, the row values, and
verify over any sequence of rows. No SQLite and no I/O, so a fleet server can import it and
check a kiosk's batches exactly as the kiosk does (imports only the stdlib and states)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kiosk.journal.states import OPEN_STATES, TxState, is_allowed, parse_state

#: prev_hash of the very first row: a fixed, documented value so any verifier can start.
GENESIS_HASH = "0" * 64

# One encoder built once: json.dumps(**options) would build a new encoder on every call,
# which is a measurable share of an append.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)
# The C encoder that JSONEncoder.encode builds per call, built once. It runs without the
# circular-reference markers (a cycle ends in RecursionError, which the journal turns into
# InvalidJournalData like any other unencodable value); the text is byte-for-byte what
# _CANONICAL.encode gives, which the tests check.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_C_CANONICAL = (_c_make_encoder(None, _CANONICAL.default, json.encoder.encode_basestring,
                                None, ":", ",", True, False, False)
                if _c_make_encoder is not None else None)

decode_json = json.JSONDecoder().decode


def canonical_json(value: Any) -> str:
    """The one JSON text a value hashes as: sorted keys, no spaces, UTF-8, no NaN."""
    if _C_CANONICAL is None or isinstance(value, str):
        return _CANONICAL.encode(value)
    return "".join(_C_CANONICAL(value, 0))


SEP = "\x1f"  # ASCII unit separator: never inside a stored tx_id or kind (no control chars)
_sha256 = hashlib.sha256


def entry_hash(prev_hash: str, tx_id: str, state: str, at: float, kind: str,
               amount_rials: int, data_json: str) -> str:
    """sha256 hex of `prev_hash US tx_id US state US repr(at) US kind US amount US data_json`
    (US = U+001F), UTF-8 encoded.

    Unambiguous because tx_id and kind may not hold control characters and canonical JSON
    escapes them. seq is deliberately not hashed: the chain itself fixes the order, and
    leaving seq out lets verify tell an inserted or deleted row apart from an edited one.
    This is the only place the formula lives; the store's fast path calls it too.
    """
    return _sha256(SEP.join((prev_hash, tx_id, state, repr(at), kind, str(amount_rials),
                             data_json)).encode("utf-8")).hexdigest()


# --- values -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalEntry:
    """One appended row of the journal; `hash` chains it to the row before."""

    seq: int
    tx_id: str
    state: TxState
    at: float
    kind: str
    amount_rials: int
    data: dict[str, Any]
    prev_hash: str
    hash: str

    def compute_hash(self) -> str:
        """Recompute this entry's hash from its fields (what a fleet verifier does)."""
        return entry_hash(self.prev_hash, self.tx_id, str(self.state), self.at, self.kind,
                          self.amount_rials, canonical_json(self.data))


_new_object = object.__new__


def new_entry(seq: int, tx_id: str, state: TxState, at: float, kind: str, amount: int,
              data: dict[str, Any], prev_hash: str, digest: str) -> JournalEntry:
    """A JournalEntry without the frozen dataclass __init__, which pays an
    object.__setattr__ call per field (a few µs per append). Same fields, same value: the
    instance is still frozen, equal, hashable and printable as the dataclass defines."""
    entry = _new_object(JournalEntry)
    entry.__dict__.update(seq=seq, tx_id=tx_id, state=state, at=at, kind=kind,
                          amount_rials=amount, data=data, prev_hash=prev_hash, hash=digest)
    return entry


@dataclass(frozen=True)
class Transaction:
    """A transaction as its entries tell it: the last state, and all data merged in order."""

    tx_id: str
    kind: str
    amount_rials: int
    state: TxState
    created_at: float
    updated_at: float
    data: dict[str, Any]
    entries: tuple[JournalEntry, ...]

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


def new_transaction(entry: JournalEntry) -> Transaction:
    """The Transaction of a just-created CREATED entry (see new_entry: same value, no
    per-field setattr)."""
    transaction = _new_object(Transaction)
    transaction.__dict__.update(
        tx_id=entry.tx_id, kind=entry.kind, amount_rials=entry.amount_rials, state=entry.state,
        created_at=entry.at, updated_at=entry.at, data=dict(entry.data), entries=(entry,))
    return transaction


def fold(entries: Sequence[JournalEntry]) -> Transaction:
    """One transaction's entries (chain order) as the Transaction they tell."""
    first, last = entries[0], entries[-1]
    merged: dict[str, Any] = {}
    for e in entries:
        merged.update(e.data)
    return Transaction(tx_id=first.tx_id, kind=first.kind, amount_rials=first.amount_rials,
                       state=last.state, created_at=first.at, updated_at=last.at, data=merged,
                       entries=tuple(entries))


# --- verify -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing verify found wrong; `seq` names the row (None when no row can be named)."""

    seq: int | None
    # edited | broken_link | inserted | deleted | illegal_transition | bad_row
    kind: str
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checked: int
    problems: list[Problem] = field(default_factory=list)


#: a stored row, as the journal table's columns in order:
#: (seq, tx_id, state, at, kind, amount_rials, data, prev_hash, hash)
Row = Sequence[Any]


def _row_shape_problem(row: Row) -> str | None:
    """What is wrong with a row's column types or data, or None. A row can only be hashed and
    read back when its text columns are text and its data is a JSON object."""
    seq, tx_id, state, at, kind, amount, data_json, prev_hash, digest = row
    for name, value in (("tx_id", tx_id), ("state", state), ("kind", kind),
                        ("data", data_json), ("prev_hash", prev_hash), ("hash", digest)):
        if not isinstance(value, str):
            return f"{name} is {type(value).__name__}, not text"
    if not isinstance(at, float) or isinstance(amount, bool) or not isinstance(amount, int):
        return "at or amount_rials has the wrong type"
    try:
        data = decode_json(data_json)
    except ValueError:
        return "data is not valid JSON"
    if not isinstance(data, dict):
        return "data is not a JSON object"
    return None


def verify_rows(rows: Iterable[Row]) -> VerifyReport:
    """Walk rows in seq order once and name every row that is edited, inserted, missing,
    badly linked, an illegal state move, or unreadable (wrong types, bad JSON)."""
    problems: list[Problem] = []
    hash_before_prev = None  # hash of the row two back: tells an inserted row apart
    prev_seq, prev_hash = 0, GENESIS_HASH
    tx_state: dict[str, tuple[TxState, Any]] = {}  # tx_id -> (its state, its CREATED row's kind)
    checked = 0
    for row in rows:
        seq, tx_id, state, at, kind, amount, data_json, stored_prev, stored_hash = row
        checked += 1
        shape = _row_shape_problem(row)
        if shape is not None:
            problems.append(Problem(seq, "bad_row", f"row {seq} cannot be read: {shape}"))
        else:
            if entry_hash(stored_prev, tx_id, state, at, kind, amount, data_json) != stored_hash:
                problems.append(Problem(seq, "edited",
                                        f"row {seq} ({tx_id} {state}) does not match its hash"))
        gap = seq != prev_seq + 1
        if gap:
            missing = (f"row {prev_seq + 1}" if seq == prev_seq + 2
                       else f"rows {prev_seq + 1}..{seq - 1}")
            problems.append(Problem(seq, "deleted", f"{missing} missing before row {seq}"))
        if stored_prev != prev_hash:
            if hash_before_prev is not None and stored_prev == hash_before_prev:
                problems.append(Problem(prev_seq, "inserted",
                                        f"row {prev_seq} is not in the chain: row {seq} "
                                        f"links to row {prev_seq - 1}"))
            elif not gap:
                problems.append(Problem(seq, "broken_link",
                                        f"row {seq} does not link to row {prev_seq}; "
                                        "a row before it was removed or replaced"))
        hash_before_prev, prev_seq, prev_hash = prev_hash, seq, stored_hash
        problems.extend(_check_transition(tx_state, seq, tx_id, state, kind))
    return VerifyReport(ok=not problems, checked=checked, problems=problems)


def _check_transition(tx_state: dict[str, tuple[TxState, Any]], seq: int, tx_id: Any,
                      state: Any, kind: Any) -> list[Problem]:
    """A row's move checked against its transaction's kind's table (states.transitions): the
    kind is the CREATED row's, and a later row naming another kind is itself a problem (a
    fee row cannot borrow a value-only kind's CREATED → FULFILLING)."""
    new = parse_state(state)
    if new is None:
        return [Problem(seq, "illegal_transition", f"row {seq}: unknown state {state!r}")]
    head = tx_state.get(tx_id)
    current, tx_kind = (None, kind) if head is None else head
    tx_state[tx_id] = (new, tx_kind)
    found = []
    if kind != tx_kind:
        found.append(Problem(seq, "illegal_transition",
                             f"row {seq}: {tx_id} is a {tx_kind!r} transaction, the row says {kind!r}"))
    if is_allowed(current, new, tx_kind if isinstance(tx_kind, str) else ""):
        return found
    if current is None:
        return [*found, Problem(seq, "illegal_transition",
                                f"row {seq}: {tx_id} starts with {new}, not CREATED")]
    return [*found, Problem(seq, "illegal_transition",
                            f"row {seq}: {tx_id} {current} → {new} ({tx_kind})")]
