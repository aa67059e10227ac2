"""The printed receipt of a transaction: its blocks in Persian (right to left) or English,
ending in the signed QR, and the exact ESC/POS bytes the printer driver sends for it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from devices.printer.escpos_driver import job_to_escpos_bytes
from devices.printer.profile import DEFAULT_PROFILE
from kiosk.fmt import format_datetime, format_jalali_date, format_number, format_rials, format_toman, to_persian_digits
from kiosk.receipts.codec import ReceiptData, ReceiptStatus
from kiosk.receipts.layout import QR, Document, Heading, Row, Separator, Text, render
from kiosk.text.bidi import ltr

_TITLES = {
    "fee_payment": ("رسید پرداخت عوارض", "Municipal fee payment receipt"),
    "transit_topup": ("رسید شارژ کارت بلیت", "Transit card top-up receipt"),
    "qr_ticket": ("رسید خرید بلیت", "Ticket purchase receipt"),
}
#: what the receipt's first identifier is (the codec's `bill_id` field carries it): a bill's
#: id, or for a transit card its serial number
_FIRST_ID = {"transit_topup": ("شماره سریال کارت", "Card serial number")}
_FIRST_ID["qr_ticket"] = ("شناسه بلیت", "Ticket ID")
_TITLES["pending_topup"] = ("رسید دریافت شارژ خریداری‌شده", "Collected top-up receipt")
_FIRST_ID["pending_topup"] = ("شماره سریال کارت", "Card serial number")
_TITLES["transit_card_sale"] = ("رسید خرید کارت بلیت جدید", "New transit card receipt")
_FIRST_ID["transit_card_sale"] = ("شماره سریال کارت", "Card serial number")
_TITLES["traffic_permit"] = ("رسید مجوز روزانه طرح ترافیک", "Traffic-zone day permit receipt")
_FIRST_ID["traffic_permit"] = ("پلاک", "Plate")
#: what the receipt's second identifier is (the codec's `payment_id` field carries it)
_SECOND_ID = {"traffic_permit": ("روز مجوز", "Permit day")}
_STATUS_TEXT = {
    ReceiptStatus.PAID: ("پرداخت با موفقیت انجام شد", "Payment successful"),
    ReceiptStatus.PENDING_SETTLEMENT: (
        ("پرداخت شما ثبت شد. تسویه آن با شهرداری به‌طور خودکار انجام می‌شود و نیازی به پرداخت دوباره نیست. "
         "این رسید و شماره تراکنش آن را نگه دارید."),
        ("Your payment is recorded. It will be settled with the municipality automatically; do not pay "
         "again. Keep this receipt and its transaction number.")),
    ReceiptStatus.REVERSED: ("پرداخت ناموفق بود. مبلغ به حساب شما بازگشت داده شد",
                             "Payment failed. Your money has been returned to your card"),
}
#: a kind whose "paid" is not a payment (a collection moves no money) or whose pending part is
#: not a municipal settlement (transit value owed to a card) says so in its own words
_KIND_STATUS_TEXT: dict[tuple[str, ReceiptStatus], tuple[str, str]] = {
    ("pending_topup", ReceiptStatus.PAID): ("شارژ خریداری‌شده روی کارت شما نشست", "The top-up you bought is now on your card"),
    ("pending_topup", ReceiptStatus.PENDING_SETTLEMENT): (
        "شارژ شما ثبت شد. اگر هنوز کامل روی کارت ننشسته، در اولین تماس کارت با هر کیوسک می‌نشیند. "
        "این رسید را نگه دارید.",
        "Your top-up is recorded. If it is not all on the card yet, it goes on at the card's next tap on "
        "any kiosk. Keep this receipt."),
}
for _kind in ("transit_topup", "transit_card_sale"):
    _KIND_STATUS_TEXT[(_kind, ReceiptStatus.PENDING_SETTLEMENT)] = (
        "پرداخت شما ثبت شد و نیازی به پرداخت دوباره نیست. اگر اعتبار کارت هنوز کامل نشده، در اولین تماس کارت "
        "با هر کیوسک تکمیل می‌شود. این رسید و شماره تراکنش آن را نگه دارید.",
        "Your payment is recorded; do not pay again. If the card's value is not complete yet, it is completed "
        "at the card's next tap on any kiosk. Keep this receipt and its transaction number.")
_PENDING_TRACKING = ("پس از تسویه صادر می‌شود", "issued after settlement")
_VERIFY_CAPTION = ("برای بررسی اصالت رسید، کد را اسکن کنید", "Scan to verify this receipt")
_COPY_MARK = ("المثنی", "COPY")
_COPY_NOTE = ("چاپ دوباره رسید؛ کد امضاشده همان رسید اصلی است",
              "Reprint; the signed code is the original receipt's")


def _second_value(data: ReceiptData, lang: str) -> str:
    """The second identifier as printed: a permit's day (signed as an ISO date) in the reader's
    calendar, anything else as its digits."""
    if data.kind == "traffic_permit":
        try:
            return format_jalali_date(dt.date.fromisoformat(data.payment_id), lang)
        except ValueError:
            pass
    return to_persian_digits(data.payment_id) if lang == "fa" else data.payment_id


def build_document(data: ReceiptData, payload: str, lang: str = "fa", *, copy: bool = False) -> Document:
    """The printed receipt, Persian (right to left) or English, ending in the signed QR.
    `copy` marks a reprint (المثنی / COPY) above the title; the payload is the original's.
    The journal row (seq and hash prefix) the payload witnesses is printed in clear too."""
    if lang not in ("fa", "en"):
        raise ValueError(f"lang must be 'fa' or 'en', not {lang!r}")
    fa = lang == "fa"
    status = ReceiptStatus(data.status)

    def pick(pair: tuple[str, str]) -> str:
        return pair[0] if fa else pair[1]

    def digits(s: str) -> str:
        return to_persian_digits(s) if fa else s

    if fa:
        # the numbers as LTR isolates inside the Persian sentence, the unit words stay RTL
        amount = (f"{ltr(format_number(data.amount_rials, 'fa'))} ریال "
                  f"({ltr(format_toman(data.amount_rials, 'fa').rsplit(' ', 1)[0])} تومان)")
    else:
        amount = f"{format_rials(data.amount_rials, 'en')} ({format_toman(data.amount_rials, 'en')})"
    tracking = digits(data.tracking_code) if data.tracking_code else pick(_PENDING_TRACKING)
    title = pick(_TITLES.get(data.kind, ("رسید", "Receipt")))
    if data.items:
        return _items_document(data, payload, amount, title, pick, digits, fa, copy)
    rows: list[Any] = [
        Row(pick(("مبلغ", "Amount")), amount, bold=True),
        Row(pick(_FIRST_ID.get(data.kind, ("شناسه قبض", "Bill ID"))), digits(data.bill_id)),
        *([Row(pick(_SECOND_ID.get(data.kind, ("شناسه پرداخت", "Payment ID"))), _second_value(data, lang))]
          if data.payment_id else []),
        Row(pick(("نوع خدمت", "Service")), data.service_label_fa if fa else data.service_label_en),
        Row(pick(("کد رهگیری", "Tracking code")), tracking),
        Row(pick(("شماره مرجع", "Reference number")), digits(data.rrn) if data.rrn else "-"),
    ]
    if data.stan:
        rows.append(Row(pick(("شماره پیگیری", "Trace number")), digits(data.stan)))
    if data.masked_pan:
        # Row keeps a digits/latin value left to right; the masked number must read in card order.
        rows.append(Row(pick(("کارت", "Card")), digits(data.masked_pan)))
    rows += [
        Row(pick(("تاریخ", "Date")), format_datetime(data.at, lang)),
        Row(pick(("شماره تراکنش", "Transaction")), data.tx_id, size=20),
        Row(pick(("کیوسک", "Kiosk")), data.kiosk_id, size=20),
        Row(pick(("ردیف دفتر", "Journal row")), f"{data.journal_seq} · {data.journal_hash_prefix}", size=20),
    ]
    blocks: list[Any] = [
        Heading(pick(("کیوسک شهر", "City Kiosk"))),
        Text(pick(("شهرداری تهران", "Tehran Municipality")), align="center"),
        Separator(),
    ]
    if copy:
        blocks += [Heading(pick(_COPY_MARK), size=30), Text(pick(_COPY_NOTE), size=20, align="center")]
    blocks += [
        Heading(title, size=30),
        *rows,
        Separator(),
        Text(pick(_KIND_STATUS_TEXT.get((data.kind, status), _STATUS_TEXT[status])), align="center" if status == ReceiptStatus.PAID else "start",
             bold=True),
    ]
    if status == ReceiptStatus.PENDING_SETTLEMENT:
        blocks.append(Text(pick(("پیگیری با شماره تراکنش: ", "Follow up with transaction number: "))
                           + ltr(data.tx_id), size=20))
    blocks.append(QR(payload, caption=pick(_VERIFY_CAPTION)))
    return Document(tuple(blocks), direction="rtl" if fa else "ltr")


_TITLES["fee_basket"] = ("رسید پرداخت چند فیش عوارض", "Receipt: several municipal fee slips")
_ITEM_OUTCOME_TEXT = {
    "settled": ("پرداخت شد", "Paid"),
    "pending": ("ثبت نزد شهرداری به‌زودی", "To be recorded shortly"),
    "refunded": ("پذیرفته نشد؛ مبلغ آن به کارت بازگشت", "Refused; its amount returned to your card"),
    "refund_pending": ("پذیرفته نشد؛ بازگشت مبلغ آن پیگیری می‌شود", "Refused; its refund is being followed up"),
}


def _items_document(data: ReceiptData, payload: str, amount: str, title: str, pick: Any, digits: Any,
                    fa: bool, copy: bool) -> Document:
    """A receipt that pays several bills at once: the total charged, then each bill with what
    became of it (tracking code, refunded, refund pending), then what came back to the card."""

    def rials(n: int) -> str:
        return f"{ltr(format_number(n, 'fa'))} ریال" if fa else format_rials(n, "en")

    rows: list[Any] = [Row(pick(("مبلغ پرداختی", "Amount charged")), amount, bold=True),
                       Row(pick(("تعداد فیش", "Slips")), digits(str(len(data.items))))]
    for n, item in enumerate(data.items, 1):
        rows += [
            Separator(),
            Text(f"{digits(str(n))}. " + (item.label_fa if fa else item.label_en), bold=True),
            Row(pick(("مبلغ", "Amount")), rials(item.amount_rials)),
            Row(pick(("شناسه قبض", "Bill ID")), digits(item.bill_id)),
            Row(pick(("شناسه پرداخت", "Payment ID")), digits(item.payment_id)),
            Row(pick(("وضعیت", "Status")), pick(_ITEM_OUTCOME_TEXT[item.outcome])),
        ]
        if item.tracking_code:
            rows.append(Row(pick(("کد رهگیری", "Tracking code")), digits(item.tracking_code)))
    refunded = sum(i.amount_rials for i in data.items if i.outcome == "refunded")
    pending = sum(i.amount_rials for i in data.items if i.outcome == "refund_pending")
    rows.append(Separator())
    if refunded:
        rows.append(Row(pick(("بازگشت به کارت", "Returned to card")), rials(refunded), bold=True))
    if pending:
        rows.append(Row(pick(("بازگشت در حال پیگیری", "Refund being followed up")), rials(pending), bold=True))
    rows += [Row(pick(("شماره مرجع", "Reference number")), digits(data.rrn) if data.rrn else "-")]
    if data.stan:
        rows.append(Row(pick(("شماره پیگیری", "Trace number")), digits(data.stan)))
    if data.masked_pan:
        rows.append(Row(pick(("کارت", "Card")), digits(data.masked_pan)))
    rows += [
        Row(pick(("تاریخ", "Date")), format_datetime(data.at, lang="fa" if fa else "en")),
        Row(pick(("شماره تراکنش", "Transaction")), data.tx_id, size=20),
        Row(pick(("کیوسک", "Kiosk")), data.kiosk_id, size=20),
        Row(pick(("ردیف دفتر", "Journal row")), f"{data.journal_seq} · {data.journal_hash_prefix}", size=20),
    ]
    blocks: list[Any] = [Heading(pick(("کیوسک شهر", "City Kiosk"))),
                         Text(pick(("شهرداری تهران", "Tehran Municipality")), align="center"), Separator()]
    if copy:
        blocks += [Heading(pick(_COPY_MARK), size=30), Text(pick(_COPY_NOTE), size=20, align="center")]
    blocks += [Heading(title, size=30), *rows]
    if pending or any(i.outcome == "pending" for i in data.items):
        blocks.append(Text(pick(("پیگیری با شماره تراکنش: ", "Follow up with transaction number: "))
                           + ltr(data.tx_id), size=20))
    blocks.append(QR(payload, caption=pick(_VERIFY_CAPTION)))
    return Document(tuple(blocks), direction="rtl" if fa else "ltr")


def print_receipt_bytes(document: Document, *, width_dots: int = 576, profile: str = DEFAULT_PROFILE) -> bytes:
    """The ESC/POS bytes of a receipt: raster text (GS v 0), the printer's native QR (GS ( k),
    a cut (GS V). Encoding is the printer driver's own `job_to_escpos_bytes`, so what a test
    sees here is byte for byte what the driver sends."""
    job = render(document, width_dots=width_dots, native_qr=True)
    return job_to_escpos_bytes(job, profile)


__all__ = ["build_document", "print_receipt_bytes"]
