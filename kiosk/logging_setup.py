"""Structured logs: one JSON object a line on stderr, with the transaction id when known.

`configure()` owns the root logger: it removes every handler it did not install (python-escpos
calls logging.basicConfig() at import, which printed every warning twice, the second copy
unredacted) and makes every record redacted where it is created, whichever logger or handler
it then reaches. Callers log masked forms only; kiosk.sensitive.redact is the last net.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from kiosk.sensitive import redact

__all__ = ["JsonFormatter", "configure", "redact", "redact_record"]


def redact_record(record: logging.LogRecord) -> None:
    """Mask card numbers and national codes in a record's message, traceback and stack, in
    place, so any formatter (ours or a library's) only ever sees the masked text."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports it when the record is handled
        return
    masked = redact(message)
    if masked != message:
        record.msg, record.args = masked, None
    if record.exc_info and not record.exc_text:
        # standard formatters use exc_text when set, instead of formatting exc_info again
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key in ("tx", "device", "event"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info or record.exc_text:
            entry["exc"] = redact(record.exc_text or self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


class _RedactFilter(logging.Filter):
    """On our handler: records made before configure() (or by a foreign record factory)
    are masked too."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def _install_redacting_factory() -> None:
    """Wrap the record factory once, so every record is masked as it is made: a handler a
    library adds to its own logger never sees the full number either."""
    current = logging.getLogRecordFactory()
    if getattr(current, "_kiosk_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        redact_record(record)
        return record

    factory._kiosk_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _ours(handler: logging.Handler) -> bool:
    return getattr(handler, "_kiosk_owned", False)


def configure(level: str = "WARNING") -> None:
    """Make the root logger ours: one JSON handler on stderr, every foreign root handler
    (basicConfig's) removed, every record redacted. Safe to call again (sets the level)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if not _ours(handler):
            root.removeHandler(handler)
    if not any(_ours(h) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        handler.addFilter(_RedactFilter())
        handler._kiosk_owned = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    _install_redacting_factory()
    root.setLevel(level.upper())
