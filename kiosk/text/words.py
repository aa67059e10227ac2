"""Amounts in words, as a cheque or a fee slip writes them under the figures: Persian
(«یک میلیون و دویست و پنجاه هزار ریال») and English ("one million two hundred fifty thousand
rials"), for 0 … 10^15.

Convention (the one Iranian banks print on cheques and slips): every group of three digits is
written with its own count, so 1000 is «یک هزار» and 1 000 000 «یک میلیون», never a bare
«هزار» — a word cannot be put in front of an amount that already starts with its count.
Groups and the parts inside a group are joined with « و »; zero groups are left out
(1 000 001 → «یک میلیون و یک»). The short scale is used: میلیون 10^6, میلیارد 10^9,
تریلیون 10^12; 10^15 is «یک هزار تریلیون». «هجده» (18) follows the Academy's spelling.
"""

from __future__ import annotations

#: the largest amount written out: a thousand trillion rials is far past any fee
MAX_WORDS = 10**15

_FA_ONES = ("", "یک", "دو", "سه", "چهار", "پنج", "شش", "هفت", "هشت", "نه")
_FA_TEENS = ("ده", "یازده", "دوازده", "سیزده", "چهارده", "پانزده", "شانزده", "هفده", "هجده", "نوزده")
_FA_TENS = ("", "", "بیست", "سی", "چهل", "پنجاه", "شصت", "هفتاد", "هشتاد", "نود")
_FA_HUNDREDS = ("", "صد", "دویست", "سیصد", "چهارصد", "پانصد", "ششصد", "هفتصد", "هشتصد", "نهصد")
_FA_SCALES = ("", "هزار", "میلیون", "میلیارد", "تریلیون")
_FA_AND = " و "

_EN_ONES = ("", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_EN_TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
             "eighteen", "nineteen")
_EN_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_EN_SCALES = ("", "thousand", "million", "billion", "trillion")


def _check(n: int) -> None:
    # bool is an int subclass: True rials is a bug, not an amount
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"amount must be an int, not {type(n).__name__}")
    if not 0 <= n <= MAX_WORDS:
        raise ValueError(f"amount must be 0..{MAX_WORDS:,}, not {n:,}")


def _groups(n: int) -> list[tuple[int, int]]:
    """(value, scale index) of the non-zero 3-digit groups, most significant first. The top
    scale (trillions) takes whatever is left, so 10^15 is (1000, 4)."""
    out: list[tuple[int, int]] = []
    top = len(_FA_SCALES) - 1
    for scale in range(top, 0, -1):
        unit = 1000**scale
        value, n = divmod(n, unit)
        if value:
            out.append((value, scale))
    if n:
        out.append((n, 0))
    return out


def _fa_below_1000(n: int) -> str:
    parts: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        parts.append(_FA_HUNDREDS[hundreds])
    if 10 <= rest < 20:
        parts.append(_FA_TEENS[rest - 10])
    else:
        tens, ones = divmod(rest, 10)
        if tens:
            parts.append(_FA_TENS[tens])
        if ones:
            parts.append(_FA_ONES[ones])
    return _FA_AND.join(parts)


def number_to_words_fa(n: int) -> str:
    """n in Persian words: 0 → «صفر», 101 → «صد و یک», 1000 → «یک هزار»,
    1 250 000 → «یک میلیون و دویست و پنجاه هزار». TypeError/ValueError outside 0..10^15."""
    _check(n)
    if n == 0:
        return "صفر"
    words: list[str] = []
    for value, scale in _groups(n):
        count = number_to_words_fa(value) if value >= 1000 else _fa_below_1000(value)
        words.append(f"{count} {_FA_SCALES[scale]}" if scale else count)
    return _FA_AND.join(words)


def rials_in_words_fa(n: int) -> str:
    """An amount in rials as a slip writes it: «یک میلیون و دویست و پنجاه هزار ریال»."""
    return f"{number_to_words_fa(n)} ریال"


def _en_below_1000(n: int) -> str:
    parts: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        parts.append(f"{_EN_ONES[hundreds]} hundred")
    if 10 <= rest < 20:
        parts.append(_EN_TEENS[rest - 10])
    elif rest:
        tens, ones = divmod(rest, 10)
        if tens and ones:
            parts.append(f"{_EN_TENS[tens]}-{_EN_ONES[ones]}")
        else:
            parts.append(_EN_TENS[tens] or _EN_ONES[ones])
    return " ".join(parts)


def number_to_words_en(n: int) -> str:
    """n in English words, same groups as the Persian: 1000 → "one thousand",
    1 250 000 → "one million two hundred fifty thousand", 21 → "twenty-one"."""
    _check(n)
    if n == 0:
        return "zero"
    words: list[str] = []
    for value, scale in _groups(n):
        count = number_to_words_en(value) if value >= 1000 else _en_below_1000(value)
        words.append(f"{count} {_EN_SCALES[scale]}" if scale else count)
    return " ".join(words)


def rials_in_words_en(n: int) -> str:
    """"one million two hundred fifty thousand rials" ("one rial" for 1)."""
    return f"{number_to_words_en(n)} {'rial' if n == 1 else 'rials'}"


def rials_in_words(n: int, lang: str = "fa") -> str:
    """rials_in_words_fa or rials_in_words_en by lang ("fa" | "en")."""
    if lang == "fa":
        return rials_in_words_fa(n)
    if lang == "en":
        return rials_in_words_en(n)
    raise ValueError(f"lang must be 'fa' or 'en', not {lang!r}")


__all__ = ["MAX_WORDS", "number_to_words_en", "number_to_words_fa", "rials_in_words", "rials_in_words_en",
           "rials_in_words_fa"]
