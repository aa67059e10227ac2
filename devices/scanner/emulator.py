"""A serial barcode scanner on a pseudo-terminal: the driver opens a real tty and reads the
bytes a real scanner sends (prefix + text + suffix), unplug included."""

from __future__ import annotations

import logging
import os
import tempfile
import tty
from pathlib import Path

log = logging.getLogger("devices.scanner.emulator")


class SerialScannerEmulator:
    """`start()` returns a stable port path (a symlink, like /dev/serial/by-id/...) that points
    at the current pty; `unplug()` removes the pty; `replug()` brings a fresh one back at the
    same path. `send(str)` frames the text with prefix and suffix; `send(bytes)` writes the
    bytes as they are (split frames, garbage)."""

    def __init__(self, suffix: str = "\r\n", prefix: str = "", encoding: str = "utf-8") -> None:
        self.suffix = suffix
        self.prefix = prefix
        self.encoding = encoding
        self._master: int | None = None
        self._slave: int | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="kiosk-scanner-"))
        self.port = str(self._dir / "scanner")

    def start(self) -> str:
        self._plug()
        return self.port

    def _plug(self) -> None:
        master, slave = os.openpty()
        # raw mode: a real scanner's CR must reach the driver as CR, not be turned into LF
        tty.setraw(slave)
        self._master, self._slave = master, slave
        link = Path(self.port)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.ttyname(slave))
        log.debug("scanner emulator on %s -> %s", self.port, os.ttyname(slave))

    def send(self, text: str | bytes) -> None:
        if self._master is None:
            raise RuntimeError("emulator is unplugged; call start() or replug() first")
        data = text if isinstance(text, bytes) else (self.prefix + text + self.suffix).encode(self.encoding)
        os.write(self._master, data)

    def unplug(self) -> None:
        """Pull the cable: the pty disappears and the driver's next read fails."""
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        link = Path(self.port)
        if link.is_symlink():
            link.unlink()

    def replug(self) -> str:
        if self._master is None:
            self._plug()
        return self.port

    def stop(self) -> None:
        self.unplug()
        try:
            self._dir.rmdir()
        except OSError as exc:
            log.warning("could not remove %s: %s", self._dir, exc)

    def __enter__(self) -> SerialScannerEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
