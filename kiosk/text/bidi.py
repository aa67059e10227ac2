"""Bidirectional text helpers for Persian screens and receipts: keep ids, numbers and Latin
left-to-right inside right-to-left text (Unicode isolates), and split text without breaking one."""

from __future__ import annotations

import unicodedata

LRI = "\u2066"  # LEFT-TO-RIGHT ISOLATE
RLI = "\u2067"
FSI = "\u2068"
PDI = "\u2069"  # POP DIRECTIONAL ISOLATE
_OPENERS = frozenset((LRI, RLI, FSI))


def ltr(s: str) -> str:
    """Wrap s in LRI … PDI so numbers, ids and Latin stay left-to-right inside Persian text."""
    return f"{LRI}{s}{PDI}"


def has_rtl_letters(s: str) -> bool:
    """True when s holds a right-to-left letter (Persian, Arabic, Hebrew)."""
    return any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in s)


def tokens(text: str) -> list[str]:
    """Split at spaces, but never inside an isolate (a wrapped id must stay whole)."""
    out: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch in _OPENERS:
            depth += 1
        elif ch == PDI and depth:
            depth -= 1
        if ch == " " and depth == 0:
            if current:
                out.append("".join(current))
                current = []
            continue
        current.append(ch)
    if current:
        out.append("".join(current))
    return out


__all__ = ["FSI", "LRI", "PDI", "RLI", "has_rtl_letters", "ltr", "tokens"]
