"""Owner identifiers as the back-office looks them up: one spelling of a plate, a renovation
code or a business licence. The national-code check, masking and Persian digits live in
kiosk.sensitive (one rule for the whole project); this module only normalises for queries."""

from __future__ import annotations

import re

from kiosk.sensitive import mask_code, mask_name, mask_plate, to_ascii_digits

__all__ = ["canonical_plate", "mask_code", "mask_name", "mask_plate", "normalize_code", "normalize_plate"]


def normalize_plate(plate: str) -> str:
    """One spelling of a plate for lookups: ASCII digits, single spaces, Persian ی/ک."""
    text = to_ascii_digits(plate).replace("ي", "ی").replace("ك", "ک")
    return " ".join(text.split())


def normalize_code(code: str) -> str:
    """Renovation codes and business licences: ASCII digits, no spaces or dashes."""
    return to_ascii_digits(code).replace(" ", "").replace("-", "").strip()


# --- issue 9: plates checked strictly, and what may be shown or logged of an owner ----------------
# the letters of Iranian private plates (and الف of government cars); ي/ك are folded first
_PLATE_LETTER = "(الف|[بپتثجچحخدذرزژسشصضطظعغفقکگلمنوهی])"
# [0-9], not \d: \d takes any script's digits (a fullwidth ０ would make another plate)
_PLATE = re.compile(r"^([0-9]{2})\s*" + _PLATE_LETTER + r"\s*([0-9]{3})\s*[-–]?\s*(?:ایران|IR)?\s*[-–]?\s*([0-9]{2})$",
                    re.IGNORECASE)


def canonical_plate(plate: str) -> str | None:
    """An Iranian plate — two digits, a Persian letter, three digits, the two-digit region — in
    the one spelling owners and permits are stored under ("22 ب 365 ایران 10"), from any digit
    script and spacing ("۲۲ب۳۶۵-۱۰", "22 ب 365 IR 10"); None when it is not a plate."""
    match = _PLATE.match(normalize_plate(plate))
    if match is None:
        return None
    two, letter, three, region = match.groups()
    return f"{two} {letter} {three} ایران {region}"
