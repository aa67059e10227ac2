"""Imports python-escpos so it leaves nothing behind: its capabilities pickle goes to our cache
dir (not a fresh `tmpXXXX/` in the system temp dir at every command) and its import-time
`logging.basicConfig()` does not stay on the root logger. Import this before any `escpos`."""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path

import platformdirs

#: python-escpos reads this at import to choose where its capabilities pickle lives
PICKLE_DIR_ENV = "ESCPOS_CAPABILITIES_PICKLE_DIR"
#: our cache dir override (tests, read-only homes); else the platform's user cache dir
CACHE_DIR_ENV = "KIOSK_CACHE_DIR"


def cache_dir() -> Path:
    """$KIOSK_CACHE_DIR, else platformdirs' user cache dir for city-kiosk."""
    return Path(os.environ.get(CACHE_DIR_ENV) or platformdirs.user_cache_dir("city-kiosk")).expanduser()


def _import_escpos() -> Path:
    """Import escpos.capabilities with its pickle in <cache>/escpos; return that dir."""
    where = Path(os.environ.get(PICKLE_DIR_ENV) or cache_dir() / "escpos")
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:  # no writable cache (read-only home): a private temp dir, removed at exit
        where = Path(tempfile.mkdtemp(prefix="kiosk-escpos-"))
        atexit.register(shutil.rmtree, where, ignore_errors=True)
    os.environ[PICKLE_DIR_ENV] = str(where)
    root = logging.getLogger()
    handlers = list(root.handlers)
    # capabilities.py evaluates `environ.get(..., mkdtemp())`: mkdtemp() runs even when the
    # variable is set. Point tempfile at our dir for that one call and remove what it made.
    saved = tempfile.tempdir
    tempfile.tempdir = str(where)
    # python-escpos writes its pickle in place (not atomically) when it is missing or stale:
    # another process importing it at that moment would read half a file (EOFError). One
    # importer at a time per cache dir, under an exclusive lock.
    lock = os.open(where / ".import.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = set(where.iterdir())
        import escpos.capabilities  # noqa: F401
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
        tempfile.tempdir = saved
        root.handlers[:] = handlers  # undo its basicConfig(): the kiosk owns the root handlers
    for made in set(where.iterdir()) - before:
        if made.is_dir() and made.name.startswith("tmp"):
            try:
                made.rmdir()
            except OSError:  # not empty: not the stray mkdtemp dir, leave it
                pass
    return where


PICKLE_DIR = _import_escpos()

__all__ = ["PICKLE_DIR", "cache_dir"]
