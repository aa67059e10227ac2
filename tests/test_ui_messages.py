"""kiosk.messages_ui.render: what the touch screen shows for a message key and a flow's params,
in Persian and English — the one rendering the screens and the tests read."""

from __future__ import annotations

from kiosk.fmt import format_rials
from kiosk.messages import CATALOG
from kiosk.messages_ui import MESSAGES, render
from kiosk.text.bidi import LRI, PDI, RLI


def test_amounts_are_formatted_in_the_language_shown() -> None:
    assert render("fee.confirm", "fa", service_fa="عوارض نوسازی", service_en="Renovation fee",
                  amount_rials=1_930_000) == "عوارض نوسازی، مبلغ ۱٬۹۳۰٬۰۰۰ ریال. پرداخت می‌کنید؟"
    assert render("fee.confirm", "en", service_fa="عوارض نوسازی", service_en="Renovation fee",
                  amount_rials=1_930_000) == "Renovation fee, amount 1,930,000 rials. Pay now?"
    assert render("card.balance", "en", balance_rials=250_000) == "Card balance: 250,000 rials"


def test_an_amount_a_flow_formatted_follows_a_language_switch() -> None:
    # transit flows format amounts in the kiosk's language before the screen sees them
    assert render("card.balance", "en", balance=format_rials(250_000, "fa")) == "Card balance: 250,000 rials"
    assert render("card.balance", "fa", balance=format_rials(250_000, "en")) == "موجودی کارت: ۲۵۰٬۰۰۰ ریال"
    assert render("card.balance", "fa", balance=format_rials(250_000, "fa")) == "موجودی کارت: ۲۵۰٬۰۰۰ ریال"
    # not an amount in rials: left alone (in its own right-to-left run in English)
    assert render("ui.amount", "en", amount="۱۲ تومان") == f"{RLI}۱۲ تومان{PDI}"


def test_ids_stay_left_to_right_in_persian_and_digits_become_persian() -> None:
    assert render("ui.transaction", "fa", tx="kiosk-01-2026") == f"شماره تراکنش: {LRI}kiosk-01-2026{PDI}"
    assert render("ui.tracking", "fa", tracking="190057936417") == f"کد رهگیری: {LRI}۱۹۰۰۵۷۹۳۶۴۱۷{PDI}"
    assert render("ui.tracking", "en", tracking="190057936417") == "Tracking code: 190057936417"
    assert render("ui.digits_hint", "fa", min=6, max=13) == f"{LRI}۶{PDI} تا {LRI}۱۳{PDI} رقم"


def test_device_reasons_name_the_device_in_the_language_shown() -> None:
    assert render("status.offline", "fa", device="device.CardReader") == "کارتخوان بلیت در دسترس نیست"
    assert render("status.jammed", "en", device="device.CardDispenser") == "The card dispenser is jammed"


def test_the_screen_catalog_is_registered_and_complete() -> None:
    for key, (fa, en) in MESSAGES.items():
        assert CATALOG[key] == (fa, en)
        assert fa and en
        assert fa.count("{") == en.count("{"), key  # the same parameters in both languages
    assert render("no.such.key", "fa") == "no.such.key"


def test_persian_data_in_english_keeps_its_own_run_and_a_plate_reads_left_to_right() -> None:
    # a slip's Persian period before an amount: without the isolate the amount joins its run
    assert render("slips.choose", "en", count=12, owner="ع*** ر***") == f"12 slips for {RLI}ع*** ر***{PDI}. Choose the slips"
    assert render("permit.confirm", "fa", plate="45 ج 781 ایران 20", date="-", amount_rials=1).startswith(
        f"مجوز طرح ترافیک پلاک {LRI}{LRI}۴۵{PDI} {LRI}ج{PDI} {LRI}۷۸۱{PDI} {LRI}ایران{PDI} {LRI}۲۰{PDI}{PDI} برای")


def test_a_slips_period_is_in_the_language_shown() -> None:
    """The back-office labels a period with its Jalali month in Persian ("شهریور ۱۴۰۴"); the English
    screen names the month in English, the Persian one leaves it as it is."""
    import datetime as dt

    from kiosk.fee_types import period_text
    from kiosk.messages_ui import plain
    from kiosk.text.bidi import has_rtl_letters

    slip = {"fee_type_key": "slips.type.waste_charge", "period": "شهریور ۱۴۰۴", "amount_rials": 1_200_000,
            "due": dt.date(2025, 10, 22), "status_key": "slips.status.unpaid"}
    en = plain(render("slips.item", "en", **slip))
    assert en == "Waste collection charge — Shahrivar 1404 — 1,200,000 rials — due 1404/07/30 — unpaid"
    assert not has_rtl_letters(en)
    assert plain(render("slips.item", "fa", **slip)) == \
        "بهای خدمات پسماند — شهریور ۱۴۰۴ — ۱٬۲۰۰٬۰۰۰ ریال — مهلت ۱۴۰۴/۰۷/۳۰ — پرداخت‌نشده"
    # the details card's value, alone
    assert plain(render("ui.value.period", "en", period="اسفند ۱۴۰۲")) == "Esfand 1402"
    assert plain(render("ui.value.period", "fa", period="Esfand 1402")) == "اسفند ۱۴۰۲"
    # a year alone takes the reader's digits; other wording is the back-office's, as written
    assert (period_text("۱۴۰۳", "en"), period_text("1403", "fa")) == ("1403", "۱۴۰۳")
    assert period_text("نیمهٔ اول ۱۴۰۳", "en") == "نیمهٔ اول ۱۴۰۳"
    assert period_text("مهر 1403", "en") == "Mehr 1403" and period_text("مهر 1403", "fa") == "مهر ۱۴۰۳"
