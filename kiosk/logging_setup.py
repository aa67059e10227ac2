"""Structured logs: one JSON object a line on stderr, with the transaction id when known.
Card numbers, PINs and national codes never reach a log: callers log masked forms only,
and `redact` below is a last net for long digit runs that slip through."""

from __future__ import annotations

import json
import logging
import re

_LONG_DIGITS = re.compile(r"(?<!\d)(\d{6})\d{4,}(\d{4})(?!\d)")
# the same number as people write it: four groups of four split by a space or a dash
_GROUPED_CARD = re.compile(r"(?<!\d)(\d{4})([ -])(\d{2})\d{2}\2\d{4}\2(\d{4})(?!\d)")


def redact(text: str) -> str:
    """Mask any run of 14+ digits, or a 4-4-4-4 grouped card number, to first6…last4."""
    text = _GROUPED_CARD.sub(lambda m: m.group(1) + m.group(3) + "******" + m.group(4), text)
    return _LONG_DIGITS.sub(lambda m: m.group(1) + "******" + m.group(2), text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key in ("tx", "device", "event"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "WARNING") -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level.upper())
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())


