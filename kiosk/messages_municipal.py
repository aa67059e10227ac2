"""Screens of the municipal services: look up fee slips, print them, settlement certificates,
traffic-zone permits (kiosk/flows/fee_slips.py, certificate.py, traffic_permit.py)."""

from __future__ import annotations

from kiosk.fee_types import FEE_TYPES

MESSAGES: dict[str, tuple[str, str]] = {
    "choice.done": ("تأیید", "Done"),
    # look up and print
    "slips.title": ("استعلام و چاپ فیش عوارض", "Look up and print fee slips"),
    "slips.choose_type": ("نوع عوارض را انتخاب کنید", "Choose the fee type"),
    "slips.enter_national_code": ("کد ملی ۱۰ رقمی را وارد کنید", "Enter the 10-digit national code"),
    "slips.enter_renovation_code": ("کد نوسازی ملک را وارد کنید", "Enter the property's renovation code"),
    "slips.enter_business_license": ("شماره پروانه کسب را وارد کنید", "Enter the business licence number"),
    "slips.plate_two": ("دو رقم سمت چپ پلاک را وارد کنید", "Enter the plate's first two digits"),
    "slips.plate_letter": ("حرف پلاک را انتخاب کنید", "Choose the plate's letter"),
    "slips.plate_letter_item": ("{letter}", "{letter}"),
    "slips.plate_three": ("سه رقم بعد از حرف را وارد کنید", "Enter the three digits after the letter"),
    "slips.plate_region": ("دو رقم کد شهر (ایران) را وارد کنید", "Enter the two-digit region code (Iran)"),
    "slips.looking_up": ("در حال استعلام فیش‌ها… لطفاً صبر کنید", "Looking up the slips… Please wait"),
    "slips.none": ("برای این شناسه فیشی پیدا نشد", "No slips were found for this identifier"),
    "slips.choose": ("{count} فیش برای {owner}. فیش‌ها را انتخاب کنید",
                     "{count} slips for {owner}. Choose the slips"),
    "slips.item": ("{fee_type} — {period} — {amount} — مهلت {due} — {status}",
                   "{fee_type} — {period} — {amount} — due {due} — {status}"),
    "slips.status.paid": ("پرداخت‌شده", "paid"),
    "slips.status.unpaid": ("پرداخت‌نشده", "unpaid"),
    "slips.what_next": ("با فیش‌های انتخاب‌شده چه کنیم؟", "What would you like to do with the chosen slips?"),
    "slips.print": ("چاپ فیش", "Print"),
    "slips.pay": ("پرداخت", "Pay"),
    "slips.printing": ("در حال چاپ {count} فیش…", "Printing {count} slips…"),
    "slips.printed": ("{count} فیش چاپ شد. فیش‌ها را از دستگاه بردارید",
                      "{count} slips printed. Please take them from the printer"),
    "slips.not_printed": ("چاپگر فیش را چاپ نکرد. شناسه قبض و شناسه پرداخت روی صفحه است؛ از آن عکس بگیرید",
                          "The printer could not print. The bill and payment ids are on the screen; take a photo"),
    "slips.nothing_unpaid": ("همهٔ فیش‌های انتخاب‌شده پرداخت شده‌اند و چیزی برای پرداخت نیست",
                             "Every chosen slip is already paid; there is nothing to pay"),
    "slips.too_many": ("با یک پرداخت حداکثر {max} فیش پرداخت می‌شود؛ لطفاً فیش‌های کمتری انتخاب کنید",
                       "One payment pays at most {max} slips; please choose fewer"),
    "cert.pending_settlement": ("پرداخت شما ثبت شد. گواهی پس از ثبت آن نزد شهرداری صادر می‌شود؛ چند دقیقه دیگر "
                                "دوباره درخواست کنید",
                                "Your payment is recorded. The certificate is issued once the municipality has "
                                "recorded it; please ask again in a few minutes"),
    "slips.cancelled": ("کاری انجام نشد و مبلغی از حساب شما کم نشد", "Nothing was done and nothing was charged"),
    # settlement certificate
    "cert.title": ("گواهی مفاصاحساب", "Settlement certificate"),
    "cert.choose_type": ("مفاصاحساب کدام عوارض؟", "A certificate for which fees?"),
    "cert.asking": ("در حال بررسی بدهی‌ها… لطفاً صبر کنید", "Checking what is owed… Please wait"),
    "cert.outstanding": ("برای صدور مفاصاحساب ابتدا باید {count} فیش به مبلغ {amount} پرداخت شود. پرداخت می‌کنید؟",
                         "{count} slips totalling {amount} must be paid before a certificate. Pay them now?"),
    "cert.issued": ("گواهی مفاصاحساب صادر شد؛ اعتبار تا {valid_until}. شماره گواهی: {certificate_id}",
                    "The settlement certificate is issued, valid until {valid_until}. Certificate: {certificate_id}"),
    "cert.not_issued": ("گواهی صادر نشد؛ بدهی باقی است", "No certificate: something is still owed"),
    "cert.shown": ("چاپگر گواهی را چاپ نکرد؛ کد آن روی صفحه است، از آن عکس بگیرید",
                   "The printer could not print the certificate; its code is on the screen, take a photo"),
    # traffic-zone permit
    "permit.title": ("مجوز روزانه طرح ترافیک", "Traffic-zone day permit"),
    "permit.choose_date": ("روز مجوز را انتخاب کنید", "Choose the day of the permit"),
    "permit.date_item": ("{date}", "{date}"),
    "permit.quoting": ("در حال دریافت بهای مجوز…", "Getting the permit's price…"),
    "permit.unavailable": ("این پلاک برای آن روز مجوز دارد یا آن روز قابل انتخاب نیست",
                           "This plate already has that day's permit, or that day cannot be chosen"),
    "permit.confirm": ("مجوز طرح ترافیک پلاک {plate} برای {date}، مبلغ {amount}. پرداخت می‌کنید؟",
                       "Traffic-zone permit for plate {plate} on {date}, {amount}. Pay now?"),
    "permit.issued": ("مجوز ثبت شد. کد رهگیری: {tracking}", "The permit is recorded. Tracking code: {tracking}"),
}
MESSAGES.update({f"slips.type.{t.name}": (t.label_fa, t.label_en) for t in FEE_TYPES.values()})
