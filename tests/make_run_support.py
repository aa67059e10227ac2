"""What the `make run` tests share (tests/test_make_run.py, tests/test_make_run_fleet.py): the
kiosk command, a no-display environment, reading a demo's output line by line, and telling its
X server has gone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

KIOSK = [sys.executable, "-c", "import sys; from kiosk.cli import main; sys.exit(main(sys.argv[1:]))"]


def no_display_env(data: Path) -> dict[str, str]:
    env = {**os.environ, "KIOSK_DATA_DIR": str(data), "KIVY_NO_ARGS": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
        env.pop(name, None)
    return env


def x_server_gone(pid: int) -> bool:
    """The virtual screen's X server has ended (its display number may already be another's:
    a parallel test's Xvfb takes the lowest free one)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def read_until(proc: subprocess.Popen[str], pattern: str, seen: list[str], timeout: float) -> re.Match[str]:
    """The first line of `proc`'s output matching `pattern` within `timeout` s; every line read
    is added to `seen`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"no {pattern!r} in: {''.join(seen)[-3000:]}")
