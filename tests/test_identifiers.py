"""National code and bank card checks, masking and digit conversion (kiosk.identifiers)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.identifiers import (
    InvalidCardNumber,
    InvalidNationalCode,
    bank_name,
    is_valid_national_code,
    luhn_valid,
    mask_card,
    mask_national_code,
    to_ascii_digits,
    to_persian_digits,
    validate_card_number,
    validate_national_code,
)


def national_check(first9: str) -> str:
    r = sum(int(d) * (10 - i) for i, d in enumerate(first9)) % 11
    return str(r if r < 2 else 11 - r)


def luhn_complete(first15: str) -> str:
    """Append the Luhn digit (ISO/IEC 7812 annex B), computed the textbook way."""
    for last in "0123456789":
        digits = [int(c) for c in first15 + last][::-1]
        total = sum(d if i % 2 == 0 else sum(divmod(d * 2, 10)) for i, d in enumerate(digits))
        if total % 10 == 0:
            return first15 + last
    raise AssertionError("unreachable: one of ten digits always completes a Luhn number")


# --- national code ---------------------------------------------------------------------------
def test_known_national_codes() -> None:
    assert is_valid_national_code("0084137258")  # the back-office demo citizen
    assert is_valid_national_code("۰۰۸۴۱۳۷۲۵۸")  # as a Persian keypad gives it
    assert not is_valid_national_code("0084137259")
    assert not is_valid_national_code("008413725")
    assert not is_valid_national_code("00841372580")
    assert not is_valid_national_code("00841x7258")
    assert not is_valid_national_code("")


@pytest.mark.parametrize("digit", "0123456789")
def test_a_single_repeated_digit_is_refused_even_when_the_sum_matches(digit: str) -> None:
    code = digit * 10
    assert not is_valid_national_code(code)
    with pytest.raises(InvalidNationalCode):
        validate_national_code(code)


def test_repeated_digit_rule_matters_for_some_digit() -> None:
    # 1111111111 passes the weighted sum (54 mod 11 = 10 -> check 1): the rule is not redundant
    assert national_check("111111111") == "1" and not is_valid_national_code("1111111111")


@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"\A[0-9]{9}\Z"))
def test_generated_national_codes_pass_and_any_other_last_digit_fails(first9: str) -> None:
    code = first9 + national_check(first9)
    if len(set(code)) == 1:
        assert not is_valid_national_code(code)
        return
    assert is_valid_national_code(code) and validate_national_code(code) == code
    for other in "0123456789":
        if other != code[-1]:
            assert not is_valid_national_code(first9 + other)


def test_invalid_national_code_error_never_holds_the_code() -> None:
    with pytest.raises(InvalidNationalCode) as caught:
        validate_national_code("0084137259")
    text = str(caught.value) + caught.value.message("fa") + caught.value.message("en")
    assert "0084137259" not in text and "کد ملی" in caught.value.message("fa")
    assert caught.value.key == "id.national_code_invalid"


def test_national_code_mask_keeps_first_and_last_three() -> None:
    assert mask_national_code("0012345679") == "001****679"
    assert mask_national_code("۰۰۱۲۳۴۵۶۷۹") == "001****679"
    assert mask_national_code("123") == "****"


# --- bank card -----------------------------------------------------------------------------------
@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"\A[0-9]{15}\Z"))
def test_luhn_accepts_completed_numbers_and_catches_every_single_digit_change(first15: str) -> None:
    card = luhn_complete(first15)
    assert luhn_valid(card) and validate_card_number(card) == card
    for i in range(16):
        for d in "0123456789":
            if d != card[i]:
                assert not luhn_valid(card[:i] + d + card[i + 1:])


def test_card_number_shapes() -> None:
    card = luhn_complete("603799123456123")
    assert validate_card_number(f"{card[:4]} {card[4:8]} {card[8:12]} {card[12:]}") == card
    assert validate_card_number(to_persian_digits(card)) == card
    for bad in (card[:-1], card + "0", "", "abcd" * 4, card[:-1] + str((int(card[-1]) + 1) % 10)):
        with pytest.raises(InvalidCardNumber) as caught:
            validate_card_number(bad)
        assert card not in caught.value.message("fa") + caught.value.message("en") + str(caught.value)
        assert caught.value.key == "id.card_number_invalid"
    assert not luhn_valid("") and not luhn_valid("12a4")


def test_card_mask_keeps_first_six_and_last_four() -> None:
    assert mask_card("6037991234561234") == "603799******1234"
    assert mask_card("6037-9912-3456-1234") == "603799******1234"
    assert mask_card("1234") == "****"


@pytest.mark.parametrize("bin_,fa,en", [
    ("603770", "بانک کشاورزی", "Keshavarzi Bank"),
    ("621986", "بانک سامان", "Saman Bank"),
    ("502229", "بانک پاسارگاد", "Pasargad Bank"),
    ("603799", "بانک ملی ایران", "Bank Melli Iran"),
    ("589210", "بانک سپه", "Bank Sepah"),
    ("610433", "بانک ملت", "Bank Mellat"),
    ("627353", "بانک تجارت", "Tejarat Bank"),
])
def test_bank_is_named_from_the_first_six_digits(bin_: str, fa: str, en: str) -> None:
    card = luhn_complete(bin_ + "123456789")
    assert bank_name(card) == fa and bank_name(card, "en") == en
    assert bank_name(to_persian_digits(card), "en") == en


def test_unknown_bin_has_no_bank_name() -> None:
    assert bank_name("4111111111111111") is None


# --- digits ----------------------------------------------------------------------------------------
def test_digit_conversion_both_ways() -> None:
    assert to_ascii_digits("۰۱۲۳۴۵۶۷۸۹ ٠١٢٣٤٥٦٧٨٩ abc") == "0123456789 0123456789 abc"
    assert to_persian_digits("0123456789 ٠١٢٣ ریال") == "۰۱۲۳۴۵۶۷۸۹ ۰۱۲۳ ریال"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", max_size=30))
def test_persian_digits_round_trip(digits: str) -> None:
    persian = to_persian_digits(digits)
    assert not any(c in "0123456789" for c in persian)
    assert to_ascii_digits(persian) == digits
