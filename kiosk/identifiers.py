"""Citizen identifiers on the kiosk: validating a national code or bank card a citizen typed
(typed errors with Persian and English text) and naming the card's bank. The rules themselves
(checks, masking, digit conversion) live in kiosk.sensitive and are re-exported here."""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.errors import KioskError
from kiosk.sensitive import (
    luhn_ok,
    mask_card,
    mask_national_code,
    national_code_ok,
    to_ascii_digits,
    to_persian_digits,
)

__all__ = [
    "BANKS",
    "Bank",
    "InvalidCardNumber",
    "InvalidNationalCode",
    "bank_name",
    "bank_of",
    "is_valid_national_code",
    "luhn_valid",
    "mask_card",
    "mask_national_code",
    "to_ascii_digits",
    "to_persian_digits",
    "validate_card_number",
    "validate_national_code",
]

#: the national-code check (kiosk.sensitive.national_code_ok), under its older name
is_valid_national_code = national_code_ok


def _digits_only(text: str) -> str:
    """ASCII digits of what a keypad or card gave, without spaces and dashes."""
    return to_ascii_digits(text).strip().replace(" ", "").replace("-", "")


# --- national code (کد ملی) ------------------------------------------------------------------
class InvalidNationalCode(KioskError):
    key = "id.national_code_invalid"
    fa = "کد ملی درست نیست. لطفاً ۱۰ رقم کد ملی را دوباره وارد کنید."
    en = "The national code is not correct. Please enter the 10 digits of your national code again."
    money = "not_charged"


def validate_national_code(code: str) -> str:
    """The code as 10 ASCII digits, or InvalidNationalCode (whose text never holds the code)."""
    if not is_valid_national_code(code):
        raise InvalidNationalCode("national code failed its check")
    return _digits_only(code)


# --- bank card ------------------------------------------------------------------------------------
class InvalidCardNumber(KioskError):
    key = "id.card_number_invalid"
    fa = "شماره کارت بانکی درست نیست. لطفاً ۱۶ رقم روی کارت را دوباره وارد کنید."
    en = "The bank card number is not correct. Please enter the 16 digits on your card again."
    money = "not_charged"


@dataclass(frozen=True)
class Bank:
    """A card issuer as the first six digits (BIN) name it."""

    bin: str
    fa: str
    en: str

    def name(self, lang: str = "fa") -> str:
        return self.fa if lang == "fa" else self.en


BANKS: dict[str, Bank] = {b.bin: b for b in (
    Bank("603770", "بانک کشاورزی", "Keshavarzi Bank"),
    Bank("621986", "بانک سامان", "Saman Bank"),
    Bank("502229", "بانک پاسارگاد", "Pasargad Bank"),
    Bank("603799", "بانک ملی ایران", "Bank Melli Iran"),
    Bank("589210", "بانک سپه", "Bank Sepah"),
    Bank("610433", "بانک ملت", "Bank Mellat"),
    Bank("627353", "بانک تجارت", "Tejarat Bank"),
)}


def luhn_valid(number: str) -> bool:
    """ISO/IEC 7812 Luhn check over ASCII/Persian digits (spaces and dashes ignored)."""
    return luhn_ok(_digits_only(number))


def validate_card_number(number: str) -> str:
    """The card number as 16 ASCII digits, or InvalidCardNumber (whose text never holds it)."""
    digits = _digits_only(number)
    if len(digits) != 16 or not luhn_valid(digits):
        raise InvalidCardNumber("card number failed its length or Luhn check")
    return digits


def bank_of(card: str) -> Bank | None:
    """The issuing bank from the first 6 digits, or None when the BIN is not one we know."""
    return BANKS.get(_digits_only(card)[:6])


def bank_name(card: str, lang: str = "fa") -> str | None:
    """The issuing bank's name in `lang` ("fa" default, or "en"), or None for an unknown BIN."""
    bank = bank_of(card)
    return bank.name(lang) if bank else None
