"""AsyncJournal: the journal for asyncio code (flows, the outbox worker). Each write is one
fsync, so writes run in one dedicated worker thread instead of on the event loop; the single
thread keeps them in the order they were asked for. Reads pass through to the sync Journal."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from kiosk.journal.chain import JournalEntry, Transaction
from kiosk.journal.states import TxState
from kiosk.journal.store import Journal

T = TypeVar("T")
StateSteps = Sequence[tuple[TxState | str, Mapping[str, Any] | None]]


class AsyncJournal:
    """Async facade over one Journal. Write methods are coroutines run in the writer thread;
    any other attribute (get, state_of, transactions, head, entry_at, outbox_pending, ...)
    is the sync Journal's own, called directly."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-writer")

    async def _run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, functools.partial(fn, *args, **kwargs))

    async def begin(self, kind: str, amount_rials: int, data: Mapping[str, Any] | None = None,
                    *, tx_id: str | None = None) -> Transaction:
        return await self._run(self.journal.begin, kind, amount_rials, data, tx_id=tx_id)

    async def append(self, tx_id: str, state: TxState | str,
                     data: Mapping[str, Any] | None = None) -> JournalEntry:
        return await self._run(self.journal.append, tx_id, state, data)

    async def append_many(self, tx_id: str, steps: StateSteps) -> list[JournalEntry]:
        return await self._run(self.journal.append_many, tx_id, steps)

    async def outbox_enqueue(self, tx_id: str, kind: str, payload: Mapping[str, Any],
                             idempotency_key: str, *,
                             with_state: tuple[TxState | str, Mapping[str, Any] | None]
                             | None = None, anchor: bool = False) -> int:
        return await self._run(self.journal.outbox_enqueue, tx_id, kind, payload,
                               idempotency_key, with_state=with_state, anchor=anchor)

    async def outbox_ack(self, item_id: int, response: Mapping[str, Any], *,
                         with_state: StateSteps | None = None) -> None:
        await self._run(self.journal.outbox_ack, item_id, response, with_state=with_state)

    async def outbox_fail(self, item_id: int, response: Mapping[str, Any], *,
                          with_state: StateSteps | None = None) -> None:
        await self._run(self.journal.outbox_fail, item_id, response, with_state=with_state)

    async def outbox_record_attempt(self, item_id: int, error: str,
                                    next_attempt_at: float) -> None:
        await self._run(self.journal.outbox_record_attempt, item_id, error, next_attempt_at)

    def __getattr__(self, name: str) -> Any:
        # only called for names not defined here: the reads, path, kiosk_id, new_tx_id, ...
        return getattr(self.journal, name)

    async def aclose(self) -> None:
        """Finish queued writes, stop the writer thread, close the journal."""
        await asyncio.get_running_loop().run_in_executor(None, self._writer.shutdown, True)
        self.journal.close()

    def close(self) -> None:
        """The same from sync code (waits for queued writes)."""
        self._writer.shutdown(wait=True)
        self.journal.close()
