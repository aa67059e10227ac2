"""Where the kiosk keeps its state: one data dir (journal, keys, back-office db in the demo)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--data-dir, else $KIOSK_DATA_DIR, else the platform's user data dir."""
    chosen = explicit or os.environ.get("KIOSK_DATA_DIR") or platformdirs.user_data_dir("city-kiosk")
    path = Path(chosen).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


FONT_DIR = Path(__file__).parent / "assets" / "fonts"
FONT_REGULAR = FONT_DIR / "Vazirmatn-Regular.ttf"
FONT_BOLD = FONT_DIR / "Vazirmatn-Bold.ttf"
