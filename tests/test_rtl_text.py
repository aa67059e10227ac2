"""Persian text on the screens (kiosk.text.paragraph, drawn by screens.rtl.RTLLabel): wrapping in
logical order, then each line shaped and ordered by raqm. Checked on the pixels drawn: the
first words on the top line, Persian letters joined, numbers and Latin words left to right."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from kiosk.paths import FONT_REGULAR
from kiosk.text import ltr
from kiosk.text.paragraph import lay_out_lines, measure_line, render_paragraph

SIZE = 40


def _ink(img: Image.Image) -> np.ndarray:
    """Coverage 0..255 of a drawn paragraph (its alpha)."""
    return np.asarray(img.getchannel("A"), dtype=np.float32)


def _crop(a: np.ndarray) -> np.ndarray:
    rows = np.where(a.max(axis=1) > 40)[0]
    cols = np.where(a.max(axis=0) > 40)[0]
    return a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _best_match(template: np.ndarray, image: np.ndarray) -> float:
    """The smallest mean absolute difference of `template` over every placement in `image`."""
    th, tw = template.shape
    ih, iw = image.shape
    best = float("inf")
    for y in range(0, ih - th + 1):
        for x in range(0, iw - tw + 1):
            d = float(np.abs(image[y:y + th, x:x + tw] - template).mean())
            best = min(best, d)
    return best


def _alone(text: str, lang: str) -> np.ndarray:
    return _crop(_ink(render_paragraph(text, 2000, SIZE, lang=lang).image))


def test_wrapping_keeps_logical_order_and_fits_the_width() -> None:
    words = [f"کلمه{i}" for i in range(1, 25)]
    text = " ".join(words)
    width = 400
    lines = lay_out_lines(text, width, lambda s: measure_line(s, SIZE, lang="fa"))
    assert len(lines) > 3
    assert " ".join(lines).split() == words  # the first words are on the first line
    assert all(measure_line(line, SIZE, lang="fa") <= width for line in lines)
    assert lay_out_lines("الف\nب", 1000, len) == ["الف", "ب"]  # a newline starts a paragraph


def test_an_isolated_id_is_never_split() -> None:
    text = f"شماره تراکنش {ltr('K1 2026 0001')} است"
    lines = lay_out_lines(text, 3, len)  # every token on its own line
    assert ltr("K1 2026 0001") in lines


def test_the_first_line_is_drawn_on_top() -> None:
    first = "پرداخت با موفقیت انجام شد"
    second = "رسید را نگه دارید"
    width = int(max(measure_line(first, SIZE, lang="fa"), measure_line(second, SIZE, lang="fa"))) + 10
    para = render_paragraph(f"{first} {second}", width, SIZE, lang="fa")
    assert para.lines == (first, second)
    ink = _ink(para.image)
    top, bottom = ink[:para.line_height], ink[para.line_height:]
    assert _best_match(_alone(first, "fa"), top) < 3
    assert _best_match(_alone(second, "fa"), bottom) < 3
    assert _best_match(_alone(second, "fa"), top) > 20  # the check tells the lines apart


def test_persian_lines_are_right_aligned_and_english_left_aligned() -> None:
    fa = render_paragraph("سلام", 600, SIZE, lang="fa")
    en = render_paragraph("Hello", 600, SIZE, lang="en")
    fa_cols = np.where(_ink(fa.image).max(axis=0) > 40)[0]
    en_cols = np.where(_ink(en.image).max(axis=0) > 40)[0]
    assert fa_cols[-1] > 580 and fa_cols[0] > 400
    assert en_cols[0] < 20 and en_cols[-1] < 200


def _gaps(a: np.ndarray) -> int:
    """Blank columns between the first and the last inked column."""
    cols = a.max(axis=0) > 40
    idx = np.where(cols)[0]
    return int((~cols[idx[0]:idx[-1] + 1]).sum())


def test_persian_letters_are_joined() -> None:
    joined = _ink(render_paragraph("بببب", 600, SIZE, lang="fa").image)
    assert _gaps(joined) == 0  # one connected stroke along the baseline
    # the same letters without shaping (each drawn in its isolated form) stand apart: the
    # check would catch unjoined text
    basic = ImageFont.truetype(str(FONT_REGULAR), SIZE, layout_engine=ImageFont.Layout.BASIC)
    img = Image.new("L", (600, 100), 0)
    ImageDraw.Draw(img).text((0, 0), "بببب", font=basic, fill=255)
    assert _gaps(np.asarray(img, dtype=np.float32)) > 0


def test_numbers_stay_left_to_right_inside_persian() -> None:
    line = _ink(render_paragraph("شماره تراکنش ۱۲۳۴۵ است", 1200, SIZE, lang="fa").image)
    right = _best_match(_alone("۱۲۳۴۵", "fa"), line)
    reversed_ = _best_match(_alone("۵۴۳۲۱", "fa"), line)
    # the digits inside the line sit at a fractional x, so their anti-aliased edges differ a
    # little from the number drawn alone; drawn backwards they differ everywhere
    assert right < 25, right
    assert reversed_ > 2.5 * right, (right, reversed_)


def test_latin_words_and_ids_stay_left_to_right_inside_persian() -> None:
    text = f"کارت VISA با کد رهگیری {ltr('TX-2026-77')} پذیرفته شد"
    line = _ink(render_paragraph(text, 1600, SIZE, lang="fa").image)
    for word, backwards in (("VISA", "ASIV"), ("TX-2026-77", "77-2026-TX")):
        right = _best_match(_alone(word, "en"), line)
        wrong = _best_match(_alone(backwards, "en"), line)
        assert right < 3 and wrong > 3 * right + 10, (word, right, wrong)


def test_a_wrapped_mixed_paragraph_keeps_every_line_in_order() -> None:
    text = "مبلغ ۲۰۰٬۰۰۰ ریال برای کارت 7748317800142 پرداخت شد و رسید چاپ می‌شود"
    para = render_paragraph(text, 420, SIZE, lang="fa")
    assert len(para.lines) >= 3
    assert " ".join(para.lines) == text
    ink = _ink(para.image)
    for i, line in enumerate(para.lines):
        band = ink[i * para.line_height:(i + 1) * para.line_height]
        assert _best_match(_alone(line, "fa"), band) < 3, line
