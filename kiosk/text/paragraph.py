"""A paragraph for the touch screen, laid out the way the receipts are: wrapped in logical
order first, then each line shaped and ordered by raqm (Persian letters joined, numbers, ids
and Latin words kept left to right), right-aligned for Persian, left-aligned for English.

Kivy 2.3 cannot do this itself (its text providers either draw raw, unjoined letters or, with
HarfBuzz, reverse digits and Latin runs, and wrapping an already reordered string puts the
lines in the wrong order), so the screens draw text through here into a bitmap and show that.
No Kivy in this module: `screens.rtl.RTLLabel` only uploads the bitmap. The logical string is
the only one ever stored; shaping happens at draw time and is never kept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from kiosk.text.bidi import has_rtl_letters, tokens
from kiosk.text.shaping import font, text_length

#: line pitch as a multiple of the font size (Vazirmatn's ascent + descent is about 1.5 em)
LINE_SPACING = 1.6


def lay_out_lines(text: str, width_px: float, measure: Callable[[str], float]) -> list[str]:
    """Greedy wrap of `text` into lines no wider than `width_px`, in LOGICAL order (the first
    line holds the first words), at spaces outside bidi isolates; "\\n" starts a new paragraph.
    `measure(line)` is the drawn width of one shaped line. A word wider than the width gets a
    line of its own. Reordering for display happens per line, after this."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        if measure(paragraph) <= width_px:
            lines.append(paragraph)
            continue
        line = ""
        for token in tokens(paragraph):
            candidate = f"{line} {token}" if line else token
            if not line or measure(candidate) <= width_px:
                line = candidate
            else:
                lines.append(line)
                line = token
        lines.append(line)
    return lines


def direction_for(lang: str | None, text: str) -> str:
    """The base direction: the language's when known, else from the text's first letters."""
    if lang in ("fa", "en"):
        return "rtl" if lang == "fa" else "ltr"
    return "rtl" if has_rtl_letters(text) else "ltr"


@functools.lru_cache(maxsize=64)
def _metrics(size: int, bold: bool) -> tuple[int, int]:
    ascent, descent = font(size, bold).getmetrics()
    return ascent, descent


@dataclass(frozen=True)
class Paragraph:
    """A drawn paragraph: the RGBA bitmap (`image`, top row first), the logical lines it holds
    from top to bottom, and each line's left edge in the bitmap."""

    image: Image.Image
    lines: tuple[str, ...]
    line_height: int
    xs: tuple[int, ...]
    direction: str


def render_paragraph(text: str, width_px: int, size: int, *, lang: str | None = None, bold: bool = False,
                     color: tuple[int, int, int, int] = (0, 0, 0, 255), halign: str = "auto",
                     line_spacing: float = LINE_SPACING) -> Paragraph:
    """Wrap `text` to `width_px` and draw it: each line shaped by raqm in the base direction
    of `lang` (fa: right to left, en: left to right). `halign` auto puts Persian on the right
    and English on the left; left/center/right force it. The bitmap is `width_px` wide and as
    tall as the lines need (at least one line)."""
    width_px = max(1, int(width_px))
    direction = direction_for(lang, text)
    face = font(int(size), bold)
    lines = lay_out_lines(text, width_px, lambda s: text_length(s, face, direction)) if text else [""]
    ascent, descent = _metrics(int(size), bold)
    pitch = max(ascent + descent, int(round(size * line_spacing)))
    top_pad = (pitch - (ascent + descent)) // 2
    # coverage first, then one colour with that coverage as alpha (straight, not premultiplied,
    # alpha: what Kivy's default blending expects)
    mask = Image.new("L", (width_px, pitch * len(lines)), 0)
    draw = ImageDraw.Draw(mask)
    align = halign if halign != "auto" else ("right" if direction == "rtl" else "left")
    language = "fa" if direction == "rtl" else None
    xs: list[int] = []
    for i, line in enumerate(lines):
        w = text_length(line, face, direction) if line else 0.0
        if align == "right":
            x = int(round(width_px - w))
        elif align == "center":
            x = int(round((width_px - w) / 2))
        else:
            x = 0
        x = max(0, x) if w <= width_px else (int(round(width_px - w)) if align == "right" else 0)
        xs.append(x)
        if line:
            draw.text((x, i * pitch + top_pad), line, font=face, fill=255, direction=direction,
                      language=language)
    r, g, b, a = color
    alpha = mask if a == 255 else mask.point(lambda v: v * a // 255)
    image = Image.merge("RGBA", (*(Image.new("L", mask.size, c) for c in (r, g, b)), alpha))
    return Paragraph(image, tuple(lines), pitch, tuple(xs), direction)


def measure_line(text: str, size: int, *, lang: str | None = None, bold: bool = False) -> float:
    """The drawn width of `text` on one line (no wrapping), in pixels."""
    return text_length(text, font(int(size), bold), direction_for(lang, text))


__all__ = ["LINE_SPACING", "Paragraph", "direction_for", "lay_out_lines", "measure_line", "render_paragraph"]
