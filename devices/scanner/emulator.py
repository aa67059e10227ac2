"""A serial barcode scanner on a pseudo-terminal: the driver opens a real tty and reads the
bytes a real scanner sends (prefix + text + suffix), unplug included."""

from __future__ import annotations

import os
from typing import Self

from devices.pty import PtyPort


class SerialScannerEmulator:
    """`start()` returns a stable port path (a symlink, like /dev/serial/by-id/...) that points
    at the current pty; `unplug()` removes the pty; `replug()` brings a fresh one back at the
    same path. `send(str)` frames the text with prefix and suffix; `send(bytes)` writes the
    bytes as they are (split frames, garbage)."""

    def __init__(self, suffix: str = "\r\n", prefix: str = "", encoding: str = "utf-8") -> None:
        self.suffix = suffix
        self.prefix = prefix
        self.encoding = encoding
        # raw mode (PtyPort): a real scanner's CR must reach the driver as CR, not become LF
        self._port = PtyPort("scanner", prefix="kiosk-scanner-")
        self.port = self._port.path

    def start(self) -> str:
        return self._port.plug()

    def send(self, text: str | bytes) -> None:
        fd = self._port.master_fd
        if fd is None:
            raise RuntimeError("emulator is unplugged; call start() or replug() first")
        data = text if isinstance(text, bytes) else (self.prefix + text + self.suffix).encode(self.encoding)
        os.write(fd, data)

    def unplug(self) -> None:
        """Pull the cable: the pty disappears and the driver's next read fails."""
        self._port.unplug()

    def replug(self) -> str:
        return self._port.replug()

    def stop(self) -> None:
        self._port.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
