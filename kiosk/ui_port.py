"""The UI port: what a citizen flow may ask of a screen. Kivy screens implement it; tests and
`kiosk demo --headless` implement it with a script. Flows never touch Kivy.

Every text shown goes by message key (kiosk.messages) plus parameters, so the same flow
renders in Persian or English and a scripted UI can assert on keys, not on wording.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Choice:
    id: str
    label_key: str
    #: the label's parameters (a fee slip's period and amount), rendered with the message
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """The end of a flow as the citizen sees it."""

    ok: bool
    message_key: str
    params: dict[str, Any] = field(default_factory=dict)
    transaction_id: str | None = None
    receipt_payload: str | None = None


#: the id of the Done choice `choose_many` adds
DONE = "__done__"


class CitizenLeft(Exception):
    """The citizen cancelled or walked away (inactivity); the flow unwinds."""


class UIPort(abc.ABC):
    @abc.abstractmethod
    async def show_step(self, key: str, **params: Any) -> None:
        """Show an informational step (progress, instructions); returns at once."""

    @abc.abstractmethod
    async def choose(self, key: str, options: list[Choice], **params: Any) -> str:
        """Ask for one of `options`; returns the chosen id. Raises CitizenLeft on cancel."""

    async def choose_many(self, key: str, options: list[Choice], *, min_count: int = 1, **params: Any) -> list[str]:
        """Ask for one or more of `options` (a list with check boxes and Done); returns the
        chosen ids in the options' order. The default asks one at a time through `choose`, with
        a Done choice once `min_count` are chosen; a touch screen draws check boxes instead.
        Raises CitizenLeft on cancel."""
        chosen: list[str] = []
        while len(chosen) < len(options):
            left = [o for o in options if o.id not in chosen]
            done = [Choice(DONE, "choice.done")] if len(chosen) >= min_count else []
            answer = await self.choose(key, left + done, **params)
            if answer == DONE:
                break
            chosen.append(answer)
        return [o.id for o in options if o.id in chosen]

    @abc.abstractmethod
    async def ask_digits(self, key: str, *, min_len: int, max_len: int) -> str:
        """Ask for digits on the keypad. Raises CitizenLeft on cancel."""

    @abc.abstractmethod
    async def confirm(self, key: str, **params: Any) -> bool:
        """Show details and ask Confirm / Cancel."""

    @abc.abstractmethod
    async def show_error(self, key: str, **params: Any) -> None:
        """Show an error the citizen can act on (message key with fa/en text)."""

    @abc.abstractmethod
    async def show_outcome(self, outcome: Outcome) -> None:
        """Show the end of the flow."""

    async def wait_cancel(self) -> None:
        """Resolves when the citizen presses Cancel while the flow waits on a device.
        The default never resolves (a script that does not cancel)."""
        await asyncio.Event().wait()
