"""The printed ticket: title, trips, valid until and price in Persian (or English), the signed
QR a gate scans, and the payment's details below it. One slip, one QR: the ticket is also the
citizen's record of the payment (its transaction id and the bank's reference number)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from kiosk.fmt import format_datetime, format_number, format_rials, to_persian_digits
from kiosk.receipts.layout import QR, Document, Heading, Row, Separator, Text
from kiosk.text.bidi import ltr
from kiosk.tickets.codec import TicketData

TITLES = {
    "single": ("بلیت یک‌سفره", "Single-trip ticket"),
    "return": ("بلیت رفت و برگشت (دو سفر)", "Return ticket (two trips)"),
}
_GATE_CAPTION = ("این کد را جلوی کدخوان گیت ورودی بگیرید", "Hold this code to the gate's reader")
_ONCE = ("هر سفر این بلیت فقط یک بار در گیت پذیرفته می‌شود.", "Each trip of this ticket opens a gate once.")
_PENDING = ("ثبت بلیت در سامانه به‌طور خودکار انجام می‌شود؛ این بلیت از همین حالا معتبر است.",
            "The ticket will be recorded automatically; it is valid now.")
_NO_TRACKING = ("پس از ثبت صادر می‌شود", "issued once recorded")


@dataclass(frozen=True)
class TicketSlip:
    """What the slip (or the screen, when nothing prints) shows of one ticket."""

    ticket: TicketData
    payload: str
    paid_at: dt.datetime
    tx_id: str
    rrn: str = ""
    masked_pan: str = ""
    tracking_code: str = ""  # "" while the back-office post is queued


def build_ticket_document(slip: TicketSlip, lang: str = "fa") -> Document:
    if lang not in ("fa", "en"):
        raise ValueError(f"lang must be 'fa' or 'en', not {lang!r}")
    fa = lang == "fa"
    t = slip.ticket

    def pick(pair: tuple[str, str]) -> str:
        return pair[0] if fa else pair[1]

    def digits(s: str) -> str:
        return to_persian_digits(s) if fa else s

    price = f"{ltr(format_number(t.amount_rials, 'fa'))} ریال" if fa else format_rials(t.amount_rials, "en")
    blocks: list[object] = [
        Heading(pick(("کیوسک شهر", "City Kiosk"))),
        Text(pick(("شهرداری تهران · مترو و اتوبوس", "Tehran Municipality · metro and bus")), align="center"),
        Separator(),
        Heading(pick(TITLES[t.kind]), size=32),
        Row(pick(("تعداد سفر", "Trips")), digits(str(t.trips)), bold=True),
        Row(pick(("معتبر تا", "Valid until")), format_datetime(t.valid_until, lang), bold=True),
        Row(pick(("مبلغ", "Price")), price),
        QR(slip.payload, caption=pick(_GATE_CAPTION)),
        Text(pick(_ONCE), size=20, align="center"),
    ]
    if not slip.tracking_code:
        blocks.append(Text(pick(_PENDING), size=20))
    blocks += [
        Separator(),
        Row(pick(("شناسه بلیت", "Ticket ID")), t.ticket_id, size=20),
        Row(pick(("کد رهگیری", "Tracking code")),
            digits(slip.tracking_code) if slip.tracking_code else pick(_NO_TRACKING), size=20),
        Row(pick(("شماره مرجع", "Reference number")), digits(slip.rrn) if slip.rrn else "-", size=20),
    ]
    if slip.masked_pan:
        blocks.append(Row(pick(("کارت", "Card")), digits(slip.masked_pan), size=20))
    blocks += [
        Row(pick(("تاریخ خرید", "Bought")), format_datetime(slip.paid_at, lang), size=20),
        Row(pick(("کیوسک", "Kiosk")), t.kiosk_id, size=20),
    ]
    return Document(tuple(blocks), direction="rtl" if fa else "ltr")


__all__ = ["TITLES", "TicketSlip", "build_ticket_document"]
