"""The technician's words: maintenance screens (screens/maintenance.py), its printed test page
and end-of-day report (kiosk.maintenance), and the reason a home tile shows for a service a
technician took out of service. Persian first, English second. The errors of the PIN check
(wrong PIN, locked, no PIN set, a citizen's transaction open) carry their own text in
kiosk.maintenance."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "status.disabled_by_technician": ("این خدمت را تکنسین موقتاً از سرویس خارج کرده است",
                                      "Taken out of service by a technician"),
    "maint.title": ("نگهداری کیوسک", "Kiosk maintenance"),
    "maint.enter_pin": ("رمز تکنسین را وارد کنید", "Enter the technician PIN"),
    "maint.checking": ("در حال بررسی رمز…", "Checking the PIN…"),
    "maint.menu": ("چه کاری انجام می‌دهید؟", "What would you like to do?"),
    "maint.devices": ("وضعیت دستگاه‌ها", "Device status"),
    "maint.test_print": ("چاپ آزمایشی", "Test print"),
    "maint.scan_test": ("آزمون اسکنر", "Scanner test"),
    "maint.card_read": ("آزمون کارتخوان", "Card reader test"),
    "maint.paper_refilled": ("کاغذ گذاشته شد", "Paper refilled"),
    "maint.totals": ("جمع تراکنش‌های امروز", "Today's journal totals"),
    "maint.day_report": ("چاپ گزارش پایان روز", "Print the end-of-day report"),
    "maint.services": ("خدمات در سرویس", "Services in service"),
    "maint.needs_operator": ("تراکنش‌های نیازمند اپراتور", "Transactions needing an operator"),
    "maint.exit": ("خروج از نگهداری", "Leave maintenance"),
    "maint.back": ("بازگشت", "Back"),
    "maint.working": ("لطفاً صبر کنید…", "Please wait…"),
    "maint.scan_wait": ("یک بارکد یا QR را جلوی اسکنر بگیرید", "Hold a barcode or QR code under the scanner"),
    "maint.card_wait": ("یک کارت را روی کارتخوان بگذارید", "Place a card on the card reader"),
    "maint.device_row": ("{name} ({device}): {state}", "{name} ({device}): {state}"),
    "maint.device_detail": ("مصرفی: {consumables} — شمارنده‌ها: {counters} {error}",
                            "Consumables: {consumables} — counters: {counters} {error}"),
    "maint.test_print_ok": ("صفحهٔ آزمایشی چاپ شد", "The test page was printed"),
    "maint.test_failed": ("آزمون {device} ناموفق بود ({code})", "The {device} test failed ({code})"),
    "maint.no_device": ("{device} روی این کیوسک نیست", "This kiosk has no {device}"),
    "maint.scan_ok": ("کد خوانده شد ({format}): {code}", "Code read ({format}): {code}"),
    "maint.card_ok": ("کارت شناسایی شد ({card_type}، شناسه {uid})", "Card detected ({card_type}, UID {uid})"),
    "maint.paper_ok": ("کاغذ ثبت شد؛ وضعیت کاغذ: {paper}", "Paper refill recorded; paper: {paper}"),
    "maint.paper_still": ("کاغذ ثبت شد، اما حسگر هنوز می‌گوید: {paper}",
                          "Refill recorded, but the sensor still says: {paper}"),
    "maint.report_ok": ("گزارش پایان روز چاپ شد: {count} تراکنش، جمع {sum}",
                        "The end-of-day report was printed: {count} transactions, {sum} in all"),
    "maint.totals_head": ("امروز ({day}): {count} تراکنش، جمع {sum}", "Today ({day}): {count} transactions, {sum}"),
    "maint.totals_row": ("{name}: {count} تراکنش، {sum}", "{name}: {count} transactions, {sum}"),
    "maint.by_kind": ("بر پایهٔ نوع", "By kind"),
    "maint.by_state": ("بر پایهٔ وضعیت", "By state"),
    "maint.none": ("موردی نیست", "Nothing"),
    "maint.pending_row": ("{tx} — {kind}، {amount}، {state}", "{tx} — {kind}, {amount}, {state}"),
    "maint.pending_detail": ("{details}", "{details}"),
    "maint.service_in": ("در سرویس", "In service"),
    "maint.service_out": ("خارج از سرویس", "Out of service"),
    "maint.take_out": ("خارج کردن", "Take out"),
    "maint.put_back": ("بازگرداندن", "Put back"),
    # the printed test page and end-of-day report
    "maint.doc.test_title": ("صفحهٔ آزمایشی چاپگر", "Printer test page"),
    "maint.doc.report_title": ("گزارش پایان روز", "End-of-day report"),
    "maint.doc.kiosk": ("کیوسک", "Kiosk"),
    "maint.doc.printer": ("چاپگر", "Printer"),
    "maint.doc.time": ("زمان چاپ", "Printed at"),
    "maint.doc.day": ("روز", "Day"),
    "maint.doc.all": ("همهٔ تراکنش‌ها (تعداد / جمع)", "All transactions (count / sum)"),
    "maint.doc.by_kind": ("بر پایهٔ نوع", "By kind"),
    "maint.doc.by_state": ("بر پایهٔ وضعیت", "By state"),
    "maint.doc.pending": ("نیازمند اپراتور", "Needing an operator"),
    "maint.doc.devices": ("دستگاه‌ها و شمارنده‌ها", "Devices and counters"),
}

__all__ = ["MESSAGES"]
