"""Persian text for screens and paper: bidi isolates (`ltr`), shaping, measuring and wrapping
with the bundled Vazirmatn fonts. Digits, amounts and Jalali dates live in kiosk.fmt."""

from kiosk.text.bidi import LRI, PDI, has_rtl_letters, ltr, tokens
from kiosk.text.shaping import draw_line, font, text_length, wrap

__all__ = ["LRI", "PDI", "draw_line", "font", "has_rtl_letters", "ltr", "text_length", "tokens", "wrap"]
