"""The money path: every step that moves money is journaled before it happens, and each
step here is written so that the flow (citizen present) and recovery (after a crash) run the
very same code. Flows add the UI around it; recovery loops it over open transactions.

Fee payment, in journal states:
  CREATED → PAYING → PAID → FULFILLING → FULFILLED → POSTED → COMPLETED
  - the terminal request carries the transaction id as its reference (SaleTransactionID);
  - a fee is fulfilled by being settled at the back-office: FULFILLING is journaled in the
    same commit that queues the settlement in the outbox, and FULFILLED + POSTED in the same
    commit that acknowledges it; the post's idempotency key is the transaction id;
  - a settlement the back-office refuses (already paid elsewhere, amount changed) is
    reversed on the card: REVERSING → REVERSED, or REFUND_PENDING when the terminal refuses.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import requests

from devices.base import CommandTimeout, DeviceError, DeviceOffline
from devices.contracts import PaymentOutcome, PaymentResult, PaymentTerminal
from kiosk.backoffice_client import (
    AmountMismatch,
    BackofficeClient,
    BackofficeRejected,
    BackofficeUnavailable,
    BillAlreadyPaid,
    BillNotFound,
    PaymentPost,
)
from kiosk.errors import KioskError
from kiosk.faults import fault_point
from kiosk.journal import Journal, OutboxItem, TxState

log = logging.getLogger("kiosk.money")

SETTLEMENT = "fee_settlement"


class SettleResult(enum.StrEnum):
    SETTLED = "settled"  # FULFILLED + POSTED
    PENDING = "pending"  # back-office unreachable: stays queued in the outbox
    REVERSED = "reversed"  # refused by the back-office and the money went back
    REFUND_PENDING = "refund_pending"  # refused, and the reversal needs an operator
    REVERSAL_PENDING = "reversal_pending"  # refused, the terminal is unreachable: retried later


@dataclass(frozen=True)
class ChargeResult:
    state: TxState  # PAID, DECLINED, or PAYING when the outcome is still unknown
    payment: PaymentResult | None


class MoneyPath:
    """Journaled money operations for one kiosk. `terminal` is looked up per call so a
    reconnected device is picked up; it may be None when none is configured/online."""

    def __init__(
        self,
        journal: Journal,
        backoffice: BackofficeClient,
        terminal: Callable[[], PaymentTerminal | None],
        *,
        kiosk_id: str,
        pay_timeout: float = 90.0,
        status_timeout: float = 15.0,
        status_attempts: int = 3,
    ) -> None:
        self.journal = journal
        self.backoffice = backoffice
        self._terminal = terminal
        self.kiosk_id = kiosk_id
        self.pay_timeout = pay_timeout
        self.status_timeout = status_timeout
        self.status_attempts = status_attempts
        self._settling: set[int] = set()  # outbox items being posted now (flow vs. worker)

    def terminal(self) -> PaymentTerminal:
        term = self._terminal()
        if term is None:
            raise DeviceOffline("no payment terminal available", device="terminal")
        return term

    # --- charging --------------------------------------------------------------------------
    async def charge(self, tx_id: str, amount_rials: int) -> ChargeResult:
        """PAYING is journaled before the terminal is asked; the answer is journaled next.
        When the answer is lost, the terminal is asked what became of the reference."""
        term = self.terminal()
        self.journal.append(tx_id, TxState.PAYING, {"terminal": term.name})
        fault_point("after-paying")
        try:
            result = await term.pay(tx_id, amount_rials, timeout=self.pay_timeout)
        except asyncio.CancelledError:
            # the citizen cancelled while the terminal was working: abort, find out, and give
            # back anything that was approved anyway — shielded, so a second cancel cannot
            # leave the transaction PAYING or PAID
            await asyncio.shield(self._undo_cancelled_charge(term, tx_id))
            raise
        except DeviceError as exc:
            log.warning("terminal pay failed, asking its status", extra={"tx": tx_id, "event": exc.code})
            return await self.resolve_paying(tx_id)
        return ChargeResult(self._record_payment(tx_id, result), result)

    async def _undo_cancelled_charge(self, term: PaymentTerminal, tx_id: str) -> None:
        await self._quietly(term.abort(tx_id))
        charge = await self.resolve_paying(tx_id)
        if charge.state == TxState.PAID:
            await self.reverse(tx_id, "citizen cancelled during payment")

    async def resolve_paying(self, tx_id: str) -> ChargeResult:
        """Settle a PAYING transaction by asking the terminal (TransactionStatus)."""
        term = self._terminal()
        last: PaymentResult | None = None
        for attempt in range(self.status_attempts):
            if term is None:
                break
            try:
                last = await term.transaction_status(tx_id, timeout=self.status_timeout)
            except DeviceError as exc:
                log.warning("transaction status failed (%s), attempt %d", exc, attempt + 1, extra={"tx": tx_id})
                await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
                continue
            if last.outcome == PaymentOutcome.IN_PROGRESS:
                await self._quietly(term.abort(tx_id))
                await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
                continue
            return ChargeResult(self._record_payment(tx_id, last), last)
        return ChargeResult(TxState.PAYING, last)

    def _record_payment(self, tx_id: str, result: PaymentResult) -> TxState:
        if result.outcome == PaymentOutcome.APPROVED:
            self.journal.append(tx_id, TxState.PAID, _payment_data(result))
            return TxState.PAID
        # declined, never seen by the terminal (NotFound), or already reversed: no money held
        self.journal.append(
            tx_id, TxState.DECLINED, {"outcome": str(result.outcome), "error_condition": result.error_condition}
        )
        return TxState.DECLINED

    # --- settlement --------------------------------------------------------------------------
    def start_settlement(self, tx_id: str) -> OutboxItem:
        """Queue the settlement post and journal FULFILLING in one commit."""
        tx = self.journal.get(tx_id)
        data = tx.data
        payload = {
            "transaction_id": tx_id,
            "bill_id": data["bill_id"],
            "payment_id": data["payment_id"],
            "amount_rials": tx.amount_rials,
            "paid_at": data.get("paid_at") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "terminal": {k: data.get(k, "") for k in ("rrn", "stan", "poi_reference", "masked_pan")},
        }
        item_id = self.journal.outbox_enqueue(
            tx_id, SETTLEMENT, payload, idempotency_key=tx_id, with_state=(TxState.FULFILLING, None)
        )
        return self.journal.outbox_item(item_id)

    async def settle(self, item: OutboxItem) -> SettleResult:
        """One attempt to post a queued settlement; the outcome is journaled atomically with
        the outbox row. Unavailable → stays pending with a back-off for the next attempt."""
        if item.id in self._settling:  # the flow is posting it right now; not twice at once
            return SettleResult.PENDING
        self._settling.add(item.id)
        try:
            return await self._settle(item)
        finally:
            self._settling.discard(item.id)

    async def _settle(self, item: OutboxItem) -> SettleResult:
        post = PaymentPost.from_dict(item.payload)
        try:
            settlement = await asyncio.to_thread(
                self.backoffice.post_payment, post, idempotency_key=item.idempotency_key
            )
        except BackofficeUnavailable as exc:
            delay = min(5.0 * 2 ** min(item.attempts, 6), 600.0)
            self.journal.outbox_record_attempt(item.id, str(exc), time.time() + delay)
            return SettleResult.PENDING
        except (BackofficeRejected, requests.RequestException, ValueError, KeyError) as exc:
            # not a refusal of this payment (a rotated token, a proxy error, a malformed
            # answer): never reverse a citizen's fee on that; retry with back-off and alert
            log.error("settlement not accepted, retried later: %s", exc, extra={"tx": item.tx_id})
            delay = min(5.0 * 2 ** min(item.attempts, 6), 600.0)
            self.journal.outbox_record_attempt(item.id, str(exc)[:500], time.time() + delay)
            return SettleResult.PENDING
        except (BillAlreadyPaid, AmountMismatch, BillNotFound) as exc:
            # a definite business refusal: this bill cannot take this payment
            self.journal.outbox_fail(
                item.id, exc.to_dict(), with_state=[(TxState.REVERSING, {"reason": exc.key})]
            )
            return await self._finish_reversal(item.tx_id)
        fault_point("after-post-sent")
        self.journal.outbox_ack(
            item.id,
            settlement.to_dict(),
            with_state=[
                (TxState.FULFILLED, {"tracking_code": settlement.tracking_code}),
                (TxState.POSTED, None),
            ],
        )
        return SettleResult.SETTLED

    # --- reversal -----------------------------------------------------------------------------
    async def reverse(self, tx_id: str, reason: str) -> SettleResult:
        """Return the money of a paid, unfulfilled transaction to the card."""
        if self.journal.state_of(tx_id) != TxState.REVERSING:
            self.journal.append(tx_id, TxState.REVERSING, {"reason": reason})
        return await self._finish_reversal(tx_id)

    async def _finish_reversal(self, tx_id: str) -> SettleResult:
        tx = self.journal.get(tx_id)
        try:
            result = await self.terminal().reverse(tx_id, tx.amount_rials, timeout=self.status_timeout * 2)
        except (DeviceOffline, CommandTimeout) as exc:
            log.warning("reversal deferred: %s", exc, extra={"tx": tx_id})
            return SettleResult.REVERSAL_PENDING  # stays REVERSING; recovery retries (idempotent)
        except DeviceError as exc:
            self.journal.append(tx_id, TxState.REFUND_PENDING, {"error": exc.to_dict()})
            return SettleResult.REFUND_PENDING
        if result.outcome != PaymentOutcome.REVERSED:
            # The terminal answers a refused reversal and "nothing to reverse" alike, so ask
            # what it holds now: only a sale that is no longer approved is money returned.
            try:
                status = await self.terminal().transaction_status(tx_id, timeout=self.status_timeout)
            except DeviceError as exc:
                log.warning("reversal unconfirmed, retried later: %s", exc, extra={"tx": tx_id})
                return SettleResult.REVERSAL_PENDING
            result = status  # still APPROVED → the money is held: an operator refunds it
        if result.outcome in (PaymentOutcome.REVERSED, PaymentOutcome.NOT_FOUND, PaymentOutcome.DECLINED):
            self.journal.append(tx_id, TxState.REVERSED, {"reversal_outcome": str(result.outcome)})
            return SettleResult.REVERSED
        self.journal.append(
            tx_id, TxState.REFUND_PENDING, {"reversal_outcome": str(result.outcome), "error_condition": result.error_condition}
        )
        return SettleResult.REFUND_PENDING

    # --- completion ---------------------------------------------------------------------------
    def complete(self, tx_id: str, **data: Any) -> None:
        self.journal.append(tx_id, TxState.COMPLETED, data or None)

    @staticmethod
    async def _quietly(coro: Any) -> None:
        try:
            await coro
        except (DeviceError, KioskError) as exc:
            log.warning("ignored during cleanup: %s", exc)


def _payment_data(result: PaymentResult) -> dict[str, Any]:
    return {
        "poi_reference": result.poi_reference,
        "rrn": result.rrn,
        "stan": result.stan,
        "masked_pan": result.masked_pan,
        "paid_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
