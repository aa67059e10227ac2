"""Look up a citizen's municipal fee slips, then print them or pay several at once.

Choose the fee type → type its identifier on our own keypad (a national code's check digit is
verified as typed; a plate is two digits, a letter from the picker, three digits and the
region) → the back-office lists the slips (payer's name masked, nothing more) → choose slips →
print each as a slip a bank accepts, or pay the unpaid ones together (kiosk.flows.fee_basket).
Behind the UI port: the touch UI and the headless demo run this code. Nothing here moves money
itself; paying is the basket flow's."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from devices.base import DeviceError
from devices.contracts import ReceiptPrinter
from kiosk.backoffice_client import FeeSlip, OwnerSlips
from kiosk.errors import KioskError
from kiosk.fee_types import FEE_TYPES, ID_DIGITS, PLATE_LETTERS, FeeType, check_identifier, plate_text
from kiosk.journal import TxState
from kiosk.services.basket import MAX_BILLS
from kiosk.receipt_issuer import render_for
from kiosk.ui_port import Choice, CitizenLeft, Outcome, UIPort

log = logging.getLogger("kiosk.flows.slips")

MAX_INPUT_TRIES = 3


@dataclass(frozen=True)
class SlipsResult:
    outcome: Outcome
    final_state: TxState | None = None
    transaction_id: str | None = None
    amount_rials: int = 0
    receipt_payload: str | None = None
    fee_type: str = ""
    slips_listed: int = 0
    chosen: tuple[FeeSlip, ...] = ()
    printed: tuple[str, ...] = ()  # bill ids of the slips printed
    basket: Any = None  # the basket flow's result when the citizen paid
    extra: dict[str, Any] = field(default_factory=dict)


async def ask_plate(ui: UIPort) -> str:
    """An Iranian plate on our own keypad and letter picker: two digits, a letter, three
    digits, the two-digit region. InvalidPlate when the parts do not make one."""
    two = await ui.ask_digits("slips.plate_two", min_len=2, max_len=2)
    letter = await ui.choose("slips.plate_letter", [Choice(str(i), "slips.plate_letter_item", {"letter": x})
                                                     for i, x in enumerate(PLATE_LETTERS)])
    three = await ui.ask_digits("slips.plate_three", min_len=3, max_len=3)
    region = await ui.ask_digits("slips.plate_region", min_len=2, max_len=2)
    return plate_text(two, PLATE_LETTERS[int(letter)], three, region)


class FeeSlipsFlow:
    """`run()` asks everything; the certificate flow uses its steps (fee type, identifier,
    paying what is outstanding)."""

    def __init__(self, ctx: Any, ui: UIPort, *, lang: str = "fa") -> None:
        self.ctx = ctx
        self.ui = ui
        self.lang = lang

    async def run(self, *, fee_types: Sequence[str] | None = None) -> SlipsResult:
        try:
            fee_type = await self.choose_fee_type("slips.choose_type", fee_types)
            identifier = await self.ask_identifier(fee_type)
            owner = await self.look_up(fee_type, identifier)
        except CitizenLeft:
            return await self._end(Outcome(False, "slips.cancelled"))
        except KioskError as exc:
            await self.ui.show_error(exc.key, **exc.context)
            return await self._end(Outcome(False, exc.key, exc.context))
        if not owner.slips:
            return await self._end(Outcome(False, "slips.none"), fee_type=fee_type.name)
        try:
            chosen, action = await self._choose_and_act(owner)
        except CitizenLeft:
            return await self._end(Outcome(False, "slips.cancelled"), fee_type=fee_type.name,
                                   listed=len(owner.slips))
        if action == "print":
            printed = await self.print_slips(chosen, owner)
            key = "slips.printed" if printed else "slips.not_printed"
            return await self._end(Outcome(bool(printed), key, {"count": len(printed)}), fee_type=fee_type.name,
                                   listed=len(owner.slips), chosen=chosen, printed=printed)
        return await self.pay(chosen, fee_type=fee_type.name, listed=len(owner.slips))

    async def _choose_and_act(self, owner: OwnerSlips) -> tuple[list[FeeSlip], str]:
        """The slips and print-or-pay; paying more than one payment takes is asked again (the
        list stays on screen: no second look-up, which would count against the limits)."""
        for _ in range(MAX_INPUT_TRIES):
            chosen = await self.choose_slips(owner)
            action = await self.ui.choose("slips.what_next", [Choice("print", "slips.print"),
                                                              Choice("pay", "slips.pay")])
            if action == "pay" and len([s for s in chosen if s.status == "unpaid"]) > MAX_BILLS:
                await self.ui.show_error("slips.too_many", max=MAX_BILLS)
                continue
            return chosen, action
        raise CitizenLeft("too many tries at choosing slips")

    # --- input ------------------------------------------------------------------------------
    async def choose_fee_type(self, key: str, names: Sequence[str] | None = None) -> FeeType:
        types = [FEE_TYPES[n] for n in (names or FEE_TYPES)]
        if len(types) == 1:
            return types[0]
        picked = await self.ui.choose(key, [Choice(t.name, f"slips.type.{t.name}") for t in types])
        return FEE_TYPES[picked]

    async def ask_identifier(self, fee_type: FeeType) -> str:
        """The identifier, checked as typed; three wrong entries and the citizen is let go."""
        for _ in range(MAX_INPUT_TRIES):
            try:
                if fee_type.identifier == "plate":
                    return await self._plate()
                low, high = ID_DIGITS[fee_type.identifier]
                typed = await self.ui.ask_digits(f"slips.enter_{fee_type.identifier}", min_len=low, max_len=high)
                return check_identifier(fee_type, typed)
            except KioskError as exc:
                await self.ui.show_error(exc.key, **exc.context)
        raise CitizenLeft("too many invalid identifiers")

    async def _plate(self) -> str:
        return await ask_plate(self.ui)

    async def look_up(self, fee_type: FeeType, identifier: str) -> OwnerSlips:
        """The slips; BackofficeUnavailable, LookupLimited and the like reach the citizen
        with their own text (nothing is charged by a look-up)."""
        await self.ui.show_step("slips.looking_up")
        return await asyncio.to_thread(self.ctx.backoffice.lookup_slips, fee_type.name, identifier)

    async def choose_slips(self, owner: OwnerSlips, *, only_unpaid: bool = False) -> list[FeeSlip]:
        slips = [s for s in owner.slips if s.status == "unpaid"] if only_unpaid else list(owner.slips)
        # the identifier as the back-office masked it, for the screen's slip card (the
        # certificate flow's slips were not typed on this screen's keypad)
        masked = {"identifier": owner.identifier_masked} if owner.identifier_masked else {}
        options = [Choice(str(s.slip_id), "slips.item", {**self.slip_params(s), **masked}) for s in slips]
        ids = await self.ui.choose_many("slips.choose", options, count=len(slips), owner=owner.owner_name)
        return [s for s in slips if str(s.slip_id) in ids]

    @staticmethod
    def slip_params(slip: FeeSlip) -> dict[str, Any]:
        """A slip's row as parameters (rendered per language by kiosk.messages)."""
        params: dict[str, Any] = {"fee_type": slip.description_fa}
        if slip.kind in FEE_TYPES:
            params = {"fee_type_key": f"slips.type.{slip.kind}"}
        return {**params,
                "period": slip.period, "amount_rials": slip.amount_rials, "due": slip.due_date or "-",
                "status_key": f"slips.status.{slip.status}", "bill_id": slip.bill_id,
                "payment_id": slip.payment_id}

    # --- print --------------------------------------------------------------------------------
    async def print_slips(self, slips: Sequence[FeeSlip], owner: OwnerSlips) -> tuple[str, ...]:
        """Each slip on its own paper; a printer fault stops the run and the ids go on screen."""
        from kiosk.slips import build_slip_document

        await self.ui.show_step("slips.printing", count=len(slips))
        printer = self.ctx.available(ReceiptPrinter)
        printed: list[str] = []
        for slip in slips:
            if printer is None:
                break
            try:
                doc = build_slip_document(slip, owner_name_masked=owner.owner_name, kiosk_id=self.ctx.kiosk_id,
                                          printed_at=dt.datetime.now(dt.UTC), lang=self.lang)
                await printer.print_job(await render_for(printer, doc))
            except (DeviceError, KioskError) as exc:  # the printer, or a slip that must not be printed
                log.warning("fee slip not printed: %s", exc)
                break
            printed.append(slip.bill_id)
        if len(printed) < len(slips):
            for slip in slips[len(printed):]:
                await self.ui.show_error("slips.not_printed", bill_id=slip.bill_id, payment_id=slip.payment_id)
        return tuple(printed)

    # --- pay ----------------------------------------------------------------------------------
    async def pay(self, chosen: Sequence[FeeSlip], *, fee_type: str = "", listed: int = 0) -> SlipsResult:
        from kiosk.flows.fee_basket import FeeBasketFlow

        unpaid = [s for s in chosen if s.status == "unpaid"]
        if not unpaid:
            await self.ui.show_error("slips.nothing_unpaid")
            return await self._end(Outcome(False, "slips.nothing_unpaid"), fee_type=fee_type, listed=listed,
                                   chosen=tuple(chosen))
        basket = await FeeBasketFlow(self.ctx, self.ui).pay(unpaid)
        return SlipsResult(basket.outcome, basket.final_state, basket.transaction_id, basket.amount_rials,
                           basket.receipt_payload, fee_type, listed, tuple(unpaid), (), basket)

    async def _end(self, outcome: Outcome, *, fee_type: str = "", listed: int = 0,
                   chosen: Sequence[FeeSlip] = (), printed: Sequence[str] = ()) -> SlipsResult:
        await self.ui.show_outcome(outcome)
        return SlipsResult(outcome, fee_type=fee_type, slips_listed=listed, chosen=tuple(chosen),
                           printed=tuple(printed))
