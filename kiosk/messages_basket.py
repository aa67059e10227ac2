"""Screens of paying several fee slips at once (پرداخت چند فیش با یک پرداخت), Persian and
English (kiosk.messages lists this catalog in _EXTRA). Amounts are passed in rials as
`total_rials`, `refunded_rials`, `pending_rials`; the screen formats them."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "basket.title": ("پرداخت چند فیش با هم", "Pay several slips together"),
    "basket.checking": ("در حال بررسی {count} فیش نزد شهرداری… لطفاً صبر کنید",
                        "Checking {count} slips with the municipality… Please wait"),
    "basket.bill_dropped": ("فیش با شناسه قبض {bill_id} پرداخت نمی‌شود: {reason_fa}",
                            "The slip with bill ID {bill_id} will not be paid: {reason_en}"),
    "basket.nothing_to_pay": ("هیچ‌یک از فیش‌های انتخاب‌شده قابل پرداخت نیست. مبلغی از حساب شما کم نشد",
                              "None of the selected slips can be paid. Nothing was charged"),
    "basket.confirm": ("{count} فیش، جمعاً {total_rials} ریال. با یک بار پرداخت با کارت پرداخت می‌کنید؟",
                       "{count} slips, {total_rials} rials in all. Pay them with one card payment?"),
    "basket.cancelled": ("پرداخت انجام نشد و مبلغی از حساب شما کم نشد", "Nothing was paid and nothing was charged"),
    "basket.amount_over_limit": ("جمع این فیش‌ها بیشتر از سقف پرداخت با کارت در این کیوسک است. مبلغی از حساب شما کم "
                                 "نشد. لطفاً فیش‌های کمتری را با هم پرداخت کنید",
                                 "These slips together are over the card-payment limit of this kiosk. Nothing was "
                                 "charged. Please pay fewer slips at a time"),
    "basket.settling": ("در حال ثبت {count} پرداخت نزد شهرداری…", "Recording {count} payments with the municipality…"),
    "basket.paid": ("همهٔ {count} فیش پرداخت شد. کدهای رهگیری روی رسید چاپ شده است",
                    "All {count} slips are paid. The tracking codes are printed on the receipt"),
    "basket.paid_part_refunded": ("{settled} فیش پرداخت شد. شهرداری {refused} فیش را نپذیرفت و مبلغ آن‌ها "
                                  "({refunded_rials} ریال) به کارت شما بازگشت داده شد",
                                  "{settled} slips are paid. The municipality refused {refused}, and their amount "
                                  "({refunded_rials} rials) has been returned to your card"),
    "basket.paid_refund_pending": ("{settled} فیش پرداخت شد. شهرداری {refused} فیش را نپذیرفت؛ بازگشت مبلغ آن‌ها "
                                   "({pending_rials} ریال) ثبت شد و پیگیری می‌شود. شماره تراکنش: {tx}",
                                   "{settled} slips are paid. The municipality refused {refused}; the refund of "
                                   "their amount ({pending_rials} rials) is recorded and will be followed up. "
                                   "Transaction: {tx}"),
    "basket.pending": ("پرداخت با موفقیت انجام شد. ثبت فیش‌ها نزد شهرداری به‌طور خودکار انجام می‌شود. "
                       "شماره تراکنش: {tx}",
                       "Payment successful. The slips will be recorded with the municipality automatically. "
                       "Transaction: {tx}"),
    "basket.all_refused_reversed": ("شهرداری هیچ‌یک از فیش‌ها را نپذیرفت. مبلغ به حساب شما بازگشت داده شد",
                                    "The municipality refused every slip. Your money has been returned to your card"),
    "basket.all_refused_refund_pending": ("شهرداری هیچ‌یک از فیش‌ها را نپذیرفت. بازگشت مبلغ ثبت شد و پیگیری "
                                          "می‌شود. شماره تراکنش: {tx}",
                                          "The municipality refused every slip. A refund is recorded and will be "
                                          "followed up. Transaction: {tx}"),
}
