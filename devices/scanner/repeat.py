"""Drop a code seen again within the repeat window, as hand-held scanners do, so one slip
held in front of the camera (or scanned twice by a nervous hand) is one scan."""

from __future__ import annotations

import time
from collections.abc import Callable


class RepeatFilter:
    """Admit a text unless it was last seen less than `window_s` ago. Every sighting renews
    the window, so a code left in view is reported once, not once every `window_s`."""

    def __init__(self, window_s: float = 3.0, clock: Callable[[], float] = time.monotonic) -> None:
        if window_s < 0:
            raise ValueError(f"repeat window must be >= 0 s, got {window_s}")
        self.window_s = window_s
        self._clock = clock
        self._last_seen: dict[str, float] = {}

    def admit(self, text: str) -> bool:
        now = self._clock()
        last = self._last_seen.get(text)
        self._last_seen[text] = now
        # forget stale entries so a long-running kiosk does not grow this map without bound
        if len(self._last_seen) > 256:
            self._last_seen = {t: s for t, s in self._last_seen.items() if now - s < self.window_s}
        return last is None or now - last >= self.window_s
