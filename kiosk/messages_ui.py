"""The touch screen's own words (attract, home, keypad, inactivity, device status) and
`render`, which turns a message key and the params a flow passed into the text shown — the
one place both the Kivy screens and tests render from, the way kiosk.scripted_ui does
(amounts in rials formatted per language, `service` from service_fa / service_en).

In Persian, a parameter with no Persian letters (a number, an id, a tracking code) is wrapped
in a left-to-right isolate, so it is never reordered with the words around it."""

from __future__ import annotations

import re
from typing import Any

MESSAGES: dict[str, tuple[str, str]] = {
    "ui.kiosk_name": ("کیوسک شهر", "City Kiosk"),
    "ui.touch_to_start": ("برای شروع، صفحه را لمس کنید", "Touch the screen to start"),
    "ui.hint.fee": ("عوارض شهرداری را با بارکد فیش بپردازید", "Pay municipal fees with your slip's barcode"),
    "ui.hint.topup": ("کارت بلیت مترو و اتوبوس را شارژ کنید", "Top up your metro and bus card"),
    "ui.hint.balance": ("موجودی و سفرهای اخیر کارت بلیت را ببینید", "See your transit card's balance and trips"),
    "ui.hint.ticket": ("بلیت QR مترو و اتوبوس بخرید", "Buy a metro and bus QR ticket"),
    "ui.choose_service": ("خدمت مورد نظر را انتخاب کنید", "Choose a service"),
    "ui.lang_toggle": ("English", "فارسی"),  # the other language, in its own script
    "ui.cancel": ("انصراف", "Cancel"),
    "ui.ok": ("باشه", "OK"),
    "ui.confirm": ("تأیید", "Confirm"),
    "ui.done": ("پایان", "Done"),
    "ui.clear": ("پاک کردن", "Clear"),
    "ui.delete": ("حذف", "Delete"),
    "ui.digits_hint": ("{min} تا {max} رقم", "{min} to {max} digits"),
    "ui.still_there": ("هنوز اینجا هستید؟ برای ادامه، صفحه را لمس کنید. بازگشت به صفحهٔ اول تا {seconds} ثانیهٔ دیگر",
                       "Are you still there? Touch the screen to continue. Back to the start in {seconds} s"),
    "ui.bill_ids": ("شناسه قبض {bill_id}، شناسه پرداخت {payment_id}", "Bill ID {bill_id}, payment ID {payment_id}"),
    "ui.no_printer": ("چاپگر رسید فعلاً کار نمی‌کند؛ رسید شما روی صفحه نمایش داده می‌شود",
                      "The receipt printer is not working now; your receipt will be shown on the screen"),
    "ui.amount": ("{amount}", "{amount}"),
    "ui.continue": ("ادامه می‌دهم", "Continue"),
    "ui.tracking": ("کد رهگیری: {tracking}", "Tracking code: {tracking}"),
    "ui.transaction": ("شماره تراکنش: {tx}", "Transaction: {tx}"),
    "ui.receipt_qr": ("رسید شما چاپ نشد. این کد را با تلفن همراه بخوانید و نگه دارید",
                      "Your receipt was not printed. Scan this code with your phone and keep it"),
    # accessibility, toggled on the attract and home screens; a multiple choice's count
    "ui.large_text": ("متن درشت", "Large text"),
    "ui.high_contrast": ("کنتراست بالا", "High contrast"),
    "ui.speech": ("راهنمای صوتی", "Audio guide"),
    "ui.toggle_on": ("{name}: روشن", "{name}: on"),
    "ui.toggle_off": ("{name}: خاموش", "{name}: off"),
    "ui.chosen": ("{count} مورد انتخاب شده", "{count} chosen"),
    "ui.balance.title": ("موجودی کارت بلیت", "Transit card balance"),
    # a fee slip's details card: label/value rows (the values from a slip's params, per language)
    "ui.slip.title": ("جزئیات فیش", "Slip details"),
    "ui.slip.tap_for_details": ("برای دیدن جزئیات، فیشی را لمس کنید", "Touch a slip to see its details"),
    "ui.slip.fee_type": ("نوع عوارض", "Fee type"),
    "ui.slip.identifier": ("شناسه", "Identifier"),
    "ui.slip.period": ("دوره", "Period"),
    "ui.slip.amount": ("مبلغ", "Amount"),
    "ui.slip.due": ("مهلت پرداخت", "Due date"),
    "ui.slip.status": ("وضعیت", "Status"),
    "ui.value.fee_type": ("{fee_type}", "{fee_type}"),
    "ui.value.identifier": ("{identifier}", "{identifier}"),
    "ui.value.period": ("{period}", "{period}"),
    "ui.value.amount": ("{amount}", "{amount}"),
    "ui.value.due": ("{due}", "{due}"),
    "ui.value.status": ("{status}", "{status}"),
    # device status, the reason shown on a service that cannot run now
    "status.offline": ("{device} در دسترس نیست", "The {device} is not available"),
    "status.fault": ("{device} خطا دارد", "The {device} has a fault"),
    "status.not_installed": ("{device} روی این کیوسک نصب نیست", "This kiosk has no {device}"),
    "status.paper_out": ("کاغذ چاپگر تمام شده است", "The printer is out of paper"),
    "status.paper_low": ("کاغذ چاپگر رو به اتمام است", "The printer's paper is running low"),
    "status.stacker_empty": ("کارت خام در دستگاه تمام شده است", "No blank cards are left"),
    "status.jammed": ("{device} گیر کرده است", "The {device} is jammed"),
    "device.PaymentTerminal": ("کارتخوان بانکی", "card terminal"),
    "device.ReceiptPrinter": ("چاپگر رسید", "receipt printer"),
    "device.Scanner": ("اسکنر بارکد", "barcode scanner"),
    "device.CardReader": ("کارتخوان بلیت", "transit card reader"),
    "device.CardDispenser": ("دستگاه کارت", "card dispenser"),
}

_PARAM_KEYS = ("device",)  # params that are themselves message keys

#: an amount a flow formatted already, in either language ("۲۰۰٬۰۰۰ ریال", "200,000 rials")
_FA_AMOUNT = re.compile(r"^([۰-۹٬]+) ریال$")
_EN_AMOUNT = re.compile(r"^([0-9,]+) rials$")


def _amount_in(value: str, lang: str) -> str:
    """A flow that formats its amounts itself does so in the kiosk's configured language; shown
    in the other one (the citizen switched), the amount is formatted again for it."""
    from kiosk.fmt import format_rials, to_latin_digits

    m = _FA_AMOUNT.match(value) if lang == "en" else _EN_AMOUNT.match(value)
    if m is None:
        return value
    digits = to_latin_digits(m.group(1)).replace("٬", "").replace(",", "")
    return format_rials(int(digits), lang) if digits.isdigit() else value


def render(key: str, lang: str = "fa", **params: Any) -> str:
    """The text of `key` in `lang` with `params`, as a citizen sees it.

    The parameters go through kiosk.messages.render_params first (amount_rials → amount, any
    other `*_rials` grouped, dates Jalali, counts in the reader's digits, `X_key` → X), the one
    formatting every UI shares; on top of it the screen adds `service` from service_fa /
    service_en, `X` with its unit from an integer `X_rials` the text names as `{X}`, an amount a
    flow formatted already shown again in this language, a device key named, a plate in the
    reader's digits read left to right like the plate itself, in Persian every parameter
    with no Persian letters isolated left to right (digits-only ids in Persian digits), and in
    English every parameter with Persian letters isolated right to left."""
    from kiosk.fmt import format_rials, to_persian_digits
    from kiosk.messages import render_params, text
    from kiosk.text.bidi import PDI, RLI, has_rtl_letters, ltr

    shown = render_params(params, lang)
    for name, value in params.items():  # balance_rials=250000 → balance, in this language
        if name.endswith("_rials") and isinstance(value, int) and not isinstance(value, bool):
            shown.setdefault(name[:-len("_rials")], format_rials(value, lang))
    shown.setdefault("service", shown.get(f"service_{lang}", ""))
    for name, value in list(shown.items()):
        if isinstance(value, str):
            shown[name] = _amount_in(value, lang)
    for name in _PARAM_KEYS:
        if isinstance(shown.get(name), str) and shown[name] in MESSAGES:
            shown[name] = text(shown[name], lang)
    plate = shown.get("plate")
    if isinstance(plate, str) and plate:
        # "45 ج 781 ایران 20": the order of the plate's own parts, left to right, in both languages
        # (each part isolated too: a number after a Persian letter would otherwise join its run)
        parts = (to_persian_digits(plate) if lang == "fa" else plate).split()
        shown["plate"] = ltr(" ".join(ltr(part) for part in parts))
    if lang == "en":
        for name, value in list(shown.items()):
            # Persian data in English text (a slip's period, a masked name): its own right-to-left
            # run, so a number after it is not pulled into it
            if name != "plate" and isinstance(value, str) and has_rtl_letters(value) and not value.startswith(RLI):
                shown[name] = f"{RLI}{value}{PDI}"
    if lang == "fa":
        for name, value in list(shown.items()):
            if name == "plate":
                continue
            if isinstance(value, str) and value.isascii() and value.isdigit():
                value = shown[name] = to_persian_digits(value)  # a tracking code or id of digits
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value) \
                    and not has_rtl_letters(str(value)):
                shown[name] = ltr(str(value))
    return text(key, lang, **shown)


def plain(text: str) -> str:
    """`text` without its invisible bidi isolates (a transcript's or a reader's words)."""
    from kiosk.text.bidi import FSI, LRI, PDI, RLI

    return text.translate(str.maketrans("", "", LRI + RLI + FSI + PDI))


__all__ = ["MESSAGES", "plain", "render"]
