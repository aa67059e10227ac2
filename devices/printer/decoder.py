"""Turns ESC/POS bytes back into the paper a printer would produce: raster blocks stacked,
native QR codes drawn from their data, text, feeds and cuts — so tests can look at receipts.

`next_command` is the shared tokenizer: the emulator uses it to find real-time status
queries at command boundaries (never inside raster data), the decoder to replay a job.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

import qrcode
import qrcode.constants
import qrcode.exceptions
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

log = logging.getLogger("devices.printer.decoder")

ESC, GS, DLE, FS = 0x1B, 0x1D, 0x10, 0x1C
LF, CR, HT, FF = 0x0A, 0x0D, 0x09, 0x0C

#: one "line" of paper in dots (the 1/6 inch default line spacing, see layout.FEED_LINE_DOTS)
LINE_DOTS = 30
#: a job longer than this (about 12 m of paper) is garbage, not a receipt
MAX_PAPER_DOTS = 100_000
#: QR quiet zone drawn around a native code (the paper around it is white anyway)
QR_BORDER = 4


class EscposDecodeError(ValueError):
    """The bytes are not a valid ESC/POS job: unknown or truncated command at `offset`."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.offset = offset


@dataclass(frozen=True)
class Command:
    """One ESC/POS command: its name, where it starts and ends, and its decoded arguments."""

    name: str
    offset: int
    end: int
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class DecodedReceipt:
    image: PILImage.Image
    qr_codes: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    cuts: int = 0
    commands: list[str] = field(default_factory=list)


class _Truncated(Exception):
    """The buffer ends inside a command; more bytes are needed."""


# Fixed-length commands: prefix bytes -> (name, number of argument bytes)
_ESC_FIXED: dict[int, tuple[str, int]] = {
    0x40: ("ESC @ init", 0),
    0x64: ("ESC d feed-lines", 1),
    0x4A: ("ESC J feed-dots", 1),
    0x61: ("ESC a align", 1),
    0x45: ("ESC E bold", 1),
    0x21: ("ESC ! mode", 1),
    0x2D: ("ESC - underline", 1),
    0x4D: ("ESC M font", 1),
    0x74: ("ESC t codepage", 1),
    0x32: ("ESC 2 line-spacing-default", 0),
    0x33: ("ESC 3 line-spacing", 1),
    0x41: ("ESC A line-spacing-60", 1),
    0x2B: ("ESC + line-spacing-360", 1),
    0x3D: ("ESC = select", 1),
    0x7B: ("ESC { upside-down", 1),
    0x47: ("ESC G double-strike", 1),
    0x72: ("ESC r color", 1),
    0x52: ("ESC R charset", 1),
    0x70: ("ESC p drawer", 3),
    0x42: ("ESC B buzzer", 2),
}
_GS_FIXED: dict[int, tuple[str, int]] = {
    0x21: ("GS ! size", 1),
    0x42: ("GS B inverse", 1),
    0x62: ("GS b smoothing", 1),
    0x7C: ("GS | density", 1),
    0x48: ("GS H hri-position", 1),
    0x68: ("GS h barcode-height", 1),
    0x77: ("GS w barcode-width", 1),
    0x66: ("GS f hri-font", 1),
    0x4C: ("GS L left-margin", 2),
    0x57: ("GS W print-width", 2),
}


def _need(data: bytes, end: int) -> None:
    if end > len(data):
        raise _Truncated


def next_command(data: bytes, i: int) -> Command:
    """The command starting at data[i]. Raises _Truncated when data ends inside it and
    EscposDecodeError when the bytes are no command we know."""
    b = data[i]
    if b >= 0x20 and b != 0x7F:
        j = i
        while j < len(data) and data[j] >= 0x20 and data[j] != 0x7F:
            j += 1
        return Command("text", i, j, (bytes(data[i:j]),))
    if b == LF:
        return Command("LF", i, i + 1)
    if b in (CR, HT, FF):
        return Command({CR: "CR", HT: "HT", FF: "FF"}[b], i, i + 1)
    if b == DLE:
        _need(data, i + 3)
        if data[i + 1] == 0x04 and 1 <= data[i + 2] <= 4:
            return Command("DLE EOT status", i, i + 3, (data[i + 2],))
        if data[i + 1] == 0x05 and 0 <= data[i + 2] <= 2:
            return Command("DLE ENQ request", i, i + 3, (data[i + 2],))
        raise EscposDecodeError(f"unknown DLE command 0x{data[i + 1]:02x}", i)
    if b == ESC:
        _need(data, i + 2)
        op = data[i + 1]
        if op in _ESC_FIXED:
            name, n = _ESC_FIXED[op]
            _need(data, i + 2 + n)
            return Command(name, i, i + 2 + n, tuple(data[i + 2:i + 2 + n]))
        if op == 0x2A:  # ESC * m nL nH d…: column bit image
            _need(data, i + 5)
            m, n = data[i + 2], data[i + 3] | data[i + 4] << 8
            if m not in (0, 1, 32, 33):
                raise EscposDecodeError(f"ESC * with bad mode {m}", i)
            end = i + 5 + n * (3 if m >= 32 else 1)
            _need(data, end)
            return Command("ESC * column-image", i, end, (m, n))
        if op == 0x63:  # ESC c 3/4/5 n: paper sensors and panel buttons
            _need(data, i + 4)
            if data[i + 2] not in (0x33, 0x34, 0x35, 0x30):
                raise EscposDecodeError(f"unknown ESC c {data[i + 2]:#x}", i)
            return Command("ESC c panel", i, i + 4)
        raise EscposDecodeError(f"unknown command ESC 0x{op:02x}", i)
    if b == GS:
        _need(data, i + 2)
        op = data[i + 1]
        if op in _GS_FIXED:
            name, n = _GS_FIXED[op]
            _need(data, i + 2 + n)
            return Command(name, i, i + 2 + n, tuple(data[i + 2:i + 2 + n]))
        if op == 0x56:  # GS V m [n]: cut (function A: m 0/1/48/49, B: 65/66 + n)
            _need(data, i + 3)
            m = data[i + 2]
            if m in (0, 1, 48, 49):
                return Command("GS V cut", i, i + 3, (m, 0))
            if m in (65, 66, 97, 98, 103, 104):
                _need(data, i + 4)
                return Command("GS V cut", i, i + 4, (m, data[i + 3]))
            raise EscposDecodeError(f"GS V with bad cut mode {m}", i)
        if op == 0x76:  # GS v 0 m xL xH yL yH d…: raster bit image
            _need(data, i + 8)
            if data[i + 2] != 0x30 or data[i + 3] not in (0, 1, 2, 3, 48, 49, 50, 51):
                raise EscposDecodeError("bad GS v 0 header", i)
            xb = data[i + 4] | data[i + 5] << 8
            y = data[i + 6] | data[i + 7] << 8
            end = i + 8 + xb * y
            _need(data, end)
            return Command("GS v 0 raster", i, end, (xb, y, i + 8))
        if op == 0x28:  # GS ( X pL pH …: QR (k), graphics (L), others with a length
            _need(data, i + 5)
            kind = data[i + 2]
            n = data[i + 3] | data[i + 4] << 8
            end = i + 5 + n
            _need(data, end)
            if kind == 0x6B:  # 'k': 2D codes
                if n < 2:
                    raise EscposDecodeError("GS ( k too short", i)
                cn, fn = data[i + 5], data[i + 6]
                return Command("GS ( k 2d-code", i, end, (cn, fn, bytes(data[i + 7:end])))
            if kind in (0x4C, 0x38):  # 'L' / '8': graphics
                return Command("GS ( L graphics", i, end)
            if kind in (0x41, 0x44, 0x45, 0x48, 0x4B, 0x4E):  # test print, rt-enable, user setup, …
                return Command(f"GS ( {chr(kind)}", i, end)
            raise EscposDecodeError(f"unknown command GS ( 0x{kind:02x}", i)
        if op == 0x6B:  # GS k m …: 1D barcode (form A NUL-terminated, form B with length)
            _need(data, i + 3)
            m = data[i + 2]
            if m <= 6:
                j = data.find(b"\x00", i + 3)
                if j < 0:
                    raise _Truncated
                return Command("GS k barcode", i, j + 1)
            if 65 <= m <= 79:
                _need(data, i + 4)
                end = i + 4 + data[i + 3]
                _need(data, end)
                return Command("GS k barcode", i, end)
            raise EscposDecodeError(f"GS k with bad barcode type {m}", i)
        raise EscposDecodeError(f"unknown command GS 0x{op:02x}", i)
    if b == FS:
        _need(data, i + 2)
        if data[i + 1] in (0x2E, 0x26):  # FS . / FS &: kanji mode off/on
            return Command("FS kanji", i, i + 2)
        raise EscposDecodeError(f"unknown command FS 0x{data[i + 1]:02x}", i)
    raise EscposDecodeError(f"unknown control byte 0x{b:02x}", i)


def split_commands(data: bytes) -> tuple[list[Command], int]:
    """Every complete command in data, and the offset where an unfinished one begins
    (len(data) when none). Unknown bytes raise EscposDecodeError."""
    commands: list[Command] = []
    i = 0
    while i < len(data):
        try:
            cmd = next_command(data, i)
        except _Truncated:
            return commands, i
        commands.append(cmd)
        i = cmd.end
    return commands, i


_QR_ECC = {
    0x30: qrcode.constants.ERROR_CORRECT_L,
    0x31: qrcode.constants.ERROR_CORRECT_M,
    0x32: qrcode.constants.ERROR_CORRECT_Q,
    0x33: qrcode.constants.ERROR_CORRECT_H,
}


def _qr_picture(payload: bytes, module: int, ecc: int, offset: int) -> PILImage.Image:
    try:
        return _qr_picture_cached(payload, module, ecc)
    except (qrcode.exceptions.DataOverflowError, ValueError) as exc:
        raise EscposDecodeError(f"QR data does not fit a QR code ({len(payload)} bytes)", offset) from exc


@functools.lru_cache(maxsize=64)
def _qr_picture_cached(payload: bytes, module: int, ecc: int) -> PILImage.Image:
    code = qrcode.QRCode(error_correction=ecc, border=QR_BORDER)
    code.add_data(payload)
    code.make(fit=True)
    matrix = code.get_matrix()
    n = len(matrix)
    small = PILImage.new("1", (n, n), 1)
    px = small.load()
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                px[x, y] = 0
    return small.resize((n * module, n * module), PILImage.Resampling.NEAREST)


class _Paper:
    """The paper being printed: pieces placed at a y, a text line buffer, the modes."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.y = 0
        self.pieces: list[tuple[int, int, PILImage.Image]] = []
        self.align = 0
        self.line: list[str] = []
        self.texts: list[str] = []
        self.font = ImageFont.load_default()

    def advance(self, dots: int, offset: int) -> None:
        self.y += dots
        if self.y > MAX_PAPER_DOTS:
            raise EscposDecodeError(f"job feeds more than {MAX_PAPER_DOTS} dots of paper", offset)

    def place(self, img: PILImage.Image, offset: int) -> None:
        if img.width > self.width:
            img = img.crop((0, 0, self.width, img.height))  # beyond the print head: lost
        x = {1: (self.width - img.width) // 2, 2: self.width - img.width}.get(self.align, 0)
        self.pieces.append((x, self.y, img))
        self.advance(img.height, offset)

    def print_line(self, offset: int) -> bool:
        """Print the buffered text as one line; False when there was nothing to print."""
        if not self.line:
            return False
        text = "".join(self.line)
        self.line = []
        self.texts.append(text)
        img = PILImage.new("1", (self.width, LINE_DOTS), 1)
        ImageDraw.Draw(img).text((0, 8), text, font=self.font, fill=0)
        box = img.point(lambda v: 255 - v).getbbox()
        w = min(self.width, box[2] + 1) if box else 1
        self.place(img.crop((0, 0, w, LINE_DOTS)), offset)
        return True

    def image(self) -> PILImage.Image:
        page = PILImage.new("1", (self.width, max(1, self.y)), 1)
        for x, y, img in self.pieces:
            page.paste(img.convert("1"), (x, y))
        return page


_INVERT = bytes(255 - v for v in range(256))


def _raster(data: bytes, xb: int, y: int, start: int) -> PILImage.Image:
    if xb == 0 or y == 0:
        return PILImage.new("1", (1, 1), 1)
    # GS v 0 data: 1 = print (black); PIL "1" raw: 1 = white. Invert.
    raw = data[start:start + xb * y].translate(_INVERT)
    return PILImage.frombytes("1", (xb * 8, y), raw)


def decode_escpos(data: bytes, *, width_dots: int = 576) -> DecodedReceipt:
    """Replay an ESC/POS job onto paper. Raises EscposDecodeError (naming the offset) on
    unknown or truncated commands and on nothing else."""
    data = bytes(data)
    paper = _Paper(width_dots)
    commands, stop = split_commands(data)
    if stop != len(data):
        raise EscposDecodeError("truncated command", stop)
    names: list[str] = []
    cuts = 0
    qr_data = b""
    qr_module = 3
    qr_ecc = qrcode.constants.ERROR_CORRECT_L
    qr_codes: list[str] = []
    for cmd in commands:
        names.append(cmd.name)
        at = cmd.offset
        if cmd.name == "text":
            paper.line.append(cmd.args[0].decode("cp437"))
        elif cmd.name == "LF":
            if not paper.print_line(at):
                paper.advance(LINE_DOTS, at)
        elif cmd.name == "ESC d feed-lines":
            paper.print_line(at)
            paper.advance(LINE_DOTS * cmd.args[0], at)
        elif cmd.name == "ESC J feed-dots":
            paper.print_line(at)
            paper.advance(cmd.args[0], at)
        elif cmd.name == "ESC a align":
            paper.align = cmd.args[0] % 48 if cmd.args[0] % 48 <= 2 else 0
        elif cmd.name == "ESC @ init":
            paper.align = 0
            paper.line = []
        elif cmd.name == "GS v 0 raster":
            paper.print_line(at)
            paper.place(_raster(data, *cmd.args), at)
        elif cmd.name == "GS V cut":
            paper.print_line(at)
            if cmd.args[0] in (65, 66, 97, 98, 103, 104):
                paper.advance(cmd.args[1], at)  # function B/C feed n before cutting
            cuts += 1
        elif cmd.name == "GS ( k 2d-code":
            cn, fn, body = cmd.args
            if cn != 0x31:  # PDF417 and others: not used by our jobs, nothing to draw
                continue
            if fn == 67 and body:
                qr_module = min(16, max(1, body[0]))
            elif fn == 69 and body:
                qr_ecc = _QR_ECC.get(body[0], qr_ecc)
            elif fn == 80:
                qr_data = body[1:]  # m = '0' then the data
            elif fn == 81:
                if qr_data:
                    paper.print_line(at)
                    paper.place(_qr_picture(qr_data, qr_module, qr_ecc, at), at)
                    qr_codes.append(qr_data.decode("utf-8", errors="replace"))
    paper.print_line(len(data))
    return DecodedReceipt(paper.image(), qr_codes, paper.texts, cuts, names)


__all__ = ["decode_escpos", "DecodedReceipt", "EscposDecodeError", "Command", "next_command",
           "split_commands", "LINE_DOTS"]
