"""One process owns a data dir's money: an exclusive lock (flock on <data_dir>/kiosk.lock,
the holder's pid written in it) taken by every process that appends to the journal — the
kiosk, the demo, `kiosk recover`. A second one is refused with the holder's pid instead of
racing the first over the same open transactions.

flock is released by the kernel when the holder dies (even by SIGKILL or a power cut), so a
stale lock file never blocks a restart: only a live process holds the lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from kiosk.errors import KioskError

LOCK_FILENAME = "kiosk.lock"


class DataDirLocked(KioskError):
    """Another live process holds this data dir's lock."""

    key = "data_dir.locked"
    fa = ("پوشه داده {path} در دست فرایند دیگری (pid {pid}) است؛ فقط یک برنامه می‌تواند "
          "پول این کیوسک را جابه‌جا کند. آن را ببندید یا صبر کنید.")
    en = ("The data dir {path} is in use by another process (pid {pid}); only one program may "
          "move this kiosk's money. Stop it or wait for it to finish.")


class DataLock:
    """The exclusive lock on one data dir. Not re-entrant: a second DataLock on the same dir,
    even in the same process, is refused (flock locks belong to the open file)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILENAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> DataLock:
        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder_pid(fd)
            os.close(fd)
            raise DataDirLocked(f"{self.path} is held by pid {pid}", path=str(self.path.parent),
                                pid=pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # no pid left behind that could name an unrelated process
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> DataLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder_pid(fd: int) -> str:
    """The pid the holder wrote; it writes it right after taking the lock, so a refusal in
    that instant waits a moment for it rather than saying 'unknown'."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return text
        time.sleep(0.01)
    return "unknown"
