"""Store-and-forward while the kiosk runs: settlements queued in the outbox (the back-office
was unreachable when the citizen paid) are re-posted in the background with their own
idempotency keys and back-off, and finished once acknowledged. Recovery does the same once
at start; this keeps doing it."""

from __future__ import annotations

import asyncio
import logging

from kiosk.journal import Journal, TxState
from kiosk.money_path import SETTLEMENT, MoneyPath, SettleResult

log = logging.getLogger("kiosk.outbox")


class OutboxWorker:
    def __init__(self, journal: Journal, money: MoneyPath, *, interval_s: float = 5.0) -> None:
        self.journal = journal
        self.money = money
        self.interval_s = interval_s

    async def drain_once(self) -> list[tuple[str, SettleResult]]:
        """Post every due settlement once; returns (tx_id, result) for each attempt."""
        done = []
        for item in self.journal.outbox_pending():
            if item.kind != SETTLEMENT:
                continue
            result = await self.money.settle(item)
            if result == SettleResult.SETTLED and self.journal.state_of(item.tx_id) == TxState.POSTED:
                # the citizen already left with a receipt marked "settlement pending"
                self.money.complete(item.tx_id, completed_by="outbox")
            done.append((item.tx_id, result))
        return done

    async def run(self) -> None:
        while True:
            try:
                for tx_id, result in await self.drain_once():
                    log.info("outbox settlement %s", result, extra={"tx": tx_id})
            except asyncio.CancelledError:
                raise
            except Exception:  # the worker must outlive one bad item; it is retried next round
                log.exception("outbox round failed")
            await asyncio.sleep(self.interval_s)
