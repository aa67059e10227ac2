"""The touch UI's behaviour, by simulated touches on the real demo environment (one Kivy app per
subprocess, offscreen): the RTL label re-renders on text, language and width changes; the
language button re-renders every label in place; keys and buttons are at least 15 mm at the
panel's dpi; Escape and the window's close do nothing in kiosk mode; the inactivity warning
extends with one tap and otherwise resets to attract with the typed digits wiped; a transit
service (card balance, a top-up in English) runs by touch; a journal that fails verification
puts the kiosk out of service on the attract and home screens; the card reader's services
become unavailable with the reason when it is unplugged."""

from __future__ import annotations

import textwrap
from pathlib import Path

from test_ui_fee import run_ui

BEHAVIOUR = textwrap.dedent('''
    import asyncio, json, sys
    from pathlib import Path
    from kiosk.ui_main import UIOptions, configure_kivy, run_demo_kiosk

    data = Path(sys.argv[1])
    options = UIOptions(windowed=False, idle_s=1.0, warn_s=2, dpi=160)  # kiosk mode, a denser panel
    configure_kivy(options, data)

    async def script(ui, app, ctx, env):
        from kivy.core.window import Window
        from screens.app import mm_px, TouchButton
        from screens.driver import Citizen, plain
        from screens.rtl import RTLLabel
        c = Citizen(ui)
        out = {"mm15": mm_px(15)}

        # the RTL label on its own: wraps to its width, re-renders on every change
        lab = RTLLabel(size_hint=(None, None), width=600, height=300, font_size=30,
                       text="پرداخت با موفقیت انجام شد و رسید شما چاپ می‌شود؛ کد رهگیری را نگه دارید")
        ui.root.add_widget(lab)
        await c.settle()
        out["wide"] = list(lab.lines)
        renders = lab.renders
        lab.width = 250
        await c.settle()
        out["narrow"] = list(lab.lines)
        lab.text = "Tracking code 1234"
        lab.lang = "en"
        await c.settle()
        out["english"] = list(lab.lines)
        out["renders"] = [renders, lab.renders]
        out["texture_width"] = lab.texture.width
        # what Kivy draws is the paragraph's bitmap, not mirrored, not upside down
        import numpy as np
        from PIL import Image as PILImage
        from kiosk.text.paragraph import render_paragraph
        lab.text, lab.lang, lab.width = "سلام دنیا ۱۲۳ ABC", "fa", 500
        await c.settle()
        lab.export_to_png(str(data / "label.png"))
        drawn = np.asarray(PILImage.open(data / "label.png").convert("RGBA").getchannel("A"), dtype=np.float32)
        want = np.asarray(render_paragraph(lab.text, 500, 30, lang="fa", color=(26, 28, 31, 255)).image
                          .getchannel("A"), dtype=np.float32)
        def crop(a):
            rows, cols = np.where(a.max(axis=1) > 60)[0], np.where(a.max(axis=0) > 60)[0]
            return a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        d, w = crop(drawn), crop(want)
        out["same_shape"] = list(d.shape) == list(w.shape)
        out["diff"] = float(np.abs(d - w).mean()) if out["same_shape"] else 999.0
        out["diff_mirrored"] = float(np.abs(d - w[:, ::-1]).mean()) if out["same_shape"] else 0.0
        out["diff_flipped"] = float(np.abs(d - w[::-1, :]).mean()) if out["same_shape"] else 0.0
        ui.root.remove_widget(lab)

        # kiosk mode: fullscreen, borderless, no cursor, no multitouch emulation by the mouse
        from kivy.config import Config
        out["config"] = [Config.get("graphics", "fullscreen"), Config.get("graphics", "borderless"),
                         Config.get("graphics", "show_cursor"), Config.get("input", "mouse"),
                         Config.get("kivy", "exit_on_escape")]
        # Escape and the window's close are swallowed in kiosk mode
        out["escape_swallowed"] = bool(Window.dispatch("on_keyboard", 27, 0, None, []))
        out["close_refused"] = bool(Window.dispatch("on_request_close"))

        ui.hint_s = 0.3  # the attract screen's hints take turns
        session = asyncio.ensure_future(ui.run_sessions(ctx, sessions=1))
        await c.screen("attract")
        hints = set()
        for _ in range(12):
            hints.add(plain(ui._hint.text))
            await asyncio.sleep(0.1)
        out["hints"] = sorted(hints)
        await c.press("start")
        await c.screen("home")
        out["tile_sizes"] = [list(b.size) for b in ui.tiles.values()]
        await c.press("fee_payment")
        await c.screen("choose", "fee.how_to_enter")
        await c.press("manual")
        await c.screen("digits", "fee.enter_bill_id")
        out["key_sizes"] = [list(b.size) for b in ui._keys.values()]
        out["footer_sizes"] = [list(w.size) for w in ui.footer.children]
        await c.type_digits("774")

        # the language button: the same label objects, re-rendered in English in place
        prompt = next(w for w in c.labels(ui.body) if w.msg_key == "fee.enter_bill_id")
        before = (id(prompt), plain(prompt.text), prompt.renders)
        out["fa_texts"] = c.texts()
        await c.switch_language()
        await c.settle()
        out["en_texts"] = c.texts()
        out["same_widget"] = id(prompt) == before[0] and prompt.renders > before[2]
        out["prompt"] = [before[1], plain(prompt.text)]
        out["footer_order_en"] = [w.choice_id for w in reversed(ui.footer.children)]
        await c.switch_language()
        await c.settle()
        out["footer_order_fa"] = [w.choice_id for w in reversed(ui.footer.children)]

        # inactivity: the warning, one tap extends, the typed digits are kept
        await c.until(lambda: ui.overlay is not None, "the inactivity warning", timeout=10)
        out["warning"] = c.texts()
        await c.press("continue")
        out["after_extend"] = [ui.screen, ui.overlay is None, c.texts()]
        # then nobody: back to attract, the flow unwound, the digits wiped
        await c.screen("attract", timeout=15)
        await asyncio.wait_for(session, 10)
        out["after_reset"] = [ui.screen, ui._digits, ui.last_outcome.message_key]
        out["seen"] = list(c.seen)
        return out

    print("RESULT " + json.dumps(asyncio.run(run_demo_kiosk(data, options, script)), ensure_ascii=False))
''')


def test_labels_language_sizes_escape_and_inactivity(tmp_path: Path) -> None:
    r = run_ui(BEHAVIOUR, str(tmp_path))
    # the RTL label: the same words in the same order, re-wrapped narrower, redrawn each time
    assert " ".join(r["narrow"]) == " ".join(r["wide"])
    assert len(r["narrow"]) > len(r["wide"]) >= 1
    assert " ".join(r["english"]) == "Tracking code 1234"
    assert r["renders"][1] >= r["renders"][0] + 2
    assert r["texture_width"] == 250
    assert r["same_shape"] and r["diff"] < 2, r["diff"]  # Kivy shows the paragraph's own pixels
    assert r["diff_mirrored"] > 10 and r["diff_flipped"] > 10
    assert r["escape_swallowed"] and r["close_refused"]
    assert r["config"] == ["auto", "1", "0", "mouse,disable_multitouch", "0"]
    assert len(r["hints"]) >= 3 and all(r["hints"])
    mm15 = r["mm15"]
    assert mm15 > 94  # 15 mm at 160 dpi
    for w, h in r["key_sizes"] + r["footer_sizes"] + r["tile_sizes"]:
        assert w >= mm15 and h >= mm15, (w, h, mm15)
    assert "۷۷۴" in r["fa_texts"] and "774" in r["en_texts"]  # what was typed survives the switch
    assert r["same_widget"]
    assert r["prompt"] == ["شناسه قبض را وارد کنید", "Enter the bill ID"]
    assert "English" in r["fa_texts"] and "فارسی" in r["en_texts"]
    assert not any(t in r["en_texts"] for t in ("انصراف", "تأیید"))  # every label re-rendered
    # the rows mirror: Confirm is the rightmost in Persian, the leftmost in English
    assert r["footer_order_en"] == ["ok", "cancel"] and r["footer_order_fa"] == ["cancel", "ok"]
    assert any("هنوز اینجا هستید" in t for t in r["warning"])
    assert r["after_extend"][0] == "digits" and r["after_extend"][1] is True
    assert "۷۷۴" in r["after_extend"][2]
    assert r["after_reset"] == ["attract", "", "fee.cancelled"]
    assert "inactivity" in r["seen"]


TRANSIT = textwrap.dedent('''
    import asyncio, json, sys
    from pathlib import Path
    from kiosk.ui_main import UIOptions, configure_kivy, run_demo_kiosk

    data = Path(sys.argv[1])
    options = UIOptions(windowed=True, idle_s=600)
    configure_kivy(options, data)

    async def script(ui, app, ctx, env):
        from screens.driver import Citizen
        c = Citizen(ui)
        out = {}
        session = asyncio.ensure_future(ui.run_sessions(ctx, sessions=1))
        await c.screen("attract")
        await c.press("start")
        await c.screen("home")
        out["balance_available"] = not ui.tiles["card_balance"].disabled
        await c.press("card_balance")
        out["outcome"] = await c.screen("outcome", timeout=40)
        out["outcome_key"] = ui.screen_key
        await c.switch_language()  # the balance the flow formatted in Persian follows the switch
        await c.settle()
        out["outcome_en"] = c.texts()
        await c.press("done")
        await asyncio.wait_for(session, 10)

        # a top-up by touch, in English: money taken, the card written, the receipt printed
        session = asyncio.ensure_future(ui.run_sessions(ctx, sessions=1))
        await c.screen("attract")
        await c.switch_language()
        await c.press("start")
        await c.screen("home")
        await c.press("card_topup")
        out["amounts"] = await c.screen("choose", "topup.choose_amount", timeout=40)
        await c.press("200000")
        await c.screen("confirm", "topup.confirm", timeout=40)
        await c.press("yes")
        out["topup"] = await c.screen("outcome", timeout=60)
        out["topup_key"] = ui.screen_key
        out["topup_state"] = str(ctx.journal.state_of(ui.last_outcome.transaction_id))
        await c.press("done")
        await asyncio.wait_for(session, 10)

        # a QR ticket with the printer out of paper: the ticket is shown on the screen, and the
        # QR on the screen (read back from a screenshot) is the signed ticket
        env.printer.set_paper("out")
        await c.until(lambda: ui.status.devices["printer"].consumables.get("paper") == "out", "paper out", 20)
        session = asyncio.ensure_future(ui.run_sessions(ctx, sessions=1))
        await c.screen("attract")
        await c.press("start")
        await c.screen("home")
        out["qr_available_without_paper"] = not ui.tiles["qr_ticket"].disabled
        out["home_no_paper"] = c.texts()
        await c.press("qr_ticket")
        await c.screen("choose", "ticket.choose_kind", timeout=40)
        await c.press("return")
        await c.screen("confirm", "ticket.confirm", timeout=40)
        await c.press("yes")
        out["ticket"] = await c.screen("outcome", timeout=60)
        out["ticket_key"] = ui.screen_key
        payload = ui.last_outcome.receipt_payload
        shot = data / "ticket.png"
        c.shown_png(shot)
        import zxingcpp
        from PIL import Image as PILImage
        out["qr_read"] = [r.text for r in zxingcpp.read_barcodes(PILImage.open(shot))]
        out["qr_is_ticket"] = payload in out["qr_read"]
        await c.press("done")
        await asyncio.wait_for(session, 10)
        env.printer.set_paper("ok")

        # the journal is tampered with and the next verification finds it: out of service, said
        # on the attract screen, and every service that moves money is greyed with the reason
        import sqlite3
        from kiosk.journal import journal_path
        from kiosk.service_guard import JournalBroken
        from kiosk.status import refresh_blockers
        conn = sqlite3.connect(str(journal_path(ctx.data_dir)), isolation_level=None)
        conn.execute("DROP TRIGGER IF EXISTS journal_no_update")  # a tamperer's own connection
        conn.execute("UPDATE journal SET amount_rials = 1 WHERE seq = 1")
        conn.close()
        try:
            ctx.money.guard.verify_full()
        except JournalBroken:
            pass
        refresh_blockers(ui.status, ctx)
        session = asyncio.ensure_future(ui.attract())
        out["banner"] = await c.screen("attract")
        await c.press("start")
        await session
        home = asyncio.ensure_future(ui.home())
        await c.screen("home")
        out["blocked"] = sorted(s for s, t in ui.tiles.items() if t.disabled)
        out["blocked_reason"] = ui.tiles["fee_payment"].reason_label.text
        await c.press("cancel")
        await home
        ui.status.set_blocker("journal", None)  # (only for what follows: the reader's tiles)

        # the reader is unplugged: its tiles grey out with the reason, and tapping does nothing
        env.card_reader.stop()
        await ctx.devices.get("card_reader").close()
        home = asyncio.ensure_future(ui.home())
        await c.screen("home")
        out["fa_reasons"] = [t.reason_label.text for t in ui.tiles.values() if t.disabled]
        out["disabled"] = sorted(s for s, t in ui.tiles.items() if t.disabled)
        await c.press("card_balance")
        out["still_home"] = ui.screen == "home" and not home.done()
        await c.switch_language()
        await c.settle()
        out["en_reason"] = ui.tiles["card_balance"].reason_label.text
        await c.press("fee_payment")
        out["picked"] = await asyncio.wait_for(home, 5)
        return out

    print("RESULT " + json.dumps(asyncio.run(run_demo_kiosk(data, options, script)), ensure_ascii=False))
''')


def test_card_balance_by_touch_and_unplugged_reader(tmp_path: Path) -> None:
    r = run_ui(TRANSIT, str(tmp_path))
    assert r["balance_available"]
    assert r["outcome_key"] == "card.balance"
    assert any(t.startswith("موجودی کارت:") and "ریال" in t for t in r["outcome"])
    assert any(t.startswith("Card balance:") and t.endswith(" rials") and t[14].isascii() for t in r["outcome_en"])
    assert "200,000 rials" in r["amounts"] and "Other amount" in r["amounts"]
    assert r["topup_key"] == "topup.done" and r["topup_state"] == "COMPLETED"
    assert any(t.startswith("Your card is topped up.") for t in r["topup"])
    assert r["qr_available_without_paper"]
    assert "چاپگر رسید فعلاً کار نمی‌کند؛ رسید شما روی صفحه نمایش داده می‌شود" in r["home_no_paper"]
    assert not any("چاپگر رسید فعلاً" in t for t in r["outcome"])  # paper was fine then
    assert r["ticket_key"] == "ticket.done_on_screen"
    assert r["qr_is_ticket"], r["qr_read"]
    assert any("این کیوسک از سرویس خارج است" in t for t in r["banner"])
    assert r["blocked"] == ["card_sale", "card_topup", "certificate", "collect_pending", "fee_payment", "fee_slips",
                            "qr_ticket", "traffic_permit"]  # every service that may take money
    assert r["blocked_reason"].startswith("این کیوسک از سرویس خارج است")
    assert r["disabled"] == ["card_balance", "card_sale", "card_topup", "collect_pending"]
    assert set(r["fa_reasons"]) == {"کارتخوان بلیت در دسترس نیست"}
    assert r["still_home"]
    assert r["en_reason"] == "The transit card reader is not available"
    assert r["picked"] == "fee_payment"  # the tiles that do not need the reader still work
