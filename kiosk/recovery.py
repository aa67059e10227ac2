"""Recovery: resolve every open transaction after a restart (and on demand), with the same
money-path code the flows use. Runs at every start and as `kiosk recover`.

  CREATED     → CANCELLED          nothing was asked of the terminal
  PAYING      → ask the terminal (TransactionStatus by the message reference PAYING journaled:
                SaleID, ServiceID, Payment): approved → PAID and on as below; declined /
                never seen → DECLINED; terminal unreachable → left PAYING, retried next time;
                no journaled reference, or one made at another terminal → left PAYING for
                an operator (a terminal finds a sale only by its ServiceID)
  PAID        → first ask whether the back-office holds the payment (the outbox's acknowledged
                rows, then GET /payments/{tx}): settled → FULFILLED → POSTED → COMPLETED;
                not there → REVERSING → REVERSED (REFUND_PENDING if the terminal refuses or
                cannot find the approved sale); back-office unreachable → left PAID, retried
  REVERSING   → ask about every reversal request journaled (TransactionStatus, Reversal, its
                ServiceID): done → REVERSED, refused → REFUND_PENDING; none arrived → a new
                reversal under a new ServiceID (REVERSING again), never a second one blind
  FULFILLING,
  UNCERTAIN,
  FULFILLED   → the transaction's kind carries on (kiosk.services): a fee posts the queued
                settlement again with its idempotency key: acknowledged → FULFILLED, POSTED →
                COMPLETED; refused → reversed (after the same question); back-office down →
                stays queued in the outbox (store-and-forward), "queued"; a card top-up
                whose card is gone queues a pending action, so the card's next tap settles it
  POSTED      → COMPLETED (the receipt was not printed; it can be reprinted)

A fee basket (several slips, one payment; kiosk.services.basket) resumes by its kind too: at
PAID it asks the back-office about each bill (none held → the whole sale reversed); at
FULFILLING it queues the bills not queued yet, posts the queued ones, asks about each earlier
partial refund by its own message reference, refunds refused shares and finishes (FULFILLED,
POSTED → COMPLETED, or REFUND_PENDING when the terminal refused a share's refund). A bill
whose outbox row is answered is journaled from that row whatever step the journal kept; a
basket that still cannot progress with nothing queued is reported "stuck" (resolved=False).

Recovery switches on the transaction's kind for the kind's own steps; an open transaction of
a kind this build does not know is left open for an operator ("unknown_kind"), never handled
as a fee. Nothing is resolved on a journal that fails verification: `run` raises JournalBroken. A
running kiosk runs this in the background too (kiosk.outbox_worker), over the transactions no
flow has claimed, so it never races the flow that owns one.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from kiosk.journal import OPEN_STATES, Journal, Transaction, TxState
from kiosk.journal.states import BASKET_KINDS
from kiosk.money_path import MoneyPath, SettleResult
from kiosk.services import KINDS, kind_of

log = logging.getLogger("kiosk.recovery")


@dataclass(frozen=True)
class Resolution:
    tx_id: str
    kind: str
    amount_rials: int
    from_state: str
    to_state: str
    action: str
    resolved: bool  # False: still open (a device or the back-office is unreachable)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class Recovery:
    def __init__(self, journal: Journal, money: MoneyPath) -> None:
        self.journal = journal
        self.money = money

    async def run(self, *, background: bool = False) -> list[Resolution]:
        """Resolve every open transaction no one else is working on. Raises JournalBroken
        (and resolves nothing) when the journal fails verification. `background=True`: a
        round of the running kiosk, which leaves queued settlements to the outbox worker's
        back-off."""
        self.money.guard.check_since()
        results = []
        for tx in self.journal.open_transactions():
            if self.money.is_claimed(tx.tx_id):
                continue  # a live flow (or another recovery step) owns it
            if tx.kind not in KINDS:
                log.error("open transaction of unknown kind %r left for an operator", tx.kind, extra={"tx": tx.tx_id})
                results.append(Resolution(tx.tx_id, tx.kind, tx.amount_rials, tx.state, tx.state, "unknown_kind", False))
                continue
            if background and tx.state in (TxState.FULFILLING, TxState.FULFILLED) and self.money.pending_posts(tx.tx_id):
                continue  # queued posts are the outbox worker's, with its back-off
            try:
                with self.money.claimed(tx.tx_id):
                    tx = self.journal.get(tx.tx_id)  # as it is now, not when listed
                    if tx.state in OPEN_STATES:
                        results.append(await self.resolve(tx))
            except Exception:  # one bad transaction must not stop the others; it stays open
                log.exception("recovery of %s failed", tx.tx_id, extra={"tx": tx.tx_id})
                results.append(Resolution(tx.tx_id, tx.kind, tx.amount_rials, tx.state, tx.state, "error", False))
        return results

    async def resolve(self, tx: Transaction) -> Resolution:
        start = tx.state
        action = await self._advance(tx)
        end = self.journal.state_of(tx.tx_id)
        resolved = end not in OPEN_STATES or (end == TxState.FULFILLING and action == "queued")
        log.info("recovered %s: %s → %s (%s)", tx.tx_id, start, end, action, extra={"tx": tx.tx_id})
        return Resolution(tx.tx_id, tx.kind, tx.amount_rials, str(start), str(end), action, resolved)

    async def _advance(self, tx: Transaction) -> str:
        state = tx.state
        if state == TxState.CREATED:
            await self.money.cancel(tx.tx_id, {"reason": "recovery: never sent to the terminal"})
            return "cancelled"
        if state == TxState.PAYING:
            charge = await self.money.resolve_paying(tx.tx_id)
            if charge.state == TxState.PAYING:
                return "terminal_unreachable"
            if charge.state == TxState.DECLINED:
                return "declined"
            state = TxState.PAID
        if state == TxState.PAID:
            # the citizen has gone with no receipt: their money goes back — unless the
            # back-office holds the payment (a journal cut back after settling)
            result = await self.money.reverse(tx.tx_id, "recovery: paid but not fulfilled")
            if result != SettleResult.SETTLED:
                return _settle_word(result)
            state = self.journal.state_of(tx.tx_id)  # POSTED (a basket: FULFILLING, carried on below)
        if state == TxState.REVERSING:
            return _settle_word(await self.money.reverse(tx.tx_id, "recovery: reversal retried"))
        if state in (TxState.FULFILLING, TxState.UNCERTAIN, TxState.FULFILLED):
            # the kind's own step: a fee re-posts its queued settlement, a card kind first
            # settles the write on the card
            result = await kind_of(tx.kind).resume(self.money, self.journal.get(tx.tx_id))
            if not isinstance(result, SettleResult):  # (a StrEnum: test the enum, not str)
                return result
            if result == SettleResult.PENDING:
                # a basket waits for the outbox only while a post is queued there; otherwise
                # nothing will move it: an operator looks (resolved=False), never "resolved"
                if tx.kind in BASKET_KINDS and not self.money.pending_posts(tx.tx_id):
                    log.error("basket cannot progress (nothing queued, bills unanswered): an operator looks",
                              extra={"tx": tx.tx_id})
                    return "stuck"
                return "queued"
            if result != SettleResult.SETTLED:
                return _settle_word(result)
            state = self.journal.state_of(tx.tx_id)
        if state == TxState.POSTED:
            await self.money.complete(tx.tx_id, receipt_printed=False, completed_by="recovery")
            return "completed"
        return "left_open"


def _settle_word(result: SettleResult) -> str:
    return {
        SettleResult.REVERSED: "reversed",
        SettleResult.REFUND_PENDING: "refund_pending",
        SettleResult.REVERSAL_PENDING: "reversal_pending",
        SettleResult.SETTLED: "completed",
        SettleResult.PENDING: "queued",
        SettleResult.CHECK_PENDING: "backoffice_unreachable",
        SettleResult.REFUSED: "refused",
    }[result]
