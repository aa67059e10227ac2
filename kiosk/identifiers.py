"""Citizen identifiers on the kiosk: national code and bank card checks, the masked forms that
are safe to log or print, and Persian/ASCII digit conversion."""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.errors import KioskError

_TO_ASCII = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
_TO_PERSIAN = str.maketrans("0123456789٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹۰۱۲۳۴۵۶۷۸۹")


def to_ascii_digits(text: str) -> str:
    """Persian (۰-۹) and Arabic-Indic (٠-٩) digits to ASCII; everything else unchanged."""
    return text.translate(_TO_ASCII)


def to_persian_digits(text: str) -> str:
    """ASCII and Arabic-Indic digits to Persian (۰-۹), as a Persian screen or receipt shows them."""
    return text.translate(_TO_PERSIAN)


def _digits_only(text: str) -> str:
    """ASCII digits of what a keypad or card gave, without spaces and dashes."""
    return to_ascii_digits(text).strip().replace(" ", "").replace("-", "")


def _is_ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


# --- national code (کد ملی) ------------------------------------------------------------------
class InvalidNationalCode(KioskError):
    key = "id.national_code_invalid"
    fa = "کد ملی درست نیست. لطفاً ۱۰ رقم کد ملی را دوباره وارد کنید."
    en = "The national code is not correct. Please enter the 10 digits of your national code again."
    money = "not_charged"


def is_valid_national_code(code: str) -> bool:
    """FIELD-NOTES: 10 digits; s = sum(d_i * (10 - i)) over the first 9, r = s mod 11, the last
    digit is r if r < 2 else 11 - r. A single repeated digit passes that sum but is refused."""
    digits = _digits_only(code)
    if len(digits) != 10 or not _is_ascii_digits(digits) or len(set(digits)) == 1:
        return False
    r = sum(int(d) * (10 - i) for i, d in enumerate(digits[:9])) % 11
    return int(digits[9]) == (r if r < 2 else 11 - r)


def validate_national_code(code: str) -> str:
    """The code as 10 ASCII digits, or InvalidNationalCode (whose text never holds the code)."""
    if not is_valid_national_code(code):
        raise InvalidNationalCode("national code failed its check")
    return _digits_only(code)


def mask_national_code(code: str) -> str:
    """First 3 + last 3 digits ("0012345679" -> "001****679"): tells logs apart, identifies no one."""
    digits = _digits_only(code)
    return digits[:3] + "****" + digits[-3:] if len(digits) >= 7 else "****"


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
    digits = _digits_only(number)
    if not digits or not _is_ascii_digits(digits):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def validate_card_number(number: str) -> str:
    """The card number as 16 ASCII digits, or InvalidCardNumber (whose text never holds it)."""
    digits = _digits_only(number)
    if len(digits) != 16 or not luhn_valid(digits):
        raise InvalidCardNumber("card number failed its length or Luhn check")
    return digits


def mask_card(number: str) -> str:
    """First 6 + last 4 ("6037991234561234" -> "603799******1234"), the PCI DSS display limit."""
    digits = _digits_only(number)
    if len(digits) < 10:
        return "*" * len(digits)
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def bank_of(card: str) -> Bank | None:
    """The issuing bank from the first 6 digits, or None when the BIN is not one we know."""
    return BANKS.get(_digits_only(card)[:6])


def bank_name(card: str, lang: str = "fa") -> str | None:
    """The issuing bank's name in `lang` ("fa" default, or "en"), or None for an unknown BIN."""
    bank = bank_of(card)
    return bank.name(lang) if bank else None
