"""Typed errors a citizen or technician can act on: each carries a message key, Persian and
English text, and what happened to the money."""

from __future__ import annotations

from typing import Any, ClassVar


class KioskError(Exception):
    """Base of every error the kiosk core raises on purpose.

    Subclasses set `key` (stable, for logs and the UI), `fa` and `en` (what the citizen reads:
    what failed and what to do next). `money` says what happened to the citizen's money
    ("not_charged", "charged_pending", "reversed", "refund_pending", "none").
    """

    key: ClassVar[str] = "error"
    fa: ClassVar[str] = "خطایی رخ داد. لطفاً دوباره تلاش کنید."
    en: ClassVar[str] = "Something went wrong. Please try again."
    money: ClassVar[str] = "none"

    def __init__(self, detail: str = "", **context: Any) -> None:
        super().__init__(detail or self.en)
        self.detail = detail or self.en
        self.context = context

    def message(self, lang: str = "fa") -> str:
        text = self.fa if lang == "fa" else self.en
        try:
            return text.format(**self.context)
        except (KeyError, IndexError, ValueError):
            return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": self.key,
            "type": type(self).__name__,
            "detail": self.detail,
            "message_fa": self.message("fa"),
            "message_en": self.message("en"),
            "money": self.money,
        }
