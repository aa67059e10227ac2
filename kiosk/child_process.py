"""Children that go with their parent: a demo's X server, fleet server and agent must not
outlive a demo killed outright (SIGKILL runs no finally, no atexit)."""

from __future__ import annotations

import os
import signal
from typing import Any, Callable


def end_with_parent(umask: int | None = 0o077) -> Callable[[], None]:
    """A preexec_fn: in the child before exec, SIGTERM when the process that started it dies,
    even by SIGKILL (Linux prctl PR_SET_PDEATHSIG), so a killed demo leaves nothing behind; and
    with `umask`, what it creates (the fleet's SQLite files) is private, as everything in a data
    dir. Everything it needs is looked up here, before the fork (no import in the child).
    The signal follows the thread that started the child: start it from one that lives as long
    as the parent does."""
    import ctypes

    try:
        prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        prctl = None
    parent = os.getpid()

    def setup() -> None:
        if umask is not None:
            os.umask(umask)
        if prctl is not None:
            prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
            if os.getppid() != parent:  # the parent died before the prctl: nobody would stop us
                os._exit(1)

    return setup
