"""Screens of buying a new transit card (خرید کارت بلیت جدید), Persian and English
(kiosk.messages lists this catalog in _EXTRA). A value preset's choice id is its amount in
rials; the screen shows it formatted."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "card_sale.title": ("خرید کارت بلیت جدید", "Buy a new transit card"),
    "card_sale.unavailable": ("خرید کارت بلیت جدید در این کیوسک فعلاً ممکن نیست. لطفاً از کیوسک دیگری استفاده کنید",
                              "New transit cards cannot be bought at this kiosk right now. Please use another kiosk"),
    "card_sale.choose_value": ("موجودی اولیه کارت را انتخاب کنید (بهای کارت: {price})",
                               "Choose the card's starting balance (card price: {price})"),
    "card_sale.value_preset": ("مبلغ پیشنهادی", "Suggested amount"),
    "card_sale.value_none": ("بدون موجودی اولیه", "No starting balance"),
    "card_sale.confirm": ("کارت بلیت جدید: بهای کارت {price} و موجودی اولیه {value}؛ جمعاً {total}. پرداخت می‌کنید؟",
                          "New transit card: card price {price} and starting balance {value}; {total} in all. Pay now?"),
    "card_sale.preparing": ("در حال آماده‌سازی کارت بلیت جدید… لطفاً صبر کنید",
                            "Preparing your new transit card… Please wait"),
    "card_sale.writing": ("در حال نوشتن اطلاعات کارت بلیت…", "Writing your transit card…"),
    "card_sale.take_card": ("کارت بلیت جدید خود را از محل خروج کارت بردارید",
                            "Take your new transit card from the card slot"),
    "card_sale.done": ("کارت بلیت جدید شما آماده است. شماره سریال: {serial}، موجودی: {balance}. کد رهگیری: {tracking}",
                       "Your new transit card is ready. Serial number: {serial}, balance: {balance}. "
                       "Tracking code: {tracking}"),
    "card_sale.done_pending": ("کارت بلیت جدید شما آماده است. شماره سریال: {serial}، موجودی: {balance}. "
                               "ثبت آن در سامانه بلیت به‌طور خودکار انجام می‌شود",
                               "Your new transit card is ready. Serial number: {serial}, balance: {balance}. "
                               "It will be recorded with the transit system automatically"),
    "card_sale.failed_reversed": ("کارت بلیت آماده نشد و مبلغ به حساب شما بازگشت داده شد",
                                  "The transit card could not be prepared and your money has been returned to "
                                  "your card"),
    "card_sale.failed_refund_pending": ("کارت بلیت آماده نشد. بازگشت مبلغ ثبت شد و پیگیری می‌شود. شماره تراکنش: {tx}",
                                        "The transit card could not be prepared. A refund is recorded and will be "
                                        "followed up. Transaction: {tx}"),
    "card_sale.handover_unknown": ("تحویل کارت بلیت کامل نشد. اگر کارت را دریافت نکرده‌اید، مبلغ به‌طور خودکار "
                                   "بازگشت داده می‌شود. شماره تراکنش: {tx}",
                                   "The card hand-over did not finish. If you did not receive the card, your money "
                                   "is returned automatically. Transaction: {tx}"),
}
