"""Shaped Persian text with Pillow + libraqm: the bundled Vazirmatn fonts, measuring a line as
it will be drawn, greedy wrapping in logical order, and drawing one line right to left."""

from __future__ import annotations

import functools

from PIL import ImageDraw, ImageFont

from kiosk.paths import FONT_BOLD, FONT_REGULAR
from kiosk.text.bidi import tokens


@functools.lru_cache(maxsize=64)
def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """Vazirmatn at `size` pixels, shaped by raqm (joins Persian letters, orders bidi runs)."""
    path = FONT_BOLD if bold else FONT_REGULAR
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.RAQM)


def _language(direction: str) -> str | None:
    return "fa" if direction == "rtl" else None


@functools.lru_cache(maxsize=4096)
def text_length(text: str, face: ImageFont.FreeTypeFont, direction: str) -> float:
    """Advance width of one line in pixels, as `draw_line` will draw it. Cached: wrapping and
    aligning measure the same line two or three times, and each measure shapes it anew."""
    return face.getlength(text, direction=direction, language=_language(direction))


def wrap(text: str, face: ImageFont.FreeTypeFont, width: int, direction: str) -> list[str]:
    """Greedy wrap in logical order at spaces outside isolates; raqm reorders each line when
    it is drawn. A token wider than `width` gets a line of its own."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        if text_length(paragraph, face, direction) <= width:
            lines.append(paragraph)
            continue
        line = ""
        for token in tokens(paragraph):
            candidate = f"{line} {token}" if line else token
            if not line or text_length(candidate, face, direction) <= width:
                line = candidate
            else:
                lines.append(line)
                line = token
        lines.append(line)
    return lines


def draw_line(draw: ImageDraw.ImageDraw, x: int, y: int, text: str, face: ImageFont.FreeTypeFont,
              direction: str) -> None:
    """Draw one shaped line in black with its left edge at x."""
    draw.text((x, y), text, font=face, fill=0, direction=direction, language=_language(direction))


__all__ = ["draw_line", "font", "text_length", "wrap"]
