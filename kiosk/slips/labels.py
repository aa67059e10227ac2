"""What a fee slip calls things, Persian and English: the four fee kinds the back-office issues
(the same Persian names its slips carry) and the slip's fixed lines."""

from __future__ import annotations

from kiosk.fee_types import FEE_TYPES

#: FeeSlip.kind -> (Persian, English)
FEE_KINDS: dict[str, tuple[str, str]] = {t.name: (t.label_fa, t.label_en) for t in FEE_TYPES.values()}

LINES: dict[str, tuple[str, str]] = {
    "municipality": ("شهرداری تهران", "Tehran Municipality"),
    "title": ("فیش {kind}", "{kind} slip"),
    "not_receipt_short": ("رونوشت فیش — رسید پرداخت نیست", "Slip copy — NOT a receipt"),
    "not_receipt": ("این فیش رسید پرداخت نیست و پرداخت را ثابت نمی‌کند. رسیدی را که پس از پرداخت می‌گیرید نگه دارید.",
                    "This slip is not a receipt and is not proof of payment. Keep the receipt you get when you pay."),
    "how_to_pay": ("با اسکن بارکد یا ورود شناسه قبض و شناسه پرداخت، در کیوسک‌های شهر، درگاه بانک یا شعبهٔ بانک پرداخت کنید.",
                   "Pay at a city kiosk, a bank's online gateway or a bank branch: scan the barcode or enter "
                   "the bill ID and payment ID."),
    "paid": ("این فیش پیش‌تر پرداخت شده است؛ دوباره پرداخت نکنید.",
             "This slip has already been paid; do not pay it again."),
    "payer": ("پرداخت‌کننده", "Payer"),
    "fee_kind": ("نوع عوارض", "Fee type"),
    "period": ("دوره", "Period"),
    "amount": ("مبلغ", "Amount"),
    "in_words": ("به حروف: ", "In words: "),
    "due": ("مهلت پرداخت", "Due date"),
    "no_due": ("—", "—"),
    "bill_id": ("شناسه قبض", "Bill ID"),
    "payment_id": ("شناسه پرداخت", "Payment ID"),
    "slip_no": ("شماره فیش", "Slip number"),
    "barcode": ("بارکد پرداخت", "Payment barcode"),
    "scan": ("برای پرداخت، بارکد یا کد را اسکن کنید", "Scan the barcode or the code to pay"),
    "kiosk": ("کیوسک", "Kiosk"),
    "printed_at": ("زمان چاپ", "Printed"),
}


def fee_kind_label(kind: str, lang: str = "fa") -> str:
    """The name of a fee kind ("renovation_tax" → «عوارض نوسازی»); KeyError for an unknown kind."""
    fa, en = FEE_KINDS[kind]
    return fa if lang == "fa" else en


__all__ = ["FEE_KINDS", "LINES", "fee_kind_label"]
