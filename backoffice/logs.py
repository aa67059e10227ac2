"""One JSON object a line on stderr for the back-office processes, with card numbers and
national codes masked (kiosk.sensitive.redact) as the last net before anything is written."""

from __future__ import annotations

import json
import logging

from kiosk.sensitive import redact


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {"ts": round(record.created, 3), "level": record.levelname,
                                    "logger": record.name, "msg": redact(record.getMessage())}
        for key in ("tx", "event"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "WARNING") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
