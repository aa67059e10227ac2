"""PN532 host-interface frames (NXP UM0701 §6.2): build and parse normal, extended, ACK, NACK
and error frames, and an incremental reader that resynchronises after garbage.

Used by both sides of the wire: the driver (host) and the virtual PN532.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from devices.base import ProtocolError

log = logging.getLogger("devices.pn532.frames")

PREAMBLE = b"\x00"
START_CODE = b"\x00\xff"
ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
TFI_HOST = 0xD4  # host -> PN532
TFI_PN532 = 0xD5  # PN532 -> host
TFI_ERROR = 0x7F  # application-level error frame (syntax error in the last command)
MAX_NORMAL_LEN = 255  # LEN counts TFI + PD; longer payloads need the extended frame
MAX_EXTENDED_LEN = 265  # the PN532's largest information frame (UM0701 §6.2.1.2)


class FrameError(ProtocolError):
    """Bytes that start like a frame but are not one (bad postamble, bad TFI, zero length)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="frame")


class LengthChecksumError(FrameError):
    """LEN + LCS is not 0 mod 256."""


class DataChecksumError(FrameError):
    """TFI + PD + DCS is not 0 mod 256."""


class FrameKind(enum.StrEnum):
    ACK = "ack"
    NACK = "nack"
    ERROR = "error"
    INFO = "info"


@dataclass(frozen=True)
class Frame:
    """One frame off the wire. For INFO frames `data` is PD (command or response code first)."""

    kind: FrameKind
    tfi: int = 0
    data: bytes = b""

    @property
    def code(self) -> int:
        return self.data[0] if self.data else -1

    @property
    def params(self) -> bytes:
        return self.data[1:]

    def to_bytes(self) -> bytes:
        if self.kind == FrameKind.ACK:
            return ACK
        if self.kind == FrameKind.NACK:
            return NACK
        if self.kind == FrameKind.ERROR:
            return ERROR_FRAME
        return build_frame(self.tfi, self.data)


ACK_FRAME = Frame(FrameKind.ACK)
NACK_FRAME = Frame(FrameKind.NACK)


def build_frame(tfi: int, data: bytes) -> bytes:
    """An information frame; extended syntax when TFI + PD exceeds 255 bytes."""
    body = bytes([tfi]) + bytes(data)
    if len(body) > MAX_EXTENDED_LEN:
        raise FrameError(f"frame payload of {len(body)} bytes exceeds {MAX_EXTENDED_LEN}")
    dcs = (-sum(body)) & 0xFF
    if len(body) <= MAX_NORMAL_LEN:
        head = PREAMBLE + START_CODE + bytes([len(body), (-len(body)) & 0xFF])
    else:
        hi, lo = len(body) >> 8, len(body) & 0xFF
        head = PREAMBLE + START_CODE + b"\xff\xff" + bytes([hi, lo, (-(hi + lo)) & 0xFF])
    return head + body + bytes([dcs, 0x00])


def build_command(code: int, params: bytes = b"") -> bytes:
    return build_frame(TFI_HOST, bytes([code]) + bytes(params))


def build_response(code: int, params: bytes = b"") -> bytes:
    """The PN532's answer to command `code` (response code = command + 1)."""
    return build_frame(TFI_PN532, bytes([(code + 1) & 0xFF]) + bytes(params))


# --- parsing ----------------------------------------------------------------------------------

_INCOMPLETE = object()


def _parse_at(buf: bytes | bytearray, pos: int) -> tuple[object, int]:
    """Parse the frame whose start code 00 FF is at `pos`.

    Returns (Frame, end) for a complete frame, (_INCOMPLETE, 0) when more bytes are needed,
    or raises a FrameError subclass when the bytes cannot be a frame.
    """
    n = len(buf)
    if n < pos + 4:
        return _INCOMPLETE, 0
    length, lcs = buf[pos + 2], buf[pos + 3]
    if length == 0x00 and lcs == 0xFF:
        if n < pos + 5:
            return _INCOMPLETE, 0
        if buf[pos + 4] != 0:
            raise FrameError("ACK without postamble")
        return ACK_FRAME, pos + 5
    if length == 0xFF and lcs == 0x00:
        if n < pos + 5:
            return _INCOMPLETE, 0
        if buf[pos + 4] != 0:
            raise FrameError("NACK without postamble")
        return NACK_FRAME, pos + 5
    if length == 0xFF and lcs == 0xFF:
        # extended frame: 00 FF FF FF LENM LENL LCS TFI PD… DCS 00
        if n < pos + 7:
            return _INCOMPLETE, 0
        hi, lo, elcs = buf[pos + 4], buf[pos + 5], buf[pos + 6]
        if (hi + lo + elcs) & 0xFF:
            raise LengthChecksumError(f"extended LENM+LENL+LCS = {(hi + lo + elcs) & 0xFF:#04x}, not 0")
        length = (hi << 8) | lo
        if not 1 <= length <= MAX_EXTENDED_LEN:
            raise FrameError(f"extended frame length {length} out of range")
        body_at = pos + 7
    else:
        if (length + lcs) & 0xFF:
            raise LengthChecksumError(f"LEN+LCS = {(length + lcs) & 0xFF:#04x}, not 0")
        if length == 0:
            raise FrameError("information frame of length 0")
        body_at = pos + 4
    end = body_at + length + 2
    if n < end:
        return _INCOMPLETE, 0
    body = bytes(buf[body_at : body_at + length])
    if (sum(body) + buf[body_at + length]) & 0xFF:
        raise DataChecksumError("TFI+PD+DCS is not 0 mod 256")
    if buf[end - 1] != 0:
        raise FrameError("missing postamble")
    tfi = body[0]
    if tfi == TFI_ERROR and length == 1:
        return Frame(FrameKind.ERROR, tfi), end
    if tfi not in (TFI_HOST, TFI_PN532):
        raise FrameError(f"unknown TFI {tfi:#04x}")
    return Frame(FrameKind.INFO, tfi, body[1:]), end


def parse_frame(data: bytes) -> Frame:
    """Parse exactly one complete frame (leading preamble/garbage allowed, nothing after)."""
    pos = bytes(data).find(START_CODE)
    if pos < 0:
        raise FrameError("no start code 00 FF")
    frame, end = _parse_at(data, pos)
    if frame is _INCOMPLETE:
        raise FrameError("truncated frame")
    if any(data[end:]):
        raise FrameError("bytes after the frame")
    assert isinstance(frame, Frame)
    return frame


class FrameReader:
    """Feed bytes as they arrive; `pop()` returns the next frame, None when more bytes are
    needed, or raises a FrameError subclass for a broken frame (its start code is dropped,
    so the next call resynchronises on the following start code).

    A header whose claimed length has not arrived yet is held: the bytes after it may be its
    payload (card data can contain anything, even a whole valid frame). When the line then
    goes quiet, the owner calls `expire()`: the held header was line noise, its start code
    is dropped and the bytes after it are parsed afresh, so a real frame behind a false
    header is never lost.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0  # bytes dropped as garbage, for counters

    def feed(self, data: bytes) -> None:
        self._buf += data

    def clear(self) -> None:
        self._buf.clear()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def _drop(self, count: int) -> None:
        self.discarded += count
        del self._buf[:count]

    def pop(self) -> Frame | None:
        buf = self._buf
        pos = buf.find(START_CODE)
        if pos < 0:
            # keep a trailing 00: it may be the first half of a start code
            keep = 1 if buf[-1:] == b"\x00" else 0
            self._drop(len(buf) - keep)
            return None
        if pos:
            self._drop(pos)
        try:
            frame, end = _parse_at(buf, 0)
        except FrameError:
            self._drop(2)
            raise
        if frame is _INCOMPLETE:
            return None
        # the postamble 00 stays: it may double as the first byte of the next start code
        # when line noise made a false ACK/NACK out of a real frame's preamble
        del buf[: end - 1]
        assert isinstance(frame, Frame)
        return frame

    def expire(self) -> bool:
        """The line went quiet with an incomplete frame held: drop its start code. Returns
        whether anything was held (call `pop()` again afterwards)."""
        pos = self._buf.find(START_CODE)
        if pos < 0:
            return False
        self._drop(pos + 2)
        return True

    def pop_all(self) -> list[Frame | FrameError]:
        """Every frame and error currently decodable, in order (for tests and tools)."""
        out: list[Frame | FrameError] = []
        while True:
            try:
                frame = self.pop()
            except FrameError as exc:
                out.append(exc)
                continue
            if frame is None:
                return out
            out.append(frame)
