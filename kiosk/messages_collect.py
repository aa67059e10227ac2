"""Screens of collecting pending top-ups (دریافت شارژ خریداری‌شده): top-ups paid elsewhere
(USSD, the city's app) against the card's serial, written to the card at the kiosk. Listed in
kiosk.messages._EXTRA; key -> (fa, en)."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "collect.title": ("دریافت شارژ خریداری‌شده", "Collect a top-up bought elsewhere"),
    "collect.checking": ("در حال بررسی شارژهای خریداری‌شده برای این کارت…",
                         "Checking for top-ups bought for this card…"),
    "collect.found": ("{count} شارژ خریداری‌شده برای این کارت در انتظار است؛ جمع: {amount}",
                      "{count} top-up(s) bought for this card are waiting; total {amount}"),
    "collect.none": ("شارژ خریداری‌شده‌ای برای این کارت در انتظار نیست",
                     "There is no top-up waiting for this card"),
    "collect.writing": ("در حال اعمال شارژ {amount} روی کارت… کارت را از روی کارتخوان برندارید",
                        "Adding {amount} to your card… Keep your card on the reader"),
    "collect.place_again": ("کارت پیش از پایان کار برداشته شد. همان کارت را دوباره روی کارتخوان قرار دهید",
                            "The card was taken away before it was finished. Place the same card on the reader "
                            "again"),
    "collect.done": ("{amount} روی کارت اعمال شد. موجودی جدید: {balance}",
                     "{amount} was added to your card. New balance: {balance}"),
    "collect.done_pending": ("{amount} روی کارت اعمال شد. موجودی جدید: {balance}. ثبت آن در سامانه بلیت "
                             "به‌طور خودکار انجام می‌شود",
                             "{amount} was added to your card. New balance: {balance}. It will be recorded "
                             "with the transit system automatically"),
    "collect.pending_action": ("اعمال شارژ کامل نشد، اما شارژ شما محفوظ و برای همین کارت کنار گذاشته شده است: "
                               "با اولین قرار دادن این کارت روی کارتخوان هر کیوسک، روی کارت اعمال می‌شود. "
                               "کد رهگیری: {tracking}",
                               "The top-up was not finished, but it is kept for this card: the next time the "
                               "card is placed on any kiosk's reader, it is added. Tracking code: {tracking}"),
    "collect.already_collected": ("این شارژ پیش‌تر روی کارت اعمال شده است", "This top-up was already collected"),
    "collect.not_now": ("اکنون نمی‌توان شارژ را روی این کارت اعمال کرد؛ شارژ شما محفوظ است. بعداً دوباره امتحان کنید",
                        "The top-up cannot be added to this card now; it is kept for you. Please try again later"),
    "collect.backoffice_unavailable": ("ارتباط با سامانه بلیت برقرار نشد؛ چیزی روی کارت نوشته نشد و شارژ شما محفوظ "
                                       "است. بعداً دوباره امتحان کنید",
                                       "The transit system could not be reached; nothing was written to the card "
                                       "and your top-up is kept. Please try again later"),
    "collect.over_card_max": ("با اعمال شارژ {amount}، موجودی کارت از سقف {max} بیشتر می‌شود؛ این شارژ محفوظ می‌ماند",
                              "Adding {amount} would take the card over its maximum of {max}; that top-up is "
                              "kept for later"),
    "collect.card_busy": ("یک عملیات ناتمام دیگر روی این کارت در انتظار بررسی است؛ شارژ شما محفوظ است",
                          "Another unfinished operation on this card is waiting to be checked; your top-up is "
                          "kept"),
    "collect.card_gone": ("کارت پیش از نوشتن شارژ برداشته شد؛ چیزی روی کارت نوشته نشد و شارژ شما محفوظ است",
                          "The card was taken away before anything was written; your top-up is kept"),
    "collect.unknown": ("وضعیت اعمال شارژ روشن نیست؛ کیوسک آن را خودکار بررسی می‌کند. شماره تراکنش: {tx}",
                        "Whether the top-up was added is not known yet; the kiosk checks it automatically. "
                        "Transaction: {tx}"),
}
