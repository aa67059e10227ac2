"""The four municipal fee types a citizen can look up at the kiosk, and the identifier each
is looked up by: what the fee-slip, certificate and screens share (the back-office spells the
same names, backoffice.models.SlipKind)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from kiosk.errors import KioskError
from kiosk.sensitive import mask_code, mask_national_code, mask_plate, national_code_ok, to_ascii_digits


@dataclass(frozen=True)
class FeeType:
    name: str  # the back-office's slip kind
    label_fa: str
    label_en: str
    #: national_code | renovation_code | business_license | plate
    identifier: str
    #: may a settlement certificate be asked for (a property's or a business's fees)
    certifiable: bool = False

    def label(self, lang: str = "fa") -> str:
        return self.label_fa if lang == "fa" else self.label_en


FEE_TYPES: dict[str, FeeType] = {t.name: t for t in (
    FeeType("renovation_tax", "عوارض نوسازی", "Renovation tax", "renovation_code", certifiable=True),
    FeeType("business_tax", "عوارض کسب و پیشه", "Business tax", "business_license", certifiable=True),
    FeeType("waste_charge", "بهای خدمات پسماند", "Waste collection charge", "national_code"),
    FeeType("vehicle_tax", "عوارض خودرو", "Vehicle tax", "plate"),
)}

#: how many digits each typed identifier takes on the keypad
ID_DIGITS: dict[str, tuple[int, int]] = {
    "national_code": (10, 10),
    "renovation_code": (6, 16),
    "business_license": (6, 16),
}

#: the letters of an Iranian civilian plate, as the picker offers them (الف first, as on the plates)
PLATE_LETTERS: tuple[str, ...] = ("الف", "ب", "پ", "ت", "ث", "ج", "د", "ز", "س", "ش", "ص", "ط", "ع",
                                  "ف", "ق", "ک", "گ", "ل", "م", "ن", "و", "ه", "ی", "ژ")


#: the Jalali months as a slip's period names them (the back-office writes "شهریور ۱۴۰۴"), and
#: as an English screen reads them
JALALI_MONTHS_FA: tuple[str, ...] = ("فروردین", "اردیبهشت", "خرداد", "تیر", "مرداد", "شهریور",
                                     "مهر", "آبان", "آذر", "دی", "بهمن", "اسفند")
JALALI_MONTHS_EN: tuple[str, ...] = ("Farvardin", "Ordibehesht", "Khordad", "Tir", "Mordad", "Shahrivar",
                                     "Mehr", "Aban", "Azar", "Dey", "Bahman", "Esfand")
_PERIOD = re.compile(r"\A\s*(?:(?P<month>[^\W\d_]+)\s+)?(?P<year>[0-9۰-۹٠-٩]{4})\s*\Z")


def period_text(period: str, lang: str = "fa") -> str:
    """A slip's period in the reader's language: a Jalali month and year ("شهریور ۱۴۰۴", as the
    back-office labels it) is "Shahrivar 1404" in English; a year alone takes the reader's
    digits. Anything else is the back-office's own words and is shown as they are."""
    from kiosk.fmt import to_persian_digits

    m = _PERIOD.match(period)
    if m is None:
        return period
    month, year = m.group("month"), to_ascii_digits(m.group("year"))
    if month is not None and month not in JALALI_MONTHS_FA and month not in JALALI_MONTHS_EN:
        return period
    if lang == "fa":
        name = JALALI_MONTHS_FA[JALALI_MONTHS_EN.index(month)] if month in JALALI_MONTHS_EN else month
        return f"{name} {to_persian_digits(year)}" if name else to_persian_digits(year)
    name = JALALI_MONTHS_EN[JALALI_MONTHS_FA.index(month)] if month in JALALI_MONTHS_FA else month
    return f"{name} {year}" if name else year


_DIGITS2, _DIGITS3 = re.compile(r"[0-9]{2}\Z"), re.compile(r"[0-9]{3}\Z")


class InvalidPlate(KioskError):
    key: ClassVar[str] = "slips.invalid_plate"
    fa: ClassVar[str] = "پلاک واردشده کامل نیست: دو رقم، یک حرف، سه رقم و دو رقم کد شهر را وارد کنید."
    en: ClassVar[str] = "The plate is not complete: enter two digits, a letter, three digits and the two-digit region."
    money: ClassVar[str] = "none"


class InvalidIdentifier(KioskError):
    key: ClassVar[str] = "slips.invalid_identifier"
    fa: ClassVar[str] = "شناسه واردشده درست نیست؛ آن را از روی فیش یا مدرک خود دوباره وارد کنید."
    en: ClassVar[str] = "That identifier is not valid; type it again from your slip or document."
    money: ClassVar[str] = "none"


def plate_text(two: str, letter: str, three: str, region: str) -> str:
    """One plate as the back-office spells it: "45 ج 781 ایران 20" (ASCII digits)."""
    two, three, region = (to_ascii_digits(x).strip() for x in (two, three, region))
    # ASCII digits only: str.isdigit() takes any script's (a fullwidth ０ would make another plate)
    if not (_DIGITS2.match(two) and _DIGITS3.match(three) and _DIGITS2.match(region)
            and letter in PLATE_LETTERS):
        raise InvalidPlate("plate parts do not make a plate")
    return f"{two} {letter} {three} ایران {region}"


def check_identifier(fee_type: FeeType, value: str) -> str:
    """A typed identifier checked as the keypad takes it: digits only, the national code's
    check digit. Returns it in ASCII digits; InvalidIdentifier (or InvalidNationalCode) if not."""
    from kiosk.identifiers import InvalidNationalCode

    if fee_type.identifier == "plate":
        return value  # made by plate_text
    digits = to_ascii_digits(value).strip()
    low, high = ID_DIGITS[fee_type.identifier]
    if not (digits.isascii() and digits.isdigit()) or not low <= len(digits) <= high:
        raise InvalidIdentifier(f"{fee_type.identifier} of {len(digits)} characters")
    if fee_type.identifier == "national_code" and not national_code_ok(digits):
        raise InvalidNationalCode("national code check digit")
    return digits


def mask_identifier(fee_type: FeeType, value: str) -> str:
    """What a screen, a log or a certificate may show of an identifier — the same rule as the
    back-office's (kiosk.sensitive): a national code's first and last 3 digits, a code's first
    and last 2, a plate without its three-digit serial."""
    if fee_type.identifier == "plate":
        return mask_plate(value)
    digits = to_ascii_digits(value)
    if fee_type.identifier == "national_code":
        return mask_national_code(digits)
    return mask_code(digits)
