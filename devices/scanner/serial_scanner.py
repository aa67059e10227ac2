"""Serial (RS-232 / USB-CDC) barcode scanner: reads suffix-terminated frames with pyserial
in an executor, strips the configured prefix, and drops repeats within the window."""

from __future__ import annotations

import asyncio
import logging
import termios
from typing import Any

import serial

from devices.base import (
    DeviceIdentity,
    DeviceOffline,
    DeviceState,
    InvalidData,
    register,
)
from devices.contracts import ScannedCode, Scanner
from devices.scanner.repeat import RepeatFilter

log = logging.getLogger("devices.scanner.serial")

SUFFIXES = {"\r": "CR", "\n": "LF", "\r\n": "CRLF"}
_POLL_S = 0.05  # one blocking read never holds the executor longer, so cancel stays prompt
_MAX_FRAME = 4096  # a scanner frame longer than this is line noise, not a barcode
#: the port going away under a read: pyserial's error, the OS's (EIO on a vanished tty) and
#: termios.error, which is no OSError
PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
#: what pyserial raises when its port is closed by another thread mid-read (close() sets its fd
#: to None under select/ioctl/os.read): a lost port only when the port is in fact closed
_CLOSED_UNDER_US = (TypeError, AttributeError, ValueError)


@register("serial-scanner")
class SerialScanner(Scanner):
    """Options: port, baudrate=9600, prefix="", suffix="\\r\\n" (CR, LF or CRLF),
    encoding="utf-8", repeat_window_s=3.0."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.port = str(options["port"]) if "port" in options else ""
        self.baudrate = int(options.get("baudrate", 9600))
        self.prefix = str(options.get("prefix", ""))
        suffix = str(options.get("suffix", "\r\n"))
        suffix = {"CR": "\r", "LF": "\n", "CRLF": "\r\n"}.get(suffix.upper(), suffix)
        if suffix not in SUFFIXES:
            raise InvalidData(f"{name}: suffix must be CR, LF or CRLF, got {suffix!r}", device=name,
                              error_code="badSuffix")
        self.suffix = suffix
        self.encoding = str(options.get("encoding", "utf-8"))
        self._repeats = RepeatFilter(float(options.get("repeat_window_s", 3.0)))
        self._serial: serial.Serial | None = None
        self._buffer = bytearray()
        self._suffix_bytes = suffix.encode("ascii")
        self._prefix_bytes = self.prefix.encode(self.encoding)
        self._opened_once = False
        self.capabilities = {"transport": "serial", "suffix": SUFFIXES[suffix],
                             "prefix": self.prefix, "baudrate": self.baudrate}

    async def _open(self) -> None:
        if not self.port:
            raise DeviceOffline(f"{self.name}: no serial port configured", device=self.name)
        try:
            self._serial = await self.run_blocking(self._open_port)
        except PORT_ERRORS as exc:
            raise DeviceOffline(f"{self.name}: cannot open {self.port}: {exc}", device=self.name) from exc
        self._buffer.clear()
        self._opened_once = True
        self.identity = DeviceIdentity(model="serial barcode scanner", serial=self.port,
                                       vendor="generic")

    def _open_port(self) -> serial.Serial:
        return serial.Serial(self.port, self.baudrate, timeout=_POLL_S)

    async def _close(self) -> None:
        if self._serial is not None:
            port, self._serial = self._serial, None
            await self.run_blocking(port.close)

    async def read(self, *, timeout: float = 30.0) -> ScannedCode:
        # The port came back after an unplug: reopen before reading (the manager's back-off
        # does the same, this keeps a flow that simply waits for a scan working too).
        if self.state == DeviceState.OFFLINE and self._opened_once:
            await self.open()
        return await self.command("read", self._next_code, timeout=timeout)

    async def _next_code(self) -> ScannedCode:
        while True:
            frame = self._take_frame()
            if frame is None:
                await self._fill()
                continue
            code = self._decode_frame(frame)
            if code is None:
                continue
            if self._repeats.admit(code.text):
                self.counters["good_scans"] += 1
                return code
            self.counters["duplicates_dropped"] += 1

    async def _fill(self) -> None:
        ser = self._serial
        if ser is None:
            raise DeviceOffline(f"{self.name}: port {self.port} is closed", device=self.name,
                                error_code="portClosed")
        try:
            chunk = await self.run_blocking(self._read_some, ser)
        except (*PORT_ERRORS, *_CLOSED_UNDER_US) as exc:
            if self._serial is not ser or not ser.is_open or getattr(ser, "fd", 0) is None:
                # closed while this read waited on it (close(), the manager reopening it):
                # pyserial then raises whatever its fd set to None makes select or os.read raise
                if self._serial is ser:
                    self._serial = None
                raise DeviceOffline(f"{self.name}: port {self.port} was closed during a read",
                                    device=self.name, error_code="portClosed") from exc
            if not isinstance(exc, PORT_ERRORS):
                raise  # the port is fine: a real bug, not a lost port
            # the cable was pulled (EIO on a vanished tty): drop the handle so a reopen is clean
            self._serial = None
            await asyncio.get_running_loop().run_in_executor(None, _quiet_close, ser)
            raise DeviceOffline(f"{self.name}: {self.port} went away: {exc}", device=self.name,
                                error_code="portLost") from exc
        self._buffer += chunk
        if len(self._buffer) > _MAX_FRAME and self._suffix_bytes not in self._buffer:
            dropped = len(self._buffer)
            self._buffer.clear()
            self.counters["no_reads"] += 1
            raise InvalidData(f"{self.name}: {dropped} bytes without a {SUFFIXES[self.suffix]} "
                              "terminator", device=self.name, error_code="frameTooLong")

    @staticmethod
    def _read_some(ser: serial.Serial) -> bytes:
        waiting = ser.in_waiting
        return ser.read(waiting or 1)

    def _take_frame(self) -> bytes | None:
        end = self._buffer.find(self._suffix_bytes)
        if end < 0:
            return None
        frame = bytes(self._buffer[:end])
        del self._buffer[: end + len(self._suffix_bytes)]
        return frame

    def _decode_frame(self, frame: bytes) -> ScannedCode | None:
        if self.suffix == "\n" and frame.endswith(b"\r"):
            frame = frame[:-1]  # configured LF but the scanner sends CRLF: tolerate it
        if self._prefix_bytes and frame.startswith(self._prefix_bytes):
            frame = frame[len(self._prefix_bytes):]
        if not frame:
            return None  # an empty line is the scanner's keep-alive, not a scan
        try:
            text = frame.decode(self.encoding)
        except UnicodeDecodeError as exc:
            self.counters["no_reads"] += 1
            # the frame's bytes are not logged: a scanned card could carry a PAN
            raise InvalidData(f"{self.name}: a scan of {len(frame)} bytes is not valid "
                              f"{self.encoding} (at byte {exc.start})", device=self.name,
                              error_code="barcodeInvalid") from exc
        # a serial scanner does not say which symbology it read (unless AIM ids are on)
        return ScannedCode("unknown", text, source=self.name)


def _quiet_close(ser: serial.Serial) -> None:
    try:
        ser.close()
    except PORT_ERRORS as exc:
        log.debug("closing a lost port failed: %s", exc)


__all__ = ["SUFFIXES", "SerialScanner"]
