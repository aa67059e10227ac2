"""The transaction journal: an append-only, hash-chained SQLite log of every citizen
transaction's states, with the outbox work queue stored beside it in the same file.

See docs/journal.md for the state diagram, the chain format and the outbox.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.errors import KioskError
from kiosk.logging_setup import redact

log = logging.getLogger("kiosk.journal")


def _info_enabled() -> bool:
    """Logger.isEnabledFor is cached by logging; asking first skips building `extra` on
    every append when INFO is off."""
    return log.isEnabledFor(logging.INFO)


JOURNAL_FILENAME = "journal.sqlite3"
SCHEMA_VERSION = 1
#: prev_hash of the very first row: a fixed, documented value so any verifier can start.
GENESIS_HASH = "0" * 64
#: how long a writer waits for another process's write lock before giving up (ms)
BUSY_TIMEOUT_MS = 10_000


def journal_path(data_dir: str | Path) -> Path:
    """The journal file inside a kiosk data dir."""
    return Path(data_dir) / JOURNAL_FILENAME


# --- states -----------------------------------------------------------------------------


class TxState(enum.StrEnum):
    """Where a citizen transaction stands. Only ever appended, never overwritten."""

    CREATED = "CREATED"
    PAYING = "PAYING"
    PAID = "PAID"
    DECLINED = "DECLINED"
    CANCELLED = "CANCELLED"
    FULFILLING = "FULFILLING"
    FULFILLED = "FULFILLED"
    POSTED = "POSTED"
    COMPLETED = "COMPLETED"
    REVERSING = "REVERSING"
    REVERSED = "REVERSED"
    REFUND_PENDING = "REFUND_PENDING"
    UNCERTAIN = "UNCERTAIN"


_S = TxState
_CREATED = TxState.CREATED
ALLOWED: dict[TxState, frozenset[TxState]] = {
    _S.CREATED: frozenset({_S.PAYING, _S.CANCELLED}),
    _S.PAYING: frozenset({_S.PAID, _S.DECLINED}),
    _S.PAID: frozenset({_S.FULFILLING, _S.REVERSING}),
    _S.FULFILLING: frozenset({_S.FULFILLED, _S.REVERSING, _S.UNCERTAIN}),
    _S.UNCERTAIN: frozenset({_S.FULFILLED, _S.REVERSING}),
    _S.FULFILLED: frozenset({_S.POSTED}),
    _S.POSTED: frozenset({_S.COMPLETED}),
    _S.REVERSING: frozenset({_S.REVERSED, _S.REFUND_PENDING}),
    _S.REFUND_PENDING: frozenset({_S.REVERSED}),
    _S.COMPLETED: frozenset(),
    _S.DECLINED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.REVERSED: frozenset(),
}
TERMINAL_STATES: frozenset[TxState] = frozenset(s for s, nxt in ALLOWED.items() if not nxt)
# REFUND_PENDING waits for an operator, not for `recover`, so it is not "open".
OPEN_STATES: frozenset[TxState] = frozenset(TxState) - TERMINAL_STATES - {_S.REFUND_PENDING}


# --- errors -----------------------------------------------------------------------------


class JournalError(KioskError):
    """The journal refused a write; nothing was recorded by that call."""

    key = "journal.error"
    fa = "ثبت تراکنش در کیوسک انجام نشد. لطفاً با پشتیبانی تماس بگیرید."
    en = "The kiosk could not record this transaction. Please contact support."


class IllegalTransition(JournalError):
    key = "journal.illegal_transition"
    fa = "این مرحله برای تراکنش {tx_id} مجاز نیست ({current} ← {requested}). لطفاً با پشتیبانی تماس بگیرید."
    en = ("Transaction {tx_id} cannot go from {current} to {requested}. "
          "Nothing was changed; please contact support.")


class UnknownTransaction(JournalError):
    key = "journal.unknown_transaction"
    fa = "تراکنش {tx_id} در این کیوسک پیدا نشد."
    en = "Transaction {tx_id} was not found on this kiosk."


class TransactionExists(JournalError):
    key = "journal.transaction_exists"
    fa = "تراکنش {tx_id} پیش‌تر ثبت شده است."
    en = "Transaction {tx_id} is already recorded."


class InvalidJournalData(JournalError, ValueError):
    """Data that cannot be journaled (not JSON, a bad amount or kind, an unknown state)."""

    key = "journal.invalid_data"


class SensitiveDataRejected(InvalidJournalData):
    """A full card number, a PIN or a full national code was about to be stored."""

    key = "journal.sensitive_data"
    fa = "اطلاعات حساس کارت یا کد ملی نباید ذخیره شود. تراکنش ثبت نشد؛ با پشتیبانی تماس بگیرید."
    en = ("Sensitive card or national-code data must not be stored. Nothing was recorded; "
          "please contact support.")


class UnknownOutboxItem(JournalError):
    key = "journal.unknown_outbox_item"
    fa = "مورد صف ارسال {item_id} پیدا نشد."
    en = "Outbox item {item_id} was not found."


class OutboxItemClosed(JournalError):
    key = "journal.outbox_item_closed"
    fa = "مورد صف ارسال {item_id} پیش‌تر بسته شده است ({status})."
    en = "Outbox item {item_id} is already closed ({status})."


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


@dataclass(frozen=True)
class Problem:
    """One thing verify() found wrong; `seq` names the row (None when no row can be named)."""

    seq: int | None
    kind: str  # edited | broken_link | inserted | deleted | illegal_transition
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checked: int
    problems: list[Problem] = field(default_factory=list)


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    ACKED = "acked"
    FAILED = "failed"


@dataclass(frozen=True)
class OutboxItem:
    """A message waiting to reach (or already settled with) the back-office."""

    id: int
    tx_id: str
    kind: str
    payload: dict[str, Any]
    idempotency_key: str
    attempts: int
    last_error: str | None
    next_attempt_at: float
    status: OutboxStatus
    response: dict[str, Any] | None
    created_at: float


# --- canonical form, hashing and the sensitive-data net ---------------------------------


# One encoder built once: json.dumps(**options) would build a new encoder on every call,
# which is a measurable share of an append.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)
# The C encoder that JSONEncoder.encode builds per call, built once. It runs without the
# circular-reference markers (a cycle ends in RecursionError, which _prepare turns into
# InvalidJournalData like any other unencodable value); the text is byte-for-byte what
# _CANONICAL.encode gives, which the tests check.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_C_CANONICAL = (_c_make_encoder(None, _CANONICAL.default, json.encoder.encode_basestring,
                                None, ":", ",", True, False, False)
                if _c_make_encoder is not None else None)


_decode = json.JSONDecoder().decode


def canonical_json(value: Any) -> str:
    """The one JSON text a value hashes as: sorted keys, no spaces, UTF-8, no NaN."""
    if _C_CANONICAL is None or isinstance(value, str):
        return _CANONICAL.encode(value)
    return "".join(_C_CANONICAL(value, 0))


_SEP = "\x1f"  # ASCII unit separator: never inside a stored field (see _CONTROL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def entry_hash(prev_hash: str, tx_id: str, state: str, at: float, kind: str,
               amount_rials: int, data_json: str) -> str:
    """sha256 hex of `prev_hash US tx_id US state US repr(at) US kind US amount US data_json`
    (US = U+001F), UTF-8 encoded.

    Unambiguous because tx_id and kind may not hold control characters and canonical JSON
    escapes them. seq is deliberately not hashed: the chain itself fixes the order, and
    leaving seq out lets verify() tell an inserted or deleted row apart from an edited one.
    """
    content = _SEP.join((prev_hash, tx_id, state, repr(at), kind, str(amount_rials), data_json))
    return _sha256(content.encode("utf-8")).hexdigest()


_sha256 = hashlib.sha256


# 16–19 digits (ISO/IEC 7812 card lengths), optionally grouped by single spaces or dashes as
# card numbers are printed. Longer runs (a 26-digit bill barcode) are not card numbers.
# A card number as people write it: 16–19 digits in one run, or in groups of four split by a
# space or dash. Any digit-dash-digit mix is NOT a card: transaction ids and dates
# ("…-01-20261128-0349…") would pass Luhn one time in ten and stop a settlement.
_CARD_RUN = re.compile(r"(?<!\d)(?:\d{16,19}|\d{4}(?:([ -])\d{4})(?:\1\d{4}){2}(?:\1?\d{1,3})?)(?![\d])")
# Keys whose value may never be stored, whatever it looks like.
_SECRET_KEY = re.compile(r'"(?:pin|pin_block|password|cvv2?)":', re.IGNORECASE)
# Identity keys whose value may only be stored masked: a run of 10+ digits means it is not.
_UNMASKED_IDENTITY = re.compile(
    r'"(?:national_code|national_id|card_number|pan)":"[^"]*\d{10}', re.IGNORECASE)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_card_number(text: str) -> bool:
    """True when `text` holds a run of 16–19 digits (Persian digits too) that passes Luhn."""
    for match in _CARD_RUN.finditer(text):
        digits = re.sub(r"[ -]", "", match.group(0))
        if 16 <= len(digits) <= 19 and luhn_ok(digits):
            return True
    return False


# The cheap superset test run before the regexes above. For ASCII text it maps digits to "0"
# and capitals to lower case and drops the card separators " " and "-": every text a regex
# above can match then holds ten "0" in a row (a 10-digit identity run or a 16-19 digit card
# run, separators gone) or one of the secret key prefixes. Text that passes this test cannot
# match, so the regexes only run when it fails, and their verdict is the one that counts.
# Non-ASCII text (Persian digits, case folds of ſ/K) always takes the full scan.
_PRECHECK = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                            b"0000000000abcdefghijklmnopqrstuvwxyz")
_PRECHECK_DROP = b" -"


def _sensitive(text: str) -> str | None:
    """Why `text` may not be stored, or None when it holds nothing sensitive."""
    if text.isascii():
        folded = text.encode("ascii").translate(_PRECHECK, _PRECHECK_DROP)
        if not (b"0000000000" in folded or b'"pin' in folded or b'"password' in folded
                or b'"cvv' in folded):
            return None
    if _SECRET_KEY.search(text):
        return "a PIN, password or CVV may never be stored"
    if _UNMASKED_IDENTITY.search(text):
        return "a national code or card number must be masked (e.g. first6…last4)"
    if find_card_number(text):
        return "data holds a full card number; store a masked form"
    return None


_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})


def _prepare_data(data: Mapping[str, Any] | None, what: str, tx_id: str | int, state: str = ""
                  ) -> tuple[str, dict[str, Any]]:
    """Validate and canonicalise caller data for a journal row, once.

    Returns the canonical JSON text (what is stored and hashed) and the entry's own copy of
    the data, equal to decoding that text. For a flat dict of plain scalars the private copy
    made before encoding already is that value, so the text is not decoded back. The place
    named in an error message is only formatted when there is an error.
    """
    if data is None:
        return "{}", {}
    if type(data) is not dict and not isinstance(data, Mapping):
        raise InvalidJournalData(
            f"{_where(what, tx_id, state)}: data must be a dict, got {type(data).__name__}")
    snapshot = dict(data)  # ours alone: the caller may change theirs after we return
    text = _encode_checked(snapshot, what, tx_id, state)
    for key, value in snapshot.items():
        if type(key) is not str or type(value) not in _SCALAR_TYPES:
            return text, _decode(text)
    return text, snapshot


def _where(what: str, tx_id: str | int, state: str = "") -> str:
    return f"{what} {tx_id} {state}".rstrip()


def _encode_checked(value: dict[str, Any], what: str, tx_id: str | int, state: str) -> str:
    """Canonical JSON of caller data, or a typed error; runs the sensitive-data net on it.

    The net runs over the canonical JSON text rather than walking the value: canonical JSON
    separates values with "," and quotes, so a card-shaped run can only come from inside one
    string or number — a card number stored as an int is refused too.
    """
    try:
        text = canonical_json(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidJournalData(
            f"{_where(what, tx_id, state)}: data is not plain JSON ({exc})") from exc
    if not text.isascii():
        try:  # a lone surrogate could not be hashed or stored as UTF-8
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidJournalData(
                f"{_where(what, tx_id, state)}: data is not valid Unicode text") from exc
    reason = _sensitive(text)
    if reason is not None:
        raise SensitiveDataRejected(f"{_where(what, tx_id, state)}: {reason}")
    return text


def _prepare(data: Mapping[str, Any] | None, where: str) -> str:
    """Validate and canonicalise caller data (outbox payloads and responses); the text
    returned is what is stored."""
    if data is None:
        return "{}"
    if not isinstance(data, Mapping):
        raise InvalidJournalData(f"{where}: data must be a dict, got {type(data).__name__}")
    return _encode_checked(dict(data), where, "", "")


# state (a TxState or its text) → (the TxState, its plain text): one dict lookup instead of
# an enum call and a str() per append. TxState members hash and compare as their text.
_STATES: dict[str, tuple[TxState, str]] = {s.value: (s, s.value) for s in TxState}


def _coerce_state(state: TxState | str) -> TxState:
    return _state_pair(state)[0]


def _state_pair(state: TxState | str) -> tuple[TxState, str]:
    try:
        return _STATES[state]
    except (KeyError, TypeError) as exc:  # TypeError: an unhashable value
        raise InvalidJournalData(f"unknown transaction state {state!r}") from exc


_new_object = object.__new__


def _new_entry(seq: int, tx_id: str, state: TxState, at: float, kind: str, amount: int,
               data: dict[str, Any], prev_hash: str, digest: str) -> JournalEntry:
    """A JournalEntry without the frozen dataclass __init__, which pays an
    object.__setattr__ call per field (a few µs per append). Same fields, same value: the
    instance is still frozen, equal, hashable and printable as the dataclass defines."""
    entry = _new_object(JournalEntry)
    entry.__dict__.update(seq=seq, tx_id=tx_id, state=state, at=at, kind=kind,
                          amount_rials=amount, data=data, prev_hash=prev_hash, hash=digest)
    return entry


def _now_at() -> float:
    """Unix seconds to 6 decimals (microseconds), as stored in `at` and hashed via repr().
    round(t * 1e6) / 1e6 is the float nearest a whole number of µs, so its repr has at most
    6 decimals, like round(t, 6) but without its decimal conversion."""
    return round(time.time() * 1_000_000) / 1_000_000


# --- the journal ------------------------------------------------------------------------

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS journal (
    seq          INTEGER PRIMARY KEY,
    tx_id        TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    at           REAL    NOT NULL,
    kind         TEXT    NOT NULL,
    amount_rials INTEGER NOT NULL,
    data         TEXT    NOT NULL,
    prev_hash    TEXT    NOT NULL,
    hash         TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_by_tx ON journal (tx_id, seq);
-- One CREATED per transaction id, enforced by the file itself (also across processes).
CREATE UNIQUE INDEX IF NOT EXISTS journal_one_begin ON journal (tx_id) WHERE state = 'CREATED';
-- Triggers stop accidental rewrites by our own code; the hash chain catches deliberate ones.
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END;
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_id           TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at REAL    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending',
    response        TEXT,
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_by_tx ON outbox (tx_id);
PRAGMA user_version = {SCHEMA_VERSION};
"""

_ENTRY_COLS = "seq, tx_id, state, at, kind, amount_rials, data, prev_hash, hash"
_INSERT_ENTRY = f"INSERT INTO journal ({_ENTRY_COLS}) VALUES (?,?,?,?,?,?,?,?,?)"
_OUTBOX_COLS = ("id, tx_id, kind, payload, idempotency_key, attempts, last_error, "
                "next_attempt_at, status, response, created_at")
_KIOSK_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _entry(row: Sequence[Any]) -> JournalEntry:
    return JournalEntry(seq=row[0], tx_id=row[1], state=TxState(row[2]), at=row[3], kind=row[4],
                        amount_rials=row[5], data=json.loads(row[6]), prev_hash=row[7],
                        hash=row[8])


def _outbox_item(row: Sequence[Any]) -> OutboxItem:
    return OutboxItem(id=row[0], tx_id=row[1], kind=row[2], payload=json.loads(row[3]),
                      idempotency_key=row[4], attempts=row[5], last_error=row[6],
                      next_attempt_at=row[7], status=OutboxStatus(row[8]),
                      response=json.loads(row[9]) if row[9] is not None else None,
                      created_at=row[10])


def _fold(entries: Sequence[JournalEntry]) -> Transaction:
    first, last = entries[0], entries[-1]
    merged: dict[str, Any] = {}
    for e in entries:
        merged.update(e.data)
    return Transaction(tx_id=first.tx_id, kind=first.kind, amount_rials=first.amount_rials,
                       state=last.state, created_at=first.at, updated_at=last.at, data=merged,
                       entries=tuple(entries))


class Journal:
    """The kiosk's transaction journal and outbox, in one SQLite file.

    One connection per Journal, shared by threads under a lock; other processes open their
    own Journal on the same file (WAL lets readers run beside the one writer). Every call
    that writes is exactly one durable commit (synchronous=FULL: one fsync of the WAL).
    """

    def __init__(self, path: str | Path, *, kiosk_id: str = "kiosk-dev") -> None:
        if not _KIOSK_ID.match(kiosk_id):
            raise InvalidJournalData(f"kiosk_id {kiosk_id!r} must be 1–64 of A-Z a-z 0-9 . _ -")
        self.path = Path(path)
        self.kiosk_id = kiosk_id
        self._lock = threading.RLock()
        # What this connection last saw of the chain tail and of each live transaction.
        # Only a hint for the fast path: the seq primary key proves it current (see _fast_insert).
        self._tail: tuple[int, str] | None = None
        self._heads: dict[str, tuple[TxState, str, int]] = {}
        self._staged: list[JournalEntry] = []  # written in the open transaction, not committed
        self._txn_tail: tuple[int, str] | None = None
        # (unix second, "<kiosk_id>-<yyyymmdd>-", ms of the day at that second) for new_tx_id
        self._id_second: tuple[int, str, int] = (-1, "", 0)
        self._id_last: tuple[int, int] = (-1, 0)  # (ms of day, 24-bit tail) of the last id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), isolation_level=None,
                                     check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"could not put {self.path} in WAL mode (got {mode})")
            # FULL: the WAL is fsynced at every commit, so a committed append survives a
            # power cut (NORMAL would only keep the database consistent, not the last rows).
            self._conn.execute("PRAGMA synchronous = FULL")
            with self._write() as conn:
                for statement in _split_sql(_SCHEMA):
                    conn.execute(statement)
        except BaseException:
            self._conn.close()
            raise
        log.debug("journal opened", extra={"event": "journal.open"})

    # -- plumbing --

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE takes the write lock up front, so the chain
        tail read inside it cannot be raced by another process."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            self._staged, self._txn_tail = [], None
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._staged = []
                raise
            for entry in self._staged:  # only committed rows may feed the cache
                self._remember(entry)
            self._staged = []

    def _remember(self, entry: JournalEntry) -> None:
        self._tail = (entry.seq, entry.hash)
        if entry.state in TERMINAL_STATES:
            self._heads.pop(entry.tx_id, None)
            return
        if len(self._heads) >= 4096:  # a bound, not a policy: a miss only costs the slow path
            self._heads.clear()
        self._heads[entry.tx_id] = (entry.state, entry.kind, entry.amount_rials)

    def durability(self) -> dict[str, str]:
        """The pragmas this connection actually runs with (read back from SQLite)."""
        with self._lock:
            mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
            sync = self._conn.execute("PRAGMA synchronous").fetchone()[0]
        return {"journal_mode": str(mode).lower(),
                "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, str(sync))}

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --

    def new_tx_id(self) -> str:
        """`<kiosk_id>-<yyyymmdd>-<8 hex ms of the day><6 hex random>`, ULID-like.

        Time first, so ids sort by creation and land at the right edge of the tx_id index
        (random ids would touch a random index page per commit); 24 random bits make a
        clash within one millisecond negligible, and begin() refuses one anyway.
        """
        now = time.time()
        second = int(now)
        cached = self._id_second
        if cached[0] != second:
            # localtime + strftime cost microseconds; they only change once a second
            local = time.localtime(second)
            cached = self._id_second = (
                second, f"{self.kiosk_id}-{time.strftime('%Y%m%d', local)}-",
                ((local.tm_hour * 60 + local.tm_min) * 60 + local.tm_sec) * 1000)
        ms_of_day = cached[2] + int((now % 1) * 1000)
        # within one millisecond, count up from the last id (as ULID's monotonic mode): random
        # bits alone collided in a burst of ids; across processes, begin() refuses a clash
        last_ms, last_tail = self._id_last
        tail = (last_tail + 1) & 0xFFFFFF if ms_of_day == last_ms else int.from_bytes(os.urandom(3), "big")
        self._id_last = (ms_of_day, tail)
        return f"{cached[1]}{ms_of_day:08x}{tail:06x}"

    def begin(self, kind: str, amount_rials: int, data: Mapping[str, Any] | None = None, *,
              tx_id: str | None = None) -> Transaction:
        """Start a transaction: append its CREATED entry."""
        if not isinstance(kind, str) or not kind.strip():
            raise InvalidJournalData(f"transaction kind must be a non-empty string, got {kind!r}")
        if isinstance(amount_rials, bool) or not isinstance(amount_rials, int) or amount_rials < 0:
            raise InvalidJournalData(f"amount_rials must be a whole number ≥ 0, got {amount_rials!r}")
        if tx_id is None or tx_id == "":
            # ours: kiosk_id was checked in __init__, the rest is digits and hex
            tx_id = self.new_tx_id()
        else:
            if not isinstance(tx_id, str) or not tx_id.strip():
                raise InvalidJournalData(f"tx_id must be a non-empty string, got {tx_id!r}")
            if _CONTROL.search(tx_id):
                raise InvalidJournalData("tx_id and kind may not contain control characters")
        if _CONTROL.search(kind):
            raise InvalidJournalData("tx_id and kind may not contain control characters")
        data_json, data_copy = _prepare_data(data, "begin", tx_id)
        try:
            with self._lock:
                entry = self._fast_insert(tx_id, _CREATED, kind, amount_rials, data_json,
                                          data_copy)
                if entry is None:
                    with self._write() as conn:
                        entry = self._insert(conn, tx_id, _CREATED, kind, amount_rials,
                                             data_json, data_copy)
        except sqlite3.IntegrityError as exc:
            # the partial unique index journal_one_begin: one CREATED per tx_id, ever
            if "journal.tx_id" not in str(exc):
                raise
            raise TransactionExists(f"transaction {tx_id} already exists", tx_id=tx_id) from exc
        if _info_enabled():
            log.info("transaction created", extra={"tx": tx_id, "event": "CREATED"})
        transaction = _new_object(Transaction)  # see _new_entry: same value, no setattr tax
        transaction.__dict__.update(
            tx_id=tx_id, kind=kind, amount_rials=amount_rials, state=entry.state,
            created_at=entry.at, updated_at=entry.at, data=dict(entry.data), entries=(entry,))
        return transaction

    def append(self, tx_id: str, state: TxState | str,
               data: Mapping[str, Any] | None = None) -> JournalEntry:
        """Append the next state of a transaction; refuses a move ALLOWED does not list."""
        new_state, state_text = _state_pair(state)
        data_json, data_copy = _prepare_data(data, "append", tx_id, state_text)
        with self._lock:
            head = self._heads.get(tx_id)
            entry = (self._fast_insert(tx_id, new_state, head[1], head[2], data_json, data_copy)
                     if head is not None and new_state in ALLOWED[head[0]] else None)
            if entry is None:
                with self._write() as conn:
                    entry = self._append_locked(conn, tx_id,
                                                [(new_state, data_json, data_copy)])[0]
        if _info_enabled():
            log.info("transaction state", extra={"tx": tx_id, "event": state_text})
        return entry

    def append_many(self, tx_id: str,
                    steps: Sequence[tuple[TxState | str, Mapping[str, Any] | None]]
                    ) -> list[JournalEntry]:
        """Append several states of one transaction in one commit: all of them or none."""
        prepared = [(_coerce_state(s), *_prepare_data(d, "append", tx_id, str(s)))
                    for s, d in steps]
        if not prepared:
            return []
        with self._write() as conn:
            entries = self._append_locked(conn, tx_id, prepared)
        for e in entries:
            log.info("transaction state", extra={"tx": tx_id, "event": str(e.state)})
        return entries

    def _append_locked(self, conn: sqlite3.Connection, tx_id: str,
                       prepared: Sequence[tuple[TxState, str, dict[str, Any]]]
                       ) -> list[JournalEntry]:
        """Append inside an open write transaction, checking against the stored state."""
        head = conn.execute("SELECT state, kind, amount_rials FROM journal WHERE tx_id = ? "
                            "ORDER BY seq DESC LIMIT 1", (tx_id,)).fetchone()
        if head is None:
            raise UnknownTransaction(f"no transaction {tx_id}", tx_id=tx_id)
        current, kind, amount = TxState(head[0]), head[1], head[2]
        entries: list[JournalEntry] = []
        for state, data_json, data_copy in prepared:
            if state not in ALLOWED[current]:
                raise IllegalTransition(f"{tx_id}: {current} → {state} is not allowed",
                                        tx_id=tx_id, current=str(current), requested=str(state))
            entries.append(self._insert(conn, tx_id, state, kind, amount, data_json, data_copy))
            current = state
        return entries

    def _insert(self, conn: sqlite3.Connection, tx_id: str, state: TxState, kind: str,
                amount: int, data_json: str, data_copy: dict[str, Any]) -> JournalEntry:
        """Insert one row inside an open write transaction."""
        if self._txn_tail is None:
            # Read from the file, not the cache: another process may have appended. One
            # lookup at the end of the rowid b-tree, never a walk of the chain.
            tail = conn.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1"
                                ).fetchone()
            self._txn_tail = (tail[0], tail[1]) if tail else (0, GENESIS_HASH)
        seq, prev_hash = self._txn_tail
        seq += 1
        at = _now_at()
        digest = entry_hash(prev_hash, tx_id, state.value, at, kind, amount, data_json)
        conn.execute(_INSERT_ENTRY,
                     (seq, tx_id, state.value, at, kind, amount, data_json, prev_hash, digest))
        entry = _new_entry(seq, tx_id, state, at, kind, amount, data_copy, prev_hash, digest)
        self._txn_tail = (seq, digest)
        self._staged.append(entry)
        return entry

    def _fast_insert(self, tx_id: str, state: TxState, kind: str, amount: int,
                     data_json: str, data_copy: dict[str, Any]) -> JournalEntry | None:
        """One autocommit INSERT (one statement, one fsync) built from the cached tail.

        The cache is proved current by the insert itself: rows are only ever appended, so if
        anyone else appended since we last saw the tail, they hold seq N+1 and our INSERT of
        N+1 fails on the primary key. Then the cache is dropped and the caller takes the
        BEGIN IMMEDIATE path, which reads everything from the file. Returns None for that.
        Caller holds self._lock and has checked the transition against the cached head.
        """
        tail = self._tail
        if tail is None:
            return None
        seq = tail[0] + 1
        prev_hash = tail[1]
        at = _now_at()
        state_text = _STATES[state][1]
        # entry_hash() inlined: this is the hot path, and the formula is the documented one
        digest = _sha256(_SEP.join((prev_hash, tx_id, state_text, repr(at), kind, str(amount),
                                    data_json)).encode("utf-8")).hexdigest()
        try:
            self._conn.execute(_INSERT_ENTRY, (seq, tx_id, state_text, at, kind, amount,
                                               data_json, prev_hash, digest))
        except sqlite3.IntegrityError as exc:
            if "journal.seq" not in str(exc):
                raise
            log.debug("journal tail moved under us; re-reading", extra={"tx": tx_id})
            self._tail = None
            self._heads.clear()
            return None
        entry = _new_entry(seq, tx_id, state, at, kind, amount, data_copy, prev_hash, digest)
        self._remember(entry)
        return entry

    # -- reading --

    def get(self, tx_id: str) -> Transaction:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_ENTRY_COLS} FROM journal WHERE tx_id = ? "
                                      "ORDER BY seq", (tx_id,)).fetchall()
        if not rows:
            raise UnknownTransaction(f"no transaction {tx_id}", tx_id=tx_id)
        return _fold([_entry(r) for r in rows])

    def state_of(self, tx_id: str) -> TxState:
        with self._lock:
            row = self._conn.execute("SELECT state FROM journal WHERE tx_id = ? "
                                     "ORDER BY seq DESC LIMIT 1", (tx_id,)).fetchone()
        if row is None:
            raise UnknownTransaction(f"no transaction {tx_id}", tx_id=tx_id)
        return TxState(row[0])

    def _load(self, tx_ids: Sequence[str]) -> dict[str, Transaction]:
        grouped: dict[str, list[JournalEntry]] = {t: [] for t in tx_ids}
        with self._lock:
            for start in range(0, len(tx_ids), 500):  # stay under SQLite's variable limit
                chunk = list(tx_ids[start:start + 500])
                marks = ",".join("?" * len(chunk))
                for row in self._conn.execute(f"SELECT {_ENTRY_COLS} FROM journal WHERE tx_id "
                                              f"IN ({marks}) ORDER BY seq", chunk):
                    grouped[row[1]].append(_entry(row))
        return {t: _fold(es) for t, es in grouped.items() if es}

    def open_transactions(self) -> list[Transaction]:
        """Transactions `recover` must resolve, oldest first."""
        marks = ",".join("?" * len(OPEN_STATES))
        with self._lock:
            ids = [r[0] for r in self._conn.execute(
                "SELECT j.tx_id FROM journal j JOIN (SELECT tx_id, max(seq) AS last, "
                "min(seq) AS first FROM journal GROUP BY tx_id) t ON j.seq = t.last "
                f"WHERE j.state IN ({marks}) ORDER BY t.first", sorted(OPEN_STATES))]
        loaded = self._load(ids)
        return [loaded[t] for t in ids]

    def transactions(self, limit: int | None = None) -> list[Transaction]:
        """Transactions, most recently changed first."""
        sql = "SELECT tx_id FROM journal GROUP BY tx_id ORDER BY max(seq) DESC"
        params: tuple[int, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (int(limit),)
        with self._lock:
            ids = [r[0] for r in self._conn.execute(sql, params)]
        loaded = self._load(ids)
        return [loaded[t] for t in ids]

    def entries(self, after_seq: int = 0, limit: int | None = None) -> list[JournalEntry]:
        """Entries with seq > after_seq in chain order (what a fleet batch carries)."""
        sql = f"SELECT {_ENTRY_COLS} FROM journal WHERE seq > ? ORDER BY seq"
        params: tuple[int, ...] = (int(after_seq),)
        if limit is not None:
            sql += " LIMIT ?"
            params += (int(limit),)
        with self._lock:
            return [_entry(r) for r in self._conn.execute(sql, params).fetchall()]

    # -- verification --

    def verify(self) -> VerifyReport:
        """Walk the whole chain once and name every row that is edited, inserted, missing,
        badly linked or an illegal state move."""
        problems: list[Problem] = []
        hash_before_prev = None  # hash of the row two back: tells an inserted row apart
        prev_seq, prev_hash = 0, GENESIS_HASH
        tx_state: dict[str, TxState] = {}
        checked = 0
        with self._lock:
            rows = self._conn.execute(f"SELECT {_ENTRY_COLS} FROM journal ORDER BY seq").fetchall()
        for seq, tx_id, state, at, kind, amount, data_json, stored_prev, stored_hash in rows:
            checked += 1
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
            problems.extend(_check_transition(tx_state, seq, tx_id, state))
        return VerifyReport(ok=not problems, checked=checked, problems=problems)

    # -- outbox --

    def outbox_enqueue(self, tx_id: str, kind: str, payload: Mapping[str, Any],
                       idempotency_key: str, *,
                       with_state: tuple[TxState | str, Mapping[str, Any] | None] | None = None
                       ) -> int:
        """Queue a message for the back-office and, in the same commit, journal a state.
        The same idempotency_key twice returns the first row's id and journals nothing."""
        if not idempotency_key:
            raise InvalidJournalData("an outbox item needs an idempotency key")
        payload_json = _prepare(payload, f"outbox {tx_id} {kind}")
        prepared = ([(_coerce_state(with_state[0]), *_prepare_data(with_state[1], "append", tx_id))]
                    if with_state is not None else [])
        now = time.time()
        with self._write() as conn:
            existing = conn.execute("SELECT id FROM outbox WHERE idempotency_key = ?",
                                    (idempotency_key,)).fetchone()
            if existing is not None:
                return int(existing[0])
            if conn.execute("SELECT 1 FROM journal WHERE tx_id = ? LIMIT 1", (tx_id,)).fetchone() \
                    is None:
                raise UnknownTransaction(f"no transaction {tx_id}", tx_id=tx_id)
            cur = conn.execute(
                "INSERT INTO outbox (tx_id, kind, payload, idempotency_key, next_attempt_at, "
                "status, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
                (tx_id, kind, payload_json, idempotency_key, now, OutboxStatus.PENDING, now, now))
            item_id = int(cur.lastrowid or 0)
            self._append_locked(conn, tx_id, prepared)
        log.info("outbox enqueued", extra={"tx": tx_id, "event": f"outbox.{kind}"})
        return item_id

    def outbox_pending(self, now: float | None = None, limit: int = 50) -> list[OutboxItem]:
        """Items not yet settled whose next attempt is due, oldest due first."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_OUTBOX_COLS} FROM outbox WHERE status = ? AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at, id LIMIT ?",
                (OutboxStatus.PENDING, now, int(limit))).fetchall()
        return [_outbox_item(r) for r in rows]

    def outbox_item(self, item_id: int) -> OutboxItem:
        with self._lock:
            row = self._conn.execute(f"SELECT {_OUTBOX_COLS} FROM outbox WHERE id = ?",
                                     (item_id,)).fetchone()
        if row is None:
            raise UnknownOutboxItem(f"no outbox item {item_id}", item_id=item_id)
        return _outbox_item(row)

    def outbox_for(self, tx_id: str) -> list[OutboxItem]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_OUTBOX_COLS} FROM outbox WHERE tx_id = ? "
                                      "ORDER BY id", (tx_id,)).fetchall()
        return [_outbox_item(r) for r in rows]

    def outbox_record_attempt(self, item_id: int, error: str, next_attempt_at: float) -> None:
        """A send failed for a reason worth retrying; try again at next_attempt_at."""
        with self._write() as conn:
            self._pending_row(conn, item_id)
            conn.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?, "
                         "next_attempt_at = ?, updated_at = ? WHERE id = ?",
                         (redact(str(error))[:2000], float(next_attempt_at), time.time(), item_id))

    def outbox_ack(self, item_id: int, response: Mapping[str, Any], *,
                   with_state: Sequence[tuple[TxState | str, Mapping[str, Any] | None]] | None
                   = None) -> None:
        """The back-office accepted the item: mark it acked and journal the states, one commit."""
        self._settle(item_id, OutboxStatus.ACKED, response, with_state)

    def outbox_fail(self, item_id: int, response: Mapping[str, Any], *,
                    with_state: Sequence[tuple[TxState | str, Mapping[str, Any] | None]] | None
                    = None) -> None:
        """The back-office rejected the item for good: mark it failed and journal, one commit."""
        self._settle(item_id, OutboxStatus.FAILED, response, with_state)

    def _settle(self, item_id: int, status: OutboxStatus, response: Mapping[str, Any],
                with_state: Sequence[tuple[TxState | str, Mapping[str, Any] | None]] | None
                ) -> None:
        response_json = _prepare(response, f"outbox {item_id} response")
        prepared = [(_coerce_state(s), *_prepare_data(d, "outbox", item_id, f"state {s}"))
                    for s, d in (with_state or [])]
        with self._write() as conn:
            tx_id = self._pending_row(conn, item_id)
            conn.execute("UPDATE outbox SET status = ?, response = ?, updated_at = ? WHERE id = ?",
                         (status, response_json, time.time(), item_id))
            if prepared:
                self._append_locked(conn, tx_id, prepared)
        log.info("outbox settled", extra={"tx": tx_id, "event": f"outbox.{status}"})

    @staticmethod
    def _pending_row(conn: sqlite3.Connection, item_id: int) -> str:
        row = conn.execute("SELECT tx_id, status FROM outbox WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise UnknownOutboxItem(f"no outbox item {item_id}", item_id=item_id)
        if row[1] != OutboxStatus.PENDING:
            raise OutboxItemClosed(f"outbox item {item_id} is {row[1]}", item_id=item_id,
                                   status=row[1])
        return str(row[0])


def _check_transition(tx_state: dict[str, TxState], seq: int, tx_id: str,
                      state: str) -> list[Problem]:
    try:
        new = TxState(state)
    except ValueError:
        return [Problem(seq, "illegal_transition", f"row {seq}: unknown state {state!r}")]
    current = tx_state.get(tx_id)
    tx_state[tx_id] = new
    if current is None:
        if new is TxState.CREATED:
            return []
        return [Problem(seq, "illegal_transition",
                        f"row {seq}: {tx_id} starts with {new}, not CREATED")]
    if new not in ALLOWED[current]:
        return [Problem(seq, "illegal_transition", f"row {seq}: {tx_id} {current} → {new}")]
    return []


def _split_sql(script: str) -> list[str]:
    """Split the schema into statements, keeping each trigger body whole (executescript
    would commit the surrounding BEGIN IMMEDIATE, which must hold while the schema is made)."""
    statements, buf = [], ""
    for line in script.splitlines():
        if not line.strip() or line.strip().startswith("--"):
            continue
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    return statements
