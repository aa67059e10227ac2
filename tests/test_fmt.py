"""Persian display formatting: digits, rials/tomans, and Jalali dates in Tehran time."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.fmt import (
    format_datetime,
    format_jalali_date,
    format_number,
    format_rials,
    format_toman,
    gregorian_to_jalali,
    is_jalali_leap,
    jalali_month_length,
    jalali_to_gregorian,
    to_latin_digits,
    to_persian_digits,
)

UTC = dt.UTC


def test_latin_and_arabic_indic_digits_become_persian_and_back() -> None:
    assert to_persian_digits("Bill 7748317800142") == "Bill ۷۷۴۸۳۱۷۸۰۰۱۴۲"
    assert to_persian_digits("٤٥٦") == "۴۵۶"
    assert to_persian_digits(1405) == "۱۴۰۵"
    assert to_latin_digits("۱۲۳٤٥٦") == "123456"


@pytest.mark.parametrize(("rials", "fa", "en"), [
    (0, "۰ ریال", "0 rials"),
    (1000, "۱٬۰۰۰ ریال", "1,000 rials"),
    (17_000, "۱۷٬۰۰۰ ریال", "17,000 rials"),
    (1_234_567_890, "۱٬۲۳۴٬۵۶۷٬۸۹۰ ریال", "1,234,567,890 rials"),
])
def test_rials_are_grouped_with_the_arabic_thousands_separator_in_persian(rials: int, fa: str, en: str) -> None:
    assert format_rials(rials) == fa
    assert format_rials(rials, "fa") == fa
    assert format_rials(rials, "en") == en
    if rials >= 1000:
        assert "\u066c" in fa and "," not in fa


def test_tomans_are_a_tenth_of_rials_and_keep_a_remainder_as_a_decimal() -> None:
    assert format_toman(17_000) == "۱٬۷۰۰ تومان"
    assert format_toman(17_000, "en") == "1,700 tomans"
    assert format_toman(17_005) == "۱٬۷۰۰٫۵ تومان"
    assert format_toman(17_005, "en") == "1,700.5 tomans"
    assert format_toman(-50) == "-۵ تومان"


@pytest.mark.parametrize("bad", [True, 17.0, "17000", None])
def test_an_amount_that_is_not_an_int_is_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        format_rials(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_toman(bad)  # type: ignore[arg-type]


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError):
        format_number(1, "de")
    with pytest.raises(ValueError):
        format_datetime(dt.datetime(2025, 1, 1, tzinfo=UTC), "ar")


# Each pair checked independently of this code: Nowruz falls on the day of the March equinox
# when it comes before noon Tehran time, else the next day (2024: 06:36 → Mar 20; 2025: 12:31 →
# Mar 21; 2026: 18:16 → Mar 21). 22 Bahman 1357 is the revolution's day, 1979-02-11.
# 1404/09/07: Farvardin 1 = 2025-03-21, plus 6×31 + 2×30 + 6 = 252 days = 2025-11-28.
KNOWN_PAIRS = [
    (dt.date(2024, 3, 20), (1403, 1, 1)),
    (dt.date(2025, 3, 20), (1403, 12, 30)),  # 1403 is a leap year: Esfand has 30 days
    (dt.date(2025, 3, 21), (1404, 1, 1)),
    (dt.date(2026, 3, 21), (1405, 1, 1)),
    (dt.date(2025, 11, 28), (1404, 9, 7)),
    (dt.date(1979, 2, 11), (1357, 11, 22)),
    (dt.date(2023, 3, 21), (1402, 1, 1)),
]


@pytest.mark.parametrize(("gregorian", "jalali"), KNOWN_PAIRS)
def test_known_gregorian_dates_convert_to_their_jalali_dates_and_back(
        gregorian: dt.date, jalali: tuple[int, int, int]) -> None:
    assert gregorian_to_jalali(gregorian) == jalali
    assert jalali_to_gregorian(*jalali) == gregorian


def test_leap_years_follow_the_known_sequence() -> None:
    assert [y for y in range(1395, 1412) if is_jalali_leap(y)] == [1395, 1399, 1403, 1408]
    assert jalali_month_length(1404, 12) == 29 and jalali_month_length(1403, 12) == 30
    assert jalali_month_length(1404, 6) == 31 and jalali_month_length(1404, 7) == 30


@pytest.mark.parametrize(("y", "m", "d"), [(1404, 12, 30), (1404, 13, 1), (1404, 7, 31), (1404, 1, 0)])
def test_a_jalali_day_that_does_not_exist_is_refused(y: int, m: int, d: int) -> None:
    with pytest.raises(ValueError):
        jalali_to_gregorian(y, m, d)


def test_every_day_from_1900_to_2100_is_the_next_jalali_day_after_the_one_before() -> None:
    day = dt.date(1900, 1, 1)
    prev = gregorian_to_jalali(day)
    while day < dt.date(2100, 12, 31):
        day += dt.timedelta(days=1)
        y, m, d = gregorian_to_jalali(day)
        py, pm, pd = prev
        if pd < jalali_month_length(py, pm):
            assert (y, m, d) == (py, pm, pd + 1), day
        elif pm < 12:
            assert (y, m, d) == (py, pm + 1, 1), day
        else:
            assert (y, m, d) == (py + 1, 1, 1), day
        prev = (y, m, d)


@settings(max_examples=2000, deadline=None)
@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)))
def test_jalali_round_trip_returns_the_same_gregorian_date(date: dt.date) -> None:
    jy, jm, jd = gregorian_to_jalali(date)
    assert 1 <= jm <= 12 and 1 <= jd <= jalali_month_length(jy, jm)
    assert jalali_to_gregorian(jy, jm, jd) == date


def test_datetimes_show_in_tehran_time_jalali_in_persian_and_gregorian_in_english() -> None:
    moment = dt.datetime(2025, 11, 28, 11, 2, tzinfo=UTC)  # 14:32 in Tehran (UTC+03:30)
    assert format_datetime(moment) == "۱۴۰۴/۰۹/۰۷ ۱۴:۳۲"
    assert format_datetime(moment, "en") == "2025-11-28 14:32"
    assert format_jalali_date(moment.date(), "en") == "1404/09/07"


def test_a_utc_evening_is_already_the_next_day_in_tehran() -> None:
    moment = dt.datetime(2025, 12, 20, 21, 0, tzinfo=UTC)
    assert format_datetime(moment) == "۱۴۰۴/۰۹/۳۰ ۰۰:۳۰"
    assert format_datetime(moment, "en") == "2025-12-21 00:30"


def test_a_naive_datetime_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError):
        format_datetime(dt.datetime(2025, 11, 28, 11, 2))
