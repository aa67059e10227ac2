"""The one error type the API layer turns into a JSON body {"error": code, ...extra}."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A refusal with a stable machine code; `extra` fields are added to the JSON body."""

    def __init__(self, status_code: int, error: str, **extra: Any) -> None:
        super().__init__(f"{status_code} {error}")
        self.status_code = status_code
        self.error = error
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, **self.extra}
