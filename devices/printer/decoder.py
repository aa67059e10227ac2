"""Turns ESC/POS bytes from any client back into the paper a printer would produce: text in
the printer's fonts with its alignment, emphasis and sizes, raster/column/graphics images,
native QR codes, 1D barcodes, feeds and cuts — and the list of commands it did not draw — so
tests and the printer simulator can look at receipts.

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
    """The paper of one job. `barcodes` holds the text of each 1D barcode drawn; `unhandled`
    what the decoder did not draw ("NAME args @offset"): empty when the picture is faithful."""

    image: PILImage.Image
    qr_codes: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    cuts: int = 0
    commands: list[str] = field(default_factory=list)
    barcodes: list[str] = field(default_factory=list)
    unhandled: list[str] = field(default_factory=list)


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
            if kind == 0x4C:  # 'L': graphics (m fn …)
                return Command("GS ( L graphics", i, end, (bytes(data[i + 5:end]),))
            if kind == 0x38:  # '8' L: graphics with a 4-byte length (not drawn)
                return Command("GS ( 8 graphics", i, end)
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
                return Command("GS k barcode", i, j + 1, (m, bytes(data[i + 3:j])))
            if 65 <= m <= 79:
                _need(data, i + 4)
                end = i + 4 + data[i + 3]
                _need(data, end)
                return Command("GS k barcode", i, end, (m, bytes(data[i + 4:end])))
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


# --- characters: the printer's own fonts, approximated --------------------------------------

#: character cells in dots (Epson TM: font A 12x24, font B 9x17)
_CELLS = {0: (12, 24), 1: (9, 17)}
#: tab stops every 8 characters of the current cell width (the ESC/POS default)
_TAB_CHARS = 8
_GLYPH_THRESHOLD = 128


@functools.lru_cache(maxsize=8)
def _face(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=4096)
def _glyph(ch: str, font: int, bold: bool, underline: int, inverse: bool, w: int, h: int) -> PILImage.Image:
    """One character cell as the printer draws it: the cell of the selected font, emphasized
    (drawn twice, one dot apart), underlined, reversed, then magnified w x h."""
    cw, chh = _CELLS[font]
    face = _face(chh - 6)
    cell = PILImage.new("L", (cw, chh), 255)
    if ch.strip():
        width = max(1, int(face.getlength(ch)) + (1 if bold else 0))
        art = PILImage.new("L", (width, chh), 255)
        draw = ImageDraw.Draw(art)
        draw.text((0, 1), ch, font=face, fill=0)
        if bold:
            draw.text((1, 1), ch, font=face, fill=0)
        if width > cw:  # wide letters (W, M, @) are squeezed into the cell, as fixed-pitch fonts do
            art = art.resize((cw, chh), PILImage.Resampling.LANCZOS)
        cell.paste(art, ((cw - art.width) // 2, 0))
    if underline:
        ImageDraw.Draw(cell).rectangle((0, chh - underline, cw - 1, chh - 1), fill=0)
    mono = cell.point(lambda v: 255 if v >= _GLYPH_THRESHOLD else 0).convert("1")
    if inverse:
        mono = mono.point(lambda v: 255 - v)
    if (w, h) != (1, 1):
        mono = mono.resize((cw * w, chh * h), PILImage.Resampling.NEAREST)
    return mono


# --- 1D barcodes ------------------------------------------------------------------------------

#: GS k m -> zxing-cpp format name: function A (m 0..6) and function B (m 65..73)
_BARCODES = {0: "UPCA", 1: "UPCE", 2: "EAN13", 3: "EAN8", 4: "Code39", 5: "ITF", 6: "Codabar",
             65: "UPCA", 66: "UPCE", 67: "EAN13", 68: "EAN8", 69: "Code39", 70: "ITF", 71: "Codabar",
             72: "Code93", 73: "Code128"}


def _code128_text(data: bytes) -> str:
    """The text a Code 128 symbol carries, from GS k 73's data: "{A"/"{B"/"{C" select a code
    set, "{{" is a "{", and in code set C each byte is two digits."""
    out: list[str] = []
    code_set = "B"
    i = 0
    while i < len(data):
        b = data[i]
        if b == 0x7B and i + 1 < len(data):  # "{"
            nxt = chr(data[i + 1])
            i += 2
            if nxt in "ABC":
                code_set = nxt
            elif nxt == "{":
                out.append("{")
            # {1 {2 {3 {4 {S: FNC codes and shift, nothing a reader shows as text
            continue
        out.append(f"{b:02d}" if code_set == "C" else chr(b))
        i += 1
    return "".join(out)


def _barcode_picture(m: int, data: bytes, height: int, module: int) -> tuple[PILImage.Image, str]:
    """The bars of a GS k symbol (re-encoded from its data by zxing-cpp: a reader gets the same
    text; a printer may choose other Code 128 code sets) and the text it carries."""
    import numpy as np
    import zxingcpp

    fmt = _BARCODES.get(m)
    if fmt is None:
        raise ValueError(f"barcode type {m} is not drawn")
    text = _code128_text(data) if m == 73 else data.decode("ascii")
    code = zxingcpp.create_barcode(text, getattr(zxingcpp.BarcodeFormat, fmt))
    row = np.asarray(code.to_image(scale=1, add_quiet_zones=False))[0] < 128
    bars = np.repeat(np.where(row, 0, 255).astype(np.uint8), module)
    img = PILImage.fromarray(np.tile(bars, (max(1, height), 1)), "L").convert("1")
    return img, text


# --- the paper ----------------------------------------------------------------------------------


class _Paper:
    """The paper being printed: pieces placed at a y, the line being built (characters and
    bit-image columns, left to right), and the print modes ESC/POS sets."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.y = 0
        self.pieces: list[tuple[int, int, PILImage.Image]] = []
        self.texts: list[str] = []
        self.reset()

    def reset(self) -> None:
        """ESC @: modes back to their power-on values; the line buffer is cleared."""
        self.align = 0
        self.font = 0
        self.bold = False
        self.underline = 0
        self.inverse = False
        self.size_w = self.size_h = 1
        self.line_spacing = LINE_DOTS
        self.barcode_height = 162
        self.barcode_module = 3
        self.hri = 0
        self.hri_font = 0
        self.line: list[PILImage.Image] = []
        self.line_text: list[str] = []
        self.x = 0

    def advance(self, dots: int, offset: int) -> None:
        self.y += dots
        if self.y > MAX_PAPER_DOTS:
            raise EscposDecodeError(f"job feeds more than {MAX_PAPER_DOTS} dots of paper", offset)

    def _x(self, width: int) -> int:
        return {1: (self.width - width) // 2, 2: self.width - width}.get(self.align, 0)

    def place(self, img: PILImage.Image, offset: int) -> None:
        """A block that takes its own rows of paper (raster image, QR, barcode)."""
        if img.width > self.width:
            img = img.crop((0, 0, self.width, img.height))  # beyond the print head: lost
        self.pieces.append((max(0, self._x(img.width)), self.y, img))
        self.advance(img.height, offset)

    def put(self, piece: PILImage.Image, text: str, offset: int) -> None:
        """Add a character or a bit-image column band to the line; a full line prints itself."""
        if self.x + piece.width > self.width and self.line:
            self.print_line(offset)
        self.line.append(piece)
        self.line_text.append(text)
        self.x += piece.width

    def char(self, ch: str, offset: int) -> None:
        self.put(_glyph(ch, self.font, self.bold, self.underline, self.inverse, self.size_w, self.size_h), ch, offset)

    def tab(self, offset: int) -> None:
        step = _CELLS[self.font][0] * self.size_w * _TAB_CHARS
        target = (self.x // step + 1) * step
        if target >= self.width:
            return
        self.put(PILImage.new("1", (target - self.x, 1), 1), " ", offset)

    def print_line(self, offset: int) -> bool:
        """Print the line buffer (aligned as the modes say now) and feed one line: the line
        spacing, or the line's height when that is taller. False when the buffer was empty."""
        if not self.line:
            return False
        height = max(p.height for p in self.line)
        img = PILImage.new("1", (self.x, height), 1)
        x = 0
        for piece in self.line:  # characters stand on a common baseline at the bottom
            img.paste(piece, (x, height - piece.height))
            x += piece.width
        text = "".join(self.line_text).rstrip()
        if text:
            self.texts.append(text)
        self.line, self.line_text, self.x = [], [], 0
        self.pieces.append((max(0, self._x(img.width)), self.y, img))
        self.advance(max(self.line_spacing, height), offset)
        return True

    def barcode(self, m: int, data: bytes, offset: int) -> str:
        bars, text = _barcode_picture(m, data, self.barcode_height, self.barcode_module)
        hri = None
        if self.hri:
            glyphs = [_glyph(ch, self.hri_font, False, 0, False, 1, 1) for ch in text]
            hri = PILImage.new("1", (sum(g.width for g in glyphs), max(g.height for g in glyphs)), 1)
            x = 0
            for g in glyphs:
                hri.paste(g, (x, 0))
                x += g.width
        if hri is not None and self.hri in (1, 3):
            self.place(hri, offset)
        self.place(bars, offset)
        if hri is not None and self.hri in (2, 3):
            self.place(hri, offset)
        return text

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


def _column_band(data: bytes, cmd: Command) -> PILImage.Image:
    """ESC * m n: n columns of 8 (m 0/1) or 24 (m 32/33) dots, top bit first; single density
    (m 0/32) prints each column two dots wide."""
    m, n = cmd.args
    rows = 24 if m >= 32 else 8
    per = rows // 8
    body = data[cmd.offset + 5:cmd.end]
    img = PILImage.new("1", (max(1, n), rows), 1)
    px = img.load()
    for col in range(n):
        for k in range(per):
            byte = body[col * per + k]
            for bit in range(8):
                if byte & (0x80 >> bit):
                    px[col, k * 8 + bit] = 0
    if m in (0, 32):
        img = img.resize((max(1, 2 * n), rows), PILImage.Resampling.NEAREST)
    return img


class _Graphics:
    """GS ( L: fn 112 stores a raster graphic in the print buffer, fn 50 prints it."""

    def __init__(self) -> None:
        self.stored: PILImage.Image | None = None

    def command(self, body: bytes, paper: _Paper, offset: int) -> bool:
        if len(body) < 2:
            return False
        fn = body[1]
        if fn in (50, 2):
            if self.stored is not None:
                paper.print_line(offset)
                paper.place(self.stored, offset)
                self.stored = None
            return True
        if fn == 112 and len(body) >= 10:
            # m fn a bx by c xL xH yL yH d…: a = '0' monochrome, bx/by scale 1 or 2
            bx, by, x, y = body[3], body[4], body[6] | body[7] << 8, body[8] | body[9] << 8
            row_bytes = (x + 7) // 8
            raw = body[10:10 + row_bytes * y]
            if body[2] != 48 or len(raw) < row_bytes * y or not x or not y or bx not in (1, 2) or by not in (1, 2):
                return False
            img = PILImage.frombytes("1", (row_bytes * 8, y), raw.translate(_INVERT)).crop((0, 0, x, y))
            self.stored = img.resize((x * bx, y * by), PILImage.Resampling.NEAREST) if (bx, by) != (1, 1) else img
            return True
        return False


#: commands that only ask or set something with no mark on the paper: handled by doing nothing
_NO_MARK = frozenset({"DLE EOT status", "DLE ENQ request", "ESC = select", "ESC c panel", "GS b smoothing",
                      "GS | density", "CR", "FS kanji"})


def decode_escpos(data: bytes, *, width_dots: int = 576, strict: bool = True) -> DecodedReceipt:
    """Replay an ESC/POS job onto paper: text in the printer's fonts with alignment, emphasis,
    underline, reverse and character size (ESC !, GS !), line spacing, raster (GS v 0), column
    (ESC *) and graphics (GS ( L) images, native QR (GS ( k) and 1D barcodes (GS k, GS h/w/H/f).

    Commands it does not draw are listed in `unhandled` ("NAME args @offset"). strict: unknown
    or truncated bytes raise EscposDecodeError (naming the offset) and nothing else does; not
    strict (what a printer does): unknown bytes are skipped and listed in `unhandled`."""
    data = bytes(data)
    paper = _Paper(width_dots)
    names: list[str] = []
    unhandled: list[str] = []
    barcodes: list[str] = []
    graphics = _Graphics()
    cuts = 0
    qr_data = b""
    qr_module = 3
    qr_ecc = qrcode.constants.ERROR_CORRECT_L
    qr_codes: list[str] = []
    i = 0
    while i < len(data):
        try:
            cmd = next_command(data, i)
        except _Truncated:
            if strict:
                raise EscposDecodeError("truncated command", i) from None
            unhandled.append(f"truncated command @{i}")
            break
        except EscposDecodeError as exc:
            if strict:
                raise
            # a prefix with an opcode no printer knows: drop both, so the opcode is not printed
            skip = 2 if data[i] in (ESC, GS, FS, DLE) and i + 1 < len(data) else 1
            unhandled.append(f"unknown bytes {data[i:i + skip].hex(' ')} @{exc.offset}")
            i += skip
            continue
        i = cmd.end
        names.append(cmd.name)
        at = cmd.offset
        name, args = cmd.name, cmd.args
        drawn = True
        if name == "text":
            for ch in args[0].decode("cp437"):
                paper.char(ch, at)
        elif name == "LF":
            if not paper.print_line(at):
                paper.advance(paper.line_spacing, at)
        elif name == "HT":
            paper.tab(at)
        elif name == "ESC d feed-lines":
            paper.print_line(at)
            paper.advance(paper.line_spacing * args[0], at)
        elif name == "ESC J feed-dots":
            paper.print_line(at)
            paper.advance(args[0], at)
        elif name == "ESC a align":
            paper.align = args[0] % 48 if args[0] % 48 <= 2 else 0
        elif name == "ESC E bold":
            paper.bold = bool(args[0] & 1)
        elif name == "ESC G double-strike":  # prints like emphasis on thermal heads
            paper.bold = bool(args[0] & 1)
        elif name == "ESC - underline":
            paper.underline = args[0] % 48 if args[0] % 48 <= 2 else 0
        elif name == "ESC M font":
            paper.font = 1 if args[0] % 48 == 1 else 0
            drawn = args[0] % 48 <= 1
        elif name == "ESC ! mode":
            n = args[0]
            paper.font, paper.bold = n & 1, bool(n & 0x08)
            paper.size_h, paper.size_w = (2 if n & 0x10 else 1), (2 if n & 0x20 else 1)
            paper.underline = 1 if n & 0x80 else 0
        elif name == "GS ! size":
            paper.size_w, paper.size_h = (args[0] >> 4 & 7) + 1, (args[0] & 7) + 1
        elif name == "GS B inverse":
            paper.inverse = bool(args[0] & 1)
        elif name == "ESC 2 line-spacing-default":
            paper.line_spacing = LINE_DOTS
        elif name == "ESC 3 line-spacing":
            paper.line_spacing = args[0]
        elif name == "ESC @ init":
            paper.reset()
        elif name == "ESC t codepage":
            drawn = args[0] == 0  # text is read as code page 437 (PC437, page 0)
        elif name == "ESC { upside-down":
            drawn = not args[0] & 1
        elif name == "GS h barcode-height":
            paper.barcode_height = max(1, args[0])
        elif name == "GS w barcode-width":
            paper.barcode_module = min(6, max(1, args[0]))
        elif name == "GS H hri-position":
            paper.hri = args[0] % 48 if args[0] % 48 <= 3 else 0
        elif name == "GS f hri-font":
            paper.hri_font = 1 if args[0] % 48 == 1 else 0
        elif name == "GS k barcode":
            paper.print_line(at)
            try:
                barcodes.append(paper.barcode(args[0], args[1], at))
            except (ValueError, UnicodeDecodeError, RuntimeError) as exc:
                drawn = False
                log.debug("barcode not drawn: %s", exc)
        elif name == "GS v 0 raster":
            paper.print_line(at)
            paper.place(_raster(data, *args), at)
        elif name == "ESC * column-image":
            paper.put(_column_band(data, cmd), "", at)
        elif name == "GS ( L graphics":
            drawn = graphics.command(args[0], paper, at)
        elif name == "GS V cut":
            paper.print_line(at)
            if args[0] in (65, 66, 97, 98, 103, 104):
                paper.advance(args[1], at)  # function B/C feed n before cutting
            cuts += 1
        elif name == "GS ( k 2d-code":
            cn, fn, body = args
            if cn != 0x31:  # PDF417 and others
                drawn = False
            elif fn == 67 and body:
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
            elif fn != 65:  # fn 65 selects the model: model 2 is what we draw
                drawn = False
        elif name not in _NO_MARK:
            drawn = False
        if not drawn:
            shown = "" if name == "text" else " ".join(str(a) for a in args if not isinstance(a, bytes))
            unhandled.append(f"{name}{' ' + shown if shown else ''} @{at}")
    paper.print_line(len(data))
    return DecodedReceipt(paper.image(), qr_codes, paper.texts, cuts, names, barcodes, unhandled)


__all__ = ["decode_escpos", "DecodedReceipt", "EscposDecodeError", "Command", "next_command",
           "split_commands", "LINE_DOTS"]
