"""A simulated citizen for the Kivy screens: waits for a screen, reads what it shows (the
logical strings its RTLLabels hold) and taps widgets with touch events posted to Kivy's event
loop the way Kivy's own tests do (kivy/tests/common.py UnitTestTouch), so buttons see a real
touch down and up at their centre. Used by the UI tests and by `kiosk ui-tour`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from kivy.base import EventLoop
from kivy.input.motionevent import MotionEvent
from kivy.uix.widget import Widget

from kiosk.text.bidi import FSI, LRI, PDI, RLI
from screens.app import KivyUI
from screens.rtl import RTLLabel

_ISOLATES = str.maketrans("", "", LRI + RLI + FSI + PDI)


def plain(text: str) -> str:
    """A label's text without its invisible bidi isolates (what a reader compares)."""
    return text.translate(_ISOLATES)


class Touch(MotionEvent):
    """One finger at window pixel (x, y)."""

    def __init__(self, x: float, y: float) -> None:
        win = EventLoop.window
        super().__init__("CitizenTouch", id(self), {"x": x / (win.width - 1.0), "y": y / (win.height - 1.0)},
                         is_touch=True, type_id="touch")
        self.profile = ["pos"]

    def depack(self, args: dict[str, float]) -> None:
        self.sx, self.sy = args["x"], args["y"]
        super().depack(args)


class Citizen:
    def __init__(self, ui: KivyUI, *, timeout: float = 30.0) -> None:
        self.ui = ui
        self.timeout = timeout
        self.seen: list[str] = []
        ui.listeners.append(self.seen.append)

    async def settle(self, seconds: float = 0.25) -> None:
        """Let Kivy lay out and draw a few frames."""
        await asyncio.sleep(seconds)

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        end = time.monotonic() + (timeout or self.timeout)
        while not predicate():
            if time.monotonic() > end:
                raise TimeoutError(f"waited for {what}; the screen is {self.ui.screen} {self.ui.screen_key!r}: "
                                   f"{self.texts()}")
            await asyncio.sleep(0.05)

    async def screen(self, name: str, key: str | None = None, timeout: float | None = None) -> list[str]:
        """Wait until screen `name` (with message `key`) shows; returns its texts."""
        await self.until(lambda: self.ui.screen == name and (key is None or self.ui.screen_key == key),
                         f"screen {name} {key or ''}", timeout)
        await self.settle()
        return self.texts()

    def labels(self, root: Widget | None = None) -> list[RTLLabel]:
        top = root or self.ui.root
        assert top is not None
        return [w for w in top.walk(restrict=True) if isinstance(w, RTLLabel) and w.text and w.opacity > 0]

    def texts(self) -> list[str]:
        return [plain(w.text) for w in self.labels()]

    def button(self, choice_id: str) -> Any:
        assert self.ui.root is not None
        found = [w for w in self.ui.root.walk(restrict=True)
                 if getattr(w, "choice_id", None) == choice_id and w.opacity > 0]  # a button or a check row
        if not found:
            raise LookupError(f"no button {choice_id!r} on screen {self.ui.screen}: {self.texts()}")
        return found[-1]  # the topmost (an overlay's) if two

    async def tap(self, widget: Widget) -> None:
        await self.settle(0.1)
        # a screen just built may still be laid out (slowly, on a loaded machine): tap where the
        # widget stays for a few frames, not where it was first put
        x, y = widget.to_window(*widget.center)
        for _ in range(40):
            await asyncio.sleep(0.05)
            now = widget.to_window(*widget.center)
            if now == (x, y):
                break
            x, y = now
        touch = Touch(x, y)
        EventLoop.post_dispatch_input("begin", touch)
        await asyncio.sleep(0.03)
        EventLoop.post_dispatch_input("end", touch)
        await self.settle(0.1)

    async def tap_at(self, x: float, y: float) -> None:
        touch = Touch(x, y)
        EventLoop.post_dispatch_input("begin", touch)
        await asyncio.sleep(0.03)
        EventLoop.post_dispatch_input("end", touch)
        await self.settle(0.1)

    async def press(self, choice_id: str) -> None:
        await self.tap(self.button(choice_id))

    async def type_digits(self, digits: str) -> None:
        for d in digits:
            await self.press(d)

    async def switch_language(self) -> None:
        await self.tap(self.ui.lang_button)

    def shown_png(self, path: Any) -> None:
        assert self.ui.root is not None
        self.ui.root.export_to_png(str(path))


__all__ = ["Citizen", "Touch", "plain"]
