"""Maintenance on the touch screen, by simulated touches on the demo kiosk (one Kivy app in a
subprocess, offscreen): a short tap in the hidden corner does nothing; a long press is refused
while a citizen's transaction is open; then the PIN keypad shows dots only, a wrong PIN says
how many tries are left, the right one opens the menu; a test print comes out of the printer
emulator, and every other page of the menu shows; a service taken out of service is greyed on the home tile with the technician's
reason; leaving, or walking away, goes back to attract; five wrong PINs lock maintenance, the right PIN included,
and the lock is on disk."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from test_ui_fee import run_ui

from kiosk.maintenance import STATE_FILE, set_pin

PIN = "97315864"

SCRIPT = textwrap.dedent('''
    import asyncio, json, sys
    from pathlib import Path
    from kiosk.ui_main import UIOptions, configure_kivy, run_demo_kiosk

    data, pin = Path(sys.argv[1]), sys.argv[2]
    options = UIOptions(windowed=True, idle_s=600)
    configure_kivy(options, data)

    async def script(ui, app, ctx, env):
        from kivy.base import EventLoop
        from screens.driver import Citizen, Touch, plain
        from screens.maintenance import attach
        c = Citizen(ui)
        out = {}
        session = asyncio.ensure_future(ui.run_sessions(ctx, sessions=1))
        await c.screen("attract")
        out["hooked"] = getattr(ui, "maintenance", None) is not None  # screens.app attached it
        m = attach(ui, ctx)
        m.hold_s = 1.0

        async def long_press(seconds):
            x, y = m.corner.spot_center()
            touch = Touch(x, y)
            EventLoop.post_dispatch_input("begin", touch)
            await asyncio.sleep(seconds)
            EventLoop.post_dispatch_input("end", touch)
            await c.settle()

        async def on(screen):
            await c.until(lambda: m.screen == screen, f"maintenance screen {screen}")
            await c.settle()
            return [plain(w.text) for w in c.labels(m.overlay)]

        async def type_pin(digits):
            for d in digits:
                await c.press("m:" + d)
            out.setdefault("dots", []).append(m.dots.text)
            if "inked" not in out:  # the dots are really drawn (a glyph the font lacks draws nothing)
                import numpy as np
                from PIL import Image as PILImage
                await c.settle()
                m.dots.export_to_png(str(data / "dots.png"))
                alpha = np.asarray(PILImage.open(data / "dots.png").convert("RGBA").getchannel("A"))
                out["inked"] = int((alpha > 128).sum())
            out.setdefault("typed_texts", []).extend(plain(w.text) for w in c.labels(m.overlay))
            await c.press("m:ok")
            await c.settle(0.3)

        await long_press(0.2)  # a tap: nothing
        out["after_tap"] = [m.screen, ui.screen]
        # the corner is where nothing else is, in both languages; elsewhere touches pass through
        out["spot_fa"] = m.corner.spot()[0] > 0
        await c.switch_language()
        out["spot_en"] = m.corner.spot()[0] == 0
        await c.press("high_contrast")  # an accessibility toggle on the attract footer still works
        out["contrast"] = ui.high_contrast
        await c.press("high_contrast")
        await c.switch_language()

        tx = await ctx.money.open_transaction("fee_payment", 10_000, {})  # a citizen's, under way
        await long_press(1.5)
        out["refused"] = await on("refused")
        await c.press("m:back")
        await c.until(lambda: m.screen == "", "closed")
        await ctx.money.cancel(tx)
        ctx.money.release(tx)

        await long_press(1.5)
        out["pin"] = await on("pin")
        out["ok_disabled"] = c.button("m:ok").disabled
        await type_pin("1111")
        out["wrong"] = [m.message.msg_key, plain(m.message.text), m.message.opacity]
        await type_pin(pin)
        out["menu"] = await on("menu")
        await c.press("m:lang")
        await c.settle()
        out["menu_en"] = [plain(w.text) for w in c.labels(m.overlay)]
        await c.press("m:lang")
        await c.press("m:test_print")
        out["printed"] = await on("result")
        await asyncio.to_thread(env.printer.wait_for_jobs, 1)
        out["qr"] = env.printer.receipts()[-1].qr_codes
        await c.press("m:back")
        await on("menu")
        pages = {}
        for choice, screen in (("devices", "page"), ("card_read", "result"), ("paper", "result"),
                               ("totals", "page"), ("report", "result"), ("pending", "page")):
            await c.press("m:" + choice)
            pages[choice] = await on(screen)
            await c.press("m:back")
            await on("menu")
        await c.press("m:scan_test")
        await on("wait")
        env.scanner.send("MAINT-4711")
        pages["scan_test"] = await on("result")
        await c.press("m:back")
        await on("menu")
        await c.press("m:scan_test")  # given up: Back while it waits
        await on("wait")
        await c.press("m:back")
        await on("menu")
        out["pages"] = pages
        await c.press("m:services")
        await on("page")
        await c.press("m:svc:qr_ticket")
        out["services"] = await on("page")
        await c.press("m:back")
        await on("menu")
        await c.press("m:exit")
        await c.until(lambda: m.screen == "", "closed")
        out["after_exit"] = [ui.screen, m.overlay is None, m.corner.parent is not None]

        await c.press("start")  # the citizen's home: the ticket tile is greyed, with the reason
        await c.screen("home")
        tile = ui.tiles["qr_ticket"]
        out["tile"] = [tile.disabled, plain(tile.reason_label.text)]
        await c.press("cancel")
        await c.screen("attract")

        m.idle_s = 3.0  # a technician who walks away: maintenance leaves by itself
        await long_press(1.5)
        await on("pin")
        await type_pin(pin)
        await on("menu")
        await c.until(lambda: m.screen == "", "left idle", timeout=10)
        out["idle"] = [ui.screen, m.overlay is None, m.session is None]
        m.idle_s = 120.0

        await long_press(1.5)
        await on("pin")
        for _ in range(5):
            await type_pin("2222")
        out["locked"] = [m.message.msg_key, plain(m.message.text)]
        await type_pin(pin)  # the right PIN, while locked
        out["still_locked"] = [m.screen, m.message.msg_key]
        await c.press("m:cancel")
        await c.until(lambda: m.screen == "", "closed")
        out["end"] = ui.screen
        session.cancel()
        await asyncio.gather(session, return_exceptions=True)
        return out

    print("RESULT " + json.dumps(asyncio.run(run_demo_kiosk(data, options, script)), ensure_ascii=False))
''')


def test_maintenance_by_touch(tmp_path: Path) -> None:
    set_pin(tmp_path, PIN)
    r = run_ui(SCRIPT, str(tmp_path), PIN, timeout=240)
    assert r["after_tap"] == ["", "attract"]
    assert r["spot_fa"] and r["spot_en"] and r["contrast"] is True
    assert any("تراکنش یک شهروند در جریان است" in t for t in r["refused"])
    assert any("رمز تکنسین" in t for t in r["pin"]) and r["ok_disabled"] is True
    # the keypad shows dots only: the digits typed are on no label
    assert r["dots"][0] == "• • • •" and r["dots"][1] == " ".join("•" * len(PIN))
    assert r["inked"] > 200
    assert not any(PIN in t or "1111" in t or "۱۱۱۱" in t for t in r["typed_texts"])
    assert r["wrong"][0] == "maint.wrong_pin" and "۴" in r["wrong"][1] and r["wrong"][2] == 1
    assert any("چاپ آزمایشی" in t for t in r["menu"]) and any("Test print" in t for t in r["menu_en"])
    assert any("صفحهٔ آزمایشی چاپ شد" in t for t in r["printed"])
    assert any(q.startswith("CITY-KIOSK-TEST kiosk-demo-01 ") for q in r["qr"])
    pages = r["pages"]
    assert any("printer" in t and "چاپگر رسید" in t for t in pages["devices"])
    assert any("jobs=1" in t for t in pages["devices"])  # the test print, counted
    assert any("کارت شناسایی شد" in t for t in pages["card_read"])
    assert any("وضعیت کاغذ" in t for t in pages["paper"])
    assert any("fee_payment" in t for t in pages["totals"])  # the cancelled one of this morning
    assert any("گزارش پایان روز چاپ شد" in t for t in pages["report"])
    assert any("موردی نیست" in t for t in pages["pending"])
    assert any("MAINT-4711" in t for t in pages["scan_test"])
    assert any("خارج از سرویس" in t for t in r["services"])
    assert r["after_exit"] == ["attract", True, True]
    assert r["tile"] == [True, "این خدمت را تکنسین موقتاً از سرویس خارج کرده است"]
    assert r["idle"] == ["attract", True, True]
    assert r["locked"][0] == "maint.locked" and "۳۰" in r["locked"][1]
    assert r["still_locked"] == ["pin", "maint.locked"]
    assert r["end"] == "attract"
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["lockouts"] == 1 and state["disabled_services"] == ["qr_ticket"]
    for path in tmp_path.rglob("*"):  # the PIN is in no file the kiosk wrote
        if path.is_file():
            assert PIN.encode() not in path.read_bytes(), path
    assert r["hooked"] is True  # screens.app gives every citizen session the hidden entry
