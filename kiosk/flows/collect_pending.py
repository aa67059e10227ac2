"""Collect pending top-ups (دریافت شارژ خریداری‌شده): top-ups paid elsewhere (USSD, the city's
app) against the card's serial are written to the card at the tap, each exactly once, and the
citizen is told the amount and the new balance. Behind the UI port, so the touch UI and the
headless demo run this same code.

Place the card → read it (which also settles its pending actions, as every tap does) → ask the
back-office what waits for its serial (`card_account().collectable`) → for each pending load,
one transaction of the value-only kind `pending_load` (kiosk/services/pending_load.py):

  CREATED (which load, the card as read) → FULFILLING (the write plan) → the claim: a pending
  action reserving that load for this write, confirmed by the back-office before anything is
  written → write → re-read → FULFILLED + the load post queued, one commit → post → POSTED →
  a zero-price receipt → COMPLETED.

One transaction per pending load: each has its own claim, write, counter step and receipt, so
a tear or a refusal touches one load and the others stay collectable. The claim refused
(collected elsewhere): CANCELLED, nothing written. The back-office unreachable at the claim:
nothing written, the transaction is left at FULFILLING and recovery asks whether the claim
landed (kiosk/services/pending_load.py `resume`). A card pulled during the write: UNCERTAIN,
the same card is asked for again (`card_return_wait_s`) and its counters decide; not back: the
claim is the card's pending action, so its next tap at any kiosk settles it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from devices.base import DeviceError
from devices.contracts import CardReader
from devices.transit_card import (
    BalanceLimit,
    CardBalance,
    CardCorrupt,
    TransitCard,
    WritePlan,
)
from kiosk.backoffice_client import (
    BackofficeError,
    LoadAlreadyRecorded,
    PendingLoad,
    PendingLoadAlreadyApplied,
    PendingLoadNotFound,
    TransitRefused,
)
from kiosk.faults import fault_point
from kiosk.flows.card_write import issue_receipt, plan_on_same_card, same_card_back, write_verified
from kiosk.flows.card_topup import read_card_for_citizen
from kiosk.fmt import format_number, format_rials
from kiosk.journal import TxState
from kiosk.money_path import MoneyPath, SettleResult
from kiosk.service_guard import JournalBroken, StorageLow
from kiosk.services.pending_load import PENDING_LOAD, PendingLoadOrder, claim, journal_owed, queue_load
from kiosk.ui_port import CitizenLeft, Outcome, UIPort

log = logging.getLogger("kiosk.flows.collect")


@dataclass(frozen=True)
class Collected:
    """One pending load's transaction and how it ended."""

    transaction_id: str | None
    pending_load_id: int
    amount_rials: int
    final_state: TxState | None
    message_key: str  # collect.done | collect.done_pending | collect.pending_action | …
    balance_after: int | None = None  # the card re-read after the write (None: not written here)
    receipt_payload: str | None = None
    tracking_code: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # of the message the citizen was shown

    @property
    def on_card(self) -> bool:
        return self.balance_after is not None


@dataclass(frozen=True)
class CollectResult:
    outcome: Outcome
    final_state: TxState | None  # the last transaction's
    transaction_id: str | None  # the last transaction's
    amount_rials: int  # written to the card and verified at this tap
    card_serial: str = ""
    balance_before: int | None = None
    balance_after: int | None = None
    receipt_payload: str | None = None  # the last transaction's
    collected: tuple[Collected, ...] = ()


class CollectPendingFlow:
    def __init__(self, ctx, ui: UIPort) -> None:  # noqa: ANN001 - KioskContext (no import cycle)
        self.ctx = ctx
        self.ui = ui
        self.settings = ctx.settings

    def _rials(self, amount: int) -> str:
        return format_rials(amount, self.settings.lang)

    # --- the flow ------------------------------------------------------------------------------
    async def run(self) -> CollectResult:
        reader = self.ctx.available(CardReader)
        keys = self.ctx.transit_keys
        if reader is None or keys is None:
            await self.ui.show_error("service.unavailable")
            return await self._end(Outcome(False, "service.unavailable"))
        if self.ctx.out_of_service is not None:
            await self.ui.show_error("service.out_of_service")
            return await self._end(Outcome(False, "service.out_of_service"))
        card = TransitCard(reader, keys)
        try:
            balance, _ = await read_card_for_citizen(self.ctx, self.ui, reader, card)
        except CitizenLeft:
            return await self._end(Outcome(False, "card.not_placed"))
        except (CardCorrupt, DeviceError) as exc:
            log.warning("card not read: %s", exc)
            key = "card.unreadable" if isinstance(exc, CardCorrupt) else "card.not_placed"
            await self.ui.show_error(key)
            return await self._end(Outcome(False, key))
        start = balance
        await self.ui.show_step("collect.checking")
        try:
            account = await asyncio.to_thread(self.ctx.backoffice.card_account, balance.serial)
        except BackofficeError as exc:
            log.warning("card account unavailable: %s", exc)
            await self.ui.show_error("collect.backoffice_unavailable")
            return await self._end(Outcome(False, "collect.backoffice_unavailable"), start)
        waiting = sorted(account.collectable, key=lambda p: p.pending_load_id)
        if account.pending_actions:
            # an unfinished write this tap could not settle (the card moved on, or its log
            # cannot tell): nothing more is written to the card until an operator has looked,
            # and the back-office would refuse the claim anyway
            await self.ui.show_error("collect.card_busy")
            return await self._end(Outcome(False, "collect.card_busy"), start)
        if not waiting:
            return await self._end(Outcome(True, "collect.none"), start)
        await self.ui.show_step("collect.found", count=format_number(len(waiting), self.settings.lang),
                                amount=self._rials(sum(p.amount_rials for p in waiting)))

        done: list[Collected] = []
        for pending in waiting:
            if balance.balance + pending.amount_rials > self.settings.card_max_balance_rials:
                await self.ui.show_error("collect.over_card_max", amount=self._rials(pending.amount_rials),
                                         max=self._rials(self.settings.card_max_balance_rials))
                done.append(Collected(None, pending.pending_load_id, pending.amount_rials, None,
                                      "collect.over_card_max", params={
                                          "amount": self._rials(pending.amount_rials),
                                          "max": self._rials(self.settings.card_max_balance_rials)}))
                continue
            one, after = await self._collect_one(card, balance, pending)
            done.append(one)
            if after is None:
                if one.message_key == "collect.already_collected":
                    continue  # nothing written; the others may still be collected
                break  # the card or the back-office is not in a state to write more
            balance = after
        return await self._finish(start, balance, done)

    async def _finish(self, start: CardBalance, balance: CardBalance, done: list[Collected]) -> CollectResult:
        on_card = [c for c in done if c.on_card]
        last = next((c for c in reversed(done) if c.transaction_id is not None), None)
        total = sum(c.amount_rials for c in on_card)
        if on_card:
            pending = any(c.message_key == "collect.done_pending" for c in on_card)
            outcome = Outcome(True, "collect.done_pending" if pending else "collect.done",
                              {"amount": self._rials(total), "balance": self._rials(balance.balance)},
                              on_card[-1].transaction_id, on_card[-1].receipt_payload)
        else:
            failed = done[-1]
            outcome = Outcome(False, failed.message_key, dict(failed.params), failed.transaction_id,
                              failed.receipt_payload)
        return await self._end(outcome, start, balance.balance, total, tuple(done),
                               last.final_state if last else None, last.transaction_id if last else None,
                               last.receipt_payload if last else None)

    # --- one pending load ------------------------------------------------------------------------
    async def _collect_one(self, card: TransitCard, balance: CardBalance,
                           pending: PendingLoad) -> tuple[Collected, CardBalance | None]:
        """One transaction for one pending load. Returns how it ended and the card as re-read
        after the write (None: nothing verified on the card, collect no more at this tap)."""
        money: MoneyPath = self.ctx.money
        order = PendingLoadOrder(pending.pending_load_id, balance.uid, balance.serial, str(balance.profile),
                                 balance.balance, balance.seq, pending.source, self.ctx.kiosk_id)
        amount = pending.amount_rials
        try:
            tx_id = await money.open_transaction(PENDING_LOAD.name, amount, order.to_journal())
        except JournalBroken:
            await self.ui.show_error("service.out_of_service")
            return Collected(None, pending.pending_load_id, amount, None, "service.out_of_service"), None
        except StorageLow as exc:
            await self.ui.show_error(exc.key)
            return Collected(None, pending.pending_load_id, amount, None, exc.key), None
        try:
            return await self._collect_claimed(tx_id, card, balance, pending)
        except asyncio.CancelledError:
            raise
        except Exception:
            # past CREATED the journal holds the last state written and recovery finishes it
            # from there: the back-office tells whether the claim (and so a write) happened
            log.exception("unexpected failure mid-collection, left for recovery", extra={"tx": tx_id})
            await self.ui.show_error("collect.unknown", tx=tx_id)
            return Collected(tx_id, pending.pending_load_id, amount, self._state(tx_id), "collect.unknown",
                             params={"tx": tx_id}), None
        finally:
            money.release(tx_id)

    async def _collect_claimed(self, tx_id: str, card: TransitCard, balance: CardBalance,
                               pending: PendingLoad) -> tuple[Collected, CardBalance | None]:
        money: MoneyPath = self.ctx.money
        amount, pid = pending.amount_rials, pending.pending_load_id
        fault_point("after-created")
        await self.ui.show_step("collect.writing", amount=self._rials(amount))

        def ended(key: str, **extra: Any) -> Collected:
            return Collected(tx_id, pid, amount, self._state(tx_id), key, **extra)

        try:
            plan = await self._plan(card, balance, tx_id, amount)
        except BalanceLimit:
            await money.cancel(tx_id, {"reason": "over the card's maximum balance"})
            await self.ui.show_error("collect.over_card_max", amount=self._rials(amount),
                                     max=self._rials(self.settings.card_max_balance_rials))
            return ended("collect.over_card_max", params={
                "amount": self._rials(amount), "max": self._rials(self.settings.card_max_balance_rials)}), None
        if plan is None:  # the card went before anything was planned: the load still waits
            await money.cancel(tx_id, {"reason": "card gone before the write"})
            await self.ui.show_error("collect.card_gone")
            return ended("collect.card_gone"), None
        await money.writer.append(tx_id, TxState.FULFILLING, {"write_plan": plan.to_dict()})

        # the claim: the back-office reserves this pending load for this write, or refuses
        try:
            action = await claim(self.ctx.backoffice, self.ctx.journal.get(tx_id), plan)
        except LoadAlreadyRecorded:  # cannot happen for a fresh transaction: an operator looks
            log.error("claim refused: a load of this transaction is recorded", extra={"tx": tx_id})
            await self.ui.show_error("collect.unknown", tx=tx_id)
            return ended("collect.unknown", params={"tx": tx_id}), None
        except TransitRefused as exc:
            await money.writer.append(tx_id, TxState.CANCELLED, {"reason": "claim refused", "refusal": exc.key})
            key = ("collect.already_collected" if isinstance(exc, (PendingLoadAlreadyApplied, PendingLoadNotFound))
                   else "collect.not_now")
            log.info("claim refused (%s): nothing written", exc.key, extra={"tx": tx_id})
            await self.ui.show_error(key)
            return ended(key), None
        except BackofficeError as exc:
            # whether the claim landed is unknown: nothing is written; recovery asks the
            # back-office and journals the claim as the card's pending action, or CANCELLED
            log.warning("claim unanswered, nothing written: %s", exc, extra={"tx": tx_id})
            await self.ui.show_error("collect.backoffice_unavailable")
            return ended("collect.backoffice_unavailable"), None

        fault_point("before-card-write")
        written = await self._write(card, plan, tx_id)
        fault_point("after-card-write")
        if written is None:
            # the claim stays open as the card's pending action: its next tap settles it
            await journal_owed(money, tx_id, action, reason="card not back after a torn write")
            payload, printed = await self._receipt(tx_id, pending=True)
            await money.complete(tx_id, receipt_printed=printed)
            await self.ui.show_error("collect.pending_action", tracking=action.tracking_code)
            return ended("collect.pending_action", receipt_payload=payload, tracking_code=action.tracking_code,
                         params={"tracking": action.tracking_code, "tx": tx_id}), None
        item = await queue_load(money, self.ctx.journal.get(tx_id), plan, balance_seen=written.balance)
        settled = await money.settle(item)
        payload, printed = await self._receipt(tx_id, pending=settled != SettleResult.SETTLED)
        if settled == SettleResult.SETTLED:
            await money.complete(tx_id, receipt_printed=printed)
            key = "collect.done"
        else:  # on the card; the load post waits in the outbox (store-and-forward)
            key = "collect.done_pending"
        tracking = str(self.ctx.journal.get(tx_id).data.get("tracking_code", ""))
        return ended(key, balance_after=written.balance, receipt_payload=payload, tracking_code=tracking), written

    async def _plan(self, card: TransitCard, balance: CardBalance, tx_id: str, amount: int) -> WritePlan | None:
        return await plan_on_same_card(self.ctx, self.ui, card, balance, tx_id, amount, place_again="collect.place_again")

    async def _write(self, card: TransitCard, plan: WritePlan, tx_id: str) -> CardBalance | None:
        return await write_verified(self.ctx, self.ui, card, plan, tx_id, place_again="collect.place_again")

    async def _same_card_back(self, uid: str) -> bool:
        return await same_card_back(self.ctx, self.ui, uid, step="collect.place_again")

    # --- the end -------------------------------------------------------------------------------
    async def _receipt(self, tx_id: str, *, pending: bool) -> tuple[str | None, bool]:
        return await issue_receipt(self.ctx, self.ui, tx_id, pending=pending)

    def _state(self, tx_id: str) -> TxState | None:
        try:
            return self.ctx.journal.state_of(tx_id)
        except Exception:  # noqa: BLE001 - only for the summary
            return None

    async def _end(self, outcome: Outcome, start: CardBalance | None = None, balance_after: int | None = None,
                   amount: int = 0, collected: tuple[Collected, ...] = (), state: TxState | None = None,
                   tx_id: str | None = None, payload: str | None = None) -> CollectResult:
        await self.ui.show_outcome(outcome)
        return CollectResult(outcome, state, tx_id, amount, start.serial if start else "",
                             start.balance if start else None,
                             balance_after if balance_after is not None else (start.balance if start else None),
                             payload, collected)
