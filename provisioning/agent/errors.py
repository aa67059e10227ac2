"""The agent's typed errors (kiosk.errors.KioskError: a key, Persian and English text)."""

from __future__ import annotations

from typing import Any

from kiosk.errors import KioskError


class AgentError(KioskError):
    key = "agent.error"
    fa = "عامل مدیریت ناوگان خطا داد: {detail}"
    en = "The fleet agent failed: {detail}"

    def __init__(self, detail: str = "", **context: Any) -> None:
        super().__init__(detail, **context)
        self.context.setdefault("detail", detail)


class NotEnrolled(AgentError):
    key = "agent.not_enrolled"
    fa = "این کیوسک هنوز در ناوگان ثبت نشده است؛ نخست «kiosk agent enroll» را اجرا کنید."
    en = "This kiosk is not enrolled in a fleet yet; run `kiosk agent enroll --server URL --token T` first."


class FleetUnavailable(AgentError):
    """The server could not be reached or did not answer as the fleet server does: try later."""

    key = "agent.unavailable"
    fa = "سرور ناوگان در دسترس نیست ({detail}); بعداً دوباره تلاش می‌شود."
    en = "The fleet server is not reachable ({detail}); the agent will try again later."


class FleetRefused(AgentError):
    """The server refused the request with its own error code."""

    key = "agent.refused"
    fa = "سرور ناوگان درخواست را نپذیرفت: {code} — {reason}"
    en = "The fleet server refused: {code} — {reason}"

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(f"{status} {code}: {reason}", code=code, reason=reason)
        self.status, self.code, self.reason = status, code, reason


class ConfigRefused(AgentError):
    """A configuration document the agent will not apply (signature, version, expiry, schema)."""

    key = "agent.config_refused"
    fa = "پیکربندی رسیده از ناوگان پذیرفته نشد ({code}): {reason}. پیکربندی فعلی بدون تغییر ماند."
    en = "The configuration from the fleet was refused ({code}): {reason}. The current one is unchanged."

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}", code=code, reason=reason)
        self.code, self.reason = code, reason
