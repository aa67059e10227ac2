"""The municipal services by touch, on the demo's real back-office, terminal simulator and printer
emulator (one Kivy app per subprocess, offscreen, as tests/test_ui_fee.py): fee slips looked up
by national code and two of them paid with one card payment (Persian, the check-box list); a
traffic-zone permit in English (the plate's letter picker and the day grid); a settlement
certificate with slips outstanding paid first, with large text and high contrast turned on at
the start (the same labels re-drawn bigger and in the other colours, spoken by espeak-ng) and
off again for the next citizen. And the scripted UI's transcript says what the screen says."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

from test_ui_fee import run_ui

from kiosk.fee_types import PLATE_LETTERS
from kiosk.fmt import format_jalali_date, format_rials
from kiosk.messages_ui import plain, render
from kiosk.scripted_ui import Shown

HEAD = textwrap.dedent('''
    import asyncio, json, sys
    from pathlib import Path
    from kiosk.ui_main import UIOptions, configure_kivy, run_demo_kiosk

    data = Path(sys.argv[1])
    options = UIOptions(windowed=True, idle_s=600, dpi=160)
    configure_kivy(options, data)

    def rect(w):
        x, y = w.to_window(w.x, w.y)
        return [x, y, w.width, w.height]
''')

SLIPS = HEAD + textwrap.dedent('''
    async def script(ui, app, ctx, env):
        from backoffice.seed import DEMO_NATIONAL_CODE
        from screens.app import mm_px
        from screens.driver import Citizen, plain
        c = Citizen(ui)
        out = {"mm15": mm_px(15)}
        session = asyncio.ensure_future(ui.run_sessions(ctx, sessions=1))
        await c.screen("attract")
        await c.press("start")
        out["home"] = await c.screen("home")
        await c.press("fee_slips")
        out["types"] = await c.screen("choose", "slips.choose_type")
        await c.press("waste_charge")
        await c.screen("digits", "slips.enter_national_code")
        await c.type_digits(DEMO_NATIONAL_CODE)
        await c.press("ok")
        out["list"] = await c.screen("choose_many", "slips.choose", timeout=60)
        rows = ui.check_rows
        out["rows"] = {i: plain(r.label.text) for i, r in rows.items()}
        out["row_heights"] = [r.height for r in rows.values()]
        # what the headless demo's transcript would say for each slip: the same words
        from kiosk.flows.fee_slips import FeeSlipsFlow
        from kiosk.scripted_ui import Shown
        owner = await asyncio.to_thread(ctx.backoffice.fee_slips, national_code=DEMO_NATIONAL_CODE)
        out["scripted"] = {str(sl.slip_id): [Shown("choose", "slips.item", FeeSlipsFlow.slip_params(sl)).line(lang)
                                             for lang in ("fa", "en")] for sl in owner.slips if str(sl.slip_id) in rows}
        await c.switch_language()
        out["rows_en"] = {i: plain(r.label.text) for i, r in rows.items()}
        await c.switch_language()
        out["done_disabled_none"] = c.button("done").disabled
        unpaid = [i for i, r in rows.items() if "پرداخت‌نشده" in r.label.text][:2]
        out["picked"] = unpaid
        await c.press(unpaid[0])
        out["done_disabled_one"] = c.button("done").disabled
        out["count_one"] = c.texts()
        await c.press(unpaid[1])
        out["checked"] = sorted(i for i, r in rows.items() if r.checked)
        await c.press(unpaid[1])  # unchecked, and checked again
        out["checked_after_untick"] = sorted(i for i, r in rows.items() if r.checked)
        await c.press(unpaid[1])
        await c.press("done")
        await c.screen("choose", "slips.what_next")
        await c.press("pay")
        out["confirm"] = await c.screen("confirm", "basket.confirm", timeout=60)
        await c.press("yes")
        out["outcome"] = await c.screen("outcome", timeout=90)
        out["outcome_key"] = ui.screen_key
        tx = ui.last_outcome.transaction_id
        out["state"] = str(ctx.journal.state_of(tx))
        out["screens"] = list(c.seen)
        await c.press("done")
        await c.screen("attract")
        await asyncio.wait_for(session, 10)
        return out

    print("RESULT " + json.dumps(asyncio.run(run_demo_kiosk(data, options, script)), ensure_ascii=False))
''')


def _has(texts: list[str], *parts: str) -> bool:
    return any(all(p in t for p in parts) for t in texts)


def test_slips_looked_up_and_two_paid_by_touch_in_persian(tmp_path: Path) -> None:
    r = run_ui(SLIPS, str(tmp_path), timeout=240)
    assert _has(r["home"], "استعلام و چاپ فیش عوارض") and _has(r["home"], "مجوز روزانه طرح ترافیک")
    assert _has(r["home"], "گواهی مفاصاحساب")
    assert _has(r["list"], "فیش‌ها را انتخاب کنید")
    rows = r["rows"]
    assert len(rows) >= 2 and all(" — " in t and "ریال" in t for t in rows.values())
    assert r["scripted"] and set(r["scripted"]) == set(rows)
    for slip_id, (fa, en) in r["scripted"].items():  # the scripted UI and the screen say the same
        assert rows[slip_id] == fa and r["rows_en"][slip_id] == en
    assert all(h >= r["mm15"] for h in r["row_heights"])  # every row a 15 mm target at 160 dpi
    assert r["done_disabled_none"] is True and r["done_disabled_one"] is False
    assert _has(r["count_one"], "۱", "انتخاب شده")
    assert r["checked"] == sorted(r["picked"]) and r["checked_after_untick"] == [r["picked"][0]]
    # the basket's confirmation: two slips and their total, in Persian digits
    assert _has(r["confirm"], "۲", "فیش، جمعاً", "با یک بار پرداخت")
    assert r["outcome_key"] == "basket.paid" and r["state"] == "COMPLETED"
    assert _has(r["outcome"], "همهٔ", "فیش پرداخت شد")
    assert r["screens"][:5] == ["attract", "home", "choose", "digits", "step"]
    assert "choose_many" in r["screens"] and r["screens"][-1] == "outcome"


PERMIT = HEAD + textwrap.dedent('''
    async def script(ui, app, ctx, env):
        from screens.app import mm_px
        from screens.driver import Citizen
        c = Citizen(ui)
        out = {"mm15": mm_px(15)}
        session = asyncio.ensure_future(ui.run_sessions(ctx, sessions=1))
        await c.screen("attract")
        await c.switch_language()
        await c.press("start")
        await c.screen("home")
        await c.press("traffic_permit")
        await c.screen("digits", "slips.plate_two")
        await c.type_digits("68")
        await c.press("ok")
        out["letters"] = await c.screen("choose", "slips.plate_letter")
        keys = [w for w in ui.body.walk() if getattr(w, "choice_id", "").isdigit()]
        out["letter_sizes"] = [[w.width, w.height] for w in keys]
        out["letter_cols"] = max(w.parent.cols for w in keys)
        first = c.button("0")
        out["first_letter_x"] = [rect(first)[0], rect(c.button("1"))[0]]
        await c.switch_language()  # Persian: the grid runs right to left, الف top right
        await c.settle()
        out["first_letter_x_fa"] = [rect(first)[0], rect(c.button("1"))[0]]
        await c.switch_language()
        await c.press("6")
        await c.screen("digits", "slips.plate_three")
        await c.type_digits("214")
        await c.press("ok")
        await c.screen("digits", "slips.plate_region")
        await c.type_digits("44")
        await c.press("ok")
        out["days"] = await c.screen("choose", "permit.choose_date", timeout=60)
        days = [w for w in ui.body.walk() if getattr(w, "choice_id", "")[:2] == "20"]
        out["day_ids"] = [w.choice_id for w in days]
        out["day_cols"] = days[0].parent.cols
        await c.press(days[1].choice_id)
        out["confirm"] = await c.screen("confirm", "permit.confirm", timeout=60)
        await c.press("yes")
        out["outcome"] = await c.screen("outcome", timeout=90)
        out["outcome_key"] = ui.screen_key
        out["state"] = str(ctx.journal.state_of(ui.last_outcome.transaction_id))
        await c.press("done")
        await c.screen("attract")
        await asyncio.wait_for(session, 10)
        return out

    print("RESULT " + json.dumps(asyncio.run(run_demo_kiosk(data, options, script)), ensure_ascii=False))
''')


def test_a_traffic_permit_by_touch_in_english_with_the_letter_picker(tmp_path: Path) -> None:
    r = run_ui(PERMIT, str(tmp_path), timeout=240)
    letters = r["letters"]
    assert "Choose the plate's letter" in letters
    assert all(x in letters for x in PLATE_LETTERS)  # all 24 letters on one screen
    assert len(r["letter_sizes"]) == len(PLATE_LETTERS) and r["letter_cols"] == 4
    assert all(w >= r["mm15"] and h >= r["mm15"] for w, h in r["letter_sizes"])
    left, second = r["first_letter_x"]
    assert second > left  # English: left to right
    left_fa, second_fa = r["first_letter_x_fa"]
    assert second_fa < left_fa  # Persian: الف on the right, ب to its left
    assert r["day_cols"] == 2 and len(r["day_ids"]) >= 2
    day = dt.date.fromisoformat(r["day_ids"][1])
    assert format_jalali_date(day, "en") in r["days"]
    assert _has(r["confirm"], f"Traffic-zone permit for plate 68 {PLATE_LETTERS[6]} 214 ایران 44", format_jalali_date(day, "en"),
                "rials. Pay now?")
    assert r["outcome_key"] == "permit.issued" and r["state"] == "COMPLETED"
    assert _has(r["outcome"], "The permit is recorded. Tracking code:")


CERT = HEAD + textwrap.dedent('''
    async def script(ui, app, ctx, env):
        from kiosk.speech import Speaker
        from screens.driver import Citizen
        ui.speaker = Speaker(out_dir=data / "speech")  # the real espeak-ng, to files (no sound card)
        c = Citizen(ui)
        out = {}
        session = asyncio.ensure_future(ui.run_sessions(ctx, sessions=1))
        await c.screen("attract")
        hint = ui._hint
        out["before"] = [hint.font_size, list(hint.color), list(ui.root.ground.rgba), c.button("start").font_size]
        renders = hint.renders
        await c.press("large_text")
        await c.press("high_contrast")
        out["toggles"] = c.texts()
        out["after"] = [hint.font_size, list(hint.color), list(ui.root.ground.rgba), c.button("start").font_size,
                        list(c.button("start").background), list(c.button("start").color)]
        out["same_label_redrawn"] = hint.renders > renders and hint in ui.body.walk()
        await c.press("speech")
        await c.settle(0.5)
        out["spoken_attract"] = ui.speaker.spoken
        await c.press("start")
        out["home"] = await c.screen("home")
        out["home_title_size"] = ui.body.children[-1].font_size
        await c.press("certificate")
        await c.screen("choose", "cert.choose_type")
        await c.press("business_tax")
        await c.screen("digits", "slips.enter_business_license")
        await c.type_digits("13990412775")
        await c.press("ok")
        out["outstanding"] = await c.screen("confirm", "cert.outstanding", timeout=60)
        await c.press("yes")
        await c.screen("confirm", "basket.confirm", timeout=60)
        await c.press("yes")
        await c.screen("outcome", "basket.paid", timeout=90)
        await c.press("done")
        out["issued"] = await c.screen("outcome", "cert.issued", timeout=60)
        out["spoken"] = ui.speaker.spoken
        out["said"] = ui.speaker.said
        out["wavs"] = sorted(p.name for p in (data / "speech").glob("*.wav"))
        await c.press("done")
        await c.screen("attract")
        out["reset"] = [ui.large_text, ui.high_contrast, ui.speech_on, ui._hint.font_size,
                        list(ui.root.ground.rgba)]
        await asyncio.wait_for(session, 10)
        return out

    print("RESULT " + json.dumps(asyncio.run(run_demo_kiosk(data, options, script)), ensure_ascii=False))
''')


def test_a_certificate_by_touch_with_large_text_high_contrast_and_speech(tmp_path: Path) -> None:
    r = run_ui(CERT, str(tmp_path), timeout=300)
    size, color, ground, start = r["before"]
    big, hc_color, hc_ground, big_start, start_bg, start_ink = r["after"]
    assert big > size * 1.2 and big_start > start * 1.2  # large text: every label, buttons too
    assert hc_ground[:3] == [0, 0, 0] and color != hc_color and min(hc_color[:3]) > 0.8  # white on black
    assert start_bg[:3] == [1, 0.84, 0] and max(start_ink[:3]) < 0.2  # black on yellow buttons
    assert r["same_label_redrawn"] is True
    assert _has(r["toggles"], "متن درشت: روشن") and _has(r["toggles"], "کنتراست بالا: روشن")
    assert r["spoken_attract"] >= 1
    assert _has(r["outstanding"], "۴", "فیش", "پرداخت می‌کنید")
    assert _has(r["issued"], "گواهی مفاصاحساب صادر شد")
    assert r["spoken"] > r["spoken_attract"] and any(w.endswith("-fa.wav") for w in r["wavs"])
    said = dict((words, lang) for lang, words in r["said"])
    outstanding = next(t for t in r["outstanding"] if "پرداخت می‌کنید" in t)
    assert any(outstanding in words and lang == "fa" for words, lang in said.items())  # the question, spoken
    assert all((tmp_path / "speech" / w).stat().st_size > 1000 for w in r["wavs"])
    large, contrast, speech, hint_size, ground_after = r["reset"]
    assert (large, contrast, speech) == (False, False, False)  # the next citizen starts plain
    assert hint_size == size and ground_after[:3] == [1, 1, 1]


def test_the_scripted_transcript_says_what_the_screen_says() -> None:
    params = {"fee_type_key": "slips.type.vehicle_tax", "period": "1403", "amount_rials": 1_200_000,
              "due": dt.date(2026, 3, 1), "status_key": "slips.status.unpaid", "bill_id": "1", "payment_id": "2"}
    for lang in ("fa", "en"):
        assert Shown("choose", "slips.item", params).line(lang) == plain(render("slips.item", lang, **params))
    assert Shown("step", "slips.item", params).line("fa") == \
        "عوارض خودرو — ۱۴۰۳ — ۱٬۲۰۰٬۰۰۰ ریال — مهلت ۱۴۰۴/۱۲/۱۰ — پرداخت‌نشده"
    assert Shown("confirm", "basket.confirm", {"count": 2, "total_rials": 1_500_000}).line("en") == \
        "2 slips, 1,500,000 rials in all. Pay them with one card payment?"
    plate = "45 ج 781 ایران 20"
    assert plain(render("permit.confirm", "fa", plate=plate, date=dt.date(2026, 12, 1), amount_rials=500_000)) == \
        f"مجوز طرح ترافیک پلاک ۴۵ ج ۷۸۱ ایران ۲۰ برای ۱۴۰۵/۰۹/۱۰، مبلغ {format_rials(500_000, 'fa')}. پرداخت می‌کنید؟"
    assert render("ui.toggle_on", "en", name_key="ui.large_text") == "Large text: on"
