"""Pay a municipal fee from its slip: scan or type the ids → validate → look up → confirm →
pay at the terminal → settle at the back-office → signed receipt. Driven through the UI port;
every money step goes through kiosk.money_path so recovery can finish what a crash cut off.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from devices.base import DeviceError
from devices.contracts import AmountTooLarge, Scanner
from kiosk.backoffice_client import AmountMismatch, BillAlreadyPaid, BillInfo
from kiosk.bills import Bill, InvalidBill, NotABill, parse_bill, parse_scanned
from kiosk.context import KioskContext
from kiosk.errors import KioskError
from kiosk.faults import fault_point
from kiosk.flows.payment_wait import PaymentCancelled, charge_or_cancel
from kiosk.journal import JournalError, TxState
from kiosk.money_path import SettleResult
from kiosk.services import FEE_PAYMENT, FeeOrder
from kiosk.service_guard import STORAGE_ERRORS, JournalBroken, StorageLow
from kiosk.ui_port import Choice, CitizenLeft, Outcome, UIPort

log = logging.getLogger("kiosk.flows.fee")

MAX_INPUT_TRIES = 3


@dataclass(frozen=True)
class FeePaymentResult:
    outcome: Outcome
    final_state: TxState | None
    transaction_id: str | None
    amount_rials: int
    receipt_payload: str | None


class FeePaymentFlow:
    def __init__(self, ctx: KioskContext, ui: UIPort) -> None:
        self.ctx = ctx
        self.ui = ui

    async def run(self) -> FeePaymentResult:
        if self.ctx.out_of_service is not None:  # a journal that failed verification
            return await self._out_of_service()
        try:
            bill = await self._obtain_bill()
            info = await self._look_up(bill)
        except CitizenLeft:
            return await self._end(Outcome(False, "fee.cancelled"), None, 0)
        except KioskError as exc:
            await self.ui.show_error(exc.key, **exc.context)
            return await self._end(Outcome(False, exc.key, exc.context), None, 0)
        params = {"service_fa": info.description_fa or bill.service_type.label("fa"),
                  "service_en": bill.service_type.label("en"),
                  "amount_rials": info.amount_rials, "bill_id": bill.bill_id,
                  "payment_id": bill.payment_id, "payer": info.payer_name}
        try:
            if not await self.ui.confirm("fee.confirm", **params):
                return await self._end(Outcome(False, "fee.cancelled"), None, info.amount_rials)
        except CitizenLeft:
            return await self._end(Outcome(False, "fee.cancelled"), None, info.amount_rials)
        return await self._pay(bill, info)

    # --- input -------------------------------------------------------------------------------
    async def _obtain_bill(self) -> Bill:
        for _ in range(MAX_INPUT_TRIES):
            try:
                return await self._read_once()
            except (InvalidBill, NotABill) as exc:
                await self.ui.show_error(exc.key, **exc.context)
        raise CitizenLeft("too many invalid entries")

    async def _read_once(self) -> Bill:
        scanner = self.ctx.available(Scanner)
        if scanner is None:
            return await self._typed()
        choice = asyncio.ensure_future(
            self.ui.choose("fee.how_to_enter", [Choice("manual", "fee.manual")])
        )
        scan = asyncio.ensure_future(scanner.read(timeout=self.ctx.settings.scan_timeout_s))
        done, _ = await asyncio.wait({choice, scan}, return_when=asyncio.FIRST_COMPLETED)
        for pending in (choice, scan):
            if pending not in done:
                pending.cancel()
        await asyncio.gather(choice, scan, return_exceptions=True)
        if scan in done and not scan.cancelled() and scan.exception() is None:
            code = scan.result()
            await self.ui.show_step("fee.scanned", format=code.format)
            return parse_scanned(code.text)
        if choice in done and not choice.cancelled() and choice.exception() is None:
            return await self._typed()
        exc = (scan if scan in done else choice).exception()
        if isinstance(exc, DeviceError):  # scanner failed: typing always works
            log.warning("scanner failed, falling back to the keypad: %s", exc)
            return await self._typed()
        raise exc  # CitizenLeft from the UI

    async def _typed(self) -> Bill:
        bill_id = await self.ui.ask_digits("fee.enter_bill_id", min_len=6, max_len=13)
        payment_id = await self.ui.ask_digits("fee.enter_payment_id", min_len=6, max_len=13)
        return parse_bill(bill_id, payment_id)

    async def _look_up(self, bill: Bill) -> BillInfo:
        await self.ui.show_step("fee.looking_up")
        info = await asyncio.to_thread(self.ctx.backoffice.lookup_bill, bill.bill_id, bill.payment_id)
        if info.status == "paid":
            raise BillAlreadyPaid(bill_id=bill.bill_id)
        if info.amount_rials != bill.amount_rials:
            raise AmountMismatch(expected_rials=info.amount_rials, slip_rials=bill.amount_rials)
        return info

    # --- money -------------------------------------------------------------------------------
    async def _pay(self, bill: Bill, info: BillInfo) -> FeePaymentResult:
        money = self.ctx.money
        try:
            order = FeeOrder(bill.bill_id, bill.payment_id, int(bill.service_type), info.description_fa,
                             self.ctx.kiosk_id)
            tx_id = await money.open_transaction(FEE_PAYMENT.name, info.amount_rials, order.to_journal())
        except JournalBroken:
            return await self._out_of_service()
        except StorageLow as exc:
            log.error("new transaction refused: %s", exc.detail)
            await self.ui.show_error(exc.key)
            return await self._end(Outcome(False, exc.key), None, info.amount_rials)
        except (JournalError, *STORAGE_ERRORS) as exc:  # CREATED not written: nothing charged
            log.error("new transaction could not be journaled: %s", exc)
            await self.ui.show_error("service.unavailable")
            return await self._end(Outcome(False, "service.unavailable"), None, info.amount_rials)
        try:
            return await self._pay_claimed(tx_id, info)
        except (JournalError, *STORAGE_ERRORS) as exc:
            # a journal write failed inside the money path (disk full, read-only, I/O): the
            # journal still holds the last state written, and background recovery (or the next
            # start) finishes it from there, asking the terminal what happened to the money
            log.error("journal write failed mid-payment, left for recovery: %s", exc, extra={"tx": tx_id})
            state = self._state_or_none(tx_id)
            await self.ui.show_error("service.storage", tx=tx_id)
            return await self._end(Outcome(False, "service.storage", {"tx": tx_id}, tx_id), state,
                                   info.amount_rials, tx_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Anything else past CREATED (a malformed back-office answer, a receipt field out of
            # range): the journal holds the last state written and recovery finishes it from
            # there; the citizen is told the payment will be checked, never left on a blank
            # screen after their card may have been charged.
            log.exception("unexpected failure mid-payment, left for recovery", extra={"tx": tx_id})
            state = self._state_or_none(tx_id)
            await self.ui.show_error("pay.unknown", tx=tx_id)
            return await self._end(Outcome(False, "pay.unknown", {"tx": tx_id}, tx_id), state,
                                   info.amount_rials, tx_id)
        finally:
            money.release(tx_id)

    async def _pay_claimed(self, tx_id: str, info: BillInfo) -> FeePaymentResult:
        money = self.ctx.money
        fault_point("after-created")
        await self.ui.show_step("pay.insert_card", amount_rials=info.amount_rials)
        try:
            charge = await charge_or_cancel(money, self.ui, tx_id, info.amount_rials)
        except PaymentCancelled as cancelled:  # the money path undid what the terminal did
            return await self._end(cancelled.outcome, cancelled.state, info.amount_rials, tx_id)
        except AmountTooLarge as exc:  # refused before the terminal was asked
            await money.cancel(tx_id, {"reason": exc.to_dict()})
            await self.ui.show_error("pay.amount_over_limit")
            return await self._end(Outcome(False, "pay.amount_over_limit", transaction_id=tx_id), TxState.CANCELLED,
                                   info.amount_rials, tx_id)
        except DeviceError as exc:  # no terminal at all: nothing was asked, nothing charged
            await money.cancel(tx_id, {"reason": exc.to_dict()})
            await self.ui.show_error("service.unavailable")
            return await self._end(Outcome(False, "service.unavailable", transaction_id=tx_id), TxState.CANCELLED,
                                   info.amount_rials, tx_id)
        if charge.state == TxState.DECLINED:
            return await self._end(Outcome(False, "pay.declined", transaction_id=tx_id), TxState.DECLINED,
                                   info.amount_rials, tx_id)
        if charge.state == TxState.PAYING:  # the terminal cannot say yet; recovery will
            return await self._end(Outcome(False, "pay.unknown", {"tx": tx_id}, tx_id), TxState.PAYING,
                                   info.amount_rials, tx_id)
        fault_point("after-paid")

        await self.ui.show_step("settle.posting")
        item = await money.start_settlement(tx_id)
        settled = await money.settle(item)
        if settled in (SettleResult.REVERSED, SettleResult.REFUND_PENDING, SettleResult.REVERSAL_PENDING):
            key = "settle.refused_reversed" if settled == SettleResult.REVERSED else "settle.refused_refund_pending"
            state = self.ctx.journal.state_of(tx_id)
            return await self._end(Outcome(False, key, {"tx": tx_id}, tx_id), state, info.amount_rials, tx_id)

        fault_point("before-receipt")
        payload, printed = await self._print_receipt(tx_id, settled)
        if settled == SettleResult.SETTLED:
            await money.complete(tx_id, receipt_printed=printed)
            tracking = self.ctx.journal.get(tx_id).data.get("tracking_code", "")
            outcome = Outcome(True, "fee.paid", {"tracking": tracking}, tx_id, payload)
        else:  # paid; settlement waits in the outbox and completes when acknowledged
            outcome = Outcome(True, "settle.pending", {"tx": tx_id}, tx_id, payload)
        return await self._end(outcome, self.ctx.journal.state_of(tx_id), info.amount_rials, tx_id, payload)

    def _state_or_none(self, tx_id: str) -> TxState | None:
        try:
            return self.ctx.journal.state_of(tx_id)
        except (JournalError, *STORAGE_ERRORS):
            return None

    async def _out_of_service(self) -> FeePaymentResult:
        """The journal failed verification: no money moves until a technician has looked."""
        if self.ctx.out_of_service is not None:
            log.critical("out of service: %s", self.ctx.out_of_service.detail)
        await self.ui.show_error("service.out_of_service")
        return await self._end(Outcome(False, "service.out_of_service"), None, 0)

    async def _print_receipt(self, tx_id: str, settled: SettleResult) -> tuple[str, bool]:
        """Sign and print; a printer fault never undoes a payment — the outcome screen shows
        the signed payload and tracking code instead, and the receipt can be reprinted."""
        await self.ui.show_step("receipt.printing")
        tx = self.ctx.journal.get(tx_id)
        issued = await self.ctx.receipts.issue(tx, pending=settled != SettleResult.SETTLED)
        if not issued.printed:
            await self.ui.show_error("receipt.not_printed", tracking=tx.data.get("tracking_code") or tx_id)
        return issued.payload, issued.printed

    async def _end(self, outcome: Outcome, state: TxState | None, amount: int,
                   tx_id: str | None = None, payload: str | None = None) -> FeePaymentResult:
        await self.ui.show_outcome(outcome)
        return FeePaymentResult(outcome, state, tx_id, amount, payload)

