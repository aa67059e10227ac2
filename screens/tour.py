"""`kiosk ui-tour`: walk every screen of the touch UI on the demo environment and save a PNG
of each, in Persian and in English (the language button is tapped between the two, so the
pictures also show the live re-render). Step screens are held (KivyUI.hold_steps) until both
are taken.

The walk: attract, home, the fee flow (how to enter, an invalid bill id and its error, the
keypad, looking up, confirm, the card terminal step, the printer out of paper and the
receipt's QR on the outcome), top-up amounts, a QR ticket shown on the screen (no paper),
card balance, buying a card, the municipal services (fee slips looked up and two paid together,
a traffic-zone permit with the plate's letter picker and the day grid, a settlement certificate
shown as a QR with no paper), the attract and home screens in large text and high contrast,
the inactivity warning, and the home screen with the transit tiles unavailable once the card
reader is unplugged.

Landscape: the same walk on a window wider than tall, `kiosk ui-tour --size 1280x720 --out
docs/screenshots/landscape` (the screens lay themselves out from the window's shape; the file
names are the same, so a landscape set goes in its own directory)."""

from __future__ import annotations

import asyncio
import importlib.metadata
from pathlib import Path
from typing import Any

from screens.app import KivyUI
from screens.driver import Citizen


async def tour(ui: KivyUI, ctx: Any, env: Any, out: Path) -> list[Path]:
    c = Citizen(ui, timeout=40)
    saved: list[Path] = []

    async def shoot(name: str) -> None:
        await c.settle(0.4)
        for lang in ("fa", "en"):
            if ui.lang != lang:
                await c.switch_language()
                await c.settle(0.4)
            path = out / f"{len(saved) // 2 + 1:02d}-{name}-{lang}.png"
            c.shown_png(path)
            saved.append(path)
        await c.switch_language()  # back to Persian
        await c.settle(0.2)

    async def steps_until(screen: str, shots: dict[str, str]) -> None:
        """Release held step screens (shooting the named ones) until `screen` shows."""
        while ui.screen != screen:
            if ui.screen == "step" and ui._step_gate is not None and not ui._step_gate.done():
                if ui.screen_key in shots:
                    await shoot(shots.pop(ui.screen_key))
                ui.release_step()
            await asyncio.sleep(0.05)

    slip = await _unpaid_slip(ctx)

    async def one(service: str) -> None:
        await ui.attract()
        await ui.home()
        await ui.run_service(ctx, service)

    # attract and home
    session = asyncio.ensure_future(one("fee_payment"))
    await c.screen("attract")
    await shoot("attract")
    await c.press("start")
    await c.screen("home")
    await shoot("home")
    # fee payment: a mistyped bill id first
    await c.press("fee_payment")
    await c.screen("choose", "fee.how_to_enter")
    await shoot("choose-how-to-enter")
    await c.press("manual")
    await c.screen("digits", "fee.enter_bill_id")
    await c.type_digits("1234567")
    await shoot("keypad")
    await c.press("ok")
    await c.screen("digits", "fee.enter_payment_id")
    await c.type_digits("1234567")
    await c.press("ok")
    await c.screen("error")
    await shoot("error-invalid-bill")
    await c.press("ok")
    await c.screen("choose", "fee.how_to_enter")
    await c.press("manual")
    await c.screen("digits", "fee.enter_bill_id")
    await c.type_digits(slip.bill_id)
    await c.press("ok")
    await c.screen("digits", "fee.enter_payment_id")
    await c.type_digits(slip.payment_id)
    await c.press("ok")
    await steps_until("confirm", {"fee.looking_up": "step-looking-up"})
    await shoot("confirm")
    env.printer.set_paper("out")  # the receipt cannot print: the outcome shows its QR
    await c.press("yes")
    await steps_until("error", {"pay.insert_card": "step-card-terminal"})
    await shoot("error-receipt-not-printed")
    await c.press("ok")
    await steps_until("outcome", {})
    await shoot("outcome-receipt-qr")
    await c.press("done")
    await session
    env.printer.set_paper("ok")

    # top-up: the suggested amounts, then cancel
    session = asyncio.ensure_future(one("card_topup"))
    await c.screen("attract")
    await c.press("start")
    await c.screen("home")
    await c.press("card_topup")
    await steps_until("choose", {})
    await shoot("choose-topup-amount")
    await c.press("cancel")
    await steps_until("outcome", {})
    await c.press("done")
    await session

    # a QR ticket with the printer out of paper: the ticket is on the screen to photograph
    env.printer.set_paper("out")
    session = asyncio.ensure_future(one("qr_ticket"))
    await c.screen("attract")
    await c.press("start")
    await c.screen("home")
    await c.press("qr_ticket")
    await steps_until("choose", {})
    await shoot("choose-ticket")
    await c.press("return")
    await steps_until("confirm", {})
    await shoot("confirm-ticket")
    await c.press("yes")
    await steps_until("outcome", {"ticket.show_on_screen": "step-ticket-on-screen"})
    await shoot("outcome-ticket-on-screen")
    await c.press("done")
    await session
    env.printer.set_paper("ok")

    # card balance
    session = asyncio.ensure_future(one("card_balance"))
    await c.screen("attract")
    await c.press("start")
    await c.screen("home")
    await c.press("card_balance")
    await steps_until("outcome", {"card.reading": "step-card-reading"})
    await shoot("outcome-balance")
    await c.press("done")
    await session

    # buying a new card: its value, the price, the card handed over
    session = asyncio.ensure_future(one("card_sale"))
    await c.screen("attract")
    await c.press("start")
    await c.screen("home")
    await c.press("card_sale")
    await steps_until("choose", {})
    await shoot("choose-card-value")
    await c.press("200000")
    await steps_until("confirm", {})
    await shoot("confirm-card-sale")
    await c.press("yes")
    await steps_until("outcome", {"card_sale.take_card": "step-take-card"})
    await shoot("outcome-card-sale")
    await c.press("done")
    await session

    # fee slips: the type, the national code, the check-box list, print or pay, two paid together
    session = asyncio.ensure_future(one("fee_slips"))
    await c.screen("attract")
    await c.press("start")
    await c.screen("home")
    await c.press("fee_slips")
    await c.screen("choose", "slips.choose_type")
    await shoot("choose-fee-type")
    await c.press("waste_charge")
    await c.screen("digits", "slips.enter_national_code")
    await c.type_digits(await _owner_code())
    await shoot("keypad-national-code")
    await c.press("ok")
    await steps_until("choose_many", {"slips.looking_up": "step-slips-looking-up"})
    unpaid = [i for i, row in ui.check_rows.items() if "پرداخت‌نشده" in row.label.text][:2]
    for slip_id in unpaid:
        await c.press(slip_id)
    await shoot("choose-many-slips")
    await c.press("done")
    await c.screen("choose", "slips.what_next")
    await shoot("choose-print-or-pay")
    await c.press("pay")
    await steps_until("confirm", {"basket.checking": "step-basket-checking"})
    await shoot("confirm-basket")
    await c.press("yes")
    await steps_until("outcome", {})
    await shoot("outcome-basket")
    await c.press("done")
    await session

    # a traffic-zone permit: the plate on the keypad and the letter picker, the day, pay
    session = asyncio.ensure_future(one("traffic_permit"))
    await c.screen("attract")
    await c.press("start")
    await c.screen("home")
    await c.press("traffic_permit")
    await c.screen("digits", "slips.plate_two")
    await c.type_digits("68")
    await c.press("ok")
    await c.screen("choose", "slips.plate_letter")
    await shoot("choose-plate-letter")
    await c.press("6")
    await c.screen("digits", "slips.plate_three")
    await c.type_digits("214")
    await c.press("ok")
    await c.screen("digits", "slips.plate_region")
    await c.type_digits("44")
    await c.press("ok")
    await steps_until("choose", {})
    await shoot("choose-permit-day")
    days = [w.choice_id for w in ui.body.walk() if getattr(w, "choice_id", "")[:2] == "20"]
    await c.press(days[1])
    await steps_until("confirm", {})
    await shoot("confirm-permit")
    await c.press("yes")
    await steps_until("outcome", {})
    await shoot("outcome-permit")
    await c.press("done")
    await session

    # a settlement certificate for a business with nothing owed, the printer out of paper: its QR
    env.printer.set_paper("out")
    session = asyncio.ensure_future(one("certificate"))
    await c.screen("attract")
    await c.press("start")
    await c.screen("home")
    await c.press("certificate")
    await c.screen("choose", "cert.choose_type")
    await shoot("choose-certificate-type")
    await c.press("business_tax")
    await c.screen("digits", "slips.enter_business_license")
    await c.type_digits("14010098812")
    await c.press("ok")
    await steps_until("error", {"cert.asking": "step-certificate-asking"})
    await c.press("ok")
    await steps_until("outcome", {})
    await shoot("outcome-certificate-qr")
    await c.press("done")
    await session
    env.printer.set_paper("ok")
    await c.until(lambda: not ui._printer_down(), "the printer's paper back")

    # large text and high contrast, turned on at the attract screen (the next session resets them)
    session = asyncio.ensure_future(one("traffic_permit"))
    await c.screen("attract")
    await c.press("large_text")
    await c.press("high_contrast")
    await shoot("attract-large-text-high-contrast")
    await c.press("start")
    await c.screen("home")
    await shoot("home-large-text-high-contrast")
    await c.press("traffic_permit")
    await c.screen("digits", "slips.plate_two")
    await c.type_digits("68")
    await shoot("keypad-large-text-high-contrast")
    await c.press("ok")
    await c.screen("choose", "slips.plate_letter")
    await shoot("choose-plate-letter-large-text-high-contrast")
    await c.press("cancel")
    await steps_until("outcome", {})
    await c.press("done")
    await session

    # the inactivity warning, on the home screen
    idle, ui.idle_s = ui.idle_s, 0.5
    session = asyncio.ensure_future(ui.attract())
    await c.screen("attract")
    await c.press("start")
    await session
    home = asyncio.ensure_future(ui.home())
    await c.screen("home")
    await c.until(lambda: ui.overlay is not None, "the inactivity warning")
    ui.idle_s = idle
    for lang in ("fa", "en"):  # any touch dismisses the warning, the language button too
        if ui.overlay is None:
            ui._idle()
        ui._warn_ev.cancel()  # hold the countdown still for the picture
        await c.settle(0.4)
        path = out / f"{len(saved) // 2 + 1:02d}-inactivity-warning-{lang}.png"
        c.shown_png(path)
        saved.append(path)
        await c.press("continue")
        if lang == "fa":
            await c.switch_language()
    await c.switch_language()
    # the card reader goes away (unplugged: its port is gone, so reconnecting fails): the home
    # screen, told by the status coordinator, greys out what needs it and says why
    await c.press("cancel")
    await home
    env.card_reader.stop()
    await ctx.devices.get("card_reader").close()
    await c.until(lambda: not ui.status.service("card_balance").available, "the reader marked unavailable")
    home = asyncio.ensure_future(ui.home())
    await c.screen("home")
    await shoot("home-reader-unavailable")
    await c.press("cancel")
    await home
    return saved


async def _owner_code() -> str:
    """The demo owner's national code (from the demo's entry point: screens never import it)."""
    return str(next(e for e in importlib.metadata.entry_points(group="city_kiosk.environments")
                    if e.name == "demo-owner").load())


async def _unpaid_slip(ctx: Any) -> Any:
    owner_code = await _owner_code()
    owner = await asyncio.to_thread(ctx.backoffice.fee_slips, national_code=owner_code)
    return next(s for s in owner.slips if s.status == "unpaid")


__all__ = ["tour"]
