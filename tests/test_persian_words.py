"""Amounts in words (kiosk.text.words): hand-checked Persian and English values, the cheque
convention («یک هزار», groups joined with «و», zero groups left out) and the range limits."""

from __future__ import annotations

import pytest

from kiosk.text.words import (MAX_WORDS, number_to_words_en, number_to_words_fa, rials_in_words,
                              rials_in_words_en, rials_in_words_fa)

# written out by hand, the way a cheque is filled in
FA_CASES = [
    (0, "صفر"),
    (1, "یک"),
    (9, "نه"),
    (10, "ده"),
    (11, "یازده"),
    (12, "دوازده"),
    (15, "پانزده"),
    (16, "شانزده"),
    (18, "هجده"),
    (19, "نوزده"),
    (20, "بیست"),
    (21, "بیست و یک"),
    (99, "نود و نه"),
    (100, "صد"),
    (101, "صد و یک"),
    (110, "صد و ده"),
    (200, "دویست"),
    (300, "سیصد"),
    (345, "سیصد و چهل و پنج"),
    (500, "پانصد"),
    (999, "نهصد و نود و نه"),
    (1000, "یک هزار"),
    (1001, "یک هزار و یک"),
    (1100, "یک هزار و صد"),
    (2000, "دو هزار"),
    (12_000, "دوازده هزار"),
    (17_000, "هفده هزار"),
    (100_000, "صد هزار"),
    (250_000, "دویست و پنجاه هزار"),
    (1_000_000, "یک میلیون"),
    (1_000_001, "یک میلیون و یک"),
    (1_250_000, "یک میلیون و دویست و پنجاه هزار"),
    (4_570_000, "چهار میلیون و پانصد و هفتاد هزار"),
    (10_000_000, "ده میلیون"),
    (1_000_000_000, "یک میلیارد"),
    (2_300_000_000, "دو میلیارد و سیصد میلیون"),
    (1_000_000_000_000, "یک تریلیون"),
    (999_999_999_999_999, "نهصد و نود و نه تریلیون و نهصد و نود و نه میلیارد و نهصد و نود و نه میلیون"
                          " و نهصد و نود و نه هزار و نهصد و نود و نه"),
    (10**15, "یک هزار تریلیون"),
]

EN_CASES = [
    (0, "zero"),
    (1, "one"),
    (13, "thirteen"),
    (21, "twenty-one"),
    (101, "one hundred one"),
    (1000, "one thousand"),
    (1_250_000, "one million two hundred fifty thousand"),
    (2_300_000_000, "two billion three hundred million"),
    (10**15, "one thousand trillion"),
]


@pytest.mark.parametrize(("n", "words"), FA_CASES)
def test_persian_words_match_the_hand_written_amount(n: int, words: str) -> None:
    assert number_to_words_fa(n) == words


@pytest.mark.parametrize(("n", "words"), EN_CASES)
def test_english_words_match_the_hand_written_amount(n: int, words: str) -> None:
    assert number_to_words_en(n) == words


def test_rials_carry_the_unit() -> None:
    assert rials_in_words_fa(1_250_000) == "یک میلیون و دویست و پنجاه هزار ریال"
    assert rials_in_words_en(1_250_000) == "one million two hundred fifty thousand rials"
    assert rials_in_words_en(1) == "one rial"
    assert rials_in_words(17_000) == "هفده هزار ریال"
    assert rials_in_words(17_000, "en") == "seventeen thousand rials"
    with pytest.raises(ValueError):
        rials_in_words(1, "de")


def test_every_group_has_its_count_and_no_word_is_doubled() -> None:
    # the cheque rule over a sweep: no bare «هزار» at the start, no «و و», no leading/trailing «و»
    for n in list(range(0, 3000, 7)) + [10**k + d for k in range(3, 16) for d in (0, 1, 999)]:
        if n > MAX_WORDS:
            continue
        words = number_to_words_fa(n)
        assert not words.startswith(("هزار", "میلیون", "میلیارد", "تریلیون", "و ")), (n, words)
        assert " و و " not in words and not words.endswith(" و"), (n, words)
        assert "  " not in words, (n, words)


@pytest.mark.parametrize("bad", [-1, MAX_WORDS + 1])
def test_out_of_range_is_refused(bad: int) -> None:
    with pytest.raises(ValueError):
        number_to_words_fa(bad)
    with pytest.raises(ValueError):
        number_to_words_en(bad)


@pytest.mark.parametrize("bad", [True, 1.0, "12"])
def test_non_integers_are_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        number_to_words_fa(bad)  # type: ignore[arg-type]
