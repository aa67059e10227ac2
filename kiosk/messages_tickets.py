"""Screens of the QR ticket flow (kiosk.flows.qr_ticket), in Persian and English. Listed in
kiosk.messages._EXTRA. Templates name their language's own parameters (title_fa / title_en,
valid_until_fa / valid_until_en); `amount` is formatted per language from amount_rials."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "ticket.title": ("خرید بلیت مترو و اتوبوس", "Buy a metro and bus ticket"),
    "ticket.choose_kind": ("نوع بلیت را انتخاب کنید", "Choose your ticket"),
    "ticket.kind.single": ("بلیت یک‌سفره", "Single trip"),
    "ticket.kind.return": ("بلیت رفت و برگشت (دو سفر)", "Return (two trips)"),
    "ticket.no_printer_notice": ("چاپگر در دسترس نیست: بلیت روی صفحه نمایش داده می‌شود تا از آن عکس بگیرید",
                                 "The printer is not available: your ticket will be shown on the screen "
                                 "for you to photograph"),
    "ticket.confirm": ("{title_fa}، {trips_fa} سفر، معتبر تا {valid_until_fa}، مبلغ {amount}. پرداخت می‌کنید؟",
                       "{title_en}, {trips} trip(s), valid until {valid_until_en}, {amount}. Pay now?"),
    "ticket.issuing": ("در حال صدور بلیت…", "Issuing your ticket…"),
    "ticket.printing": ("در حال چاپ بلیت…", "Printing your ticket…"),
    "ticket.show_on_screen": ("بلیت چاپ نشد. از این کد عکس بگیرید و آن را در گیت نشان دهید؛ بلیت شما معتبر است. "
                              "{title_fa}، {trips_fa} سفر، معتبر تا {valid_until_fa}",
                              "The ticket could not be printed. Take a photo of this code and show it at the "
                              "gate; your ticket is valid. {title_en}, {trips} trip(s), valid until "
                              "{valid_until_en}"),
    "ticket.done": ("بلیت شما چاپ شد؛ معتبر تا {valid_until_fa}. کد رهگیری: {tracking}",
                    "Your ticket is printed; valid until {valid_until_en}. Tracking code: {tracking}"),
    "ticket.done_pending": ("بلیت شما چاپ شد و از همین حالا معتبر است (تا {valid_until_fa}). ثبت آن در سامانه "
                            "به‌طور خودکار انجام می‌شود",
                            "Your ticket is printed and valid now (until {valid_until_en}). It will be "
                            "recorded automatically"),
    "ticket.done_on_screen": ("بلیت شما معتبر است (تا {valid_until_fa}). از کد روی صفحه عکس بگیرید و در گیت "
                              "نشان دهید",
                              "Your ticket is valid (until {valid_until_en}). Photograph the code on the "
                              "screen and show it at the gate"),
    "ticket.refused_reversed": ("سامانه بلیت این بلیت را نپذیرفت. بلیتی صادر نشد و مبلغ به حساب شما بازگشت "
                                "داده شد",
                                "The ticket system refused this ticket. No ticket was issued and your money "
                                "has been returned to your card"),
    "ticket.refused_refund_pending": ("سامانه بلیت این بلیت را نپذیرفت و بلیتی صادر نشد. بازگشت مبلغ ثبت شد و "
                                      "پیگیری می‌شود. شماره تراکنش: {tx}",
                                      "The ticket system refused this ticket and no ticket was issued. A refund "
                                      "is recorded and will be followed up. Transaction: {tx}"),
}
