"""Buy a QR ticket (بلیت): single or return trip → pay at the terminal → the ticket issued and
its back-office post queued (one commit) → posted → printed as a signed QR with its Persian
text → COMPLETED. Behind the UI port, so the touch UI and the headless demo run this code.

The printer cannot print (none, paper out, an error): the ticket is shown on screen, QR and
all, for the citizen to photograph — it is valid either way (gates verify the signature).
The back-office refuses the ticket (its id is another sale's): reversed, nothing printed.
The back-office is unreachable: the post stays queued and the ticket is printed and valid.
See kiosk/services/ticket.py for the states and docs/qr-tickets.md for the reasons."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass

from devices.base import DeviceError
from devices.contracts import AmountTooLarge, PaymentTerminal, ReceiptPrinter
from kiosk.faults import fault_point
from kiosk.flows.payment_wait import PaymentCancelled, charge_or_cancel
from kiosk.fmt import format_datetime, to_persian_digits
from kiosk.journal import TxState
from kiosk.money_path import MoneyPath, SettleResult
from kiosk.receipt_issuer import render_for
from kiosk.receipts import ReceiptKeyError
from kiosk.service_guard import JournalBroken, StorageLow
from kiosk.services.ticket import QR_TICKET, TICKET_PRICES_RIALS, TicketOrder, issue, queue_ticket, valid_until_for
from kiosk.tickets import (TITLES, TRIPS_OF_KIND, TicketData, TicketSigner, TicketSlip, build_ticket_document,
                           load_ticket_signer)
from kiosk.ui_port import Choice, CitizenLeft, Outcome, UIPort

log = logging.getLogger("kiosk.flows.ticket")

_REFUSED = (SettleResult.REVERSED, SettleResult.REFUND_PENDING, SettleResult.REVERSAL_PENDING)


@dataclass(frozen=True)
class TicketResult:
    outcome: Outcome
    final_state: TxState | None
    transaction_id: str | None
    amount_rials: int
    ticket_kind: str = ""
    ticket: TicketData | None = None
    receipt_payload: str | None = None  # the ticket's signed QR (printed or shown)
    printed: bool = False

    def summary(self) -> dict[str, object]:
        """The demo summary's ticket fields."""
        t = self.ticket
        return {"ticket_kind": self.ticket_kind, "ticket_id": t.ticket_id if t else None,
                "trips": t.trips if t else None,
                "valid_until": t.valid_until.isoformat() if t else None, "ticket_printed": self.printed}


class QrTicketFlow:
    def __init__(self, ctx, ui: UIPort) -> None:  # noqa: ANN001 - KioskContext (no import cycle)
        self.ctx = ctx
        self.ui = ui
        self.lang = ctx.settings.lang

    async def run(self) -> TicketResult:
        if self.ctx.available(PaymentTerminal) is None:
            await self.ui.show_error("service.unavailable")
            return await self._end(Outcome(False, "service.unavailable"), None, 0)
        if self.ctx.out_of_service is not None:
            await self.ui.show_error("service.out_of_service")
            return await self._end(Outcome(False, "service.out_of_service"), None, 0)
        try:
            kinds = [Choice(k, f"ticket.kind.{k}") for k in TICKET_PRICES_RIALS]
            kind = await self.ui.choose("ticket.choose_kind", kinds)
            price = TICKET_PRICES_RIALS[kind]
            if self.ctx.available(ReceiptPrinter) is None:
                await self.ui.show_step("ticket.no_printer_notice")
            until = valid_until_for(time.time())  # what a ticket paid now is valid until
            trips = TRIPS_OF_KIND[kind]
            if not await self.ui.confirm("ticket.confirm", amount_rials=price, trips=trips,
                                         trips_fa=to_persian_digits(str(trips)),
                                         title_fa=TITLES[kind][0], title_en=TITLES[kind][1],
                                         valid_until_fa=format_datetime(until, "fa"),
                                         valid_until_en=format_datetime(until, "en")):
                return await self._end(Outcome(False, "fee.cancelled"), None, price, kind)
        except CitizenLeft:
            return await self._end(Outcome(False, "fee.cancelled"), None, 0)
        return await self._pay(kind, price)

    # --- money ---------------------------------------------------------------------------------
    async def _pay(self, kind: str, price: int) -> TicketResult:
        money: MoneyPath = self.ctx.money
        order = TicketOrder.of(kind, self.ctx.kiosk_id)
        try:  # before any money moves: a kiosk that cannot sign cannot sell a ticket
            signer = await asyncio.to_thread(load_ticket_signer, self.ctx.data_dir)
        except (ReceiptKeyError, OSError) as exc:
            log.error("ticket signing key unusable: %s", type(exc).__name__)
            await self.ui.show_error("service.unavailable")
            return await self._end(Outcome(False, "service.unavailable"), None, price, kind)
        try:
            tx_id = await money.open_transaction(QR_TICKET.name, price, order.to_journal())
        except JournalBroken:
            await self.ui.show_error("service.out_of_service")
            return await self._end(Outcome(False, "service.out_of_service"), None, price, kind)
        except StorageLow as exc:
            await self.ui.show_error(exc.key)
            return await self._end(Outcome(False, exc.key), None, price, kind)
        try:
            return await self._pay_claimed(tx_id, kind, price, signer)
        except asyncio.CancelledError:
            raise
        except Exception:
            # past CREATED the journal holds the last state written and recovery finishes it:
            # PAID with no ticket is reversed, an issued ticket is posted
            log.exception("unexpected failure mid-ticket, left for recovery", extra={"tx": tx_id})
            await self.ui.show_error("pay.unknown", tx=tx_id)
            return await self._end(Outcome(False, "pay.unknown", {"tx": tx_id}, tx_id), self._state(tx_id),
                                   price, kind, tx_id)
        finally:
            money.release(tx_id)

    async def _pay_claimed(self, tx_id: str, kind: str, price: int, signer: TicketSigner) -> TicketResult:
        money: MoneyPath = self.ctx.money
        await self.ui.show_step("pay.insert_card", amount_rials=price)
        try:
            charge = await charge_or_cancel(money, self.ui, tx_id, price)
        except PaymentCancelled as cancelled:  # the money path undid what the terminal did
            return await self._end(cancelled.outcome, cancelled.state, price, kind, tx_id)
        except AmountTooLarge as exc:
            await money.cancel(tx_id, {"reason": exc.to_dict()})
            await self.ui.show_error("pay.amount_over_limit")
            return await self._end(Outcome(False, "pay.amount_over_limit", transaction_id=tx_id), TxState.CANCELLED,
                                   price, kind, tx_id)
        except DeviceError as exc:  # no terminal: nothing was asked, nothing charged
            await money.cancel(tx_id, {"reason": exc.to_dict()})
            await self.ui.show_error("service.unavailable")
            return await self._end(Outcome(False, "service.unavailable", transaction_id=tx_id), TxState.CANCELLED,
                                   price, kind, tx_id)
        if charge.state == TxState.DECLINED:
            return await self._end(Outcome(False, "pay.declined", transaction_id=tx_id), TxState.DECLINED,
                                   price, kind, tx_id)
        if charge.state == TxState.PAYING:
            return await self._end(Outcome(False, "pay.unknown", {"tx": tx_id}, tx_id), TxState.PAYING,
                                   price, kind, tx_id)
        fault_point("after-paid")

        await self.ui.show_step("ticket.issuing")
        ticket = issue(self.ctx.journal.get(tx_id), self.ctx.kiosk_id)
        item = await queue_ticket(money, self.ctx.journal.get(tx_id), ticket)
        settled = await money.settle(item)
        if settled in _REFUSED:  # the back-office refused this ticket: no ticket, money back
            key = "ticket.refused_reversed" if settled == SettleResult.REVERSED else "ticket.refused_refund_pending"
            await self.ui.show_error(key, tx=tx_id)
            return await self._end(Outcome(False, key, {"tx": tx_id}, tx_id), self._state(tx_id), price, kind, tx_id)
        fault_point("before-receipt")
        payload, printed = await self._hand_over(tx_id, ticket, signer)
        if settled == SettleResult.SETTLED:
            await money.complete(tx_id, ticket_printed=printed)
        # else: valid now, recorded when the queued post goes through (the outbox completes it)
        tracking = self.ctx.journal.get(tx_id).data.get("tracking_code", "")
        params = self._outcome_params(ticket, printed, tracking=tracking)
        key = ("ticket.done_on_screen" if not printed
               else "ticket.done" if settled == SettleResult.SETTLED else "ticket.done_pending")
        return await self._end(Outcome(True, key, params, tx_id, payload), self._state(tx_id), price, kind, tx_id,
                               ticket, payload, printed)

    # --- the ticket in the citizen's hand --------------------------------------------------------
    async def _hand_over(self, tx_id: str, ticket: TicketData, signer: TicketSigner) -> tuple[str, bool]:
        """Print the ticket; when nothing prints, show it (QR included) to be photographed."""
        tx = self.ctx.journal.get(tx_id)
        payload = signer.sign(ticket)
        paid = next(e for e in tx.entries if e.state == TxState.PAID)
        slip = TicketSlip(ticket, payload, dt.datetime.fromtimestamp(int(paid.at), dt.UTC), tx_id,
                          rrn=str(tx.data.get("rrn", "")), masked_pan=str(tx.data.get("masked_pan", "")),
                          tracking_code=str(tx.data.get("tracking_code", "")))
        if await self._print(slip):
            return payload, True
        await self.ui.show_step("ticket.show_on_screen", payload=payload,
                                **self._outcome_params(ticket, False, tracking=slip.tracking_code))
        return payload, False

    async def _print(self, slip: TicketSlip) -> bool:
        printer = self.ctx.devices.first(ReceiptPrinter)
        if printer is None:
            return False
        await self.ui.show_step("ticket.printing")
        try:
            job = await render_for(printer, build_ticket_document(slip, self.lang))
            await printer.print_job(job)
        except DeviceError as exc:
            log.warning("ticket not printed: %s", exc, extra={"tx": slip.tx_id})
            return False
        return True

    def _outcome_params(self, ticket: TicketData, printed: bool, *, tracking: str) -> dict[str, object]:
        return {"ticket_id": ticket.ticket_id, "trips": ticket.trips, "trips_fa": to_persian_digits(str(ticket.trips)),
                "printed": printed, "tracking": tracking,
                "title_fa": TITLES[ticket.kind][0], "title_en": TITLES[ticket.kind][1],
                "amount_rials": ticket.amount_rials,
                "valid_until_fa": format_datetime(ticket.valid_until, "fa"),
                "valid_until_en": format_datetime(ticket.valid_until, "en")}

    # --- the end ----------------------------------------------------------------------------------
    def _state(self, tx_id: str) -> TxState | None:
        try:
            return self.ctx.journal.state_of(tx_id)
        except Exception:  # noqa: BLE001 - only for the summary
            return None

    async def _end(self, outcome: Outcome, state: TxState | None, amount: int, kind: str = "",
                   tx_id: str | None = None, ticket: TicketData | None = None, payload: str | None = None,
                   printed: bool = False) -> TicketResult:
        await self.ui.show_outcome(outcome)
        return TicketResult(outcome, state, tx_id, amount, kind, ticket, payload, printed)
