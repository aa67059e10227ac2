"""The transaction journal: an append-only, hash-chained SQLite log of every citizen
transaction's states, with the outbox work queue stored beside it in the same file.

Modules: states (states and moves), chain (canonical JSON, entry hash, verify rules; pure),
data (caller data checks), store (the SQLite Journal), outbox, errors, aio (AsyncJournal),
anchors (checking the chain against the back-office's anchors). This package re-exports the
names callers use. See docs/journal.md.
"""

from __future__ import annotations

from kiosk.journal.aio import AsyncJournal
from kiosk.journal.anchors import AnchorFinding, AnchorReport, AnchorVerdict, compare_anchors
from kiosk.journal.chain import (
    GENESIS_HASH,
    JournalEntry,
    Problem,
    Transaction,
    VerifyReport,
    canonical_json,
    entry_hash,
    verify_rows,
)
from kiosk.journal.errors import (
    IllegalTransition,
    InvalidJournalData,
    JournalError,
    JournalStorageError,
    JournalUnreadable,
    OutboxItemClosed,
    SensitiveDataRejected,
    TransactionExists,
    UnknownOutboxItem,
    UnknownTransaction,
)
from kiosk.journal.outbox import OutboxItem, OutboxStatus
from kiosk.journal.states import ALLOWED, OPEN_STATES, TERMINAL_STATES, TxState
from kiosk.journal.store import (
    BUSY_TIMEOUT_MS,
    FILE_MODE,
    JOURNAL_FILENAME,
    SCHEMA_VERSION,
    Journal,
    journal_path,
)
from kiosk.sensitive import SECRET_KEY as _SECRET_KEY
from kiosk.sensitive import UNMASKED_IDENTITY as _UNMASKED_IDENTITY
from kiosk.sensitive import find_card_number, luhn_ok
from kiosk.sensitive import unstorable_reason as _sensitive

__all__ = [
    "ALLOWED",
    "BUSY_TIMEOUT_MS",
    "FILE_MODE",
    "GENESIS_HASH",
    "JOURNAL_FILENAME",
    "OPEN_STATES",
    "SCHEMA_VERSION",
    "TERMINAL_STATES",
    "AnchorFinding",
    "AnchorReport",
    "AnchorVerdict",
    "AsyncJournal",
    "IllegalTransition",
    "InvalidJournalData",
    "Journal",
    "JournalEntry",
    "JournalError",
    "JournalStorageError",
    "JournalUnreadable",
    "OutboxItem",
    "OutboxItemClosed",
    "OutboxStatus",
    "Problem",
    "SensitiveDataRejected",
    "Transaction",
    "TransactionExists",
    "TxState",
    "UnknownOutboxItem",
    "UnknownTransaction",
    "VerifyReport",
    "_SECRET_KEY",
    "_UNMASKED_IDENTITY",
    "_sensitive",
    "canonical_json",
    "compare_anchors",
    "entry_hash",
    "find_card_number",
    "journal_path",
    "luhn_ok",
    "verify_rows",
]
