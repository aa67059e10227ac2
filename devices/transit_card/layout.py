"""Where the transit card keeps what, on MIFARE Classic 1K (docs/card-layout.md): two purse
copies (value block + commit record each, in sectors 1 and 2), the identity block, the log ring
(sectors 3 and 4), their access bits, the blocks of a freshly personalised card, and the rule
that picks the copy to read (the newer consistent one) and the copy to write (the other one).
Pure: no reader, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.base import InvalidData
from devices.contracts import KeyType
from devices.mifare_classic import (
    VALUE_MAX,
    AccessBits,
    InvalidValueBlock,
    build_trailer,
    decode_value,
    encode_value,
    trailer_of,
)
from devices.transit_card.errors import BalanceLimit, CardCorrupt
from devices.transit_card.keys import CardKeys
from devices.transit_card.records import CardIdentity, CommitRecord, TxType

MAX_BALANCE_RIALS = VALUE_MAX  # a MIFARE value block holds a signed 32-bit value
PURSE_ADDR = 4  # the address byte of both value blocks: the same purse, so copies are interchangeable


@dataclass(frozen=True)
class PurseCopy:
    """Where one copy of the purse lives: a value block and its commit record, one sector."""

    name: str
    sector: int
    value_block: int
    record_block: int


COPY_1 = PurseCopy("copy 1", sector=1, value_block=4, record_block=5)
COPY_2 = PurseCopy("copy 2", sector=2, value_block=8, record_block=9)
PURSE_COPIES = (COPY_1, COPY_2)
IDENTITY_BLOCK = 6  # sector 1, beside copy 1: read with the balance, no extra authentication
RESERVED_BLOCKS = (10,)
LOG_BLOCKS: tuple[int, ...] = (12, 13, 14, 16, 17, 18)  # sectors 3 and 4, a ring of 6 entries
LOG_SECTORS = (3, 4)
CARD_SECTORS = (1, 2, 3, 4)

# access conditions (MF1S50): value block: key A read + decrement, key B also increment/write;
# record, identity and log blocks: key A read, key B write; trailer: only key B changes keys or
# access bits
PURSE_ACCESS = AccessBits(((1, 1, 0), (1, 0, 0), (1, 0, 0), (0, 1, 1)))
LOG_ACCESS = AccessBits(((1, 0, 0), (1, 0, 0), (1, 0, 0), (0, 1, 1)))


def log_slot(seq: int) -> int:
    return LOG_BLOCKS[seq % len(LOG_BLOCKS)]


def initial_blocks(uid: bytes, keys: CardKeys, balance: int, identity: CardIdentity) -> dict[int, bytes]:
    """Blocks of a freshly personalised card, by block number: both purse copies at `balance`
    with counter 0, the identity block, an empty log and each sector's trailer (diversified
    keys, the layout's access bits). Per sector the trailer comes last, so an issuer that writes
    them in this order only locks a sector whose data is in place."""
    if not 0 <= balance <= MAX_BALANCE_RIALS:
        raise BalanceLimit(f"initial balance {balance} outside 0..{MAX_BALANCE_RIALS}")
    record = CommitRecord(0, balance, b"\x00" * 4, TxType.PERSONALISE).encode()
    blocks: dict[int, bytes] = {}
    for copy in PURSE_COPIES:
        blocks[copy.value_block] = encode_value(balance, PURSE_ADDR)
        blocks[copy.record_block] = record
    blocks[IDENTITY_BLOCK] = identity.encode()
    for block in (*RESERVED_BLOCKS, *LOG_BLOCKS):
        blocks[block] = bytes(16)
    for sector in CARD_SECTORS:
        access = LOG_ACCESS if sector in LOG_SECTORS else PURSE_ACCESS
        blocks[trailer_of(sector)] = build_trailer(
            keys.key(uid, sector, KeyType.A), access, keys.key(uid, sector, KeyType.B))
    return dict(sorted(blocks.items()))


# --- reading the purse: the newer consistent copy -------------------------------------------


@dataclass(frozen=True)
class CopyState:
    """One purse copy as read. `record` is None when the copy is not consistent (torn, never
    written, value and record disagree); `value` is the value block's value when that block
    alone is well formed (a write may then move it with the card's value operations)."""

    copy: PurseCopy
    record: CommitRecord | None
    value: int | None


def copy_state(copy: PurseCopy, value_raw: bytes, record_raw: bytes) -> CopyState:
    try:
        value, addr = decode_value(value_raw)
    except InvalidValueBlock:
        return CopyState(copy, None, None)
    if addr != PURSE_ADDR:
        return CopyState(copy, None, None)
    try:
        record = CommitRecord.decode(record_raw)
    except InvalidData:
        return CopyState(copy, None, value)
    if record.balance != value:
        return CopyState(copy, None, value)
    return CopyState(copy, record, value)


def newer_and_older(states: tuple[CopyState, CopyState]) -> tuple[CopyState, CopyState]:
    """(the copy to read, the copy the next write goes to): the consistent copy with the higher
    counter, and the other one. Equal counters (a card fresh from personalisation) must hold the
    same record; the next write then goes to copy 2."""
    first, second = states
    a, b = first.record, second.record
    if a is None and b is None:
        raise CardCorrupt("neither purse copy is consistent; the card must be replaced")
    if a is not None and b is not None:
        if a.seq == b.seq:
            if a != b:
                raise CardCorrupt("purse copies share a counter but disagree")
            return first, second
        return (first, second) if a.seq > b.seq else (second, first)
    return (first, second) if a is not None else (second, first)
