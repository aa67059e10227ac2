"""Display formatting, Persian first: Persian digits, rials/tomans with the Arabic thousands
separator, and Jalali (Solar Hijri) dates in Tehran time."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from kiosk.sensitive import to_ascii_digits, to_persian_digits

TEHRAN = ZoneInfo("Asia/Tehran")

#: U+066C ARABIC THOUSANDS SEPARATOR and U+066B ARABIC DECIMAL SEPARATOR, what Persian print uses
FA_THOUSANDS = "\u066c"
FA_DECIMAL = "\u066b"

LANGS = ("fa", "en")

#: Persian and Arabic-Indic digits to ASCII (kiosk.sensitive.to_ascii_digits, which owns the
#: digit tables; to_persian_digits is re-exported from there too)
to_latin_digits = to_ascii_digits


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, not {lang!r}")


def _check_int(n: int, what: str) -> None:
    # bool is an int subclass; True rials is a bug, not an amount.
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"{what} must be an int, not {type(n).__name__}")


def format_number(n: int, lang: str = "fa") -> str:
    """An integer with thousands grouping: "۱۷٬۰۰۰" in fa, "17,000" in en."""
    _check_int(n, "number")
    _check_lang(lang)
    grouped = f"{n:,}"
    if lang == "fa":
        return to_persian_digits(grouped.replace(",", FA_THOUSANDS))
    return grouped


def format_rials(n: int, lang: str = "fa") -> str:
    """An amount in rials: "۱۷٬۰۰۰ ریال" (fa) or "17,000 rials" (en)."""
    number = format_number(n, lang)
    return f"{number} ریال" if lang == "fa" else f"{number} rials"


def format_toman(n_rials: int, lang: str = "fa") -> str:
    """A rial amount shown in tomans (1 toman = 10 rials): "۱٬۷۰۰ تومان" / "1,700 tomans".
    A remainder of rials shows as one decimal ("۱٬۷۰۰٫۵ تومان") rather than being dropped."""
    _check_int(n_rials, "n_rials")
    _check_lang(lang)
    whole, rest = divmod(abs(n_rials), 10)
    number = format_number(whole, lang)
    if rest:
        number += (FA_DECIMAL if lang == "fa" else ".") + (to_persian_digits(rest) if lang == "fa" else str(rest))
    if n_rials < 0:
        number = "-" + number
    return f"{number} تومان" if lang == "fa" else f"{number} tomans"


# --- Jalali (Solar Hijri) calendar ----------------------------------------------------------
#
# The arithmetic below is the well-known "jalaali" algorithm (Kazimierz Borkowski's, as used by
# jalaali-js / jalaali-python): the years where the 33-year leap pattern shifts are listed in
# _BREAKS; between them leaps follow the 33-year cycle. It matches the astronomical Iranian
# calendar for 1 … 3177 AP, which covers every date a kiosk will print.

_BREAKS = (-61, 9, 38, 199, 426, 686, 756, 818, 1111, 1181, 1210, 1635, 2060, 2097, 2192, 2262,
           2324, 2394, 2456, 3178)


def _div(a: int, b: int) -> int:
    """Integer division truncating toward zero, as the reference algorithm's ~~(a / b)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _mod(a: int, b: int) -> int:
    """Remainder with the sign of a, as the reference algorithm's a - ~~(a / b) * b."""
    return a - _div(a, b) * b


def _jal_cal(jy: int) -> tuple[int, int, int]:
    """(years since the last leap year 0..4, Gregorian year of Farvardin 1, its March day)."""
    if not _BREAKS[0] <= jy < _BREAKS[-1]:
        raise ValueError(f"Jalali year {jy} is outside {_BREAKS[0]}..{_BREAKS[-1] - 1}")
    gy = jy + 621
    leap_j = -14
    jp = _BREAKS[0]
    jump = 0
    for jm in _BREAKS[1:]:
        jump = jm - jp
        if jy < jm:
            break
        leap_j += _div(jump, 33) * 8 + _div(_mod(jump, 33), 4)
        jp = jm
    n = jy - jp
    leap_j += _div(n, 33) * 8 + _div(_mod(n, 33) + 3, 4)
    if _mod(jump, 33) == 4 and jump - n == 4:
        leap_j += 1
    leap_g = _div(gy, 4) - _div((_div(gy, 100) + 1) * 3, 4) - 150
    march = 20 + leap_j - leap_g
    if jump - n < 6:
        n = n - jump + _div(jump + 4, 33) * 33
    leap = _mod(_mod(n + 1, 33) - 1, 4)
    if leap == -1:
        leap = 4
    return leap, gy, march


def is_jalali_leap(jy: int) -> bool:
    """Whether Esfand of year jy has 30 days."""
    return _jal_cal(jy)[0] == 0


def jalali_month_length(jy: int, jm: int) -> int:
    if not 1 <= jm <= 12:
        raise ValueError(f"Jalali month must be 1..12, not {jm}")
    if jm <= 6:
        return 31
    if jm <= 11:
        return 30
    return 30 if is_jalali_leap(jy) else 29


def jalali_to_gregorian(jy: int, jm: int, jd: int) -> dt.date:
    """The Gregorian date of Jalali jy/jm/jd; ValueError for a day that does not exist."""
    if not 1 <= jd <= jalali_month_length(jy, jm):
        raise ValueError(f"{jy}/{jm}/{jd} is not a Jalali date")
    _, gy, march = _jal_cal(jy)
    farvardin_1 = dt.date(gy, 3, march)
    # months 1..6 have 31 days, 7..11 have 30
    offset = (jm - 1) * 31 - max(0, jm - 7) + jd - 1
    return farvardin_1 + dt.timedelta(days=offset)


def gregorian_to_jalali(date: dt.date) -> tuple[int, int, int]:
    """(year, month, day) in the Jalali calendar. A datetime is taken at its own wall date:
    convert it to Tehran time first (format_datetime does)."""
    if isinstance(date, dt.datetime):
        date = date.date()
    jy = date.year - 621
    leap, gy, march = _jal_cal(jy)
    k = date.toordinal() - dt.date(gy, 3, march).toordinal()
    if k >= 0:
        if k <= 185:
            return jy, 1 + k // 31, k % 31 + 1
        k -= 186
    else:
        jy -= 1
        k += 179
        if leap == 1:  # the previous Jalali year was a leap year: Esfand had 30 days
            k += 1
    return jy, 7 + k // 30, k % 30 + 1


def format_jalali_date(date: dt.date, lang: str = "fa") -> str:
    """"۱۴۰۴/۰۹/۰۷" (fa) or "1404/09/07" (en)."""
    _check_lang(lang)
    y, m, d = gregorian_to_jalali(date)
    text = f"{y:04d}/{m:02d}/{d:02d}"
    return to_persian_digits(text) if lang == "fa" else text


def format_datetime(moment: dt.datetime, lang: str = "fa") -> str:
    """A moment in Tehran time: Jalali with Persian digits in fa ("۱۴۰۴/۰۹/۰۷ ۱۴:۳۲"),
    Gregorian ISO-like in en ("2025-11-28 14:32"). A naive datetime is refused: its zone
    would be a guess, and a receipt's time must not be."""
    _check_lang(lang)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("format_datetime needs an aware datetime (naive time has no zone)")
    local = moment.astimezone(TEHRAN)
    if lang == "fa":
        return f"{format_jalali_date(local, 'fa')} {to_persian_digits(f'{local:%H:%M}')}"
    return f"{local:%Y-%m-%d %H:%M}"


__all__ = [
    "FA_DECIMAL",
    "FA_THOUSANDS",
    "TEHRAN",
    "format_datetime",
    "format_jalali_date",
    "format_number",
    "format_rials",
    "format_toman",
    "gregorian_to_jalali",
    "is_jalali_leap",
    "jalali_month_length",
    "jalali_to_gregorian",
    "to_latin_digits",
    "to_persian_digits",
]
