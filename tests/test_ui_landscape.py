"""The touch UI on a landscape window (1280×720 at 160 dpi: a small panel turned on its side), by
touch on the demo's real back-office, terminal simulator and printer emulator (one Kivy app per
subprocess, offscreen, as tests/test_ui_fee.py): fee slips looked up by national code, one
touched (its details card beside the list), paid (its card on the confirmation), the receipt's QR
beside the outcome's words with the printer out of paper. On every screen each button is at
least 15 mm and inside the window, and so is every label outside a scrolling list. The window
turned to portrait and back re-lays out the screen shown."""

from __future__ import annotations

import textwrap
from pathlib import Path

from test_ui_fee import run_ui

from kiosk.fee_types import JALALI_MONTHS_EN, JALALI_MONTHS_FA
from kiosk.text.bidi import has_rtl_letters

LANDSCAPE = textwrap.dedent('''
    import asyncio, json, sys
    from pathlib import Path
    from kiosk.ui_main import UIOptions, configure_kivy, run_demo_kiosk

    data = Path(sys.argv[1])
    options = UIOptions(windowed=True, idle_s=600, dpi=160, size="1280x720")
    configure_kivy(options, data)

    def rect(w):
        x, y = w.to_window(w.x, w.y)
        return [round(x, 1), round(y, 1), round(w.width, 1), round(w.height, 1)]

    async def script(ui, app, ctx, env):
        from kivy.core.window import Window
        from kivy.uix.scrollview import ScrollView
        from backoffice.seed import DEMO_NATIONAL_CODE
        from screens.app import mm_px, TouchButton
        from screens.driver import Citizen, plain
        from screens.rtl import RTLLabel
        c = Citizen(ui)
        out = {"mm15": mm_px(15), "window": list(Window.size), "screens": {}}

        def in_scroll(w):
            p = w
            while p is not ui.root and p is not None and p.parent is not p:
                if isinstance(p, ScrollView):
                    return True
                p = p.parent
            return False

        def survey(name):
            """Every button and label shown: its rect in the window (a list's rows scroll)."""
            buttons, labels = [], []
            for w in ui.root.walk(restrict=True):
                if w is ui.root:
                    continue
                if w.opacity == 0 or in_scroll(w):
                    continue
                if isinstance(w, TouchButton):
                    buttons.append([w.choice_id or plain(w.text)] + rect(w))
                elif isinstance(w, RTLLabel) and w.text:
                    labels.append([plain(w.text)] + rect(w))
            out["screens"][name] = {"buttons": buttons, "labels": labels, "landscape": ui.landscape}

        session = asyncio.ensure_future(ui.run_sessions(ctx, sessions=1))
        await c.screen("attract")
        survey("attract")
        await c.press("start")
        out["home"] = await c.screen("home")
        survey("home")
        out["home_cols"] = next(t.parent.parent.cols for t in ui.tiles.values())
        out["toggles_in_footer"] = all(b in ui.footer.walk() for b in ui._toggles.values())

        # the window turned to portrait and back: the home screen laid out again each time
        Window.size = (720, 1280)
        await c.until(lambda: ui.landscape is False, "portrait")
        await c.settle(0.5)
        out["portrait"] = [list(Window.size), next(t.parent.parent.cols for t in ui.tiles.values()),
                           all(b in ui.body.walk() for b in ui._toggles.values())]
        survey("home-portrait")
        Window.size = (1280, 720)
        await c.until(lambda: ui.landscape is True, "landscape again")
        await c.settle(0.5)
        out["back"] = [list(Window.size), next(t.parent.parent.cols for t in ui.tiles.values())]

        await c.press("fee_slips")
        await c.screen("choose", "slips.choose_type")
        survey("choose-type")
        await c.press("waste_charge")
        out["keypad"] = await c.screen("digits", "slips.enter_national_code")
        await c.type_digits(DEMO_NATIONAL_CODE)
        survey("keypad")
        prompt = next(w for w in c.labels(ui.body) if w.msg_key == "slips.enter_national_code")
        out["prompt_rect"], out["keypad_rect"] = rect(prompt), rect(ui.keypad)
        await c.switch_language()
        await c.settle()
        out["prompt_rect_en"], out["keypad_rect_en"] = rect(prompt), rect(ui.keypad)
        await c.switch_language()
        await c.press("ok")
        out["list"] = await c.screen("choose_many", "slips.choose", timeout=60)
        out["before_touch"] = c.texts()
        unpaid = [i for i, r in ui.check_rows.items() if "پرداخت‌نشده" in r.label.text][:1]
        await c.press(unpaid[0])
        await c.settle()
        survey("list")
        card = ui.slip_card
        out["card_fa"] = [plain(w.text) for w in c.labels(card)]
        out["card_rect"] = rect(card)
        out["list_rect"] = rect(ui.check_rows[unpaid[0]])
        out["row_text"] = plain(ui.check_rows[unpaid[0]].label.text)
        def card_rows(card):  # [label, value, the label's x, the value's x], top to bottom
            names = [w for w in card.walk(restrict=True) if hasattr(w, "value_label")]
            return [[plain(n.text), plain(n.value_label.text), rect(n)[0], rect(n.value_label)[0]] for n in names]
        out["card_rows"] = card_rows(card)
        await c.switch_language()
        await c.settle()
        out["card_en"] = [plain(w.text) for w in c.labels(ui.slip_card)]
        out["row_text_en"] = plain(ui.check_rows[unpaid[0]].label.text)
        out["card_rows_en"] = card_rows(ui.slip_card)
        await c.switch_language()
        await c.press("done")
        await c.screen("choose", "slips.what_next")
        survey("what-next")
        await c.press("pay")
        out["confirm"] = await c.screen("confirm", "basket.confirm", timeout=60)
        survey("confirm")
        out["confirm_cards"] = [[plain(w.text) for w in c.labels(k)] for k in ui.slip_cards]
        env.printer.set_paper("out")  # the receipt cannot print: its QR on the outcome
        await c.press("yes")
        await c.screen("error", "receipt.not_printed", timeout=90)
        survey("error")
        await c.press("ok")
        out["outcome"] = await c.screen("outcome", timeout=90)
        survey("outcome")
        qr = next(w for w in ui.body.walk() if hasattr(w, "qr_payload"))
        words = next(w for w in c.labels(ui.body) if w.msg_key == ui.screen_key)
        out["qr_rect"], out["words_rect"] = rect(qr), rect(words)
        out["state"] = str(ctx.journal.state_of(ui.last_outcome.transaction_id))
        await c.press("done")
        await c.screen("attract")
        await asyncio.wait_for(session, 10)
        env.printer.set_paper("ok")
        return out

    print("RESULT " + json.dumps(asyncio.run(run_demo_kiosk(data, options, script)), ensure_ascii=False))
''')


def _disjoint_x(a: list[float], b: list[float]) -> bool:
    return a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0]


def test_slips_paid_by_touch_on_a_landscape_window(tmp_path: Path) -> None:
    r = run_ui(LANDSCAPE, str(tmp_path), timeout=300)
    width, height = r["window"]
    assert (width, height) == (1280, 720)
    mm15 = r["mm15"]
    assert mm15 > 90  # 15 mm at 160 dpi
    for name, shown in r["screens"].items():
        w_max, h_max = (720, 1280) if name.endswith("portrait") else (width, height)
        assert shown["landscape"] is (not name.endswith("portrait")), name
        assert shown["buttons"], name
        for what, x, y, w, h in shown["buttons"]:
            assert w >= mm15 - 0.5 and h >= mm15 - 0.5, (name, what, w, h)  # a 15 mm target
            assert x >= 0 and y >= 0 and x + w <= w_max + 0.5 and y + h <= h_max + 0.5, (name, what, x, y, w, h)
        for i, (what, x, y, w, h) in enumerate(shown["buttons"]):  # no button over another
            for other, x2, y2, w2, h2 in shown["buttons"][i + 1:]:
                assert x + w <= x2 + 0.5 or x2 + w2 <= x + 0.5 or y + h <= y2 + 0.5 or y2 + h2 <= y + 0.5, \
                    (name, what, other)
        for what, x, y, w, h in shown["labels"]:  # nothing clipped by the window's edge
            assert x >= 0 and y >= -0.5 and x + w <= w_max + 0.5 and y + h <= h_max + 0.5, (name, what, x, y, w, h)
    # home: nine tiles in five columns, the toggles beside Cancel; turned portrait, three columns
    # with the toggles back in the body; and landscape again
    assert r["home_cols"] == 5 and r["toggles_in_footer"] is True
    assert r["portrait"] == [[720, 1280], 3, True] and r["back"] == [[1280, 720], 5]
    # the keypad beside its prompt: the prompt on the right in Persian, on the left in English
    prompt, pad = r["prompt_rect"], r["keypad_rect"]
    assert _disjoint_x(prompt, pad) and prompt[0] > pad[0]
    prompt_en, pad_en = r["prompt_rect_en"], r["keypad_rect_en"]
    assert _disjoint_x(prompt_en, pad_en) and prompt_en[0] < pad_en[0]
    # the slip list: a hint until a slip is touched, then its card beside the list
    assert "برای دیدن جزئیات، فیشی را لمس کنید" in r["before_touch"]
    assert _disjoint_x(r["card_rect"], r["list_rect"])
    card = r["card_fa"]
    assert card[0] == "جزئیات فیش"
    rows = {name: value for name, value, *_ in r["card_rows"]}
    assert list(rows) == ["نوع عوارض", "شناسه", "دوره", "مبلغ", "مهلت پرداخت", "وضعیت"]
    assert rows["نوع عوارض"] == "بهای خدمات پسماند" and rows["وضعیت"] == "پرداخت‌نشده"
    assert rows["شناسه"] == "008****258"  # the national code masked: first and last three digits only
    assert rows["مبلغ"].endswith(" ریال") and "٬" in rows["مبلغ"]  # Persian digits and separators
    assert rows["مهلت پرداخت"][:3] == "۱۴۰" and rows["مهلت پرداخت"].count("/") == 2  # Jalali
    month, year = rows["دوره"].split()
    assert month in JALALI_MONTHS_FA and year.startswith("۱۴۰")
    assert all(name_x > value_x for *_, name_x, value_x in r["card_rows"])  # Persian: the label on the right
    # in English the same card, label on the left, the period's month in English
    rows_en = {name: value for name, value, *_ in r["card_rows_en"]}
    assert r["card_en"][0] == "Slip details"
    assert list(rows_en) == ["Fee type", "Identifier", "Period", "Amount", "Due date", "Status"]
    assert rows_en["Fee type"] == "Waste collection charge" and rows_en["Status"] == "unpaid"
    assert rows_en["Period"] == f"{JALALI_MONTHS_EN[JALALI_MONTHS_FA.index(month)]} {year.translate(_LATIN)}"
    assert rows_en["Amount"].endswith(" rials") and "," in rows_en["Amount"]
    assert all(name_x < value_x for *_, name_x, value_x in r["card_rows_en"])
    assert not has_rtl_letters(r["row_text_en"])  # the list's row in English: no Persian month either
    assert rows_en["Period"] in r["row_text_en"]
    # the basket's confirmation: the one slip's card
    assert len(r["confirm_cards"]) == 1 and r["confirm_cards"][0][0] == "جزئیات فیش"
    assert "008****258" in r["confirm_cards"][0] and "0084137258" not in str(r)  # never the whole code
    # the outcome: the receipt's QR beside its words, and the money path completed
    assert _disjoint_x(r["qr_rect"], r["words_rect"]) and r["qr_rect"][0] < r["words_rect"][0]
    assert min(r["qr_rect"][2:]) >= 3 * mm15 and r["state"] == "COMPLETED"


_LATIN = str.maketrans("۰۱۲۳۴۵۶۷۸۹", "0123456789")
