"""Printed-document layout: a small document model (headings, text, rows, QR, …) rendered with
Pillow + libraqm into 1-bit raster blocks, native QR parts and feeds — a PrintJob any ESC/POS
printer driver can encode.

ESC/POS code pages cannot print Persian (no پ چ ژ گ), so every line of text is shaped and
ordered by raqm (kiosk.text) and sent as a raster image; blank space is sent as feeds, not
white rows. The printer driver only encodes and sends what this renders.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from PIL import Image as PILImage
from PIL import ImageDraw

from devices.contracts import PrintJob, QRPayload
from devices.printer.qr import QR_DEFAULT_DOTS, SIDE_MARGIN_DOTS, qr_image, qr_matrix, qr_module_size
from kiosk.paths import FONT_BOLD, FONT_REGULAR
from kiosk.text.bidi import has_rtl_letters, ltr
from kiosk.text.shaping import draw_line, font, text_length, wrap

log = logging.getLogger("kiosk.receipts.layout")

#: dots left blank at each side of the paper (the print head reaches the edge, the cutter
#: and the citizen's thumb do not)
MARGIN_DOTS = SIDE_MARGIN_DOTS
#: height of one ESC/POS "line" feed in dots: the 1/6 inch default line spacing, taken as
#: 30 dots, the value Epson TM printers document for ESC 2 in their 180-unit motion grid
FEED_LINE_DOTS = 30


# --- the document model -------------------------------------------------------------------


@dataclass(frozen=True)
class Heading:
    """Bold, centred title."""

    text: str
    size: int = 34


@dataclass(frozen=True)
class Text:
    """A paragraph; wraps to the paper width. align: "start" | "center" | "end"."""

    text: str
    size: int = 24
    align: str = "start"
    bold: bool = False


@dataclass(frozen=True)
class Row:
    """Label at the start side, value at the end side (ids and amounts stay left-to-right)."""

    label: str
    value: str
    size: int = 24
    bold: bool = False


@dataclass(frozen=True)
class Separator:
    """A thin dashed rule across the paper."""


@dataclass(frozen=True)
class QR:
    """A QR code: the printer's native QR when it has one, else a raster image.
    size_dots is the wanted edge in dots (0 = a sensible default)."""

    data: str
    caption: str = ""
    size_dots: int = 0


@dataclass(frozen=True)
class Barcode:
    """A 1D barcode of digits: "code128" (code set C, two digits a symbol) or "itf"
    (Interleaved 2 of 5); both need an even number of digits. module_dots is the narrow bar
    (2..6, what GS w allows), height_dots the bar height (1..255, GS h). The caption (e.g.
    the digits) is printed under it. Printers with native codes get GS k (see barcode_command),
    others a raster picture of the same bars."""

    data: str
    symbology: str = "code128"
    height_dots: int = 80
    module_dots: int = 2
    caption: str = ""


@dataclass(frozen=True)
class Feed:
    """Blank paper, in printer lines."""

    lines: int = 1


@dataclass(frozen=True)
class Image:
    """A picture (logo, stamp); converted to 1-bit and centred, scaled down to fit."""

    image: Any  # PIL.Image.Image


@dataclass(frozen=True)
class Document:
    """A receipt: blocks top to bottom. direction "rtl" (Persian) or "ltr"."""

    blocks: tuple
    direction: str = "rtl"


# --- block rendering ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    width: int
    direction: str

    @property
    def inner(self) -> int:
        return self.width - 2 * MARGIN_DOTS


def _new_canvas(width: int, height: int) -> PILImage.Image:
    return PILImage.new("L", (width, max(1, height)), 255)


class _Lut(PILImage.ImagePointHandler):
    """A point table applied as it is. Image.point() given a list still rounds its 256 entries
    in Python on every call — ~40 calls a receipt, a quarter of a receipt's render time."""

    def __init__(self, table: list[int], mode: str | None = None) -> None:
        self.table, self.mode = table, mode

    def point(self, im: PILImage.Image) -> PILImage.Image:
        return im._new(im.im.point(self.table, self.mode))


_INK_THRESHOLD = 150
_TO_1BIT = _Lut([255 if v >= _INK_THRESHOLD else 0 for v in range(256)], "1")
_INK_LUT = _Lut([255 if v < _INK_THRESHOLD else 0 for v in range(256)], None)


def _to_1bit(img: PILImage.Image) -> PILImage.Image:
    # A fixed threshold keeps thin Persian strokes (dots of ب پ ت) that dithering would scatter.
    return img.point(_TO_1BIT)


def _x_for(align: str, text_w: float, ctx: _Ctx) -> int:
    """Left x of a line of width text_w for a logical alignment in the document direction."""
    left = MARGIN_DOTS
    right = ctx.width - MARGIN_DOTS - int(round(text_w))
    if align == "center":
        return max(left, (ctx.width - int(round(text_w))) // 2)
    start_is_right = ctx.direction == "rtl"
    if align == "end":
        start_is_right = not start_is_right
    return max(left, right) if start_is_right else left


def _render_paragraph(text: str, size: int, bold: bool, align: str, ctx: _Ctx) -> PILImage.Image:
    if align not in ("start", "center", "end"):
        raise ValueError(f"align must be 'start', 'center' or 'end', not {align!r}")
    face = font(size, bold)
    ascent, descent = face.getmetrics()
    line_h = ascent + descent
    lines = wrap(text, face, ctx.inner, ctx.direction)
    img = _new_canvas(ctx.width, line_h * len(lines))
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        w = text_length(line, face, ctx.direction)
        draw_line(draw, _x_for(align, w, ctx), i * line_h, line, face, ctx.direction)
    return img


def _render_row(row: Row, ctx: _Ctx) -> PILImage.Image:
    face = font(row.size, row.bold)
    ascent, descent = face.getmetrics()
    line_h = ascent + descent
    value_dir = "rtl" if has_rtl_letters(row.value) else "ltr"
    value_w = text_length(row.value, face, value_dir)
    gap = row.size  # at least one em between label and value
    label_lines = wrap(row.label, face, ctx.inner, ctx.direction)
    last_label_w = text_length(label_lines[-1], face, ctx.direction) if label_lines else 0
    value_on_own_line = last_label_w + gap + value_w > ctx.inner
    height = line_h * (len(label_lines) + (1 if value_on_own_line else 0))
    img = _new_canvas(ctx.width, height)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(label_lines):
        w = text_length(line, face, ctx.direction)
        draw_line(draw, _x_for("start", w, ctx), i * line_h, line, face, ctx.direction)
    value_y = (len(label_lines) if value_on_own_line else len(label_lines) - 1) * line_h
    draw_line(draw, _x_for("end", value_w, ctx), value_y, row.value, face, value_dir)
    return img


def _render_separator(ctx: _Ctx) -> PILImage.Image:
    img = _new_canvas(ctx.width, 18)
    draw = ImageDraw.Draw(img)
    for x in range(MARGIN_DOTS, ctx.width - MARGIN_DOTS, 12):
        draw.rectangle((x, 8, min(x + 7, ctx.width - MARGIN_DOTS - 1), 9), fill=0)
    return img


def _centered(img: PILImage.Image, ctx: _Ctx) -> PILImage.Image:
    img = img.convert("L")
    if img.width > ctx.width:
        height = max(1, round(img.height * ctx.width / img.width))
        img = img.resize((ctx.width, height), PILImage.Resampling.LANCZOS)
    canvas = _new_canvas(ctx.width, img.height)
    canvas.paste(img, ((ctx.width - img.width) // 2, 0))
    return canvas


# A rendered block is a list of parts: ("image", L-mode image) | ("qr", QRPayload) | ("feed", n)
_Part = tuple[str, Any]


@functools.lru_cache(maxsize=512)
def _render_text_block(block: Heading | Text | Row | Separator, width: int, direction: str) -> PILImage.Image:
    """Text blocks repeat from receipt to receipt (titles, labels, captions): shaping them is
    most of a receipt's layout time, so each distinct block is laid out once. The cached
    image is never modified: render() crops and converts copies."""
    return _render_block_uncached(block, _Ctx(width, direction), native_qr=True)[0][1]


def _render_block(block: Any, ctx: _Ctx, native_qr: bool) -> list[_Part]:
    if isinstance(block, (Heading, Text, Row, Separator)):
        return [("image", _render_text_block(block, ctx.width, ctx.direction))]
    return _render_block_uncached(block, ctx, native_qr)


def _render_block_uncached(block: Any, ctx: _Ctx, native_qr: bool) -> list[_Part]:
    if isinstance(block, Heading):
        return [("image", _render_paragraph(block.text, block.size, True, "center", ctx))]
    if isinstance(block, Text):
        return [("image", _render_paragraph(block.text, block.size, block.bold, block.align, ctx))]
    if isinstance(block, Row):
        return [("image", _render_row(block, ctx))]
    if isinstance(block, Separator):
        return [("image", _render_separator(ctx))]
    if isinstance(block, Feed):
        if block.lines < 0:
            raise ValueError(f"Feed lines must be >= 0, not {block.lines}")
        return [("feed", block.lines)] if block.lines else []
    if isinstance(block, Image):
        return [("image", _centered(block.image, ctx))]
    if isinstance(block, QR):
        if not block.data:
            raise ValueError("QR data must not be empty")
        module = qr_module_size(block.data, block.size_dots, ctx.width)
        parts: list[_Part]
        if native_qr:
            parts = [("qr", QRPayload(block.data, module))]
        else:
            parts = [("image", _centered(qr_image(block.data, module), ctx))]
        if block.caption:
            parts.append(("image", _render_text_block(Text(block.caption, 22, "center"), ctx.width, ctx.direction)))
        return parts
    if isinstance(block, Barcode):
        return _render_barcode(block, ctx, native_qr)
    raise TypeError(f"not a layout block: {type(block).__name__}")


#: GS k function B symbol types (Epson: 70 ITF, 73 CODE128)
_GS_K_TYPES = {"code128": 73, "itf": 70}
_ZXING_FORMATS = {"code128": "Code128", "itf": "ITF"}


class BarcodeCommand(str):
    """The raw ESC/POS of a native 1D barcode, carried as a ("text", …) PrintJob part: the
    driver's contract has no barcode part, and its text part sends an ASCII string as it is
    (every byte of these commands is below 0x80). `data` is the digits the symbol carries."""

    data: str

    def __new__(cls, command: str, data: str) -> "BarcodeCommand":
        obj = super().__new__(cls, command)
        obj.data = data
        return obj


def _check_barcode(block: Barcode) -> None:
    if block.symbology not in _GS_K_TYPES:
        raise ValueError(f"Barcode symbology must be one of {sorted(_GS_K_TYPES)}, not {block.symbology!r}")
    if not (block.data.isascii() and block.data.isdigit()) or len(block.data) % 2:
        raise ValueError(f"Barcode data must be an even number of ASCII digits, not {block.data!r}")
    if not 2 <= block.module_dots <= 6 or not 1 <= block.height_dots <= 255:
        raise ValueError(f"Barcode module_dots must be 2..6 and height_dots 1..255, "
                         f"not {block.module_dots}, {block.height_dots}")


def barcode_command(block: Barcode) -> BarcodeCommand:
    """GS k (function B) for the block, centred, no printer HRI (the caption is ours): GS h
    height, GS w module, GS H 0, ESC a 1, GS k m n data, ESC a 0. Code 128 data opens with
    "{C" and sends each pair of digits as one byte (00..99), as ESC/POS code set C wants."""
    _check_barcode(block)
    if block.symbology == "code128":
        body = "{C" + "".join(chr(int(block.data[i:i + 2])) for i in range(0, len(block.data), 2))
    else:
        body = block.data
    command = (f"\x1dh{chr(block.height_dots)}\x1dw{chr(block.module_dots)}\x1dH\x00\x1ba\x01"
               f"\x1dk{chr(_GS_K_TYPES[block.symbology])}{chr(len(body))}{body}\x1ba\x00")
    return BarcodeCommand(command, block.data)


@functools.lru_cache(maxsize=64)
def barcode_image(data: str, symbology: str = "code128", module_dots: int = 2,
                  height_dots: int = 80) -> PILImage.Image:
    """The bars of a Barcode block as a 1-bit image, no quiet zone: what a printer without
    native barcodes gets, drawn by zxing-cpp as the printer simulator draws GS k."""
    import numpy as np
    import zxingcpp

    _check_barcode(Barcode(data, symbology, height_dots, module_dots))
    code = zxingcpp.create_barcode(data, getattr(zxingcpp.BarcodeFormat, _ZXING_FORMATS[symbology]))
    row = np.asarray(code.to_image(scale=1, add_quiet_zones=False))[0] < 128
    bars = np.repeat(np.where(row, 0, 255).astype(np.uint8), module_dots)
    return PILImage.fromarray(np.tile(bars, (height_dots, 1)), "L").convert("1")


def _render_barcode(block: Barcode, ctx: _Ctx, native: bool) -> list[_Part]:
    bars = barcode_image(block.data, block.symbology, block.module_dots, block.height_dots)
    if bars.width > ctx.inner:
        raise ValueError(f"Barcode is {bars.width} dots wide, the paper prints {ctx.inner}")
    parts: list[_Part] = [("barcode", barcode_command(block)) if native else ("image", _centered(bars, ctx))]
    if block.caption:
        parts.append(("image", _render_text_block(Text(block.caption, 22, "center"), ctx.width, ctx.direction)))
    return parts


def _check(doc: Document, width_dots: int) -> None:
    if doc.direction not in ("rtl", "ltr"):
        raise ValueError(f"Document.direction must be 'rtl' or 'ltr', not {doc.direction!r}")
    if width_dots < 64 or width_dots % 8:
        raise ValueError(f"width_dots must be a multiple of 8 and >= 64, not {width_dots}")


def _blank_rows(img: PILImage.Image) -> tuple[int, int]:
    """(blank rows at the top, blank rows at the bottom) of an L-mode image, ink < 150."""
    ink = img.point(_INK_LUT)
    box = ink.getbbox()
    if box is None:
        return img.height, 0
    return box[1], img.height - box[3]


def render(doc: Document, *, width_dots: int = 576, native_qr: bool = True) -> PrintJob:
    """Lay out a document as a PrintJob: cropped 1-bit raster blocks, ("qr", data) parts when
    native_qr, and ("feed", n) wherever at least a printer line of paper would be white."""
    _check(doc, width_dots)
    ctx = _Ctx(width_dots, doc.direction)
    parts: list[_Part] = []
    pending_blank = 0  # white dots owed before the next ink

    def flush_blank() -> int:
        """Emit whole feed lines for the owed white space; return the leftover dots."""
        nonlocal pending_blank
        lines, rest = divmod(pending_blank, FEED_LINE_DOTS)
        if lines:
            parts.append(("feed", lines))
        pending_blank = 0
        return rest

    for block in doc.blocks:
        for kind, value in _render_block(block, ctx, native_qr):
            if kind == "feed":
                pending_blank += value * FEED_LINE_DOTS
            elif kind == "qr":
                flush_blank()
                parts.append((kind, value))
            elif kind == "barcode":
                flush_blank()
                parts.append(("text", value))
            else:
                top, bottom = _blank_rows(value)
                if top >= value.height:  # an all-white image is just paper
                    pending_blank += value.height
                    continue
                pending_blank += top
                rest = flush_blank()
                cropped = value.crop((0, top, value.width, value.height - bottom))
                if rest:  # less than a feed line of white: keep it as raster rows
                    padded = _new_canvas(value.width, cropped.height + rest)
                    padded.paste(cropped, (0, rest))
                    cropped = padded
                parts.append(("image", _to_1bit(cropped)))
                pending_blank = bottom
    flush_blank()
    return PrintJob(parts=_merge_images(parts))


def _merge_images(parts: list[_Part]) -> list[_Part]:
    """Stack adjacent raster parts into one, so the printer gets one GS v 0 per band."""
    merged: list[_Part] = []
    for kind, value in parts:
        if kind == "image" and merged and merged[-1][0] == "image":
            above = merged[-1][1]
            both = PILImage.new("1", (above.width, above.height + value.height), 1)
            both.paste(above, (0, 0))
            both.paste(value, (0, above.height))
            merged[-1] = ("image", both)
        else:
            merged.append((kind, value))
    return merged


def render_full_raster(doc: Document, *, width_dots: int = 576) -> PILImage.Image:
    """The whole document as ONE 1-bit image (QR as raster, feeds as white): what a driver
    without native QR or feeds would send, and what the simulator panel shows."""
    _check(doc, width_dots)
    ctx = _Ctx(width_dots, doc.direction)
    images: list[PILImage.Image] = []
    for block in doc.blocks:
        for kind, value in _render_block(block, ctx, native_qr=False):
            if kind == "feed":
                images.append(_new_canvas(width_dots, value * FEED_LINE_DOTS))
            else:
                images.append(value)
    height = sum(img.height for img in images) or 1
    page = _new_canvas(width_dots, height)
    y = 0
    for img in images:
        page.paste(img, (0, y))
        y += img.height
    return _to_1bit(page)


__all__ = [
    "Document", "Heading", "Text", "Row", "Separator", "QR", "Feed", "Image", "QRPayload",
    "render", "render_full_raster", "ltr", "qr_image", "qr_matrix", "qr_module_size",
    "FONT_REGULAR", "FONT_BOLD", "FEED_LINE_DOTS", "MARGIN_DOTS", "QR_DEFAULT_DOTS",
]
__all__ += ["Barcode", "BarcodeCommand", "barcode_command", "barcode_image"]
