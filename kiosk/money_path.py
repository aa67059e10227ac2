"""The money path: every step that moves money is journaled before it happens, and each
step here is written so that the flow (citizen present) and recovery (after a crash) run the
very same code. Flows add the UI around it; recovery loops it over open transactions.

Fee payment, in journal states:
  CREATED → PAYING → PAID → FULFILLING → FULFILLED → POSTED → COMPLETED
  - the terminal request carries the transaction id as its reference (SaleTransactionID), and
    the terminal knows it by a message reference (SaleID, ServiceID, category) journaled with
    PAYING (and REVERSING) before the request leaves: the only way to ask about it later;
  - a fee is fulfilled by being settled at the back-office: FULFILLING is journaled in the
    same commit that queues the settlement in the outbox, and FULFILLED + POSTED in the same
    commit that acknowledges it; the post's idempotency key is the transaction id;
  - a settlement the back-office refuses (already paid elsewhere, amount changed) is
    reversed on the card: REVERSING → REVERSED, or REFUND_PENDING when the terminal refuses
    or says it never saw the sale (an approved sale it cannot find is not money returned); a
    reversal is confirmed by its own status, never by the payment's (a real terminal answers
    a reversed payment's status with the original approval);
  - before anything paid is reversed, the back-office is asked whether it holds the payment
    (and the outbox's acknowledged rows are read): a settled payment is completed, never
    reversed, and when the back-office cannot be asked nothing is reversed yet.

All journal writes go through one AsyncJournal (a writer thread: each write is an fsync),
so the event loop keeps serving the screen while the journal syncs. A transaction a flow or a
recovery step is working on is *claimed*: background recovery never touches a claimed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import requests

from devices.base import DeviceBusy, DeviceError, DeviceOffline, InvalidData
from devices.contracts import (
    AmountTooLarge,
    MessageRef,
    MessageRefError,
    PaymentOutcome,
    PaymentResult,
    PaymentTerminal,
    PoiTransaction,
)
from kiosk.backoffice_client import BackofficeClient, BackofficeError, BackofficeUnavailable
from kiosk.errors import KioskError
from kiosk.faults import fault_point
from kiosk.journal import AsyncJournal, Journal, OutboxItem, OutboxStatus, TxState
from kiosk.sensitive import find_card_number, is_masked_pan, mask_card, to_ascii_digits
from kiosk.services import TransactionKind, UnknownKind, kind_of
from kiosk.services.base import Posted
from kiosk.services.fee import FEE_SETTLEMENT
from kiosk.service_guard import DEFAULT_MIN_FREE_BYTES, ChainGuard, check_free_space

log = logging.getLogger("kiosk.money")

#: how many times one share's partial refund may be sent (each after a definite "never
#: happened" for the ones before); the terminal is asked about every one of them
REFUND_ATTEMPTS = 4
#: a terminal's ErrorCondition for a request it did not take up
BUSY = "Busy"
#: the outbox kind of a fee settlement (kept for callers that name it; kinds own theirs)
SETTLEMENT = FEE_SETTLEMENT


class SettleResult(enum.StrEnum):
    SETTLED = "settled"  # FULFILLED + POSTED
    PENDING = "pending"  # back-office unreachable: stays queued in the outbox
    REVERSED = "reversed"  # refused by the back-office and the money went back
    REFUND_PENDING = "refund_pending"  # refused, and the reversal needs an operator
    REVERSAL_PENDING = "reversal_pending"  # refused, the terminal is unreachable: retried later
    CHECK_PENDING = "check_pending"  # paid; the back-office cannot say yet whether it holds it
    REFUSED = "refused"  # one part of a transaction refused (a basket's bill): its kind refunds its share


class ChargeCancel:
    """The citizen's Cancel for one charge (kiosk.flows.payment_wait presses it). It stops the
    charge only while the terminal is asked — the one place `charge` undoes a cancel itself
    (abort, ask, give back anything approved anyway). Pressed while PAYING is being journaled,
    the charge stops as the terminal is about to be asked; pressed once the terminal has
    answered, it is too late and changes nothing: the answer is journaled and acted on, never
    cut off halfway through a journal write."""

    def __init__(self) -> None:
        self.requested = False
        self._task: asyncio.Task[Any] | None = None
        self._closed = False

    def request(self) -> bool:
        """Press Cancel: True when the charge stops (now, or as the terminal is about to be
        asked), False when the terminal has answered already. Pressed again: False, nothing
        more happens (a second cancel must not cut the undo short)."""
        if self._closed or self.requested:
            return False
        self.requested = True
        if self._task is not None:
            self._task.cancel()  # the charge waits in term.pay: it aborts and undoes
        return True

    def _open(self) -> bool:
        """The terminal is about to be asked; False when Cancel was pressed meanwhile."""
        if self.requested:
            return False
        self._task = asyncio.current_task()
        return True

    def _close(self) -> None:
        """The terminal answered (or pay stopped): Cancel is too late from now on."""
        self._task = None
        self._closed = True


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
        data_dir: Path | None = None,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
    ) -> None:
        self.journal = journal  # reads
        self.writer = AsyncJournal(journal)  # every write of the money path, flows and workers
        self.backoffice = backoffice
        self._terminal = terminal
        self.kiosk_id = kiosk_id
        self.pay_timeout = pay_timeout
        self.status_timeout = status_timeout
        self.status_attempts = status_attempts
        #: how long a partial refund that went out may read NotFound (held in a queue, still
        #: on its way) before an operator is asked to look (never sent again blind)
        self.refund_confirm_s = 20 * status_timeout
        self.data_dir = data_dir if data_dir is not None else journal.path.parent
        self.min_free_bytes = min_free_bytes
        self.guard = ChainGuard(journal)
        self._settling: set[int] = set()  # outbox items being posted now (flow vs. worker)
        self._claims: Counter[str] = Counter()  # tx ids a flow or a recovery step works on

    def terminal(self) -> PaymentTerminal:
        term = self._terminal()
        if term is None:
            raise DeviceOffline("no payment terminal available", device="terminal")
        return term

    async def aclose(self) -> None:
        """Finish queued journal writes and close the journal."""
        await self.writer.aclose()

    # --- ownership ---------------------------------------------------------------------------
    def claim(self, tx_id: str) -> None:
        self._claims[tx_id] += 1

    def release(self, tx_id: str) -> None:
        self._claims[tx_id] -= 1
        if self._claims[tx_id] <= 0:
            del self._claims[tx_id]

    def is_claimed(self, tx_id: str) -> bool:
        return self._claims.get(tx_id, 0) > 0

    @contextlib.contextmanager
    def claimed(self, tx_id: str) -> Iterator[None]:
        self.claim(tx_id)
        try:
            yield
        finally:
            self.release(tx_id)

    # --- opening and closing a transaction -----------------------------------------------------
    async def open_transaction(self, kind: str, amount_rials: int, data: Mapping[str, Any]) -> str:
        """Journal CREATED for a new transaction, claimed by the caller (who must `release`
        it). Refused first when the journal fails verification (JournalBroken) or the disk is
        below its free-space floor (StorageLow): nothing is journaled then."""
        self.guard.check_since()
        check_free_space(self.data_dir, self.min_free_bytes)
        # the id is claimed before CREATED exists, so background recovery never sees it unowned
        tx_id = self.journal.new_tx_id()
        self.claim(tx_id)
        try:
            await self.writer.begin(kind, amount_rials, data, tx_id=tx_id)
        except BaseException:
            self.release(tx_id)
            raise
        return tx_id

    async def cancel(self, tx_id: str, data: Mapping[str, Any] | None = None) -> None:
        """CREATED → CANCELLED: nothing was asked of the terminal."""
        await self.writer.append(tx_id, TxState.CANCELLED, data)

    # --- charging --------------------------------------------------------------------------
    async def charge(self, tx_id: str, amount_rials: int, *, cancel: ChargeCancel | None = None) -> ChargeResult:
        """PAYING is journaled — with the message reference the terminal will know the sale
        by — before the terminal is asked; the answer is journaled next. When the answer is
        lost, the terminal is asked what became of that message reference. Raises
        AmountTooLarge (nothing journaled) for an amount over the terminal's maximum.
        `cancel`: the citizen's Cancel, honoured only while the terminal is asked (the charge
        then ends in CancelledError, undone as below); see ChargeCancel."""
        term = self.terminal()
        limit = term.capabilities.get("max_amount_rials")
        if isinstance(limit, int) and amount_rials > limit:
            raise AmountTooLarge(f"{amount_rials} rials is over the terminal's maximum of {limit}", device=term.name)
        with self.claimed(tx_id):
            ref = term.new_ref(tx_id, "Payment")
            await self.writer.append(tx_id, TxState.PAYING, {"terminal": term.name, "message_ref": ref.to_dict()})
            fault_point("after-paying")
            try:
                if cancel is not None and not cancel._open():
                    # Cancel pressed while PAYING was journaled: the terminal is not asked, and
                    # the undo below asks it about the reference all the same (never "not sent")
                    cancel._close()
                    raise asyncio.CancelledError
                try:
                    result = await term.pay(ref, amount_rials, timeout=self.pay_timeout)
                finally:
                    if cancel is not None:
                        cancel._close()  # answered: a Cancel from now on is too late
            except asyncio.CancelledError:
                # the citizen cancelled while the terminal was working: abort, find out, and
                # give back anything that was approved anyway — shielded, so a second cancel
                # cannot leave the transaction PAYING or PAID
                await asyncio.shield(self._undo_cancelled_charge(term, tx_id, ref))
                raise
            except DeviceError as exc:
                log.warning("terminal pay failed, asking its status", extra={"tx": tx_id, "event": exc.code})
                return await self.resolve_paying(tx_id)
            if result.outcome == PaymentOutcome.APPROVED:
                fault_point("after-approved")
            return ChargeResult(await self._record_payment(tx_id, result), result)

    async def _undo_cancelled_charge(self, term: PaymentTerminal, tx_id: str, ref: MessageRef) -> None:
        with self.claimed(tx_id):  # outlives the cancelled flow's own claim
            # abort, and wait for the terminal to have answered the payment request itself:
            # a status asked before the request arrived would be "not found" for a sale
            # about to start (the request and the abort are separate HTTP requests)
            await self._quietly(term.settle_cancelled(ref, timeout=self.pay_timeout + 5.0))
            charge = await self.resolve_paying(tx_id)
            if charge.state == TxState.PAID:
                fault_point("after-paid")  # a crash here: recovery reverses the PAID sale
                # approved this very moment and never queued for settlement: nothing to ask
                await self.reverse(tx_id, "citizen cancelled during payment", ask_backoffice=False)

    def payment_ref(self, tx_id: str) -> MessageRef | None:
        """The message reference PAYING journaled for this transaction's payment, or None (a
        journal written before references were journaled, or a damaged one)."""
        for entry in self.journal.get(tx_id).entries:
            if entry.state == TxState.PAYING:
                try:
                    return MessageRef.from_dict(entry.data.get("message_ref"))
                except MessageRefError:
                    return None
        return None

    def reversal_refs(self, tx_id: str) -> list[MessageRef]:
        """Every reversal request journaled for this transaction, newest first."""
        refs = []
        for entry in reversed(self.journal.get(tx_id).entries):
            if entry.state == TxState.REVERSING and "message_ref" in entry.data:
                with contextlib.suppress(MessageRefError):
                    refs.append(MessageRef.from_dict(entry.data["message_ref"]))
        return refs

    async def resolve_paying(self, tx_id: str) -> ChargeResult:
        """Settle a PAYING transaction by asking the terminal (TransactionStatus) about the
        message reference PAYING journaled. Without one nothing can be asked: a terminal finds
        a sale only by its ServiceID, and "not found" must never be read as "not charged" for
        a request that may have gone out — the transaction stays PAYING for an operator, unless
        the terminal documents finding a sale by our reference (`lost_ref`)."""
        term = self._terminal()
        ref = self.payment_ref(tx_id)
        if ref is None and term is not None:
            ref = term.lost_ref(tx_id)  # a terminal that documents finding a sale by our reference
        if ref is None:
            log.error("PAYING without a message reference: cannot ask the terminal", extra={"tx": tx_id})
            return ChargeResult(TxState.PAYING, None)
        last: PaymentResult | None = None
        for attempt in range(self.status_attempts):
            if term is None:
                break
            try:
                last = await term.transaction_status(ref, timeout=self.status_timeout)
            except DeviceError as exc:
                log.warning("transaction status failed (%s), attempt %d", exc, attempt + 1, extra={"tx": tx_id})
                if isinstance(exc, InvalidData):
                    break  # a reference this terminal cannot answer for (another terminal's)
                await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
                continue
            if last.outcome == PaymentOutcome.IN_PROGRESS:
                await self._quietly(term.abort(ref))
                await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
                continue
            return ChargeResult(await self._record_payment(tx_id, last), last)
        return ChargeResult(TxState.PAYING, last)

    async def _record_payment(self, tx_id: str, result: PaymentResult) -> TxState:
        if result.outcome == PaymentOutcome.APPROVED:
            await self.writer.append(tx_id, TxState.PAID, _payment_data(result))
            return TxState.PAID
        # declined, never seen by the terminal (NotFound), or already reversed: no money held
        await self.writer.append(
            tx_id, TxState.DECLINED, {"outcome": str(result.outcome), "error_condition": result.error_condition}
        )
        return TxState.DECLINED

    # --- settlement --------------------------------------------------------------------------
    def pending_posts(self, tx_id: str) -> list[OutboxItem]:
        """This transaction's back-office posts still queued in the outbox (its kind's)."""
        kind = kind_of(self.journal.get(tx_id).kind)
        return [i for i in self.journal.outbox_for(tx_id)
                if i.kind in kind.outbox_kinds and i.status == OutboxStatus.PENDING]

    async def start_settlement(self, tx_id: str) -> OutboxItem:
        """Queue the transaction's back-office post (its kind writes the body) and journal
        FULFILLING in one commit. The post carries the journal's seq and head hash (anchor):
        the back-office keeps them, so a journal cut back or rewritten later can be told from
        what this kiosk once sent."""
        tx = self.journal.get(tx_id)
        kind = kind_of(tx.kind)
        payload = kind.post_payload(tx, paid_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        item_id = await self.writer.outbox_enqueue(
            tx_id, kind.outbox_kind, payload, idempotency_key=tx_id, with_state=(TxState.FULFILLING, None),
            anchor=True,
        )
        return self.journal.outbox_item(item_id)

    async def settle(self, item: OutboxItem) -> SettleResult:
        """One attempt to post a queued settlement; the outcome is journaled atomically with
        the outbox row. Unavailable → stays pending with a back-off for the next attempt."""
        if item.id in self._settling:  # the flow is posting it right now; not twice at once
            return SettleResult.PENDING
        self._settling.add(item.id)
        try:
            with self.claimed(item.tx_id):
                return await self._settle(item)
        finally:
            self._settling.discard(item.id)

    def kind_posting(self, item: OutboxItem) -> TransactionKind | None:
        """The kind that posts this outbox item: its transaction's, when that kind queues items
        of this kind; None otherwise (an unknown kind, or an item no kind of this build posts)."""
        try:
            kind = kind_of(self.journal.get(item.tx_id).kind)
        except UnknownKind:
            return None
        return kind if item.kind in kind.outbox_kinds else None

    async def _settle(self, item: OutboxItem) -> SettleResult:
        kind = self.kind_posting(item)
        if kind is None:
            log.error("outbox item of unknown kind %r not posted", item.kind, extra={"tx": item.tx_id})
            await self.retry_later(item, f"unknown outbox kind {item.kind!r}")
            return SettleResult.PENDING
        try:
            posted = await asyncio.to_thread(kind.post, self.backoffice, item.payload,
                                             idempotency_key=item.idempotency_key, outbox_kind=item.kind)
        except BackofficeUnavailable as exc:
            await self.retry_later(item, str(exc))
            return SettleResult.PENDING
        except kind.refusals as exc:
            part_refused = getattr(kind, "part_refused", None)
            if part_refused is not None:
                # a post of one part of the transaction (a basket's bill): the kind asks
                # whether the back-office holds it and journals the refusal of that part only
                return await part_refused(self, item, exc)
            # a definite business refusal of this transaction — unless what the back-office
            # holds is ours (a first post whose answer was lost): ask before giving money back
            try:
                ours = await self.find_settlement(item.tx_id, outbox=False)
            except BackofficeUnavailable as unknown:
                await self.retry_later(item, f"refused ({_key(exc)}); status unknown: {unknown}")
                return SettleResult.PENDING
            if ours is not None:
                return await self.journal_settled(item.tx_id, ours)
            # REVERSING goes in with the failed outbox row, in one commit, carrying the message
            # reference the reversal will be sent under
            ref = self._new_reversal_ref(item.tx_id)
            step: dict[str, Any] = {"reason": _key(exc)}
            if ref is not None:
                step["message_ref"] = ref.to_dict()
            await self.writer.outbox_fail(item.id, _error_dict(exc), with_state=[(TxState.REVERSING, step)])
            return await self._finish_reversal(item.tx_id, _key(exc), fresh=ref)
        except (BackofficeError, requests.RequestException, ValueError, KeyError) as exc:
            # not a refusal of this transaction (a rotated token, a proxy error, an error code
            # this kiosk does not know, a malformed answer): never reverse a citizen's money on
            # that; retry with back-off and alert
            log.error("post not accepted, retried later: %s", exc, extra={"tx": item.tx_id})
            await self.retry_later(item, str(exc)[:500])
            return SettleResult.PENDING
        fault_point("after-post-sent")
        await self.writer.outbox_ack(item.id, posted.to_dict(), with_state=kind.ack_states(posted, item.kind))
        return SettleResult.SETTLED

    async def retry_later(self, item: OutboxItem, error: str) -> None:
        """Record a failed attempt; the item is due again after a growing back-off."""
        delay = min(5.0 * 2 ** min(item.attempts, 6), 600.0)
        await self.writer.outbox_record_attempt(item.id, error, time.time() + delay)

    # --- is it settled? -------------------------------------------------------------------------
    async def find_settlement(self, tx_id: str, *, outbox: bool = True) -> Posted | None:
        """What the back-office holds of this transaction (a fee's settlement, a card's load),
        or None when it holds nothing. Read from the outbox's acknowledged rows first, else
        asked of the back-office by the transaction's kind. Raises BackofficeUnavailable when
        the back-office cannot say (never 'not found')."""
        kind = kind_of(self.journal.get(tx_id).kind)
        if outbox:
            for item in self.journal.outbox_for(tx_id):
                if item.kind == kind.outbox_kind and item.status == OutboxStatus.ACKED and item.response:
                    return kind.posted_from_json(item.response)
        try:
            return await asyncio.to_thread(kind.find_posted, self.backoffice, tx_id)
        except BackofficeUnavailable:
            raise
        except (BackofficeError, requests.RequestException, ValueError, KeyError) as exc:
            # a refusal or a malformed answer is not "nothing held": cannot tell
            raise BackofficeUnavailable(f"post status of {tx_id}: {exc}") from exc

    async def journal_settled(self, tx_id: str, settlement: Posted) -> SettleResult:
        """Journal a payment the back-office holds: → FULFILLED → POSTED, from PAID (a cut
        journal tail), FULFILLING or UNCERTAIN; with the pending outbox row acknowledged."""
        state = self.journal.state_of(tx_id)
        steps: list[tuple[TxState, dict[str, Any] | None]] = []
        if state == TxState.PAID:
            steps.append((TxState.FULFILLING, {"settlement_found": "backoffice"}))
        kind = kind_of(self.journal.get(tx_id).kind)
        if state != TxState.FULFILLED:
            steps.append((TxState.FULFILLED, kind.fulfilled_data(settlement)))
        steps.append((TxState.POSTED, None if state != TxState.FULFILLED else kind.fulfilled_data(settlement)))
        pending = self.pending_posts(tx_id)
        log.warning("payment found settled at the back-office: completing, not reversing",
                    extra={"tx": tx_id})
        if pending:
            await self.writer.outbox_ack(pending[0].id, settlement.to_dict(), with_state=steps)
        else:
            await self.writer.append_many(tx_id, steps)
        return SettleResult.SETTLED

    # --- reversal -----------------------------------------------------------------------------
    async def reverse(self, tx_id: str, reason: str, *, ask_backoffice: bool = True) -> SettleResult:
        """Return the money of a paid, unfulfilled transaction to the card — after asking the
        back-office (and the outbox) whether it holds the payment: then it is completed
        (SETTLED), and when it cannot be asked nothing is reversed (CHECK_PENDING).
        `ask_backoffice=False` only where this process knows it never queued a settlement."""
        with self.claimed(tx_id):
            state = self.journal.state_of(tx_id)
            paid_hook = getattr(kind_of(self.journal.get(tx_id).kind), "reverse_paid", None)
            if paid_hook is not None and state in (TxState.PAID, TxState.FULFILLING) and ask_backoffice:
                # a kind with several posts (a basket) asks about each of them itself; asking
                # about the transaction id alone would read "nothing held" and reverse money
                # whose bills are settled
                return await paid_hook(self, tx_id, reason)
            queued = self.pending_posts(tx_id)
            if state in (TxState.PAID, TxState.FULFILLING) and queued:
                # This kiosk committed to settling (a FULFILLING row cut from the journal's tail
                # leaves the queued post behind): post it — idempotent by key — rather than
                # reverse money the outbox would then settle anyway.
                log.warning("settlement still queued: posting it, not reversing", extra={"tx": tx_id})
                if state == TxState.PAID:
                    await self.writer.append(tx_id, TxState.FULFILLING, {"settlement_found": "outbox"})
                return await self.settle(queued[0])
            if state != TxState.REVERSING:
                if ask_backoffice:
                    try:
                        settled = await self.find_settlement(tx_id)
                    except BackofficeUnavailable as exc:
                        log.warning("not reversing: cannot ask the back-office (%s)", exc, extra={"tx": tx_id})
                        return SettleResult.CHECK_PENDING
                    if settled is not None:
                        return await self.journal_settled(tx_id, settled)
            return await self._finish_reversal(tx_id, reason)

    async def _finish_reversal(self, tx_id: str, reason: str = "", fresh: MessageRef | None = None) -> SettleResult:
        """Bring a REVERSING transaction to REVERSED or REFUND_PENDING, or leave it REVERSING
        (REVERSAL_PENDING) while the terminal cannot say. Each reversal request goes out under
        a message reference journaled first (REVERSING → REVERSING for a retry: a terminal
        refuses a ServiceID used again), and before a new one is made every earlier one is
        asked about by its own reference — asking about the *payment* would not do: a real
        terminal answers a reversed payment's status with the original approval. `fresh`: a
        reference the caller has just journaled (never sent), used as it is."""
        try:
            term = self.terminal()
        except DeviceOffline as exc:
            log.warning("reversal deferred: %s", exc, extra={"tx": tx_id})
            return SettleResult.REVERSAL_PENDING
        if fresh is None:
            for earlier in self.reversal_refs(tx_id):
                try:
                    status = await term.transaction_status(earlier, timeout=self.status_timeout)
                except DeviceError as exc:
                    log.warning("status of an earlier reversal unknown (%s), retried later", exc, extra={"tx": tx_id})
                    return SettleResult.REVERSAL_PENDING
                done = await self._journal_reversal_answer(tx_id, status)
                if done is not None:
                    return done
                # NOT_FOUND: that request never reached the terminal; look at the next
            fresh = term.new_ref(tx_id, "Reversal")
            step: dict[str, Any] = {"message_ref": fresh.to_dict()}
            if reason:
                step["reason"] = reason
            await self.writer.append(tx_id, TxState.REVERSING, step)
        ref = fresh
        tx = self.journal.get(tx_id)
        original = await self._original_sale(tx_id, tx.data)
        if isinstance(original, SettleResult):
            return original
        try:
            result = await term.reverse(ref, tx.amount_rials, original, timeout=self.status_timeout * 2)
        except DeviceOffline as exc:
            log.warning("reversal deferred: %s", exc, extra={"tx": tx_id})
            return SettleResult.REVERSAL_PENDING  # the next round asks about this ref, then retries
        except DeviceError as exc:
            # a timeout, a dropped connection or a garbled answer says nothing of whether the
            # terminal reversed: ask about this very request, or an operator could refund money
            # the terminal already gave back
            log.warning("reversal answer unusable (%s); asking the terminal", exc, extra={"tx": tx_id})
            try:
                result = await term.transaction_status(ref, timeout=self.status_timeout)
            except DeviceError as exc2:
                log.warning("reversal unconfirmed, retried later: %s", exc2, extra={"tx": tx_id})
                return SettleResult.REVERSAL_PENDING
            if result.outcome == PaymentOutcome.NOT_FOUND:
                return SettleResult.REVERSAL_PENDING  # never arrived: retried under a new ref
        done = await self._journal_reversal_answer(tx_id, result)
        if done is not None:
            return done
        # NotFound for the reversal itself: the terminal does not know the original sale (a
        # terminal that lost it): the money was taken and is not known to be back
        return await self._refund_pending(tx_id, result)

    # --- partial refund (one share of an approved sale) ---------------------------------------
    def part_refund_refs(self, tx_id: str, part: Mapping[str, Any]) -> list[MessageRef]:
        """Every refund request journaled for this part of the transaction, newest first."""
        return [ref for ref, _, _ in reversed(self._part_requests(tx_id, part))]

    def _part_requests(self, tx_id: str, part: Mapping[str, Any]) -> list[tuple[MessageRef, float, bool]]:
        """(reference, when journaled, known never sent) of every refund request journaled for
        this part, oldest first. Never sent: the connection to the terminal could not even be
        made (DeviceOffline), or the terminal answered Busy (it did not take the request up)."""
        out: list[tuple[MessageRef, float, bool]] = []
        unsent: set[str] = set()
        for entry in self.journal.get(tx_id).entries:
            data = entry.data
            if (entry.state != TxState.FULFILLING or "message_ref" not in data
                    or not all(data.get(k) == v for k, v in part.items())):
                continue
            try:
                ref = MessageRef.from_dict(data["message_ref"])
            except MessageRefError:
                continue
            if data.get("step") == "refunding":
                out.append((ref, entry.at, False))
            elif data.get("step") == "refund_unsent":
                unsent.add(ref.service_id)
        return [(ref, at, ref.service_id in unsent) for ref, at, _ in out]

    @staticmethod
    def _part_key(part: Mapping[str, Any], attempt: int) -> str:
        return "refund:" + ",".join(f"{k}={part[k]}" for k in sorted(part)) + f":{attempt}"

    async def _part_refused(self, tx_id: str, part: Mapping[str, Any], condition: str,
                            **extra: Any) -> SettleResult:
        await self.writer.append(tx_id, TxState.FULFILLING, {**part, "step": "refund_refused",
                                                              "error_condition": condition, **extra})
        return SettleResult.REFUND_PENDING

    async def refund_part(self, tx_id: str, part: Mapping[str, Any], amount_rials: int,
                          reason: str = "") -> SettleResult:
        """Give back one share (`amount_rials`) of the approved sale — a partial referenced
        refund: a ReversalRequest naming the original sale with ReversedAmount = the share.
        Each request goes out under a message reference journaled first (a FULFILLING row
        {**part, step: refunding, message_ref, share_rials}) whose ServiceID is derived from
        the transaction, the part and the attempt number (the terminal's `derived_ref`), so
        every request this share can ever have had is known without the journal.

        Before a request is sent, the terminal is asked about every one of them — the
        journaled ones and those a journal cut back may have lost (a share refunded twice is
        money given away: a partial refund has no "already reversed" guard while the sale has
        enough left). Only a definite "never happened" allows a new request: NotFound for a
        request known never sent (the connection not made, or Busy), or for one the journal
        never recorded. NotFound for a request that went out is not definite (it may sit in a
        queue, or still be worked on): asked again for `refund_confirm_s`, then an operator.
        The answer is journaled as {**part, step: refunded} (REVERSED) or {**part, step:
        refund_refused} (REFUND_PENDING: an operator refunds it); REVERSAL_PENDING while the
        terminal cannot say (the transaction stays FULFILLING and is asked again)."""
        try:
            term = self.terminal()
        except DeviceOffline as exc:
            log.warning("partial refund deferred: %s", exc, extra={"tx": tx_id})
            return SettleResult.REVERSAL_PENDING
        derive = getattr(term, "derived_ref", None)
        if derive is None:
            log.error("terminal cannot name a refund request again: an operator refunds", extra={"tx": tx_id})
            return await self._part_refused(tx_id, part, "noRefundCheck")
        journaled = self._part_requests(tx_id, part)
        known = {ref.service_id for ref, _, _ in journaled}
        candidates: list[tuple[MessageRef, float | None, bool]] = list(journaled)
        for attempt in range(REFUND_ATTEMPTS):
            ref = derive(tx_id, "Reversal", self._part_key(part, attempt))
            if ref.service_id not in known:
                candidates.append((ref, None, False))  # never journaled: cut from the journal, or never made
        now = time.time()
        for earlier, at, unsent in candidates:
            try:
                status = await term.transaction_status(earlier, timeout=self.status_timeout)
            except InvalidData as exc:
                # a request made at another terminal (swapped since): this terminal cannot say
                log.error("an earlier refund was made at another terminal (%s): an operator refunds", exc,
                          extra={"tx": tx_id})
                return await self._part_refused(tx_id, part, "otherTerminal")
            except DeviceError as exc:
                log.warning("status of an earlier partial refund unknown (%s)", exc, extra={"tx": tx_id})
                return SettleResult.REVERSAL_PENDING
            done = await self._journal_part_answer(tx_id, part, amount_rials, status)
            if done is not None:
                return done
            if at is not None and not unsent:
                # NotFound for a request that went out: not "never happened" yet
                if now - at < self.refund_confirm_s:
                    log.warning("a partial refund sent is not known to the terminal yet; asked again later",
                                extra={"tx": tx_id})
                    return SettleResult.REVERSAL_PENDING
                log.error("a partial refund sent was never confirmed: an operator refunds", extra={"tx": tx_id})
                return await self._part_refused(tx_id, part, "refundUnconfirmed",
                                                message_ref=earlier.to_dict())
        attempt = len(journaled)
        if attempt >= REFUND_ATTEMPTS:
            log.error("partial refund not sent after %d attempts: an operator refunds", attempt, extra={"tx": tx_id})
            return await self._part_refused(tx_id, part, "tooManyAttempts")
        original = await self._part_original(tx_id)
        if isinstance(original, SettleResult):
            return original
        if original is None:
            log.error("no POI transaction to refund against: an operator refunds", extra={"tx": tx_id})
            return await self._part_refused(tx_id, part, "noOriginal")
        ref = derive(tx_id, "Reversal", self._part_key(part, attempt))
        step: dict[str, Any] = {**part, "step": "refunding", "message_ref": ref.to_dict(), "share_rials": amount_rials}
        if reason:
            step["reason"] = reason
        await self.writer.append(tx_id, TxState.FULFILLING, step)
        try:
            result = await term.reverse(ref, amount_rials, original, timeout=self.status_timeout * 2)
        except (DeviceOffline, DeviceBusy) as exc:
            # never taken up by the terminal (no connection made, or Busy): definite
            log.warning("partial refund not sent (%s), retried later", exc, extra={"tx": tx_id})
            await self.writer.append(tx_id, TxState.FULFILLING, {**part, "step": "refund_unsent",
                                                                  "message_ref": ref.to_dict()})
            return SettleResult.REVERSAL_PENDING
        except DeviceError as exc:
            log.warning("partial refund answer unusable (%s); asking the terminal", exc, extra={"tx": tx_id})
            try:
                result = await term.transaction_status(ref, timeout=self.status_timeout)
            except DeviceError as exc2:
                log.warning("partial refund unconfirmed, retried later: %s", exc2, extra={"tx": tx_id})
                return SettleResult.REVERSAL_PENDING
            if result.outcome == PaymentOutcome.NOT_FOUND:
                return SettleResult.REVERSAL_PENDING  # sent: asked again, never re-sent blind
        fault_point("after-partial-refund")
        done = await self._journal_part_answer(tx_id, part, amount_rials, result)
        if done is not None:
            return done
        # NotFound for the refund itself: the terminal does not know the original sale
        return await self._part_refused(tx_id, part, result.error_condition or "NotFound")

    async def _part_original(self, tx_id: str) -> PoiTransaction | SettleResult | None:
        """The sale's POI transaction (journaled at PAID; else asked of the terminal by the
        payment's reference, as a whole reversal does); None when no one can say."""
        data = self.journal.get(tx_id).data
        if data.get("poi_reference") and data.get("poi_timestamp"):
            return PoiTransaction(str(data["poi_reference"]), str(data["poi_timestamp"]))
        ref = self.payment_ref(tx_id)
        if ref is None:
            return None
        try:
            status = await self.terminal().transaction_status(ref, timeout=self.status_timeout)
        except DeviceError as exc:
            log.warning("original sale unknown (%s), retried later", exc, extra={"tx": tx_id})
            return SettleResult.REVERSAL_PENDING
        if status.outcome == PaymentOutcome.IN_PROGRESS:
            return SettleResult.REVERSAL_PENDING
        if status.outcome != PaymentOutcome.APPROVED or status.poi_transaction is None:
            return None
        return status.poi_transaction

    async def _journal_part_answer(self, tx_id: str, part: Mapping[str, Any], amount_rials: int,
                                   result: PaymentResult) -> SettleResult | None:
        if result.outcome == PaymentOutcome.REVERSED:
            if result.amount_rials and result.amount_rials != amount_rials:
                # the terminal says it gave back another amount: not what was asked, an operator looks
                await self.writer.append(tx_id, TxState.FULFILLING, {
                    **part, "step": "refund_refused", "error_condition": "amountDiffers",
                    "reversed_rials": result.amount_rials})
                return SettleResult.REFUND_PENDING
            await self.writer.append(tx_id, TxState.FULFILLING, {**part, "step": "refunded", "share_rials": amount_rials})
            return SettleResult.REVERSED
        if result.outcome == PaymentOutcome.IN_PROGRESS:
            return SettleResult.REVERSAL_PENDING
        if result.outcome == PaymentOutcome.NOT_FOUND or result.error_condition == BUSY:
            return None  # never happened (a Busy answer: the terminal did not take it up)
        await self.writer.append(tx_id, TxState.FULFILLING, {
            **part, "step": "refund_refused", "error_condition": result.error_condition or str(result.outcome)})
        return SettleResult.REFUND_PENDING

    def _new_reversal_ref(self, tx_id: str) -> MessageRef | None:
        term = self._terminal()
        return term.new_ref(tx_id, "Reversal") if term is not None else None

    async def _journal_reversal_answer(self, tx_id: str, result: PaymentResult) -> SettleResult | None:
        """REVERSED for a done reversal, REFUND_PENDING for a refused one, REVERSAL_PENDING
        while it runs; None when the terminal never saw that reversal request."""
        if result.outcome == PaymentOutcome.REVERSED:
            await self.writer.append(tx_id, TxState.REVERSED, {"reversal_outcome": str(result.outcome)})
            return SettleResult.REVERSED
        if result.outcome == PaymentOutcome.IN_PROGRESS:
            return SettleResult.REVERSAL_PENDING
        if result.outcome == PaymentOutcome.NOT_FOUND or result.error_condition == BUSY:
            return None  # never happened (a Busy answer: the terminal did not take it up)
        # refused (DECLINED): the money is still on the terminal's books as charged
        return await self._refund_pending(tx_id, result)

    async def _refund_pending(self, tx_id: str, result: PaymentResult) -> SettleResult:
        # The money was taken and is not known to be back, so an operator refunds it — never
        # recorded as returned.
        await self.writer.append(
            tx_id, TxState.REFUND_PENDING, {"reversal_outcome": str(result.outcome), "error_condition": result.error_condition}
        )
        return SettleResult.REFUND_PENDING

    async def _original_sale(self, tx_id: str, data: Mapping[str, Any]) -> PoiTransaction | SettleResult:
        """The terminal's id and timestamp of the approved sale (journaled at PAID; asked of
        the terminal by the payment's reference for a journal that lacks them)."""
        if data.get("poi_reference") and data.get("poi_timestamp"):
            return PoiTransaction(str(data["poi_reference"]), str(data["poi_timestamp"]))
        ref = self.payment_ref(tx_id)
        if ref is None:
            log.error("no POI transaction and no payment reference: an operator refunds", extra={"tx": tx_id})
            return await self._refund_pending(tx_id, PaymentResult(PaymentOutcome.NOT_FOUND, tx_id))
        try:
            status = await self.terminal().transaction_status(ref, timeout=self.status_timeout)
        except DeviceError as exc:
            log.warning("original sale unknown (%s), retried later", exc, extra={"tx": tx_id})
            return SettleResult.REVERSAL_PENDING
        if status.outcome == PaymentOutcome.IN_PROGRESS:
            return SettleResult.REVERSAL_PENDING
        if status.outcome != PaymentOutcome.APPROVED or status.poi_transaction is None:
            return await self._refund_pending(tx_id, status)
        return status.poi_transaction

    # --- completion ---------------------------------------------------------------------------
    async def complete(self, tx_id: str, **data: Any) -> None:
        await self.writer.append(tx_id, TxState.COMPLETED, data or None)

    @staticmethod
    async def _quietly(coro: Any) -> None:
        try:
            await coro
        except (DeviceError, KioskError) as exc:
            log.warning("ignored during cleanup: %s", exc)


def _key(exc: BaseException) -> str:
    return str(getattr(exc, "key", type(exc).__name__))


def _error_dict(exc: BaseException) -> dict[str, Any]:
    to_dict = getattr(exc, "to_dict", None)
    return to_dict() if callable(to_dict) else {"error": type(exc).__name__, "detail": str(exc)[:500]}


def _payment_data(result: PaymentResult) -> dict[str, Any]:
    """What PAID records of the terminal's answer, cleaned by the kiosk's one card-number rule
    (kiosk.sensitive). The money has moved by now, so this never refuses: a terminal that
    wrote a full card number where a masked one belongs gets it masked here, and an
    identifier that holds a card number is dropped (the journal would refuse it, and PAID
    must be recorded)."""
    pan = result.masked_pan
    if pan and not is_masked_pan(pan):
        digits = "".join(ch for ch in to_ascii_digits(pan) if ch.isdigit())
        log.warning("terminal sent an unmasked card number; stored masked")
        pan = mask_card(digits) if 12 <= len(digits) <= 19 else ""
    data = {"poi_reference": result.poi_reference, "poi_timestamp": result.poi_timestamp,
            "rrn": result.rrn, "stan": result.stan}
    for key, value in data.items():
        if find_card_number(value):
            log.warning("terminal sent a card number in %s; not stored", key)
            data[key] = ""
    return {**data, "masked_pan": pan,
            "paid_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
