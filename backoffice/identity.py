"""Citizen identifiers as the back-office receives them: digit normalisation, the national
code check, plate normalisation and the masked forms that are safe to log.

The back-office imports no kiosk module except kiosk.bills, so the national code rule
(FIELD-NOTES, "Iranian payment identifiers") is applied here on the server side too."""

from __future__ import annotations

_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")


def ascii_digits(text: str) -> str:
    """Persian (۰-۹) and Arabic-Indic (٠-٩) digits to ASCII; other characters unchanged."""
    return text.translate(_DIGITS)


def national_code_check(first9: str) -> int:
    """The check digit of a national code from its first nine digits."""
    r = sum(int(d) * (10 - i) for i, d in enumerate(first9)) % 11
    return r if r < 2 else 11 - r


def is_valid_national_code(code: str) -> bool:
    code = ascii_digits(code.strip())
    if len(code) != 10 or not code.isdigit() or len(set(code)) == 1:
        return False
    return national_code_check(code[:9]) == int(code[9])


def mask_national_code(code: str) -> str:
    """First 3 + last 3 digits: enough to tell two citizens' logs apart, too little to identify."""
    code = ascii_digits(code)
    return code[:3] + "****" + code[-3:] if len(code) >= 7 else "****"


def normalize_plate(plate: str) -> str:
    """One spelling of a plate for lookups: ASCII digits, single spaces, Persian ی/ک."""
    text = ascii_digits(plate).replace("ي", "ی").replace("ك", "ک")
    return " ".join(text.split())


def normalize_code(code: str) -> str:
    """Renovation codes and business licences: ASCII digits, no spaces or dashes."""
    return ascii_digits(code).replace(" ", "").replace("-", "").strip()


def looks_like_full_pan(masked_pan: str) -> bool:
    """True when a 'masked' card number still holds a full card number (13-19 digits in a row)."""
    run = 0
    for ch in ascii_digits(masked_pan):
        if ch.isdigit():
            run += 1
            if run >= 13:
                return True
        elif ch not in " -":
            run = 0
    return False
