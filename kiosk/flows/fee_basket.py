"""Pay several fee slips with ONE card payment: re-check each bill at the back-office → confirm
the total → pay the total at the terminal → settle each bill on its own (its own idempotency
key) → refund the share of any bill the back-office refused (a partial referenced refund) →
one signed receipt listing what became of each bill.

API (the look-up flow calls it once the citizen has selected slips):

    result = await FeeBasketFlow(ctx, ui).pay(slips)          # slips: Sequence[FeeSlip]
    result.outcome, result.final_state, result.transaction_id, result.amount_rials,
    result.receipt_payload, result.bills  (one BillResult per selected slip)

Every money step goes through kiosk.money_path and kiosk.services.basket, the same code
recovery runs after a crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from devices.base import DeviceError
from devices.contracts import AmountTooLarge
from kiosk.backoffice_client import AmountMismatch, BillAlreadyPaid, BillNotFound, FeeSlip
from kiosk.context import KioskContext
from kiosk.errors import KioskError
from kiosk.faults import fault_point
from kiosk.flows.payment_wait import PaymentCancelled, charge_or_cancel
from kiosk.journal import JournalError, TxState
from kiosk.messages import text
from kiosk.money_path import SettleResult
from kiosk.service_guard import STORAGE_ERRORS, JournalBroken, StorageLow
from kiosk.services.basket import (
    FEE_BASKET,
    MAX_BILLS,
    BasketInvalid,
    BasketItem,
    BasketOrder,
    BillNothingDue,
    bill_outcomes,
    settle_basket,
)
from kiosk.ui_port import CitizenLeft, Outcome, UIPort

log = logging.getLogger("kiosk.flows.basket")


@dataclass(frozen=True)
class BillResult:
    """One selected slip and what became of it. `outcome`: settled (tracking_code), pending
    (paid; the back-office is told later), refunded (refused at settlement; its share is back
    on the card), refund_pending (refused; its refund waits for the terminal or an operator),
    not_paid (dropped before paying: `reason` is the error key), or not_charged (the basket
    was not paid: cancelled, declined, reversed)."""

    bill_id: str
    payment_id: str
    amount_rials: int
    outcome: str
    tracking_code: str = ""
    reason: str = ""


@dataclass(frozen=True)
class FeeBasketResult:
    outcome: Outcome
    final_state: TxState | None
    transaction_id: str | None
    amount_rials: int  # the total of the basket paid (or asked for); 0 when nothing was asked
    receipt_payload: str | None
    bills: tuple[BillResult, ...] = ()

    @property
    def refunded_rials(self) -> int:
        return sum(b.amount_rials for b in self.bills if b.outcome == "refunded")


class FeeBasketFlow:
    def __init__(self, ctx: KioskContext, ui: UIPort) -> None:
        self.ctx = ctx
        self.ui = ui

    async def pay(self, slips: Sequence[FeeSlip], *, confirm: bool = True) -> FeeBasketResult:
        """Pay `slips` with one card payment. `confirm=False`: the caller already showed the
        total and the citizen agreed (the flow still re-checks each bill first)."""
        if self.ctx.out_of_service is not None:
            log.critical("out of service: %s", self.ctx.out_of_service.detail)
            await self.ui.show_error("service.out_of_service")
            return await self._end(Outcome(False, "service.out_of_service"), None, 0)
        try:
            check_selection(slips)
            items, dropped = await self._recheck(slips)
        except CitizenLeft:
            return await self._end(Outcome(False, "basket.cancelled"), None, 0)
        except KioskError as exc:
            await self.ui.show_error(exc.key, **exc.context)
            return await self._end(Outcome(False, exc.key, exc.context), None, 0)
        if not items:
            return await self._end(Outcome(False, "basket.nothing_to_pay"), None, 0, bills=dropped)
        order = BasketOrder(tuple(items), self.ctx.kiosk_id)
        if confirm:
            try:
                agreed = await self.ui.confirm("basket.confirm", count=len(items), total_rials=order.total_rials,
                                               dropped=len(dropped))
            except CitizenLeft:
                agreed = False
            if not agreed:
                return await self._end(Outcome(False, "basket.cancelled"), None, order.total_rials,
                                       bills=dropped + _not_charged(order))
        return await self._pay(order, dropped)

    # --- before any money moves ------------------------------------------------------------------
    async def _recheck(self, slips: Sequence[FeeSlip]) -> tuple[list[BasketItem], tuple[BillResult, ...]]:
        """Ask the back-office about each bill now (it may have been paid elsewhere or
        re-assessed since the list was shown): most refusals happen here, before any money
        moves. A bill refused here is dropped and the citizen told; the back-office away is a
        typed error (nothing charged)."""
        await self.ui.show_step("basket.checking", count=len(slips))
        items: list[BasketItem] = []
        dropped: list[BillResult] = []
        for slip in slips:
            try:
                info = await asyncio.to_thread(self.ctx.backoffice.lookup_bill, slip.bill_id, slip.payment_id)
                if info.status == "paid":
                    raise BillAlreadyPaid(bill_id=slip.bill_id)
                if info.amount_rials != slip.amount_rials:
                    raise AmountMismatch(expected_rials=info.amount_rials, slip_rials=slip.amount_rials)
                if info.amount_rials <= 0:
                    # nothing to pay (discounted to zero): never charged, and an order with such
                    # a bill could not be read back after the total was taken
                    raise BillNothingDue(bill_id=slip.bill_id)
            except (BillAlreadyPaid, AmountMismatch, BillNotFound, BillNothingDue) as exc:
                # only the back-office's own refusal of THIS bill drops it; any other error
                # (unreachable, a rotated token's 401, ...) is the real error, shown as it is
                await self.ui.show_error("basket.bill_dropped", bill_id=slip.bill_id,
                                         reason_fa=text(exc.key, "fa", **exc.context),
                                         reason_en=text(exc.key, "en", **exc.context))
                dropped.append(BillResult(slip.bill_id, slip.payment_id, slip.amount_rials, "not_paid", reason=exc.key))
                continue
            items.append(BasketItem(slip.bill_id, slip.payment_id, info.amount_rials, slip.kind, slip.period,
                                    slip.description_fa or info.description_fa, info.service_type))
        return items, tuple(dropped)

    # --- money -----------------------------------------------------------------------------------
    async def _pay(self, order: BasketOrder, dropped: tuple[BillResult, ...]) -> FeeBasketResult:
        money = self.ctx.money
        total = order.total_rials
        try:
            tx_id = await money.open_transaction(FEE_BASKET.name, total, order.to_journal())
        except JournalBroken:
            await self.ui.show_error("service.out_of_service")
            return await self._end(Outcome(False, "service.out_of_service"), None, 0)
        except StorageLow as exc:
            log.error("new transaction refused: %s", exc.detail)
            await self.ui.show_error(exc.key)
            return await self._end(Outcome(False, exc.key), None, total, bills=dropped + _not_charged(order))
        except (JournalError, *STORAGE_ERRORS) as exc:  # CREATED not written: nothing charged
            log.error("new transaction could not be journaled: %s", exc)
            await self.ui.show_error("service.unavailable")
            return await self._end(Outcome(False, "service.unavailable"), None, total,
                                   bills=dropped + _not_charged(order))
        try:
            return await self._pay_claimed(tx_id, order, dropped)
        except (JournalError, *STORAGE_ERRORS) as exc:
            # the journal holds the last state written; background recovery (or the next
            # start) finishes the basket from there
            log.error("journal write failed mid-payment, left for recovery: %s", exc, extra={"tx": tx_id})
            await self.ui.show_error("service.storage", tx=tx_id)
            return await self._end(Outcome(False, "service.storage", {"tx": tx_id}, tx_id), self._state(tx_id),
                                   total, tx_id, bills=dropped + self._bills(tx_id, order))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected failure mid-payment, left for recovery", extra={"tx": tx_id})
            await self.ui.show_error("pay.unknown", tx=tx_id)
            return await self._end(Outcome(False, "pay.unknown", {"tx": tx_id}, tx_id), self._state(tx_id),
                                   total, tx_id, bills=dropped + self._bills(tx_id, order))
        finally:
            money.release(tx_id)

    async def _pay_claimed(self, tx_id: str, order: BasketOrder, dropped: tuple[BillResult, ...]) -> FeeBasketResult:
        money = self.ctx.money
        total = order.total_rials
        fault_point("after-created")
        await self.ui.show_step("pay.insert_card", amount_rials=total)
        try:
            charge = await charge_or_cancel(money, self.ui, tx_id, total)
        except PaymentCancelled as cancelled:  # the money path undid what the terminal did
            return await self._end(cancelled.outcome, cancelled.state, total, tx_id,
                                   bills=dropped + _cancelled_bills(order, cancelled))
        except AmountTooLarge as exc:  # refused before the terminal was asked
            await money.cancel(tx_id, {"reason": exc.to_dict()})
            await self.ui.show_error("basket.amount_over_limit")
            return await self._end(Outcome(False, "basket.amount_over_limit", transaction_id=tx_id), TxState.CANCELLED,
                                   total, tx_id, bills=dropped + _not_charged(order))
        except DeviceError as exc:  # no terminal at all: nothing was asked, nothing charged
            await money.cancel(tx_id, {"reason": exc.to_dict()})
            await self.ui.show_error("service.unavailable")
            return await self._end(Outcome(False, "service.unavailable", transaction_id=tx_id), TxState.CANCELLED,
                                   total, tx_id, bills=dropped + _not_charged(order))
        if charge.state == TxState.DECLINED:
            return await self._end(Outcome(False, "pay.declined", transaction_id=tx_id), TxState.DECLINED,
                                   total, tx_id, bills=dropped + _not_charged(order))
        if charge.state == TxState.PAYING:  # the terminal cannot say yet; recovery will
            return await self._end(Outcome(False, "pay.unknown", {"tx": tx_id}, tx_id), TxState.PAYING,
                                   total, tx_id, bills=dropped + _not_charged(order))
        fault_point("after-paid")

        await self.ui.show_step("basket.settling", count=len(order.items))
        await settle_basket(money, tx_id)
        state = self.ctx.journal.state_of(tx_id)
        bills = self._bills(tx_id, order)
        if not any(b.outcome in ("settled", "pending") for b in bills):
            # every bill refused: the whole sale went back (or waits for the terminal / an operator)
            key = "basket.all_refused_reversed" if state == TxState.REVERSED else "basket.all_refused_refund_pending"
            return await self._end(Outcome(False, key, {"tx": tx_id}, tx_id), state, total, tx_id,
                                   bills=dropped + bills)

        fault_point("before-receipt")
        pending = any(b.outcome == "pending" for b in bills)
        await self.ui.show_step("receipt.printing")
        issued = await self.ctx.receipts.issue(self.ctx.journal.get(tx_id), pending=pending)
        if not issued.printed:
            await self.ui.show_error("receipt.not_printed", tracking=tx_id)
        if state == TxState.POSTED:
            await money.complete(tx_id, receipt_printed=issued.printed)
        settled = sum(b.outcome == "settled" for b in bills)
        refused = [b for b in bills if b.outcome in ("refunded", "refund_pending")]
        params = {"tx": tx_id, "count": len(bills), "settled": settled, "refused": len(refused),
                  "refunded_rials": sum(b.amount_rials for b in refused if b.outcome == "refunded"),
                  "pending_rials": sum(b.amount_rials for b in refused if b.outcome == "refund_pending")}
        if pending:
            key = "basket.pending"
        elif any(b.outcome == "refund_pending" for b in refused):
            key = "basket.paid_refund_pending"
        elif refused:
            key = "basket.paid_part_refunded"
        else:
            key = "basket.paid"
        outcome = Outcome(True, key, params, tx_id, issued.payload)
        return await self._end(outcome, self.ctx.journal.state_of(tx_id), total, tx_id, issued.payload,
                               bills=dropped + bills)

    # --- helpers ---------------------------------------------------------------------------------
    def _bills(self, tx_id: str, order: BasketOrder) -> tuple[BillResult, ...]:
        try:
            tx = self.ctx.journal.get(tx_id)
        except (JournalError, *STORAGE_ERRORS):
            return _not_charged(order)
        if tx.state in (TxState.CREATED, TxState.PAYING, TxState.PAID, TxState.DECLINED, TxState.CANCELLED):
            return _not_charged(order)
        reversed_whole = any(e.state in (TxState.REVERSING, TxState.REVERSED) for e in tx.entries)
        out = []
        for o in bill_outcomes(tx):
            outcome = o.outcome
            if reversed_whole:  # every bill refused and the whole sale reversed
                outcome = "refunded" if tx.state == TxState.REVERSED else "refund_pending"
            out.append(BillResult(o.item.bill_id, o.item.payment_id, o.item.amount_rials, outcome, o.tracking_code,
                                  o.reason))
        return tuple(out)

    def _state(self, tx_id: str) -> TxState | None:
        try:
            return self.ctx.journal.state_of(tx_id)
        except (JournalError, *STORAGE_ERRORS):
            return None

    async def _end(self, outcome: Outcome, state: TxState | None, amount: int, tx_id: str | None = None,
                   payload: str | None = None, *, bills: tuple[BillResult, ...] = ()) -> FeeBasketResult:
        await self.ui.show_outcome(outcome)
        return FeeBasketResult(outcome, state, tx_id, amount, payload, bills)


def check_selection(slips: Sequence[FeeSlip]) -> None:
    """None selected, more than MAX_BILLS, or one bill twice: BasketInvalid (nothing asked)."""
    if not slips:
        raise BasketInvalid("no slip selected", why_fa="هیچ فیشی انتخاب نشده است", why_en="no slip is selected")
    if len(slips) > MAX_BILLS:
        raise BasketInvalid("too many slips", why_fa=f"حداکثر {MAX_BILLS} فیش با هم پرداخت می‌شود",
                            why_en=f"at most {MAX_BILLS} slips are paid together")
    if len({(s.bill_id, s.payment_id) for s in slips}) != len(slips):
        raise BasketInvalid("a slip twice", why_fa="یک فیش دو بار انتخاب شده است", why_en="a slip is selected twice")


def _cancelled_bills(order: BasketOrder, cancelled: PaymentCancelled) -> tuple[BillResult, ...]:
    """Each bill of a basket whose payment the citizen cancelled: none is paid; charged and
    given back (refunded), charged and not back yet (refund_pending), or never charged."""
    if cancelled.nothing_charged:
        return _not_charged(order)
    outcome = "refunded" if cancelled.state == TxState.REVERSED else "refund_pending"
    return tuple(BillResult(i.bill_id, i.payment_id, i.amount_rials, outcome) for i in order.items)


def _not_charged(order: BasketOrder) -> tuple[BillResult, ...]:
    return tuple(BillResult(i.bill_id, i.payment_id, i.amount_rials, "not_charged") for i in order.items)
