"""The transit card's own records, byte for byte (docs/card-layout.md): the commit record that
says what one purse copy holds, the log entry of a trip or top-up, and the identity block
(serial, profile, issue date). Pure codecs: no reader, no I/O.
"""

from __future__ import annotations

import binascii
import datetime as dt
import enum
import hashlib
import re
import struct
from dataclasses import dataclass

from devices.base import InvalidData
from devices.transit_card.errors import IdentityCorrupt

RECORD_MAGIC = 0x4B  # "K"
IDENTITY_MAGIC = 0x49  # "I"
IDENTITY_VERSION = 1
SERIAL_DIGITS = 10
_SERIAL = re.compile(r"[0-9]{10}")  # ASCII only: \d also takes Persian digits


class TxType(enum.IntEnum):
    PERSONALISE = 0
    TOPUP = 1
    TRIP = 2


class CardProfile(enum.StrEnum):
    """Who the card is for: fares and the screen follow it (65+ and students travel at a
    concession)."""

    REGULAR = "regular"
    SENIOR = "senior"  # 65 and over
    STUDENT = "student"

    @property
    def code(self) -> int:
        return _PROFILE_CODES[self]

    @classmethod
    def from_code(cls, code: int) -> CardProfile:
        for profile, c in _PROFILE_CODES.items():
            if c == code:
                return profile
        raise ValueError(f"unknown card profile code {code}")

    @property
    def concession(self) -> bool:
        return self is not CardProfile.REGULAR


_PROFILE_CODES = {CardProfile.REGULAR: 0, CardProfile.SENIOR: 1, CardProfile.STUDENT: 2}


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF)."""
    return binascii.crc_hqx(data, 0xFFFF)


def tx_ref_short(tx_ref: str) -> bytes:
    """4 bytes that identify a transaction reference on the card (no personal data)."""
    return hashlib.sha256(tx_ref.encode("utf-8")).digest()[:4]


def check_serial(serial: str) -> str:
    """A card serial is exactly 10 decimal digits (printed on the card, the account's key)."""
    if not isinstance(serial, str) or not _SERIAL.fullmatch(serial):
        raise InvalidData(f"a card serial is {SERIAL_DIGITS} decimal digits", error_code="badSerial")
    return serial


@dataclass(frozen=True)
class CommitRecord:
    """What one purse copy says was committed last: counter, balance, which transaction."""

    seq: int
    balance: int
    tx_ref: bytes  # tx_ref_short, 4 bytes
    tx_type: TxType

    def encode(self) -> bytes:
        body = struct.pack("<BIi4sB", RECORD_MAGIC, self.seq, self.balance, self.tx_ref, self.tx_type)
        return body + struct.pack("<H", crc16(body))

    @classmethod
    def decode(cls, block: bytes) -> CommitRecord:
        if len(block) != 16 or block[0] != RECORD_MAGIC:
            raise InvalidData("not a commit record", error_code="badRecord")
        if struct.unpack("<H", block[14:16])[0] != crc16(block[:14]):
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


def _bcd(digits: str) -> bytes:
    return bytes.fromhex(digits)  # "0123456789" -> 01 23 45 67 89


def _from_bcd(raw: bytes) -> str:
    text = raw.hex()
    if not text.isdigit():
        raise ValueError("not BCD")
    return text


@dataclass(frozen=True)
class CardIdentity:
    """Block 6: who the card is, written once at personalisation (key B), read with key A.

    `magic 0x49 | version 1 | serial 5 B BCD | profile u8 | issued YYYYMMDD 4 B BCD |
    reserved 2 B | CRC-16/CCITT-FALSE of bytes 0..13, LE`."""

    serial: str
    profile: CardProfile
    issued: dt.date

    def __post_init__(self) -> None:
        check_serial(self.serial)
        object.__setattr__(self, "profile", CardProfile(self.profile))

    def encode(self) -> bytes:
        body = (bytes([IDENTITY_MAGIC, IDENTITY_VERSION]) + _bcd(self.serial) + bytes([self.profile.code])
                + _bcd(self.issued.strftime("%Y%m%d")) + bytes(2))
        return body + struct.pack("<H", crc16(body))

    @classmethod
    def decode(cls, block: bytes) -> CardIdentity:
        if len(block) != 16 or block[0] != IDENTITY_MAGIC:
            raise IdentityCorrupt("the card has no identity block")
        if struct.unpack("<H", block[14:16])[0] != crc16(block[:14]):
            raise IdentityCorrupt("the card's identity block fails its CRC")
        if block[1] != IDENTITY_VERSION:
            raise IdentityCorrupt(f"identity block version {block[1]} is not known")
        try:
            serial = _from_bcd(block[2:7])
            profile = CardProfile.from_code(block[7])
            issued = dt.datetime.strptime(_from_bcd(block[8:12]), "%Y%m%d").date()
        except ValueError as exc:
            raise IdentityCorrupt(f"identity block does not decode: {exc}") from exc
        return cls(serial, profile, issued)
