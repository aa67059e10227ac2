"""Message catalog: every key a flow shows, in Persian (default) and English.

Error keys are not repeated here: each KioskError subclass carries its own fa/en text, and
`text()` finds it by key, so an error's wording lives in one place.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kiosk.errors import KioskError
from kiosk.fee_types import period_text
from kiosk.fmt import format_datetime, format_jalali_date, format_number, format_rials, to_persian_digits
from kiosk.messages_tickets import MESSAGES as _TICKETS
from kiosk.messages_collect import MESSAGES as _COLLECT
from kiosk.messages_card_sale import MESSAGES as _CARD_SALE
from kiosk.messages_basket import MESSAGES as _BASKET
from kiosk.messages_municipal import MESSAGES as _MUNICIPAL
from kiosk.messages_ui import MESSAGES as _UI
from kiosk.messages_maintenance import MESSAGES as _MAINTENANCE

CATALOG: dict[str, tuple[str, str]] = {
    # fee payment
    "fee.title": ("پرداخت عوارض شهرداری", "Pay municipal fees"),
    "fee.how_to_enter": ("بارکد فیش را جلوی اسکنر بگیرید یا «ورود دستی» را بزنید",
                         "Scan the barcode of your slip, or choose Enter manually"),
    "fee.scan": ("بارکد فیش را جلوی اسکنر بگیرید", "Scan the barcode of your slip"),
    "fee.manual": ("ورود دستی", "Enter manually"),
    "fee.enter_bill_id": ("شناسه قبض را وارد کنید", "Enter the bill ID"),
    "fee.enter_payment_id": ("شناسه پرداخت را وارد کنید", "Enter the payment ID"),
    "fee.scanned": ("فیش خوانده شد", "Slip read"),
    "fee.looking_up": ("در حال دریافت اطلاعات فیش… لطفاً صبر کنید", "Looking up your slip… Please wait"),
    "fee.confirm": ("{service}، مبلغ {amount}. پرداخت می‌کنید؟", "{service}, amount {amount}. Pay now?"),
    "fee.cancelled": ("پرداخت انجام نشد و مبلغی از حساب شما کم نشد", "Nothing was paid and nothing was charged"),
    "pay.insert_card": ("کارت بانکی را در دستگاه کارتخوان وارد کنید و رمز کارت را روی کارتخوان وارد کنید",
                        "Insert or tap your bank card on the terminal and enter your PIN there"),
    "pay.checking": ("در حال بررسی نتیجه پرداخت… لطفاً صبر کنید", "Checking the payment result… Please wait"),
    "pay.declined": ("پرداخت ناموفق بود. مبلغی از حساب شما کم نشد", "Payment declined. Nothing was charged"),
    "pay.amount_over_limit": ("مبلغ این فیش بیشتر از سقف پرداخت با کارت در این کیوسک است. مبلغی از حساب شما کم نشد. "
                              "لطفاً آن را از درگاه اینترنتی شهرداری یا در شعبهٔ بانک پرداخت کنید",
                              "This slip's amount is over the card-payment limit of this kiosk. Nothing was charged. "
                              "Please pay it on the municipality's website or at a bank branch"),
    "pay.unknown": ("نتیجه پرداخت هنوز مشخص نیست. اگر مبلغی کم شده باشد، به‌طور خودکار بازگشت داده می‌شود. "
                    "شماره تراکنش: {tx}",
                    "The payment result is not known yet. If you were charged, the money is returned "
                    "automatically. Transaction: {tx}"),
    "pay.cancelling": ("در حال لغو پرداخت… لطفاً صبر کنید", "Cancelling the payment… Please wait"),
    "pay.cancelled": ("پرداخت لغو شد. مبلغی از حساب شما کم نشد", "Payment cancelled. Nothing was charged"),
    "pay.cancelled_reversed": ("پرداخت لغو شد. مبلغی که از کارت شما کم شده بود به آن بازگشت داده شد",
                               "Payment cancelled. The amount taken from your card has been returned to it"),
    "pay.cancelled_refund_pending": ("پرداخت لغو شد، اما مبلغ از کارت شما کم شده و هنوز بازگشت داده نشده است. "
                                     "بازگشت آن ثبت شد و پیگیری می‌شود. شماره تراکنش: {tx}",
                                     "Payment cancelled, but your card was charged and the money is not back yet. "
                                     "A refund is recorded and will be followed up. Transaction: {tx}"),
    "pay.cancelled_unknown": ("پرداخت لغو شد، اما کارتخوان هنوز نتیجه را اعلام نکرده است. اگر مبلغی کم شده باشد، "
                              "به‌طور خودکار بازگشت داده می‌شود. شماره تراکنش: {tx}",
                              "Payment cancelled, but the terminal has not told the result yet. If you were "
                              "charged, the money is returned automatically. Transaction: {tx}"),
    "settle.posting": ("در حال ثبت پرداخت نزد شهرداری…", "Recording the payment with the municipality…"),
    "settle.pending": ("پرداخت با موفقیت انجام شد. ثبت آن نزد شهرداری به‌طور خودکار انجام می‌شود",
                       "Payment successful. It will be recorded with the municipality automatically"),
    "settle.refused_reversed": ("شهرداری این پرداخت را نپذیرفت. مبلغ به حساب شما بازگشت داده شد",
                                "The municipality refused this payment. Your money has been returned to your card"),
    "settle.refused_refund_pending": ("شهرداری این پرداخت را نپذیرفت. بازگشت مبلغ ثبت شد و پیگیری می‌شود. "
                                      "شماره تراکنش: {tx}",
                                      "The municipality refused this payment. A refund is recorded and "
                                      "will be followed up. Transaction: {tx}"),
    "receipt.printing": ("در حال چاپ رسید…", "Printing the receipt…"),
    "receipt.not_printed": ("رسید چاپ نشد. کد رهگیری: {tracking}", "The receipt could not be printed. Tracking code: {tracking}"),
    "fee.paid": ("پرداخت با موفقیت انجام شد. کد رهگیری: {tracking}", "Payment successful. Tracking code: {tracking}"),
    "service.unavailable": ("این خدمت موقتاً در دسترس نیست", "This service is temporarily unavailable"),
    "service.storage": ("کیوسک نتوانست مرحلهٔ آخر پرداخت شما را ثبت کند. پرداخت شما به‌طور خودکار بررسی "
                        "می‌شود و یا تکمیل می‌شود یا مبلغ آن بازمی‌گردد. شماره تراکنش: {tx}",
                        "The kiosk could not record the last step of your payment. Your payment will be "
                        "checked and completed or refunded automatically. Transaction: {tx}"),
    # transit card (کارت بلیت)
    "topup.title": ("شارژ کارت بلیت", "Top up transit card"),
    "card.place": ("کارت بلیت خود را روی کارتخوان قرار دهید", "Place your transit card on the reader"),
    "card.reading": ("در حال خواندن کارت… کارت را از روی کارتخوان برندارید",
                     "Reading your card… Keep your card on the reader"),
    "card.balance": ("موجودی کارت: {balance}", "Card balance: {balance}"),
    "card.trips": ("سفرهای اخیر: {count}", "Recent trips: {count}"),
    "card.profile.senior": ("کارت سالمندان (۶۵ سال به بالا)", "Senior card (65 and over)"),
    "card.profile.student": ("کارت دانشجویی", "Student card"),
    "card.unreadable": ("این کارت خوانده نشد. اگر کارت بلیت شهر تهران است، با پشتیبانی تماس بگیرید",
                        "This card could not be read. If it is a Tehran transit card, please contact support"),
    "card.pending_applied": ("شارژ ناتمام قبلی این کارت ({amount}، تراکنش {tx}) روی کارت ثبت شد",
                             "This card's unfinished top-up ({amount}, transaction {tx}) is now on the card"),
    "card.not_placed": ("کارتی روی کارتخوان قرار نگرفت", "No card was placed on the reader"),
    "card.wrong_card": ("این همان کارت نیست. لطفاً همان کارتی را که شارژ می‌کردید روی کارتخوان بگذارید",
                        "This is not the same card. Please place the card you were topping up"),
    "topup.choose_amount": ("مبلغ شارژ را انتخاب کنید", "Choose the top-up amount"),
    "topup.other_amount": ("مبلغ دیگر", "Other amount"),
    "topup.preset": ("مبلغ پیشنهادی", "Suggested amount"),  # the choice's id is the amount
    "topup.enter_amount": ("مبلغ شارژ را به ریال وارد کنید", "Enter the top-up amount in rials"),
    "topup.amount_out_of_range": ("مبلغ شارژ باید بین {min} و {max} باشد", "The top-up must be between {min} and {max}"),
    "topup.over_card_max": ("با این مبلغ، موجودی کارت از سقف {max} بیشتر می‌شود. مبلغ کمتری انتخاب کنید",
                            "This would take the card over its limit of {max}. Please choose a smaller amount"),
    "topup.confirm": ("شارژ کارت به مبلغ {amount}؛ موجودی پس از شارژ {balance_after}. ادامه می‌دهید؟",
                      "Top up {amount}; the balance will be {balance_after}. Continue?"),
    "topup.writing": ("در حال شارژ کارت… کارت را از روی کارتخوان برندارید",
                      "Topping up your card… Keep your card on the reader"),
    "topup.place_again": ("کارت پیش از پایان شارژ برداشته شد. همان کارت را دوباره روی کارتخوان قرار دهید",
                          "The card was taken away before the top-up finished. Place the same card on the reader again"),
    "topup.done": ("کارت شارژ شد. موجودی جدید: {balance}. کد رهگیری: {tracking}",
                   "Your card is topped up. New balance: {balance}. Tracking code: {tracking}"),
    "topup.done_pending": ("کارت شارژ شد. موجودی جدید: {balance}. ثبت آن در سامانه بلیت به‌طور خودکار انجام می‌شود",
                           "Your card is topped up. New balance: {balance}. It will be recorded with the transit "
                           "system automatically"),
    "topup.pending_action": ("شارژ کارت کامل نشد، اما مبلغ پرداختی شما محفوظ است: با اولین قرار دادن همین کارت روی "
                             "کارتخوان هر کیوسک، شارژ روی کارت اعمال می‌شود. این رسید را نگه دارید. شماره تراکنش: {tx}",
                             "The top-up did not finish, but your payment is safe: the next time this card is "
                             "placed on any kiosk's reader, the value is written to it. Keep this receipt. "
                             "Transaction: {tx}"),
    "topup.not_written_reversed": ("کارت شارژ نشد و مبلغ به حساب شما بازگشت داده شد",
                                   "The card was not topped up and your money has been returned to your card"),
    "topup.not_written_refund_pending": ("کارت شارژ نشد. بازگشت مبلغ ثبت شد و پیگیری می‌شود. شماره تراکنش: {tx}",
                                         "The card was not topped up. A refund is recorded and will be followed up. "
                                         "Transaction: {tx}"),
    "service.out_of_service": ("این کیوسک از سرویس خارج است و پرداختی نمی‌گیرد؛ تکنسین باید آن را بررسی کند. "
                               "لطفاً از کیوسک دیگری استفاده کنید",
                               "This kiosk is out of service and takes no payments until a technician "
                               "has checked it. Please use another kiosk"),
}


# A service's own screens may live in their own catalog module (kiosk/messages_<service>.py, a
# dict MESSAGES of key -> (fa, en)); each is listed here once. A key defined twice is an error
# at import, so two services never silently share one.
_EXTRA: tuple[dict[str, tuple[str, str]], ...] = (_TICKETS,)
_EXTRA += (_COLLECT,)
_EXTRA += (_CARD_SALE,)
_EXTRA += (_BASKET,)
_EXTRA += (_MUNICIPAL,)
_EXTRA += (_UI,)
_EXTRA += (_MAINTENANCE,)
for _catalog in _EXTRA:
    _twice = set(_catalog) & set(CATALOG)
    if _twice:
        raise RuntimeError(f"message keys defined twice: {sorted(_twice)}")
    CATALOG.update(_catalog)


def _error_classes() -> dict[str, type[KioskError]]:
    found: dict[str, type[KioskError]] = {}
    stack: list[type[KioskError]] = [KioskError]
    while stack:
        cls = stack.pop()
        found.setdefault(cls.key, cls)
        stack.extend(cls.__subclasses__())
    return found


def render_params(params: dict[str, Any], lang: str) -> dict[str, Any]:
    """Parameters as the citizen reads them in `lang`, so every UI renders them alike:
    `amount_rials` gives `amount` (rials with the unit), any other `*_rials` the grouped number,
    a count the reader's digits, a date Jalali, a moment in Tehran time, and `X_key` (a message
    key) gives `X` in the same language."""
    out = dict(params)
    for name, value in params.items():
        if name.endswith("_key") and isinstance(value, str):
            out.setdefault(name[:-4], text(value, lang))
        elif isinstance(value, dt.datetime):
            out[name] = format_datetime(value, lang)
        elif isinstance(value, dt.date):
            out[name] = format_jalali_date(value, lang)
        elif isinstance(value, int) and not isinstance(value, bool) and name.endswith("_rials"):
            out[name] = format_number(value, lang)  # an amount whose unit the text says
        elif isinstance(value, int) and not isinstance(value, bool):
            out[name] = to_persian_digits(str(value)) if lang == "fa" else str(value)  # a count
        elif name == "period" and isinstance(value, str):
            out[name] = period_text(value, lang)  # a slip's Jalali month named in the reader's language
    if "amount_rials" in params and "amount" not in params:
        out["amount"] = format_rials(int(params["amount_rials"]), lang)
    return out


def text(key: str, lang: str = "fa", **params: Any) -> str:
    """The text for `key` in `lang`, formatted with params (missing params left as is)."""
    if key in CATALOG:
        fa, en = CATALOG[key]
    else:
        cls = _error_classes().get(key)
        if cls is None:
            return key
        fa, en = cls.fa, cls.en
    template = fa if lang == "fa" else en
    try:
        return template.format(**render_params(params, lang))
    except (KeyError, IndexError, ValueError):
        return template
