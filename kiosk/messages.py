"""Message catalog: every key a flow shows, in Persian (default) and English.

Error keys are not repeated here: each KioskError subclass carries its own fa/en text, and
`text()` finds it by key, so an error's wording lives in one place.
"""

from __future__ import annotations

from typing import Any

from kiosk.errors import KioskError

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
    "service.out_of_service": ("این کیوسک از سرویس خارج است و پرداختی نمی‌گیرد؛ تکنسین باید آن را بررسی کند. "
                               "لطفاً از کیوسک دیگری استفاده کنید",
                               "This kiosk is out of service and takes no payments until a technician "
                               "has checked it. Please use another kiosk"),
}


def _error_classes() -> dict[str, type[KioskError]]:
    found: dict[str, type[KioskError]] = {}
    stack: list[type[KioskError]] = [KioskError]
    while stack:
        cls = stack.pop()
        found.setdefault(cls.key, cls)
        stack.extend(cls.__subclasses__())
    return found


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
        return template.format(**params)
    except (KeyError, IndexError, ValueError):
        return template
