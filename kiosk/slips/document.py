"""A municipal fee slip (فیش عوارض) printed for a citizen to pay at a kiosk, a bank gateway or a
bank branch: who (masked), what fee, which period, the amount in figures and in words, the due
date (Jalali), the bill id and payment id in ASCII digits, the 26-digit payment barcode as a
native Code 128 (code set C) and the same 26 digits as a QR. A slip is not a receipt and says so.

The ids, the barcode and its caption stay in ASCII digits so a bank teller or a citizen can type
them; everything meant to be read (amount, dates, period) uses Persian digits on a Persian slip.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from devices.printer.profile import DEFAULT_PROFILE
from kiosk.backoffice_client import FeeSlip
from kiosk.bills import parse_bill
from kiosk.errors import KioskError
from kiosk.fee_types import period_text
from kiosk.fmt import format_datetime, format_jalali_date, format_number, format_rials, to_persian_digits
from kiosk.receipts.document import print_receipt_bytes
from kiosk.receipts.layout import QR, Barcode, Document, Feed, Heading, Row, Separator, Text
from kiosk.sensitive import mask_name, national_code_ok, redact, to_ascii_digits
from kiosk.slips.labels import FEE_KINDS, LINES
from kiosk.text.bidi import ltr
from kiosk.text.words import rials_in_words

#: the barcode of a slip: Code 128, code set C (13 symbols for 26 digits, a mandatory check
#: symbol); 2-dot bars (0.25 mm at 203 dpi) and 80 dots (10 mm) tall
BARCODE_SYMBOLOGY = "code128"
BARCODE_MODULE_DOTS = 2
BARCODE_HEIGHT_DOTS = 80
#: the QR's printed edge in dots (~28 mm): 26 digits make a version 1 code, big modules
QR_DOTS = 224

#: characters that show a name was masked (kiosk.sensitive.MASK_CHARS without the Latin x)
_NAME_MASKS = "*•●#"
_TEN_DIGITS = re.compile(r"(?<!\d)\d{10}(?!\d)")


class SlipNotPrintable(KioskError):
    """The slip cannot be printed as given: `check` says why ("kind", "amount_mismatch",
    "unmasked_name", "lang"). Nothing was charged; the slip can be looked up again."""

    key = "slip.not_printable"
    fa = "چاپ این فیش ممکن نیست. لطفاً دوباره فیش‌ها را جست‌وجو کنید یا با پشتیبانی تماس بگیرید."
    en = "This slip cannot be printed. Please look up your slips again or contact support."
    money = "not_charged"

    def __init__(self, check: str, detail: str = "") -> None:
        super().__init__(detail or check, check=check)
        self.check = check


#: the one masking rule for a payer's name (kiosk.sensitive.mask_name)
mask_person_name = mask_name


def _check_masked(name: str) -> str:
    """The masked name as given; SlipNotPrintable unless it shows a mask and holds no national code."""
    if not name.strip():
        return "—"
    digits = to_ascii_digits(name)
    if any(national_code_ok(m.group(0)) for m in _TEN_DIGITS.finditer(digits)):
        raise SlipNotPrintable("unmasked_name", "the payer name holds a national code")
    if not any(ch in name for ch in _NAME_MASKS):
        raise SlipNotPrintable("unmasked_name", "owner_name_masked shows no mask (use mask_person_name)")
    return name


def slip_barcode(slip: FeeSlip) -> str:
    """The 26 digits a slip's barcode and QR carry: bill id and payment id, each zero-padded
    to 13 (kiosk.bills.Bill.barcode)."""
    return parse_bill(slip.bill_id, slip.payment_id).barcode


def build_slip_document(slip: FeeSlip, *, owner_name_masked: str, kiosk_id: str, printed_at: dt.datetime,
                        lang: str = "fa") -> Document:
    """The printed fee slip, Persian (right to left) or English. The bill/payment ids are
    checked (kiosk.bills: InvalidBill) and must carry the slip's amount; the payer name must be
    masked (mask_person_name). Raises SlipNotPrintable otherwise."""
    if lang not in ("fa", "en"):
        raise SlipNotPrintable("lang", f"lang must be 'fa' or 'en', not {lang!r}")
    if slip.kind not in FEE_KINDS:
        raise SlipNotPrintable("kind", f"unknown fee kind {slip.kind!r}")
    bill = parse_bill(slip.bill_id, slip.payment_id)
    if bill.amount_rials != slip.amount_rials:
        raise SlipNotPrintable("amount_mismatch", f"payment id carries {bill.amount_rials} rials, the slip says "
                                                  f"{slip.amount_rials}")
    payer = _check_masked(owner_name_masked)
    fa = lang == "fa"

    def pick(key: str) -> str:
        pair = LINES[key]
        return pair[0] if fa else pair[1]

    kind = FEE_KINDS[slip.kind][0 if fa else 1]
    if fa:
        amount = f"{ltr(format_number(slip.amount_rials, 'fa'))} ریال"
        period = to_persian_digits(period_text(slip.period, "fa")) if slip.period else "—"
    else:
        amount = format_rials(slip.amount_rials, "en")
        period = to_ascii_digits(period_text(slip.period, "en")) if slip.period else "—"  # "Shahrivar 1404"
    if slip.due_date is None:
        due = pick("no_due")
    elif fa:
        due = format_jalali_date(slip.due_date, "fa")
    else:
        due = f"{format_jalali_date(slip.due_date, 'en')} ({slip.due_date.isoformat()})"
    code = bill.barcode
    blocks: list[Any] = [
        Heading(pick("municipality")),
        Heading(pick("title").format(kind=kind), size=30),
        Text(pick("not_receipt_short"), align="center", bold=True),
        Separator(),
        Row(pick("payer"), payer),
        Row(pick("fee_kind"), kind),
        Row(pick("period"), period),
        Row(pick("amount"), amount, bold=True),
        Text(pick("in_words") + rials_in_words(slip.amount_rials, lang), size=22),
        Row(pick("due"), due),
        Row(pick("bill_id"), bill.bill_id),
        Row(pick("payment_id"), bill.payment_id),
        Row(pick("slip_no"), str(slip.slip_id), size=20),
    ]
    if slip.description_fa and fa:
        blocks.append(Text(redact(slip.description_fa), size=20))
    if slip.status == "paid":
        blocks.append(Text(pick("paid"), align="center", bold=True))
    blocks += [
        Separator(),
        Feed(1),  # white above the bars: a hand scanner aims better, the rule is not read as a bar
        Barcode(code, BARCODE_SYMBOLOGY, BARCODE_HEIGHT_DOTS, BARCODE_MODULE_DOTS, caption=ltr(code)),
        QR(code, caption=pick("scan"), size_dots=QR_DOTS),
        Separator(),
        Text(pick("not_receipt"), size=22, bold=True),
        Text(pick("how_to_pay"), size=20),
        Row(pick("kiosk"), kiosk_id, size=20),
        Row(pick("printed_at"), format_datetime(printed_at, lang), size=20),
    ]
    return Document(tuple(blocks), direction="rtl" if fa else "ltr")


def slip_bytes(document: Document, *, width_dots: int = 576, profile: str = DEFAULT_PROFILE) -> bytes:
    """The exact ESC/POS bytes the printer driver sends for a slip (raster text, native GS k
    barcode, native QR, cut): kiosk.receipts.print_receipt_bytes, which is the driver's own
    encoder."""
    return print_receipt_bytes(document, width_dots=width_dots, profile=profile)


def save_slip_png(document: Document, path: str | Path, *, width_dots: int = 576,
                  profile: str = DEFAULT_PROFILE) -> Path:
    """Write the slip's paper as a PNG: its ESC/POS bytes replayed by the printer decoder (the
    picture the printer emulator keeps for each job), so the PNG shows what the printer got."""
    from devices.printer.decoder import decode_escpos

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    decode_escpos(slip_bytes(document, width_dots=width_dots, profile=profile), width_dots=width_dots
                  ).image.save(target, format="PNG")
    return target


__all__ = ["BARCODE_HEIGHT_DOTS", "BARCODE_MODULE_DOTS", "BARCODE_SYMBOLOGY", "QR_DOTS", "SlipNotPrintable",
           "build_slip_document", "mask_person_name", "save_slip_png", "slip_barcode", "slip_bytes"]
