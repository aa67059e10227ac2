"""A pseudo-terminal behind a stable symlinked path (like /dev/serial/by-id/...), with unplug and
replug: the one wire the serial device emulators (PN532, scanner, printer) all stand on."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import tty
from pathlib import Path
from typing import Self

log = logging.getLogger("devices.pty")


class PtyPort:
    """`path` is a symlink in a private temp dir that points at the current /dev/pts/N; the host
    opens `path` with pyserial, the emulator reads and writes `master_fd`.

    `plug()` opens a fresh pty in raw mode and points `path` at it; `unplug()` closes both fds
    and removes the symlink, so the host's next read or write fails and reopening fails until
    `replug()`; `close()` unplugs for good and removes the temp dir. Every state change happens
    under `lock` (re-entrant); pass the emulator's own lock so its state and the fds change
    together."""

    def __init__(self, name: str, *, prefix: str = "kiosk-pty-",
                 lock: threading.RLock | None = None) -> None:
        self.lock = lock if lock is not None else threading.RLock()
        self._dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.path = str(self._dir / name)
        self.pty_path = ""  # the current /dev/pts/N; "" while unplugged
        self.master_fd: int | None = None
        self._slave_fd: int | None = None
        self._closed = False

    @property
    def plugged(self) -> bool:
        return self.master_fd is not None

    def plug(self) -> str:
        """Bring a fresh pty up behind `path` (a no-op if one is already plugged)."""
        with self.lock:
            if self._closed:
                raise RuntimeError(f"pty port {self.path} is closed")
            if self.master_fd is not None:
                return self.path
            master, slave = os.openpty()
            # raw: bytes pass untouched (a scanner's CR stays CR, no echo of frames back to the
            # host); pyserial sets raw too when it opens, this covers the gap before that
            tty.setraw(slave)
            self.master_fd, self._slave_fd = master, slave
            self.pty_path = os.ttyname(slave)
            link = Path(self.path)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(self.pty_path)
        log.debug("pty %s -> %s", self.path, self.pty_path)
        return self.path

    def unplug(self) -> None:
        """Pull the cable: close both sides and remove the symlink."""
        with self.lock:
            for fd in (self.master_fd, self._slave_fd):
                if fd is not None:
                    os.close(fd)
            self.master_fd = self._slave_fd = None
            self.pty_path = ""
            link = Path(self.path)
            if link.is_symlink():
                link.unlink()

    def replug(self) -> str:
        """A new pty behind the same `path`."""
        return self.plug()

    def close(self) -> None:
        """Unplug and remove the temp dir; idempotent."""
        with self.lock:
            self.unplug()
            if self._closed:
                return
            self._closed = True
            try:
                self._dir.rmdir()
            except OSError as exc:
                log.warning("could not remove %s: %s", self._dir, exc)

    def __enter__(self) -> Self:
        self.plug()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["PtyPort"]
