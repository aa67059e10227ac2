"""The outbox: the store-and-forward queue to the back-office, kept in the journal's file so
an item and the state it journals commit together. Values here; the operations are a mixin
the SQLite store (kiosk.journal.store.Journal) provides the connection and lock to."""

from __future__ import annotations

import enum
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from kiosk.journal.chain import JournalEntry
from kiosk.journal.data import coerce_state, prepare_data, prepare_payload
from kiosk.journal.errors import (
    InvalidJournalData,
    OutboxItemClosed,
    UnknownOutboxItem,
    UnknownTransaction,
)
from kiosk.journal.states import TxState
from kiosk.sensitive import redact

log = logging.getLogger("kiosk.journal")


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


OUTBOX_COLS = ("id, tx_id, kind, payload, idempotency_key, attempts, last_error, "
               "next_attempt_at, status, response, created_at")


def outbox_item(row: Sequence[Any]) -> OutboxItem:
    return OutboxItem(id=row[0], tx_id=row[1], kind=row[2], payload=json.loads(row[3]),
                      idempotency_key=row[4], attempts=row[5], last_error=row[6],
                      next_attempt_at=row[7], status=OutboxStatus(row[8]),
                      response=json.loads(row[9]) if row[9] is not None else None,
                      created_at=row[10])


Prepared = Sequence[tuple[TxState, str, dict[str, Any]]]
StateSteps = Sequence[tuple[TxState | str, Mapping[str, Any] | None]]


class OutboxMixin:
    """Outbox operations. The class using it provides `_conn`, `_lock`, `_write()` (one
    BEGIN IMMEDIATE ... COMMIT), `_read(sql, params)`, `_tail_in_txn(conn)` and
    `_append_locked(conn, tx_id, prepared)`."""

    _conn: sqlite3.Connection
    _lock: threading.RLock

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:  # pragma: no cover
        raise NotImplementedError

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:  # pragma: no cover
        raise NotImplementedError

    def _tail_in_txn(self, conn: sqlite3.Connection) -> tuple[int, str]:  # pragma: no cover
        raise NotImplementedError

    def _append_locked(self, conn: sqlite3.Connection, tx_id: str, prepared: Prepared
                       ) -> list[JournalEntry]:  # pragma: no cover
        raise NotImplementedError

    def outbox_enqueue(self, tx_id: str, kind: str, payload: Mapping[str, Any],
                       idempotency_key: str, *,
                       with_state: tuple[TxState | str, Mapping[str, Any] | None] | None = None,
                       anchor: bool = False) -> int:
        """Queue a message for the back-office and, in the same commit, journal a state.
        The same idempotency_key twice returns the first row's id and journals nothing.

        anchor=True stamps the payload with `journal_seq` and `journal_head`: the seq and
        hash of the chain's tail read inside this write transaction, before the with_state
        row is appended. The back-office keeps them, so a cut or rewritten journal can be
        told from what the kiosk once sent."""
        if not idempotency_key:
            raise InvalidJournalData("an outbox item needs an idempotency key")
        where = f"outbox {tx_id} {kind}"
        payload_json = prepare_payload(payload, where)
        prepared = ([(coerce_state(with_state[0]), *prepare_data(with_state[1], "append", tx_id))]
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
            if anchor:
                seq, head = self._tail_in_txn(conn)
                payload_json = prepare_payload(
                    {**payload, "journal_seq": seq, "journal_head": head}, where)
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
        rows = self._read(f"SELECT {OUTBOX_COLS} FROM outbox WHERE status = ? AND "
                          "next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
                          (OutboxStatus.PENDING, now, int(limit)))
        return [outbox_item(r) for r in rows]

    def outbox_item(self, item_id: int) -> OutboxItem:
        rows = self._read(f"SELECT {OUTBOX_COLS} FROM outbox WHERE id = ?", (item_id,))
        if not rows:
            raise UnknownOutboxItem(f"no outbox item {item_id}", item_id=item_id)
        return outbox_item(rows[0])

    def outbox_for(self, tx_id: str) -> list[OutboxItem]:
        rows = self._read(f"SELECT {OUTBOX_COLS} FROM outbox WHERE tx_id = ? ORDER BY id",
                          (tx_id,))
        return [outbox_item(r) for r in rows]

    def outbox_record_attempt(self, item_id: int, error: str, next_attempt_at: float) -> None:
        """A send failed for a reason worth retrying; try again at next_attempt_at."""
        with self._write() as conn:
            _pending_row(conn, item_id)
            conn.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?, "
                         "next_attempt_at = ?, updated_at = ? WHERE id = ?",
                         (redact(str(error))[:2000], float(next_attempt_at), time.time(), item_id))

    def outbox_ack(self, item_id: int, response: Mapping[str, Any], *,
                   with_state: StateSteps | None = None) -> None:
        """The back-office accepted the item: mark it acked and journal the states, one commit."""
        self._settle(item_id, OutboxStatus.ACKED, response, with_state)

    def outbox_fail(self, item_id: int, response: Mapping[str, Any], *,
                    with_state: StateSteps | None = None) -> None:
        """The back-office rejected the item for good: mark it failed and journal, one commit."""
        self._settle(item_id, OutboxStatus.FAILED, response, with_state)

    def _settle(self, item_id: int, status: OutboxStatus, response: Mapping[str, Any],
                with_state: StateSteps | None) -> None:
        response_json = prepare_payload(response, f"outbox {item_id} response")
        prepared = [(coerce_state(s), *prepare_data(d, "outbox", item_id, f"state {s}"))
                    for s, d in (with_state or [])]
        with self._write() as conn:
            tx_id = _pending_row(conn, item_id)
            conn.execute("UPDATE outbox SET status = ?, response = ?, updated_at = ? WHERE id = ?",
                         (status, response_json, time.time(), item_id))
            if prepared:
                self._append_locked(conn, tx_id, prepared)
        log.info("outbox settled", extra={"tx": tx_id, "event": f"outbox.{status}"})


def _pending_row(conn: sqlite3.Connection, item_id: int) -> str:
    row = conn.execute("SELECT tx_id, status FROM outbox WHERE id = ?", (item_id,)).fetchone()
    if row is None:
        raise UnknownOutboxItem(f"no outbox item {item_id}", item_id=item_id)
    if row[1] != OutboxStatus.PENDING:
        raise OutboxItemClosed(f"outbox item {item_id} is {row[1]}", item_id=item_id,
                               status=row[1])
    return str(row[0])


__all__ = ["OUTBOX_COLS", "OutboxItem", "OutboxMixin", "OutboxStatus", "outbox_item"]
