"""The running kiosk's background money work: store-and-forward and recovery, not only at start.

* Settlements queued in the outbox (the back-office was unreachable when the citizen paid) are
  re-posted with their own idempotency keys and back-off, and finished once acknowledged.
* Every `recovery_interval_s`, open transactions that no flow has claimed (PAYING after a lost
  answer or a storage fault, PAID, REVERSING, POSTED, …) are resolved with the same Recovery
  code that runs at start. Transactions a live flow owns are skipped, so the background never
  races the flow (kiosk.money_path claims).

* Every `full_verify_interval_s` (hourly), the whole chain is verified again: a row edited
  behind the running kiosk's back is caught even when it is older than the rows checked
  before each new transaction.

Nothing runs while the journal fails verification: the kiosk is then out of service.
"""

from __future__ import annotations

import asyncio
import logging
import time

from kiosk.journal import Journal, OutboxStatus, TxState
from kiosk.money_path import MoneyPath, SettleResult
from kiosk.recovery import Recovery, Resolution
from kiosk.service_guard import JournalBroken

log = logging.getLogger("kiosk.outbox")


#: states in which a queued post is posted by the worker (a card top-up queues its load at
#: FULFILLED: the value is on the card by then)
_SETTLING = frozenset({TxState.FULFILLING, TxState.UNCERTAIN, TxState.FULFILLED})


class OutboxWorker:
    def __init__(self, journal: Journal, money: MoneyPath, *, interval_s: float = 5.0,
                 recovery_interval_s: float | None = 30.0, full_verify_interval_s: float = 3600.0) -> None:
        self.journal = journal
        self.money = money
        self.interval_s = interval_s
        self.recovery_interval_s = recovery_interval_s  # None: settlements only
        self.full_verify_interval_s = full_verify_interval_s
        self._next_recovery = 0.0
        # the context verified the whole chain when it opened
        self._next_full_verify = time.monotonic() + full_verify_interval_s

    async def drain_once(self) -> list[tuple[str, SettleResult]]:
        """Post every due settlement once; returns (tx_id, result) for each attempt."""
        done = []
        for item in self.journal.outbox_pending():
            kind = self.money.kind_posting(item)
            if kind is None or self.money.is_claimed(item.tx_id):
                continue  # not a back-office post, or a flow is posting its own right now
            state = self.journal.state_of(item.tx_id)
            if item.kind in kind.late_outbox_kinds and any(
                    other.id != item.id and other.status == OutboxStatus.PENDING and other.kind not in kind.late_outbox_kinds
                    for other in self.journal.outbox_for(item.tx_id)):
                continue  # it records a fact about the transaction: after its own posts
            late = item.kind in kind.late_outbox_kinds and state in (TxState.POSTED, TxState.COMPLETED)
            if state not in _SETTLING and not late:
                # PAID (a cut tail) is recovery's: it restores FULFILLING first. Anything else
                # (already reversed or completed) must never be posted: an operator looks.
                if state != TxState.PAID:
                    log.error("queued settlement for a %s transaction not posted", state,
                              extra={"tx": item.tx_id})
                continue
            try:
                result = await self.money.settle(item)
                after_post = getattr(kind, "after_post", None)
                if after_post is not None and not late:
                    # a kind with several posts (a fee basket) finishes once its last one is answered
                    result = await after_post(self.money, item.tx_id) or result
                if (result == SettleResult.SETTLED and not late
                        and self.journal.state_of(item.tx_id) == TxState.POSTED):
                    # the citizen already left with a receipt marked "settlement pending"
                    await self.money.complete(item.tx_id, completed_by="outbox")
            except (asyncio.CancelledError, JournalBroken):
                raise
            except Exception as exc:  # one bad item must not starve the others or the recovery round
                log.exception("settlement of a queued item failed", extra={"tx": item.tx_id})
                try:
                    await self.money.retry_later(item, f"{type(exc).__name__}: {exc}"[:500])
                except Exception:  # noqa: BLE001 — the item stays due; logged above
                    log.exception("could not record the failed attempt", extra={"tx": item.tx_id})
                continue
            done.append((item.tx_id, result))
        return done

    async def recover_once(self) -> list[Resolution]:
        """One background recovery round over the unclaimed open transactions."""
        return await Recovery(self.journal, self.money).run(background=True)

    async def run_once(self) -> None:
        if time.monotonic() >= self._next_full_verify:
            self._next_full_verify = time.monotonic() + self.full_verify_interval_s
            await asyncio.to_thread(self.money.guard.verify_full)  # raises JournalBroken
        for tx_id, result in await self.drain_once():
            log.info("outbox settlement %s", result, extra={"tx": tx_id})
        if self.recovery_interval_s is not None and time.monotonic() >= self._next_recovery:
            self._next_recovery = time.monotonic() + self.recovery_interval_s
            for r in await self.recover_once():
                log.info("background recovery %s: %s → %s (%s)", r.tx_id, r.from_state, r.to_state,
                         r.action, extra={"tx": r.tx_id})

    async def run(self) -> None:
        while True:
            try:
                self.money.guard.require_ok()
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except JournalBroken as exc:
                log.critical("background money work stopped: %s", exc.detail)
                return  # out of service until a technician restarts the kiosk
            except Exception:  # the worker must outlive one bad item; it is retried next round
                log.exception("background round failed")
            await asyncio.sleep(self.interval_s)
