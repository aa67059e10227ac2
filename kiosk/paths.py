"""Where the kiosk keeps its state: one data dir (journal, keys, back-office db in the demo),
private to the kiosk's user (0700) from the moment it is made."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from kiosk.errors import KioskError

#: the data dir's mode: journal, receipt keys and credentials are nobody else's business
DATA_DIR_MODE = 0o700


class DataDirError(KioskError):
    """The data dir cannot be used: a file stands where it should be, or it cannot be made
    or written."""

    key = "paths.data_dir"
    fa = "پوشه داده کیوسک قابل استفاده نیست: {path} ({reason})."
    en = "The kiosk's data dir cannot be used: {path} ({reason})."


def data_dir(explicit: str | os.PathLike[str] | None = None, *, writable: bool = False) -> Path:
    """--data-dir, else $KIOSK_DATA_DIR, else the platform's user data dir; made 0700 when it
    does not exist yet. An existing dir is used as it is (an auditor may read a copy on
    read-only media); `writable=True` refuses one this process cannot write."""
    chosen = explicit or os.environ.get("KIOSK_DATA_DIR") or platformdirs.user_data_dir("city-kiosk")
    path = Path(chosen).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise DataDirError(f"{path} is not a directory", path=str(path), reason="not a directory")
    if not path.exists():
        try:
            path.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
            # mkdir's mode passes through the umask, and a library caller may have a loose one
            path.chmod(DATA_DIR_MODE)
        except OSError as exc:
            raise DataDirError(f"cannot create {path}: {exc}", path=str(path),
                               reason=exc.strerror or str(exc)) from exc
    if writable and not os.access(path, os.W_OK | os.X_OK):
        # as root, access() still says no for a read-only file system (EROFS)
        raise DataDirError(f"{path} is not writable", path=str(path), reason="not writable")
    return path


FONT_DIR = Path(__file__).parent / "assets" / "fonts"
FONT_REGULAR = FONT_DIR / "Vazirmatn-Regular.ttf"
FONT_BOLD = FONT_DIR / "Vazirmatn-Bold.ttf"
