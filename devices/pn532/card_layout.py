"""The City Kiosk transit card on MIFARE Classic 1K: where the balance, its backup, the
transaction counter and the trip/top-up log live, and the tear-safe write order that keeps a
card consistent when it leaves the field mid-write. The algorithm is in docs/card-layout.md.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devices.base import InvalidData, MediaError
from devices.pn532.keys import CardKeys, KeyType
from devices.pn532.mifare import (
    AccessBits,
    InvalidValueBlock,
    build_trailer,
    decode_value,
    encode_value,
    sector_of,
    trailer_of,
)

if TYPE_CHECKING:
    from devices.pn532.driver import PN532Reader

log = logging.getLogger("devices.pn532.card")

MAX_BALANCE_RIALS = 2**31 - 1  # a MIFARE value block holds a signed 32-bit value
PURSE_ADDR = 4  # the address byte of both value blocks: the same purse, so copies are interchangeable


@dataclass(frozen=True)
class PurseCopy:
    """Where one copy of the purse lives: a value block and its commit record, one sector."""

    sector: int
    value_block: int
    record_block: int


PRIMARY = PurseCopy(sector=1, value_block=4, record_block=5)
BACKUP = PurseCopy(sector=2, value_block=8, record_block=9)
LOG_BLOCKS: tuple[int, ...] = (12, 13, 14, 16, 17, 18)  # sectors 3 and 4, a ring of 6 entries
LOG_SECTORS = (3, 4)
CARD_SECTORS = (1, 2, 3, 4)

# access conditions (MF1S50): value block: key A read + decrement, key B also increment/write;
# record/log blocks: key A read, key B write; trailer: only key B changes keys or access bits
PURSE_ACCESS = AccessBits(((1, 1, 0), (1, 0, 0), (1, 0, 0), (0, 1, 1)))
LOG_ACCESS = AccessBits(((1, 0, 0), (1, 0, 0), (1, 0, 0), (0, 1, 1)))

RECORD_MAGIC = 0x4B  # "K"


class TxType(enum.IntEnum):
    PERSONALISE = 0
    TOPUP = 1
    TRIP = 2


class CardCorrupt(MediaError):
    """Neither purse copy is consistent: the card cannot be trusted and must be replaced."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="cardCorrupt")


class InsufficientBalance(InvalidData):
    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="insufficientBalance")


class BalanceLimit(InvalidData):
    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="balanceLimit")


def tx_ref_short(tx_ref: str) -> bytes:
    """4 bytes that identify a transaction reference on the card (no personal data)."""
    return hashlib.sha256(tx_ref.encode("utf-8")).digest()[:4]


# --- block codecs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommitRecord:
    """What one purse copy says was committed last: counter, balance, which transaction."""

    seq: int
    balance: int
    tx_ref: bytes  # tx_ref_short, 4 bytes
    tx_type: TxType

    def encode(self) -> bytes:
        body = struct.pack("<BIi4sB", RECORD_MAGIC, self.seq, self.balance, self.tx_ref, self.tx_type)
        return body + struct.pack("<H", binascii.crc_hqx(body, 0xFFFF))

    @classmethod
    def decode(cls, block: bytes) -> CommitRecord:
        if len(block) != 16 or block[0] != RECORD_MAGIC:
            raise InvalidData("not a commit record", error_code="badRecord")
        if struct.unpack("<H", block[14:16])[0] != binascii.crc_hqx(block[:14], 0xFFFF):
            raise InvalidData("commit record CRC mismatch", error_code="badRecord")
        _, seq, balance, ref, typ = struct.unpack("<BIi4sB", block[:14])
        try:
            tx_type = TxType(typ)
        except ValueError as exc:
            raise InvalidData(f"unknown transaction type {typ}", error_code="badRecord") from exc
        return cls(seq, balance, ref, tx_type)


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


@dataclass(frozen=True)
class LogEntry:
    """One trip or top-up. seq is the 16-bit low half of the transaction counter."""

    seq: int
    tx_type: TxType
    amount: int
    at: int  # unix seconds
    terminal: int  # kiosk/validator id, 16 bits
    tx_ref: bytes  # first 2 bytes of tx_ref_short

    def encode(self) -> bytes:
        body = struct.pack("<HBIIH2s", self.seq & 0xFFFF, self.tx_type, self.amount, self.at,
                           self.terminal & 0xFFFF, self.tx_ref[:2])
        return body + bytes([_crc8(body)])

    @classmethod
    def decode(cls, block: bytes) -> LogEntry | None:
        if len(block) != 16 or _crc8(block[:15]) != block[15]:
            return None
        seq, typ, amount, at, terminal, ref = struct.unpack("<HBIIH2s", block[:15])
        if typ not in TxType._value2member_map_:
            return None
        return cls(seq, TxType(typ), amount, at, terminal, ref)


def log_slot(seq: int) -> int:
    return LOG_BLOCKS[seq % len(LOG_BLOCKS)]


def initial_blocks(uid: bytes, keys: CardKeys, balance: int) -> dict[int, bytes]:
    """Blocks of a freshly personalised card: both purse copies at `balance`, seq 0, empty log."""
    if not 0 <= balance <= MAX_BALANCE_RIALS:
        raise BalanceLimit(f"initial balance {balance} outside 0..{MAX_BALANCE_RIALS}")
    record = CommitRecord(0, balance, b"\x00" * 4, TxType.PERSONALISE).encode()
    blocks: dict[int, bytes] = {}
    for copy in (PRIMARY, BACKUP):
        blocks[copy.value_block] = encode_value(balance, PURSE_ADDR)
        blocks[copy.record_block] = record
        blocks[copy.record_block + 1] = bytes(16)
    for block in LOG_BLOCKS:
        blocks[block] = bytes(16)
    for sector in CARD_SECTORS:
        access = LOG_ACCESS if sector in LOG_SECTORS else PURSE_ACCESS
        blocks[trailer_of(sector)] = build_trailer(
            keys.key(uid, sector, KeyType.A), access, keys.key(uid, sector, KeyType.B))
    return blocks


# --- the card as the kiosk sees it -------------------------------------------------------------


@dataclass(frozen=True)
class CardBalance:
    uid: str
    balance: int
    seq: int
    last_tx_ref: str  # hex of tx_ref_short of the last committed transaction
    recovered: bool = False  # a torn write was repaired on this tap


@dataclass(frozen=True)
class _CopyState:
    record: CommitRecord | None  # None when this copy is torn or unreadable


class TransitCard:
    """Balance, credit, debit and log of the card on `reader`, tear-safe (docs/card-layout.md).

    Every call starts a fresh session (select + authenticate), so a card that was lifted and
    put back is handled the same as a new tap.
    """

    def __init__(self, reader: PN532Reader, keys: CardKeys, *, terminal_id: int = 0,
                 clock: Callable[[], float] = time.time, timeout: float = 2.0) -> None:
        self.reader = reader
        self.keys = keys
        self.terminal_id = terminal_id
        self.clock = clock
        self.timeout = timeout
        self._uid = b""
        self._authed: tuple[int, KeyType] | None = None

    # session ---------------------------------------------------------------------------------
    async def _begin(self) -> None:
        info = await self.reader.select(timeout=self.timeout)
        self._uid = bytes.fromhex(info.uid)
        self._authed = None

    async def _auth(self, sector: int, key_type: KeyType) -> None:
        if self._authed == (sector, key_type):
            return
        self._authed = None
        await self.reader.authenticate(trailer_of(sector), key_type,
                                       self.keys.key(self._uid, sector, key_type), self._uid,
                                       timeout=self.timeout)
        self._authed = (sector, key_type)

    async def _read_copy(self, copy: PurseCopy, key_type: KeyType) -> _CopyState:
        await self._auth(copy.sector, key_type)
        value_raw = await self.reader.read_block(copy.value_block, timeout=self.timeout)
        record_raw = await self.reader.read_block(copy.record_block, timeout=self.timeout)
        try:
            value, addr = decode_value(value_raw)
            record = CommitRecord.decode(record_raw)
        except (InvalidValueBlock, InvalidData) as exc:
            log.info("purse copy in sector %d is torn: %s", copy.sector, exc)
            return _CopyState(None)
        if addr != PURSE_ADDR or value != record.balance:
            log.info("purse copy in sector %d disagrees with its record", copy.sector)
            return _CopyState(None)
        return _CopyState(record)

    async def _write_copy(self, copy: PurseCopy, record: CommitRecord) -> None:
        """Overwrite one copy from a known-good record (recovery): value block, then record."""
        await self._auth(copy.sector, KeyType.B)
        await self.reader.write_block(copy.value_block, encode_value(record.balance, PURSE_ADDR),
                                      timeout=self.timeout)
        await self.reader.write_block(copy.record_block, record.encode(), timeout=self.timeout)

    async def _apply_delta(self, copy: PurseCopy, delta: int, record: CommitRecord) -> None:
        """Move one copy forward by `delta` with the card's own value ops, then commit it."""
        await self._auth(copy.sector, KeyType.B)
        if delta >= 0:
            await self.reader.increment(copy.value_block, delta, timeout=self.timeout)
        else:
            await self.reader.decrement(copy.value_block, -delta, timeout=self.timeout)
        await self.reader.transfer(copy.value_block, timeout=self.timeout)
        await self.reader.write_block(copy.record_block, record.encode(), timeout=self.timeout)

    async def _settle(self) -> tuple[CommitRecord, bool]:
        """Read both copies and repair a torn one. Returns (committed record, repaired?)."""
        primary = await self._read_copy(PRIMARY, KeyType.A)
        backup = await self._read_copy(BACKUP, KeyType.A)
        p, b = primary.record, backup.record
        if p is None and b is None:
            raise CardCorrupt("both purse copies are torn; the card must be replaced")
        if p is not None and b is not None and p.seq == b.seq:
            if p != b:
                raise CardCorrupt("purse copies share a counter but disagree")
            return p, False
        if b is not None and (p is None or b.seq > p.seq):
            # the backup committed and the primary did not: roll forward
            log.info("repairing primary purse from backup (seq %d)", b.seq)
            await self._write_copy(PRIMARY, b)
            return b, True
        assert p is not None
        # the backup was torn (or is behind): roll it back to the primary
        log.info("repairing backup purse from primary (seq %d)", p.seq)
        await self._write_copy(BACKUP, p)
        return p, True

    def _balance(self, record: CommitRecord, recovered: bool) -> CardBalance:
        return CardBalance(self._uid.hex(), record.balance, record.seq, record.tx_ref.hex(), recovered)

    # public API --------------------------------------------------------------------------------
    async def read_balance(self) -> CardBalance:
        await self._begin()
        record, recovered = await self._settle()
        return self._balance(record, recovered)

    async def credit(self, amount: int, tx_ref: str) -> CardBalance:
        """Add `amount` rials. Idempotent by tx_ref: a retry after a torn write never adds twice."""
        return await self._transact(amount, tx_ref, TxType.TOPUP)

    async def debit(self, amount: int, tx_ref: str) -> CardBalance:
        return await self._transact(-amount, tx_ref, TxType.TRIP)

    async def _transact(self, delta: int, tx_ref: str, tx_type: TxType) -> CardBalance:
        if abs(delta) <= 0 or abs(delta) > MAX_BALANCE_RIALS:
            raise InvalidData(f"amount must be 1..{MAX_BALANCE_RIALS} rials", error_code="badAmount")
        ref = tx_ref_short(tx_ref)
        await self._begin()
        current, recovered = await self._settle()
        if current.tx_ref == ref and current.tx_type == tx_type:
            log.info("transaction already on card (seq %d), not applied again", current.seq)
            return self._balance(current, recovered)
        new_balance = current.balance + delta
        if new_balance < 0:
            raise InsufficientBalance(f"balance {current.balance} is less than {-delta}")
        if new_balance > MAX_BALANCE_RIALS:
            raise BalanceLimit(f"balance would exceed {MAX_BALANCE_RIALS} rials")
        new = CommitRecord(current.seq + 1, new_balance, ref, tx_type)
        entry = LogEntry(new.seq, tx_type, abs(delta), int(self.clock()), self.terminal_id, ref[:2])
        # 1. log first: an entry newer than the committed counter is ignored until it commits
        slot = log_slot(new.seq)
        await self._auth(sector_of(slot), KeyType.B)
        await self.reader.write_block(slot, entry.encode(), timeout=self.timeout)
        # 2. backup copy, 3. primary copy: at most one copy is ever mid-write
        await self._apply_delta(BACKUP, delta, new)
        await self._apply_delta(PRIMARY, delta, new)
        log.info("card transaction committed seq=%d type=%s", new.seq, tx_type.name)
        return self._balance(new, recovered)

    async def read_log(self) -> list[LogEntry]:
        """Committed entries, newest first (entries of a rolled-back write are left out)."""
        await self._begin()
        record, _ = await self._settle()
        entries: list[LogEntry] = []
        for sector in LOG_SECTORS:
            await self._auth(sector, KeyType.A)
            for block in LOG_BLOCKS:
                if sector_of(block) != sector:
                    continue
                entry = LogEntry.decode(await self.reader.read_block(block, timeout=self.timeout))
                if entry is not None:
                    entries.append(entry)
        window = {(record.seq - k) & 0xFFFF: k for k in range(len(LOG_BLOCKS)) if record.seq - k >= 1}
        committed = [e for e in entries if e.seq in window]
        committed.sort(key=lambda e: window[e.seq])
        # the newest entry must be the committed transaction's own; otherwise its slot was torn
        if committed and committed[0].seq == record.seq & 0xFFFF and committed[0].tx_ref != record.tx_ref[:2]:
            committed = committed[1:]
        return committed
