"""When the kiosk may not move money: a journal that fails verification (out of service for a
technician) or a data dir short of free space (service unavailable). Checked once fully when
the kiosk opens, and cheaply before every new transaction and every background recovery round.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import NoReturn

from kiosk.errors import KioskError
from kiosk.journal import GENESIS_HASH, Journal, JournalError, JournalStorageError


#: the free-space floor when the settings name none (KioskSettings.min_free_bytes)
DEFAULT_MIN_FREE_BYTES = 50 * 2**20

#: a journal write that failed because of the storage (full, read-only, I/O), or an SQLite
#: error the journal did not classify: inside the money path both end the same defined way
STORAGE_ERRORS: tuple[type[BaseException], ...] = (JournalStorageError, sqlite3.OperationalError)


class JournalBroken(KioskError):
    """The journal failed verification: no recovery and no new transaction until a technician
    has looked at it (money moved on a falsified record could be a bill paid for free)."""

    key = "journal.broken"
    fa = ("دفتر تراکنش‌های کیوسک در بررسی صحت رد شد ({problem}). هیچ پولی جابه‌جا نمی‌شود و "
          "کیوسک تا بررسی تکنسین از سرویس خارج است.")
    en = ("The kiosk's transaction journal failed verification ({problem}). No money is moved "
          "and the kiosk is out of service until a technician has checked it.")
    money = "not_charged"


class StorageLow(KioskError):
    """Less free space on the data dir's file system than the configured floor."""

    key = "service.storage_low"
    fa = "این خدمت موقتاً در دسترس نیست (حافظه کیوسک رو به پایان است). مبلغی از حساب شما کم نشد."
    en = ("This service is temporarily unavailable (the kiosk is low on storage). "
          "Nothing was charged.")
    money = "not_charged"


class ChainGuard:
    """Remembers the (seq, hash) up to which the chain was verified; `check_since` verifies
    only what was appended after it, and that the verified tail itself is still there."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.verified: tuple[int, str] = (0, GENESIS_HASH)
        self.broken: JournalBroken | None = None

    def verify_full(self) -> None:
        """Walk the whole chain (at start). Raises JournalBroken, and stays broken."""
        head = self.journal.head()  # read first: verify then covers at least up to it
        try:
            report = self.journal.verify()
        except JournalError as exc:
            self._fail(f"the journal cannot be read: {exc.detail}")
        if not report.ok:
            first = report.problems[0]
            more = f" (+{len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
            self._fail(f"{first.kind}: {first.detail}{more}")
        self.verified = head

    def check_since(self) -> None:
        """Verify the rows appended since the last check (before each new transaction)."""
        self.require_ok()
        seq, digest = self.verified
        try:
            if seq:
                row = self.journal.entry_at(seq)
                if row is None or row.hash != digest:
                    self._fail(f"row {seq} changed or disappeared after it was verified")
            for entry in self.journal.entries(after_seq=seq):
                if entry.seq != seq + 1:
                    self._fail(f"deleted: rows {seq + 1}..{entry.seq - 1} missing")
                if entry.prev_hash != digest:
                    self._fail(f"broken_link: row {entry.seq} does not link to row {seq}")
                if entry.compute_hash() != entry.hash:
                    self._fail(f"edited: row {entry.seq} does not match its hash")
                seq, digest = entry.seq, entry.hash
        except JournalStorageError:
            raise  # the disk, not the chain: a storage problem, handled as such
        except JournalError as exc:
            self._fail(f"the journal cannot be read: {exc.detail}")
        self.verified = (seq, digest)

    def require_ok(self) -> None:
        if self.broken is not None:
            raise self.broken

    def _fail(self, problem: str) -> NoReturn:
        # not logged here: the caller reports it once (the CLI's one line, the flow's screen,
        # the background worker's critical log)
        self.broken = JournalBroken(f"journal verification failed: {problem}", problem=problem)
        raise self.broken


def check_free_space(data_dir: Path, min_free_bytes: int) -> None:
    """Raise StorageLow when the data dir's file system has less than the floor free."""
    free = shutil.disk_usage(data_dir).free
    if free < min_free_bytes:
        raise StorageLow(f"{free} bytes free on {data_dir}, floor {min_free_bytes}",
                         free=free, floor=min_free_bytes)
