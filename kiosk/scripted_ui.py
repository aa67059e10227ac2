"""A UI port driven by a script instead of a touchscreen: used by `kiosk demo --headless` and
by tests. It answers questions from the script and keeps a transcript of what a citizen would
have seen, in Persian and English.

A script maps a question key to its answers (a list is consumed in order):
  {"fee.how_to_enter": "manual" | "wait",   # "wait": don't touch the screen, let the scanner read
   "fee.enter_bill_id": "7748317800142", "fee.enter_payment_id": "1770160",
   "fee.confirm": true}
A choice may be answered "#N" (the N-th option, from 0) and a multiple choice "all" or
"first:N" when the ids are not known in advance (a fee slip's id).
A question with no answer left means the citizen walked away (CitizenLeft).

Cancel while the flow waits on a device (the payment terminal): a step's key answered
"cancel" presses Cancel the moment the flow offers it on that step (a payment: before the
terminal is asked), "cancel:0.5" half a second later, e.g. {"pay.insert_card": "cancel:0.5"} (one answer per wait, consumed in order). A test
can also press it itself at any moment: `press_cancel()`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from kiosk.messages_ui import plain, render
from kiosk.sensitive import mask_code, mask_national_code, national_code_ok

#: digit questions whose answer identifies a person or their property: masked in the transcript
_IDENTIFIER_KEYS = ("slips.enter_",)
from kiosk.ui_port import Choice, CitizenLeft, Outcome, UIPort


@dataclass(frozen=True)
class Shown:
    kind: str  # step | choose | digits | confirm | error | outcome | cancel
    key: str
    params: dict[str, Any] = field(default_factory=dict)
    answer: Any = None

    def line(self, lang: str = "fa") -> str:
        """The words a citizen reads, rendered exactly as the touch screen renders them
        (kiosk.messages_ui.render) without the invisible bidi isolates."""
        words = plain(render(self.key, lang, **self.params))
        if self.answer is not None:
            words += f"  → {self.answer}"
        return words


class ScriptedUI(UIPort):
    def __init__(self, script: dict[str, Any], *, echo: bool = False, lang: str = "fa") -> None:
        self._answers = {k: list(v) if isinstance(v, list) else [v] for k, v in script.items()}
        self.transcript: list[Shown] = []
        self.echo = echo
        self.lang = lang
        self._step = ""  # the key of the last step shown (what a Cancel press is answered by)
        self._cancel_waiters: list[asyncio.Future[None]] = []

    def _answer(self, key: str) -> Any:
        queue = self._answers.get(key)
        if not queue:
            raise CitizenLeft(f"script has no answer for {key}")
        return queue.pop(0)

    def _record(self, shown: Shown) -> None:
        self.transcript.append(shown)
        if self.echo:
            print(f"  [{shown.kind}] {shown.line('fa')}\n          {shown.line('en')}", flush=True)

    async def show_step(self, key: str, **params: Any) -> None:
        self._step = key
        self._record(Shown("step", key, params))

    async def wait_cancel(self) -> None:
        """Resolves when Cancel is pressed: by the script's answer for the step shown
        ("cancel" or "cancel:<seconds>"), or by `press_cancel()`; otherwise never."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._cancel_waiters.append(fut)
        queue = self._answers.get(self._step)
        timer: asyncio.TimerHandle | None = None
        if queue and isinstance(queue[0], str) and queue[0].split(":")[0] == "cancel":
            answer = queue.pop(0)
            delay = float(answer.split(":", 1)[1]) if ":" in answer else 0.0
            if delay > 0:
                timer = asyncio.get_running_loop().call_later(delay, self.press_cancel)
            else:
                self.press_cancel()  # the moment Cancel appears
        try:
            await fut
        finally:
            if timer is not None:
                timer.cancel()
            self._cancel_waiters.remove(fut)

    def press_cancel(self) -> bool:
        """The citizen presses Cancel now. True when something waited for it; a press with
        nothing waiting (the button is gone) does nothing, and the transcript says so."""
        waiting = [w for w in self._cancel_waiters if not w.done()]
        for waiter in waiting:
            waiter.set_result(None)
        self._record(Shown("cancel", "ui.cancel", {}, "✓" if waiting else "(no button)"))
        return bool(waiting)

    async def choose(self, key: str, options: list[Choice], **params: Any) -> str:
        answer = self._answer(key)
        if answer == "wait":  # the citizen uses the scanner, not the screen
            self._record(Shown("choose", key, params, "(scanner)"))
            await asyncio.Event().wait()
        if isinstance(answer, str) and answer.startswith("#") and answer[1:].isdigit() and int(answer[1:]) < len(options):
            answer = options[int(answer[1:])].id  # "#0": the first option, whatever its id
        if answer not in {o.id for o in options}:
            raise CitizenLeft(f"script answered {answer!r} to {key}, not one of the options")
        self._record(Shown("choose", key, params, answer))
        return str(answer)

    async def choose_many(self, key: str, options: list[Choice], *, min_count: int = 1, **params: Any) -> list[str]:
        """The script answers with ids separated by commas, "all", or "first:N"."""
        answer = str(self._answer(key))
        ids = [o.id for o in options]
        if answer == "all":
            picked = ids
        elif answer.startswith("first:") and answer[6:].isdigit():
            picked = ids[:int(answer[6:])]
        else:
            picked = [a.strip() for a in answer.split(",") if a.strip()]
        if len(picked) < min_count or any(p not in ids for p in picked):
            raise CitizenLeft(f"script answered {answer!r} to {key}, not {min_count}+ of the options")
        picked = [i for i in ids if i in picked]
        self._record(Shown("choose", key, params, ",".join(picked)))
        return picked

    async def ask_digits(self, key: str, *, min_len: int, max_len: int) -> str:
        answer = str(self._answer(key))
        # what the transcript (stdout, the demo's JSON) keeps: never a full national code, nor
        # any other identifier a citizen types to look slips up
        if national_code_ok(answer):
            shown = mask_national_code(answer)
        elif key.startswith(_IDENTIFIER_KEYS):
            shown = mask_code(answer)
        else:
            shown = answer
        self._record(Shown("digits", key, {}, shown))
        return answer

    async def confirm(self, key: str, **params: Any) -> bool:
        answer = bool(self._answer(key))
        self._record(Shown("confirm", key, params, "✓" if answer else "✗"))
        return answer

    async def show_error(self, key: str, **params: Any) -> None:
        self._record(Shown("error", key, params))

    async def show_outcome(self, outcome: Outcome) -> None:
        self._record(Shown("outcome", outcome.message_key, outcome.params))

    def keys(self, kind: str | None = None) -> list[str]:
        return [s.key for s in self.transcript if kind is None or s.kind == kind]
