"""The journal's SQLite store: one file per data dir holding the hash-chained `journal` table
and the outbox beside it; durable appends, reads, verify, and a read-only open for auditors.

See docs/journal.md for the state diagram, the chain format, storage errors and the outbox.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kiosk.journal.chain import (
    GENESIS_HASH,
    JournalEntry,
    Transaction,
    VerifyReport,
    decode_json,
    entry_hash,
    fold,
    new_entry,
    new_transaction,
    verify_rows,
)
from kiosk.journal.data import CONTROL, coerce_state, prepare_data, state_pair
from kiosk.journal.errors import (
    IllegalTransition,
    InvalidJournalData,
    JournalError,
    JournalStorageError,
    JournalUnreadable,
    TransactionExists,
    UnknownTransaction,
    as_journal_error,
)
from kiosk.journal.outbox import OutboxMixin
from kiosk.journal.states import ALLOWED, ALLOWED_BY_KIND, OPEN_STATES, STATE_BY_TEXT, TERMINAL_STATES, TxState

log = logging.getLogger("kiosk.journal")


def _info_enabled() -> bool:
    """Logger.isEnabledFor is cached by logging; asking first skips building `extra` on
    every append when INFO is off."""
    return log.isEnabledFor(logging.INFO)


JOURNAL_FILENAME = "journal.sqlite3"
SCHEMA_VERSION = 1
#: how long a writer waits for another process's write lock before giving up (ms)
BUSY_TIMEOUT_MS = 10_000
#: the journal and its -wal/-shm are the owner's alone (SQLite gives the -wal and -shm the
#: database file's mode, so creating the file 0600 covers all three)
FILE_MODE = 0o600


def journal_path(data_dir: str | Path) -> Path:
    """The journal file inside a kiosk data dir."""
    return Path(data_dir) / JOURNAL_FILENAME


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

#: every table, index and trigger _SCHEMA makes (a tamperer may have dropped a trigger)
_SCHEMA_OBJECTS = frozenset({"journal", "journal_by_tx", "journal_one_begin", "journal_no_update",
                             "journal_no_delete", "outbox", "outbox_due", "outbox_by_tx"})
_ENTRY_COLS = "seq, tx_id, state, at, kind, amount_rials, data, prev_hash, hash"
_INSERT_ENTRY = f"INSERT INTO journal ({_ENTRY_COLS}) VALUES (?,?,?,?,?,?,?,?,?)"
_KIOSK_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CREATED = TxState.CREATED


def _entry(row: Sequence[Any]) -> JournalEntry:
    """A stored row as a JournalEntry; JournalUnreadable (naming the row) when its state is
    unknown or its data is not a JSON object."""
    state = STATE_BY_TEXT.get(row[2]) if isinstance(row[2], str) else None
    try:
        data = decode_json(row[6]) if isinstance(row[6], str) else None
    except ValueError:
        data = None
    if state is None or not isinstance(data, dict):
        what = f"unknown state {row[2]!r}" if state is None else "data is not a JSON object"
        raise JournalUnreadable(f"journal row {row[0]} cannot be read: {what}", seq=row[0])
    return JournalEntry(seq=row[0], tx_id=row[1], state=state[0], at=row[3], kind=row[4],
                        amount_rials=row[5], data=data, prev_hash=row[7], hash=row[8])


def _now_at() -> float:
    """Unix seconds to 6 decimals (microseconds), as stored in `at` and hashed via repr().
    round(t * 1e6) / 1e6 is the float nearest a whole number of µs, so its repr has at most
    6 decimals, like round(t, 6) but without its decimal conversion."""
    return round(time.time() * 1_000_000) / 1_000_000


def _create_private(path: Path) -> None:
    """Create the journal file 0600 before SQLite opens it (SQLite then gives -wal and -shm
    the same mode), and tighten our own files if an older version left them wider."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            if file.stat().st_mode & 0o077:
                os.chmod(file, FILE_MODE)
        except FileNotFoundError:
            pass
        except PermissionError:  # not ours to change (a copy on someone else's media)
            pass


class Journal(OutboxMixin):
    """The kiosk's transaction journal and outbox, in one SQLite file.

    One connection per Journal, shared by threads under a lock; other processes open their
    own Journal on the same file (WAL lets readers run beside the one writer). Every call
    that writes is exactly one durable commit (synchronous=FULL: one fsync of the WAL).
    A write the storage refuses (disk full, read-only, I/O error) raises JournalStorageError
    and records nothing; reads keep working.

    readonly=True (or Journal.open_readonly) never writes or creates a file beside the
    journal: see _connect_readonly. `open_mode` says how it was opened.
    """

    def __init__(self, path: str | Path, *, kiosk_id: str = "kiosk-dev",
                 readonly: bool = False) -> None:
        if not _KIOSK_ID.match(kiosk_id):
            raise InvalidJournalData(f"kiosk_id {kiosk_id!r} must be 1–64 of A-Z a-z 0-9 . _ -")
        self.path = Path(path)
        self.kiosk_id = kiosk_id
        self.readonly = readonly
        #: "rw"; read-only: "ro" (beside a live writer), "immutable" (no WAL to replay) or
        #: "snapshot" (a WAL without its -shm on read-only media, read from a private copy)
        self.open_mode = "rw"
        self._snapshot_dir: Path | None = None
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
        self._conn = self._connect_readonly() if readonly else self._connect_rw()
        log.debug("journal opened", extra={"event": "journal.open"})

    @classmethod
    def open_readonly(cls, path: str | Path, *, kiosk_id: str = "kiosk-dev") -> Journal:
        """Open for reading only (verify, show, an auditor's copy on read-only media)."""
        return cls(path, kiosk_id=kiosk_id, readonly=True)

    # -- opening --

    def _connect_rw(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _create_private(self.path)
            conn = sqlite3.connect(str(self.path), isolation_level=None,
                                   check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        except (OSError, sqlite3.Error) as exc:
            raise JournalStorageError(f"cannot open the journal at {self.path}: {exc}") from exc
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"could not put {self.path} in WAL mode (got {mode})")
            # FULL: the WAL is fsynced at every commit, so a committed append survives a
            # power cut (NORMAL would only keep the database consistent, not the last rows).
            conn.execute("PRAGMA synchronous = FULL")
            # Only write the schema when something is missing: a journal on a read-only file
            # still opens for reading (its writes then raise JournalStorageError).
            present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if not (_SCHEMA_OBJECTS <= present and version == SCHEMA_VERSION):
                with self._write() as c:
                    for statement in _split_sql(_SCHEMA):
                        c.execute(statement)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise (as_journal_error(exc, f"opening {self.path}")
                   or JournalUnreadable(f"{self.path} is not a kiosk journal: {exc}")) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        """Open without ever writing or creating a file beside the journal.

        SQLite's `?mode=ro` still creates the WAL's -shm (and an empty -wal) next to the
        file, which read-only media refuse. So: no WAL (or an empty one) means the main file
        holds every row: open it `immutable=1`. A WAL with its -shm is a live kiosk or a full
        copy: `mode=ro` reads it in place. A WAL without a -shm, or a `mode=ro` open that
        fails, is read from a private copy of the file and its WAL in a temporary directory:
        `immutable=1` alone would silently skip every row still in the WAL."""
        path = self.path
        if not path.is_file():
            raise JournalUnreadable(f"no journal at {path}")
        wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
        try:
            wal_size = wal.stat().st_size
        except FileNotFoundError:
            wal_size = 0
        if wal_size == 0:
            return self._ro_connect(path, immutable=True)
        if shm.exists():
            try:
                return self._ro_connect(path, immutable=False)
            except JournalStorageError:
                pass
        return self._snapshot(path, wal)

    def _ro_connect(self, path: Path, *, immutable: bool) -> sqlite3.Connection:
        uri = path.resolve().as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise JournalStorageError(f"cannot open {path} read-only: {exc}") from exc
        try:
            conn.execute("PRAGMA query_only = 1")
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise (as_journal_error(exc, f"opening {path} read-only")
                   or JournalUnreadable(f"{path} is not a kiosk journal: {exc}")) from exc
        if not {"journal", "outbox"} <= tables:
            conn.close()
            raise JournalUnreadable(f"{path} is not a kiosk journal (no journal table)")
        self.open_mode = "immutable" if immutable else "ro"
        return conn

    def _snapshot(self, path: Path, wal: Path) -> sqlite3.Connection:
        tmp = Path(tempfile.mkdtemp(prefix="kiosk-journal-ro-"))
        try:
            copy = tmp / path.name
            shutil.copyfile(path, copy)
            shutil.copyfile(wal, Path(f"{copy}-wal"))
            conn = self._ro_connect(copy, immutable=False)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._snapshot_dir = tmp
        self.open_mode = "snapshot"
        return conn

    # -- plumbing --

    def _storage_failed(self, exc: sqlite3.Error, what: str) -> JournalError | None:
        """The typed error for a storage failure, after forgetting what this connection
        cached about the tail: after an I/O error we cannot know what reached the file."""
        mapped = as_journal_error(exc, what)
        if isinstance(mapped, JournalStorageError):
            self._tail = None
            self._heads.clear()
            log.error("journal write failed: %s", exc, extra={"event": "journal.storage"})
        return mapped

    def _refuse_if_readonly(self) -> None:
        if self.readonly:
            raise JournalStorageError(f"{self.path} was opened read-only")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE takes the write lock up front, so the chain
        tail read inside it cannot be raced by another process."""
        self._refuse_if_readonly()
        with self._lock:
            conn = self._conn
            self._staged, self._txn_tail = [], None
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:  # SQLite may have rolled back on its own
                        pass
                self._staged = []
                if isinstance(exc, sqlite3.DatabaseError):
                    mapped = self._storage_failed(exc, "journal write")
                    if mapped is not None:
                        raise mapped from exc
                raise
            for entry in self._staged:  # only committed rows may feed the cache
                self._remember(entry)
            self._staged = []

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of one query, with a damaged file or failing disk as a typed error."""
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                mapped = as_journal_error(exc, "journal read")
                if mapped is None:
                    raise
                raise mapped from exc

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
        mode = self._read("PRAGMA journal_mode")[0][0]
        sync = self._read("PRAGMA synchronous")[0][0]
        return {"journal_mode": str(mode).lower(),
                "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, str(sync))}

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._snapshot_dir is not None:
                shutil.rmtree(self._snapshot_dir, ignore_errors=True)
                self._snapshot_dir = None

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
            if CONTROL.search(tx_id):
                raise InvalidJournalData("tx_id and kind may not contain control characters")
        if CONTROL.search(kind):
            raise InvalidJournalData("tx_id and kind may not contain control characters")
        data_json, data_copy = prepare_data(data, "begin", tx_id)
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
        return new_transaction(entry)

    def append(self, tx_id: str, state: TxState | str,
               data: Mapping[str, Any] | None = None) -> JournalEntry:
        """Append the next state of a transaction; refuses a move its kind's table (ALLOWED,
        or a value-only kind's: states.transitions) does not list."""
        new_state, state_text = state_pair(state)
        data_json, data_copy = prepare_data(data, "append", tx_id, state_text)
        with self._lock:
            head = self._heads.get(tx_id)
            entry = (self._fast_insert(tx_id, new_state, head[1], head[2], data_json, data_copy)
                     if head is not None and new_state in ALLOWED_BY_KIND.get(head[1], ALLOWED)[head[0]] else None)
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
        prepared = [(coerce_state(s), *prepare_data(d, "append", tx_id, str(s)))
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
            if state not in ALLOWED_BY_KIND.get(kind, ALLOWED)[current]:
                raise IllegalTransition(f"{tx_id}: {current} → {state} is not allowed",
                                        tx_id=tx_id, current=str(current), requested=str(state))
            entries.append(self._insert(conn, tx_id, state, kind, amount, data_json, data_copy))
            current = state
        return entries

    def _tail_in_txn(self, conn: sqlite3.Connection) -> tuple[int, str]:
        """(seq, hash) of the chain's last row, read from the file inside the open write
        transaction (another process may have appended), then tracked as rows are added."""
        if self._txn_tail is None:
            # One lookup at the end of the rowid b-tree, never a walk of the chain.
            tail = conn.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1"
                                ).fetchone()
            self._txn_tail = (tail[0], tail[1]) if tail else (0, GENESIS_HASH)
        return self._txn_tail

    def _insert(self, conn: sqlite3.Connection, tx_id: str, state: TxState, kind: str,
                amount: int, data_json: str, data_copy: dict[str, Any]) -> JournalEntry:
        """Insert one row inside an open write transaction."""
        seq, prev_hash = self._tail_in_txn(conn)
        seq += 1
        at = _now_at()
        digest = entry_hash(prev_hash, tx_id, state.value, at, kind, amount, data_json)
        conn.execute(_INSERT_ENTRY,
                     (seq, tx_id, state.value, at, kind, amount, data_json, prev_hash, digest))
        entry = new_entry(seq, tx_id, state, at, kind, amount, data_copy, prev_hash, digest)
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
        self._refuse_if_readonly()
        seq = tail[0] + 1
        prev_hash = tail[1]
        at = _now_at()
        state_text = STATE_BY_TEXT[state][1]
        digest = entry_hash(prev_hash, tx_id, state_text, at, kind, amount, data_json)
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
        except sqlite3.DatabaseError as exc:
            mapped = self._storage_failed(exc, "journal append")
            if mapped is None:
                raise
            raise mapped from exc
        entry = new_entry(seq, tx_id, state, at, kind, amount, data_copy, prev_hash, digest)
        self._remember(entry)
        return entry

    # -- reading --

    def get(self, tx_id: str) -> Transaction:
        rows = self._read(f"SELECT {_ENTRY_COLS} FROM journal WHERE tx_id = ? ORDER BY seq",
                          (tx_id,))
        if not rows:
            raise UnknownTransaction(f"no transaction {tx_id}", tx_id=tx_id)
        return fold([_entry(r) for r in rows])

    def state_of(self, tx_id: str) -> TxState:
        rows = self._read("SELECT seq, state FROM journal WHERE tx_id = ? "
                          "ORDER BY seq DESC LIMIT 1", (tx_id,))
        if not rows:
            raise UnknownTransaction(f"no transaction {tx_id}", tx_id=tx_id)
        state = STATE_BY_TEXT.get(rows[0][1]) if isinstance(rows[0][1], str) else None
        if state is None:
            raise JournalUnreadable(f"journal row {rows[0][0]} cannot be read: unknown state "
                                    f"{rows[0][1]!r}", seq=rows[0][0])
        return state[0]

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the chain's last row; (0, GENESIS_HASH) when the journal is empty."""
        rows = self._read("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1")
        return (int(rows[0][0]), str(rows[0][1])) if rows else (0, GENESIS_HASH)

    def entry_at(self, seq: int) -> JournalEntry | None:
        """The row with this seq, or None when there is none."""
        rows = self._read(f"SELECT {_ENTRY_COLS} FROM journal WHERE seq = ?", (int(seq),))
        return _entry(rows[0]) if rows else None

    def _load(self, tx_ids: Sequence[str]) -> dict[str, Transaction]:
        grouped: dict[str, list[JournalEntry]] = {t: [] for t in tx_ids}
        for start in range(0, len(tx_ids), 500):  # stay under SQLite's variable limit
            chunk = list(tx_ids[start:start + 500])
            marks = ",".join("?" * len(chunk))
            for row in self._read(f"SELECT {_ENTRY_COLS} FROM journal WHERE tx_id "
                                  f"IN ({marks}) ORDER BY seq", chunk):
                grouped[row[1]].append(_entry(row))
        return {t: fold(es) for t, es in grouped.items() if es}

    def open_transactions(self) -> list[Transaction]:
        """Transactions `recover` must resolve, oldest first."""
        marks = ",".join("?" * len(OPEN_STATES))
        ids = [r[0] for r in self._read(
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
        ids = [r[0] for r in self._read(sql, params)]
        loaded = self._load(ids)
        return [loaded[t] for t in ids]

    def entries(self, after_seq: int = 0, limit: int | None = None) -> list[JournalEntry]:
        """Entries with seq > after_seq in chain order (what a fleet batch carries)."""
        sql = f"SELECT {_ENTRY_COLS} FROM journal WHERE seq > ? ORDER BY seq"
        params: tuple[int, ...] = (int(after_seq),)
        if limit is not None:
            sql += " LIMIT ?"
            params += (int(limit),)
        return [_entry(r) for r in self._read(sql, params)]

    # -- verification --

    def verify(self) -> VerifyReport:
        """Walk the whole chain once and name every row that is edited, inserted, missing,
        badly linked, an illegal state move or unreadable (chain.verify_rows)."""
        return verify_rows(self._read(f"SELECT {_ENTRY_COLS} FROM journal ORDER BY seq"))


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
