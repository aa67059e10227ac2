"""The journal's typed errors: what a writer, a reader or the CLI can be told, in Persian and
English, when the journal refuses or cannot do something."""

from __future__ import annotations

import sqlite3

from kiosk.errors import KioskError


class JournalError(KioskError):
    """The journal refused a write; nothing was recorded by that call."""

    key = "journal.error"
    fa = "ثبت تراکنش در کیوسک انجام نشد. لطفاً با پشتیبانی تماس بگیرید."
    en = "The kiosk could not record this transaction. Please contact support."


class IllegalTransition(JournalError):
    key = "journal.illegal_transition"
    fa = "این مرحله برای تراکنش {tx_id} مجاز نیست ({current} ← {requested}). لطفاً با پشتیبانی تماس بگیرید."
    en = ("Transaction {tx_id} cannot go from {current} to {requested}. "
          "Nothing was changed; please contact support.")


class UnknownTransaction(JournalError):
    key = "journal.unknown_transaction"
    fa = "تراکنش {tx_id} در این کیوسک پیدا نشد."
    en = "Transaction {tx_id} was not found on this kiosk."


class TransactionExists(JournalError):
    key = "journal.transaction_exists"
    fa = "تراکنش {tx_id} پیش‌تر ثبت شده است."
    en = "Transaction {tx_id} is already recorded."


class InvalidJournalData(JournalError, ValueError):
    """Data that cannot be journaled (not JSON, a bad amount or kind, an unknown state)."""

    key = "journal.invalid_data"


class SensitiveDataRejected(InvalidJournalData):
    """A full card number, a PIN or a full national code was about to be stored."""

    key = "journal.sensitive_data"
    fa = "اطلاعات حساس کارت یا کد ملی نباید ذخیره شود. تراکنش ثبت نشد؛ با پشتیبانی تماس بگیرید."
    en = ("Sensitive card or national-code data must not be stored. Nothing was recorded; "
          "please contact support.")


class UnknownOutboxItem(JournalError):
    key = "journal.unknown_outbox_item"
    fa = "مورد صف ارسال {item_id} پیدا نشد."
    en = "Outbox item {item_id} was not found."


class OutboxItemClosed(JournalError):
    key = "journal.outbox_item_closed"
    fa = "مورد صف ارسال {item_id} پیش‌تر بسته شده است ({status})."
    en = "Outbox item {item_id} is already closed ({status})."


class JournalStorageError(JournalError):
    """SQLite could not write: the disk is full, the file or medium is read-only, or the disk
    reported an I/O error. Nothing was recorded by the failed call; the journal still reads,
    and a later write succeeds once the storage is fixed."""

    key = "journal.storage"
    fa = ("این کیوسک در حال حاضر نمی‌تواند تراکنش را ثبت کند (حافظه پر یا خراب است) و از "
          "سرویس خارج است. پرداخت تازه‌ای گرفته نمی‌شود. اگر مبلغی از کارت شما کسر شده باشد، "
          "پس از رفع مشکل به‌طور خودکار تکمیل یا بازگردانده می‌شود؛ پیامک بانک را نگه دارید "
          "و از کیوسک دیگری استفاده کنید.")
    en = ("This kiosk cannot record transactions right now (its storage is full or failing) "
          "and is out of service. No new payment will be taken. If your card was already "
          "charged, the payment is completed or refunded automatically once the kiosk is "
          "repaired; keep your bank's SMS and please use another kiosk.")


class JournalUnreadable(JournalError):
    """The file is not a journal, or a row in it cannot be read (unknown state, bad JSON)."""

    key = "journal.unreadable"
    fa = "دفتر تراکنش‌های این کیوسک خوانا نیست (آسیب دیده یا فایل دیگری است). با پشتیبانی فنی تماس بگیرید."
    en = ("This kiosk's transaction journal cannot be read (it is damaged or not a journal). "
          "Please call a technician.")


# SQLite primary result codes (the low byte of the extended code) that mean the storage
# itself refused a write, as opposed to a constraint, a lock or a bug.
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26
_STORAGE_CODES = frozenset({_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN})
_UNREADABLE_CODES = frozenset({_SQLITE_CORRUPT, _SQLITE_NOTADB})


def primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def as_journal_error(exc: sqlite3.Error, what: str) -> JournalError | None:
    """The typed error for an SQLite failure that is the storage's or the file's fault, or
    None when it is something else (a constraint, a lock, a bug) to let through."""
    code = primary_code(exc)
    if code in _STORAGE_CODES:
        return JournalStorageError(f"{what}: {exc} ({getattr(exc, 'sqlite_errorname', code)})")
    if code in _UNREADABLE_CODES:
        return JournalUnreadable(f"{what}: {exc}")
    return None
