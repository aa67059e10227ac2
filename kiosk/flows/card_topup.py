"""Top up a transit card (شارژ کارت بلیت): place the card → its balance and recent trips →
an amount (presets or the keypad, within the configured limits and the card's maximum) → pay
at the terminal → write the value (the plan journaled first) → re-read to verify → post the
load to the back-office → receipt. Behind the UI port, so the touch UI and the headless demo
run this same code.

A card pulled during the write: UNCERTAIN, and the citizen is asked to put the same card back
(`card_return_wait_s`). Its counters tell whether the write landed: landed → carry on; not
landed → write again (roll forward). The card does not come back → a pending action is
recorded so its next tap at any kiosk settles it, and the receipt says so. A paid top-up is
reversed only before its write plan is journaled (the card left before anything was written).
See kiosk/services/topup.py for the states."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from devices.base import CommandTimeout, DeviceError
from devices.contracts import AmountTooLarge, CardReader, NoCard, PaymentTerminal
from devices.transit_card import (
    LogEntry,
    CardBalance,
    CardCorrupt,
    CardKeys,
    TransitCard,
    WritePlan,
)
from kiosk.faults import fault_point
from kiosk.flows.card_write import issue_receipt, plan_on_same_card, same_card_back, write_verified
from kiosk.flows.payment_wait import PaymentCancelled, charge_or_cancel
from kiosk.fmt import format_rials
from kiosk.journal import TxState
from kiosk.money_path import MoneyPath, SettleResult
from kiosk.service_guard import JournalBroken, StorageLow
from kiosk.services.card_pending import settle_pending_actions
from kiosk.services.topup import CARD_TOPUP, TopupOrder, queue_load, queue_pending_action
from kiosk.ui_port import Choice, CitizenLeft, Outcome, UIPort

log = logging.getLogger("kiosk.flows.topup")

OTHER = "other"


@dataclass(frozen=True)
class TopupResult:
    outcome: Outcome
    final_state: TxState | None
    transaction_id: str | None
    amount_rials: int
    card_serial: str = ""
    balance_before: int | None = None
    balance_after: int | None = None
    receipt_payload: str | None = None


async def read_card_for_citizen(ctx, ui: UIPort, reader: CardReader,  # noqa: ANN001 - KioskContext
                                card: TransitCard) -> tuple[CardBalance, list[LogEntry]]:
    """Ask for the card, read it, settle its pending actions (a torn top-up paid earlier: this
    tap writes or records it), and show balance, concession and recent trips. CitizenLeft when
    no card comes; CardCorrupt / DeviceError when it cannot be read."""
    lang = ctx.settings.lang
    await ui.show_step("card.place")
    try:
        await reader.wait_for_card(timeout=ctx.settings.card_wait_s)
    except (CommandTimeout, NoCard) as exc:
        raise CitizenLeft("no card placed") from exc
    await ui.show_step("card.reading")
    # the balance goes on the screen first (a few blocks); the back-office check and the trip
    # log (six more blocks) follow while the citizen reads it
    balance = await card.read_balance()
    await ui.show_step("card.balance", balance=format_rials(balance.balance, lang),
                       serial=balance.serial, profile=str(balance.profile))
    if str(balance.profile) != "regular":
        await ui.show_step(f"card.profile.{balance.profile}")
    # a torn top-up of this card, paid at some kiosk and never finished: this tap settles it
    balance, settled = await settle_pending_actions(ctx.backoffice, card, balance,
                                                    settled_by=ctx.journal.new_tx_id(), money=ctx.money)
    for item in settled:
        await ui.show_step("card.pending_applied", amount=format_rials(item.amount_rials, lang),
                           tx=item.transaction_id)
        await ui.show_step("card.balance", balance=format_rials(balance.balance, lang),
                           serial=balance.serial, profile=str(balance.profile))
    trips = await card.read_log()
    await ui.show_step("card.trips", count=len(trips))
    return balance, trips


class CardTopupFlow:
    def __init__(self, ctx, ui: UIPort) -> None:  # noqa: ANN001 - KioskContext (no import cycle)
        self.ctx = ctx
        self.ui = ui
        self.settings = ctx.settings

    # --- the flow ------------------------------------------------------------------------------
    async def run(self) -> TopupResult:
        reader = self.ctx.available(CardReader)
        keys: CardKeys | None = self.ctx.transit_keys
        if reader is None or keys is None or self.ctx.available(PaymentTerminal) is None:
            await self.ui.show_error("service.unavailable")
            return await self._end(Outcome(False, "service.unavailable"), None, 0)
        if self.ctx.out_of_service is not None:
            await self.ui.show_error("service.out_of_service")
            return await self._end(Outcome(False, "service.out_of_service"), None, 0)
        card = TransitCard(reader, keys)
        try:
            balance = await self._read_card(reader, card)
            amount = await self._choose_amount(balance)
            if not await self.ui.confirm("topup.confirm", amount=format_rials(amount, self.settings.lang),
                                         balance_after=format_rials(balance.balance + amount, self.settings.lang)):
                return await self._end(Outcome(False, "fee.cancelled"), None, amount, balance)
        except CitizenLeft:
            return await self._end(Outcome(False, "fee.cancelled"), None, 0)
        except (CardCorrupt, DeviceError) as exc:
            log.warning("card not read: %s", exc)
            key = "card.unreadable" if isinstance(exc, CardCorrupt) else "card.not_placed"
            await self.ui.show_error(key)
            return await self._end(Outcome(False, key), None, 0)
        return await self._pay(card, balance, amount)

    async def _read_card(self, reader: CardReader, card: TransitCard) -> CardBalance:
        return (await read_card_for_citizen(self.ctx, self.ui, reader, card))[0]

    async def _choose_amount(self, balance: CardBalance) -> int:
        s = self.settings
        room = s.card_max_balance_rials - balance.balance
        lang = s.lang
        for _ in range(3):  # three tries, then the citizen is taken to have left
            # a preset's id is its amount in rials; the screen shows it formatted
            options = [Choice(str(a), "topup.preset")
                       for a in s.topup_presets_rials if s.topup_min_rials <= a <= min(s.topup_max_rials, room)]
            options.append(Choice(OTHER, "topup.other_amount"))
            picked = await self.ui.choose("topup.choose_amount", options)
            if picked == OTHER:
                digits = await self.ui.ask_digits("topup.enter_amount", min_len=1, max_len=10)
                amount = int(digits)
            else:
                amount = int(picked)
            if not s.topup_min_rials <= amount <= s.topup_max_rials:
                await self.ui.show_error("topup.amount_out_of_range", min=format_rials(s.topup_min_rials, lang),
                                         max=format_rials(s.topup_max_rials, lang))
                continue
            if amount > room:
                await self.ui.show_error("topup.over_card_max", max=format_rials(s.card_max_balance_rials, lang))
                continue
            return amount
        raise CitizenLeft("no valid amount chosen")

    # --- money and the card ------------------------------------------------------------------------
    async def _pay(self, card: TransitCard, balance: CardBalance, amount: int) -> TopupResult:
        money: MoneyPath = self.ctx.money
        order = TopupOrder(balance.uid, balance.serial, str(balance.profile), balance.balance, balance.seq,
                           self.ctx.kiosk_id)
        try:
            tx_id = await money.open_transaction(CARD_TOPUP.name, amount, order.to_journal())
        except JournalBroken:
            await self.ui.show_error("service.out_of_service")
            return await self._end(Outcome(False, "service.out_of_service"), None, amount, balance)
        except StorageLow as exc:
            await self.ui.show_error(exc.key)
            return await self._end(Outcome(False, exc.key), None, amount, balance)
        try:
            return await self._pay_claimed(tx_id, card, balance, amount)
        except asyncio.CancelledError:
            raise
        except Exception:
            # anything past CREATED: the journal holds the last state written and recovery
            # finishes it from there (a planned write becomes a pending action, never a refund)
            log.exception("unexpected failure mid-top-up, left for recovery", extra={"tx": tx_id})
            await self.ui.show_error("pay.unknown", tx=tx_id)
            return await self._end(Outcome(False, "pay.unknown", {"tx": tx_id}, tx_id), self._state(tx_id),
                                   amount, balance, tx_id)
        finally:
            money.release(tx_id)

    async def _pay_claimed(self, tx_id: str, card: TransitCard, balance: CardBalance, amount: int) -> TopupResult:
        money: MoneyPath = self.ctx.money
        await self.ui.show_step("pay.insert_card", amount_rials=amount)
        try:
            charge = await charge_or_cancel(money, self.ui, tx_id, amount)
        except PaymentCancelled as cancelled:  # the money path undid what the terminal did
            return await self._end(cancelled.outcome, cancelled.state, amount, balance, tx_id)
        except AmountTooLarge as exc:
            await money.cancel(tx_id, {"reason": exc.to_dict()})
            await self.ui.show_error("pay.amount_over_limit")
            return await self._end(Outcome(False, "pay.amount_over_limit", transaction_id=tx_id), TxState.CANCELLED,
                                   amount, balance, tx_id)
        except DeviceError as exc:  # no terminal: nothing was asked, nothing charged
            await money.cancel(tx_id, {"reason": exc.to_dict()})
            await self.ui.show_error("service.unavailable")
            return await self._end(Outcome(False, "service.unavailable", transaction_id=tx_id), TxState.CANCELLED,
                                   amount, balance, tx_id)
        if charge.state == TxState.DECLINED:
            return await self._end(Outcome(False, "pay.declined", transaction_id=tx_id), TxState.DECLINED,
                                   amount, balance, tx_id)
        if charge.state == TxState.PAYING:
            return await self._end(Outcome(False, "pay.unknown", {"tx": tx_id}, tx_id), TxState.PAYING,
                                   amount, balance, tx_id)
        fault_point("after-paid")

        await self.ui.show_step("topup.writing")
        plan = await self._plan(card, balance, tx_id, amount)
        if plan is None:  # the card went before anything was written: the money goes back
            result = await money.reverse(tx_id, "card gone before the write", ask_backoffice=False)
            key = "topup.not_written_reversed" if result == SettleResult.REVERSED else "topup.not_written_refund_pending"
            return await self._end(Outcome(False, key, {"tx": tx_id}, tx_id), self._state(tx_id), amount, balance, tx_id)
        await money.writer.append(tx_id, TxState.FULFILLING, {"write_plan": plan.to_dict()})
        fault_point("before-card-write")
        written = await self._write(card, plan, tx_id)
        fault_point("after-card-write")
        tx = self.ctx.journal.get(tx_id)
        if written is None:
            item = await queue_pending_action(money, tx, plan, reason="card not back after a torn write")
            await money.settle(item)
            payload, printed = await self._receipt(tx_id, pending=True)
            if self._state(tx_id) == TxState.POSTED:  # else the outbox posts it and completes
                await money.complete(tx_id, receipt_printed=printed)
            return await self._end(Outcome(False, "topup.pending_action", {"tx": tx_id}, tx_id, payload),
                                   self._state(tx_id), amount, balance, tx_id, payload=payload)
        item = await queue_load(money, tx, plan, balance_seen=written.balance)
        settled = await money.settle(item)
        payload, printed = await self._receipt(tx_id, pending=settled != SettleResult.SETTLED)
        lang = self.settings.lang
        if settled == SettleResult.SETTLED:
            await money.complete(tx_id, receipt_printed=printed)
            tracking = self.ctx.journal.get(tx_id).data.get("tracking_code", "")
            outcome = Outcome(True, "topup.done", {"balance": format_rials(written.balance, lang), "tracking": tracking},
                              tx_id, payload)
        else:  # on the card; the load post waits in the outbox (store-and-forward)
            outcome = Outcome(True, "topup.done_pending", {"balance": format_rials(written.balance, lang)},
                              tx_id, payload)
        return await self._end(outcome, self._state(tx_id), amount, balance, tx_id, written.balance, payload)

    async def _plan(self, card: TransitCard, balance: CardBalance, tx_id: str, amount: int) -> WritePlan | None:
        return await plan_on_same_card(self.ctx, self.ui, card, balance, tx_id, amount, place_again="topup.place_again")

    async def _write(self, card: TransitCard, plan: WritePlan, tx_id: str) -> CardBalance | None:
        return await write_verified(self.ctx, self.ui, card, plan, tx_id, place_again="topup.place_again")

    async def _same_card_back(self, uid: str) -> bool:
        return await same_card_back(self.ctx, self.ui, uid, step="topup.place_again")

    # --- the end -----------------------------------------------------------------------------------
    async def _receipt(self, tx_id: str, *, pending: bool) -> tuple[str | None, bool]:
        return await issue_receipt(self.ctx, self.ui, tx_id, pending=pending)

    def _state(self, tx_id: str) -> TxState | None:
        try:
            return self.ctx.journal.state_of(tx_id)
        except Exception:  # noqa: BLE001 - only for the summary
            return None

    async def _end(self, outcome: Outcome, state: TxState | None, amount: int, balance: CardBalance | None = None,
                   tx_id: str | None = None, balance_after: int | None = None, payload: str | None = None) -> TopupResult:
        await self.ui.show_outcome(outcome)
        return TopupResult(outcome, state, tx_id, amount, balance.serial if balance else "",
                           balance.balance if balance else None, balance_after, payload)
