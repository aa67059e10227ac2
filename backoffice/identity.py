"""Owner identifiers as the back-office looks them up: one spelling of a plate, a renovation
code or a business licence. The national-code check, masking and Persian digits live in
kiosk.sensitive (one rule for the whole project); this module only normalises for queries."""

from __future__ import annotations

from kiosk.sensitive import to_ascii_digits


def normalize_plate(plate: str) -> str:
    """One spelling of a plate for lookups: ASCII digits, single spaces, Persian ی/ک."""
    text = to_ascii_digits(plate).replace("ي", "ی").replace("ك", "ک")
    return " ".join(text.split())


def normalize_code(code: str) -> str:
    """Renovation codes and business licences: ASCII digits, no spaces or dashes."""
    return to_ascii_digits(code).replace(" ", "").replace("-", "").strip()
