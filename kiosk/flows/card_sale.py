"""Buy a new transit card (خرید کارت بلیت جدید): the service is offered only while the
dispenser has cards → the citizen chooses the card's initial value (presets, 0 allowed) → the
price (card + value) is confirmed and paid at the terminal → a blank card goes to the read
position → its UID is read → the personalisation plan is journaled (FULFILLING) → the card is
personalised (devices.transit_card.personalise) and verified by reading it back → the
hand-over is journaled (UNCERTAIN) → the card is ejected → FULFILLED with the back-office's
card_sale load queued → posted → receipt with the card's serial. Behind the UI port, so the
touch UI and the headless demo run this same code.

A card that is not handed over — a jam, a failed or torn personalisation, a failed eject —
is captured to the reject bin and the payment reversed (REVERSING journaled first). See
kiosk/services/card_sale.py for the states and docs/card-sale.md for every case.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from devices.base import CommandTimeout, DeviceError
from devices.contracts import AmountTooLarge, CardDispenser, CardReader, NoCard, PaymentTerminal
from devices.transit_card import CardKeys, TransitCard, personalise
from kiosk.errors import KioskError
from kiosk.faults import fault_point
from kiosk.flows.card_write import issue_receipt
from kiosk.flows.payment_wait import PaymentCancelled, charge_or_cancel
from kiosk.fmt import format_rials
from kiosk.journal import TxState
from kiosk.money_path import MoneyPath, SettleResult
from kiosk.service_guard import JournalBroken, StorageLow
from kiosk.services.card_sale import (
    CARD_PRICE_RIALS,
    CARD_SALE,
    SALE_PROFILE,
    VALUE_PRESETS_RIALS,
    CardSaleOrder,
    SaleDevices,
    SalePlan,
    allocate_serial,
    attach_devices,
    card_at_read_position,
    give_back,
    kiosk_serial_number,
    queue_sale_load,
    settle_open_sales,
)
from kiosk.ui_port import Choice, CitizenLeft, Outcome, UIPort

log = logging.getLogger("kiosk.flows.card_sale")

#: seconds a dispenser movement may take before it is a fault
MOVE_TIMEOUT_S = 15.0
#: tries to see the dispensed card in the reader's field
UID_TRIES = 3


@dataclass(frozen=True)
class CardSaleResult:
    outcome: Outcome
    final_state: TxState | None
    transaction_id: str | None
    amount_rials: int
    card_serial: str = ""
    card_uid: str = ""
    balance_before: int | None = None  # a new card has none
    balance_after: int | None = None
    receipt_payload: str | None = None


class _NotHandedOver(Exception):
    """The card cannot be handed over (carries why); the caller captures it and gives back."""


class CardSaleFlow:
    def __init__(self, ctx, ui: UIPort) -> None:  # noqa: ANN001 - KioskContext (no import cycle)
        self.ctx = ctx
        self.ui = ui
        self.settings = ctx.settings

    def _fmt(self, rials: int) -> str:
        return format_rials(rials, self.settings.lang)

    # --- the flow ------------------------------------------------------------------------------
    async def run(self) -> CardSaleResult:
        dispenser = self.ctx.available(CardDispenser)
        reader = self.ctx.available(CardReader)
        keys: CardKeys | None = self.ctx.transit_keys
        if dispenser is None or reader is None or keys is None or self.ctx.available(PaymentTerminal) is None:
            await self.ui.show_error("service.unavailable")
            return await self._end(Outcome(False, "service.unavailable"), None, 0)
        if self.ctx.out_of_service is not None:
            await self.ui.show_error("service.out_of_service")
            return await self._end(Outcome(False, "service.out_of_service"), None, 0)
        # the stacker first: with no card to sell nothing else is asked, nothing journaled
        levels = await dispenser.levels()
        if levels.get("stacker") == "empty" or levels.get("bin") == "full":
            log.info("card sale unavailable: stacker %s, bin %s", levels.get("stacker"), levels.get("bin"))
            await self.ui.show_error("card_sale.unavailable")
            return await self._end(Outcome(False, "card_sale.unavailable"), None, 0)
        devices = attach_devices(self.ctx)
        async with devices.lock:  # this flow moves the cards until its card is handed over
            if not await settle_open_sales(self.ctx.money, devices) or self.ctx.available(CardDispenser) is None:
                await self.ui.show_error("card_sale.unavailable")
                return await self._end(Outcome(False, "card_sale.unavailable"), None, 0)
            try:
                value = await self._choose_value()
                total = CARD_PRICE_RIALS + value
                if not await self.ui.confirm("card_sale.confirm", price=self._fmt(CARD_PRICE_RIALS),
                                             value=self._fmt(value), total=self._fmt(total)):
                    return await self._end(Outcome(False, "fee.cancelled"), None, total)
            except CitizenLeft:
                return await self._end(Outcome(False, "fee.cancelled"), None, 0)
            try:
                serial = allocate_serial(self.ctx.data_dir, kiosk_serial_number(self.settings))
            except KioskError as exc:
                log.error("no card serial: %s", exc)
                await self.ui.show_error(exc.key)
                return await self._end(Outcome(False, exc.key), None, total)
            order = CardSaleOrder(serial, SALE_PROFILE, CARD_PRICE_RIALS, value, self.ctx.kiosk_id)
            return await self._pay(order, dispenser, reader, keys, devices)

    async def _choose_value(self) -> int:
        room = self.settings.card_max_balance_rials
        options = [Choice(str(v), "card_sale.value_none" if v == 0 else "card_sale.value_preset")
                   for v in VALUE_PRESETS_RIALS if v <= room]
        picked = await self.ui.choose("card_sale.choose_value", options, price=self._fmt(CARD_PRICE_RIALS))
        return int(picked)

    # --- money and the card ------------------------------------------------------------------------
    async def _pay(self, order: CardSaleOrder, dispenser: CardDispenser, reader: CardReader, keys: CardKeys,
                   devices: SaleDevices) -> CardSaleResult:
        money: MoneyPath = self.ctx.money
        try:
            tx_id = await money.open_transaction(CARD_SALE.name, order.total_rials, order.to_journal())
        except JournalBroken:
            await self.ui.show_error("service.out_of_service")
            return await self._end(Outcome(False, "service.out_of_service"), None, order.total_rials, order)
        except StorageLow as exc:
            await self.ui.show_error(exc.key)
            return await self._end(Outcome(False, exc.key), None, order.total_rials, order)
        try:
            return await self._pay_claimed(tx_id, order, dispenser, reader, keys, devices)
        except asyncio.CancelledError:
            raise
        except Exception:
            # past CREATED the journal holds the last state written; recovery finishes it from
            # there (a card not handed over: money back; handed over: the load is posted)
            log.exception("unexpected failure mid-sale, left for recovery", extra={"tx": tx_id})
            await self.ui.show_error("pay.unknown", tx=tx_id)
            return await self._end(Outcome(False, "pay.unknown", {"tx": tx_id}, tx_id), self._state(tx_id),
                                   order.total_rials, order, tx_id)
        finally:
            money.release(tx_id)

    async def _pay_claimed(self, tx_id: str, order: CardSaleOrder, dispenser: CardDispenser, reader: CardReader,
                           keys: CardKeys, devices: SaleDevices) -> CardSaleResult:
        money: MoneyPath = self.ctx.money
        amount = order.total_rials
        await self.ui.show_step("pay.insert_card", amount_rials=amount)
        try:
            charge = await charge_or_cancel(money, self.ui, tx_id, amount)
        except PaymentCancelled as cancelled:  # the money path undid it: no card leaves the stacker
            return await self._end(cancelled.outcome, cancelled.state, amount, order, tx_id)
        except AmountTooLarge as exc:
            await money.cancel(tx_id, {"reason": exc.to_dict()})
            await self.ui.show_error("pay.amount_over_limit")
            return await self._end(Outcome(False, "pay.amount_over_limit", transaction_id=tx_id), TxState.CANCELLED,
                                   amount, order, tx_id)
        except DeviceError as exc:  # no terminal: nothing was asked, nothing charged
            await money.cancel(tx_id, {"reason": exc.to_dict()})
            await self.ui.show_error("service.unavailable")
            return await self._end(Outcome(False, "service.unavailable", transaction_id=tx_id), TxState.CANCELLED,
                                   amount, order, tx_id)
        if charge.state == TxState.DECLINED:  # nothing charged: no card leaves the stacker
            return await self._end(Outcome(False, "pay.declined", transaction_id=tx_id), TxState.DECLINED,
                                   amount, order, tx_id)
        if charge.state == TxState.PAYING:
            return await self._end(Outcome(False, "pay.unknown", {"tx": tx_id}, tx_id), TxState.PAYING,
                                   amount, order, tx_id)
        fault_point("after-paid")

        await self.ui.show_step("card_sale.preparing")
        try:
            plan = await self._dispense_and_plan(tx_id, order, dispenser, reader)
            await money.writer.append(tx_id, TxState.FULFILLING, {"sale_plan": plan.to_dict()})
            fault_point("before-card-write")
            await self._personalise(plan, reader, keys)
            fault_point("after-card-write")
        except _NotHandedOver as why:
            return await self._give_back(tx_id, order, devices, str(why))
        # the hand-over: journaled before the eject, so after a crash the read position decides
        await money.writer.append(tx_id, TxState.UNCERTAIN, {"handing_over": plan.uid})
        await self.ui.show_step("card_sale.take_card")
        try:
            await dispenser.eject(timeout=MOVE_TIMEOUT_S)
        except DeviceError as exc:
            log.error("card not ejected: %s", exc, extra={"tx": tx_id})
            here = await card_at_read_position(devices, plan.uid)
            if here:  # still inside: it never reaches the citizen
                return await self._give_back(tx_id, order, devices, f"eject failed: {exc.error_code or exc}")
            if here is None:  # the read position cannot say: UNCERTAIN stays, recovery asks it again
                await self.ui.show_error("card_sale.handover_unknown", tx=tx_id)
                return await self._end(Outcome(False, "card_sale.handover_unknown", {"tx": tx_id}, tx_id),
                                       self._state(tx_id), order.total_rials, order, tx_id, plan.uid)
            # not at the read position any more: the card went out despite the error
        fault_point("after-card-eject")

        tx = self.ctx.journal.get(tx_id)
        item = await queue_sale_load(money, tx, plan)
        settled = await money.settle(item)
        payload, printed = await self._receipt(tx_id, pending=settled != SettleResult.SETTLED)
        params = {"serial": order.card_serial, "balance": self._fmt(plan.initial_balance)}
        if settled == SettleResult.SETTLED:
            await money.complete(tx_id, receipt_printed=printed)
            params["tracking"] = self.ctx.journal.get(tx_id).data.get("tracking_code", "")
            outcome = Outcome(True, "card_sale.done", params, tx_id, payload)
        else:  # the card is the citizen's; the load post waits in the outbox (store-and-forward)
            outcome = Outcome(True, "card_sale.done_pending", params, tx_id, payload)
        return await self._end(outcome, self._state(tx_id), amount, order, tx_id, plan.uid, plan.initial_balance,
                               payload)

    async def _dispense_and_plan(self, tx_id: str, order: CardSaleOrder, dispenser: CardDispenser,
                                 reader: CardReader) -> SalePlan:
        """A blank card to the read position, and the plan for it (its UID as the reader sees
        it). _NotHandedOver when no card comes or none can be read."""
        try:
            await dispenser.dispense_to_reader(timeout=MOVE_TIMEOUT_S)
        except DeviceError as exc:
            raise _NotHandedOver(f"dispense failed: {exc.error_code or exc}") from exc
        fault_point("after-dispense")
        uid = ""
        for _ in range(UID_TRIES):
            try:
                uid = (await reader.select(timeout=2.0)).uid.lower()
                break
            except (NoCard, CommandTimeout, DeviceError) as exc:
                log.warning("dispensed card not seen yet: %s", exc, extra={"tx": tx_id})
                await asyncio.sleep(0.2)
        if not uid:
            raise _NotHandedOver("dispensed card not readable")
        return SalePlan(uid, order.card_serial, order.card_profile, order.initial_balance, order.card_price_rials)

    async def _personalise(self, plan: SalePlan, reader: CardReader, keys: CardKeys) -> None:
        """Lay the blank card out as a transit card and verify it by reading it back in a
        fresh session. _NotHandedOver for a card that refuses (not blank), tears, or does not
        read back as planned."""
        await self.ui.show_step("card_sale.writing")
        try:
            await personalise(reader, plan.uid, plan.serial, plan.profile, plan.initial_balance, keys=keys)
            seen = await TransitCard(reader, keys).read_balance()
        except (DeviceError, KioskError) as exc:
            raise _NotHandedOver(f"personalisation failed: {type(exc).__name__}") from exc
        if (seen.uid, seen.serial, str(seen.profile), seen.balance, seen.seq) != (
                plan.uid, plan.serial, plan.profile, plan.initial_balance, 0):
            raise _NotHandedOver("the card does not read back as planned")

    async def _give_back(self, tx_id: str, order: CardSaleOrder, devices: SaleDevices, why: str) -> CardSaleResult:
        log.warning("card not handed over (%s): captured, payment reversed", why, extra={"tx": tx_id})
        result = await give_back(self.ctx.money, tx_id, devices, why)
        key = {SettleResult.REVERSED: "card_sale.failed_reversed"}.get(result, "card_sale.failed_refund_pending")
        await self.ui.show_error(key, tx=tx_id)
        return await self._end(Outcome(False, key, {"tx": tx_id}, tx_id), self._state(tx_id), order.total_rials,
                               order, tx_id)

    # --- the end -----------------------------------------------------------------------------------
    async def _receipt(self, tx_id: str, *, pending: bool) -> tuple[str | None, bool]:
        return await issue_receipt(self.ctx, self.ui, tx_id, pending=pending)

    def _state(self, tx_id: str) -> TxState | None:
        try:
            return self.ctx.journal.state_of(tx_id)
        except Exception:  # noqa: BLE001 - only for the summary
            return None

    async def _end(self, outcome: Outcome, state: TxState | None, amount: int, order: CardSaleOrder | None = None,
                   tx_id: str | None = None, uid: str = "", balance_after: int | None = None,
                   payload: str | None = None) -> CardSaleResult:
        await self.ui.show_outcome(outcome)
        return CardSaleResult(outcome, state, tx_id, amount, order.card_serial if order else "", uid, None,
                              balance_after, payload)
