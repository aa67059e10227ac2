"""MIFARE Classic 1K facts every reader, virtual card and card format shares: command bytes,
block geometry, value-block encoding with validation, and sector-trailer access bits (NXP
MF1S50). Nothing here knows a reader (PN532, PC/SC) or what a transit card keeps where."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from devices.base import InvalidData
from devices.contracts import KeyType

BLOCK_SIZE = 16
BLOCKS_1K = 64
SECTORS_1K = 16
VALUE_MIN = -(2**31)
VALUE_MAX = 2**31 - 1


__all__ = ["BLOCK_SIZE", "BLOCKS_1K", "SECTORS_1K", "VALUE_MIN", "VALUE_MAX", "DEFAULT_KEY",
           "TRANSPORT_ACCESS", "AccessBits", "InvalidValueBlock", "KeyType", "MifareCmd", "Op",
           "auth_command", "build_trailer", "data_allowed", "decode_value", "encode_value",
           "is_trailer", "is_value_block", "key_b_readable", "sector_of", "trailer_of", "trailer_rule"]


class MifareCmd(enum.IntEnum):
    AUTH_A = 0x60
    AUTH_B = 0x61
    READ = 0x30
    WRITE = 0xA0
    DECREMENT = 0xC0
    INCREMENT = 0xC1
    RESTORE = 0xC2
    TRANSFER = 0xB0


def auth_command(key_type: KeyType) -> MifareCmd:
    return MifareCmd.AUTH_A if key_type is KeyType.A else MifareCmd.AUTH_B


def sector_of(block: int) -> int:
    return block // 4


def trailer_of(sector: int) -> int:
    return sector * 4 + 3


def is_trailer(block: int) -> bool:
    return block % 4 == 3


class InvalidValueBlock(InvalidData):
    """A block that is not a well-formed value block (torn write, never initialised)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="invalidValueBlock")


def encode_value(value: int, addr: int) -> bytes:
    """Value block: value (4 B LE, signed), ~value, value, addr, ~addr, addr, ~addr."""
    if not VALUE_MIN <= value <= VALUE_MAX:
        raise InvalidData(f"value {value} does not fit a 32-bit value block", error_code="valueRange")
    if not 0 <= addr <= 0xFF:
        raise InvalidData(f"value block address {addr} is not a byte", error_code="valueAddr")
    v = struct.pack("<i", value)
    inv = bytes(b ^ 0xFF for b in v)
    return v + inv + v + bytes([addr, addr ^ 0xFF, addr, addr ^ 0xFF])


def decode_value(block: bytes) -> tuple[int, int]:
    """(value, addr) of a value block; InvalidValueBlock if any redundancy check fails."""
    if len(block) != BLOCK_SIZE:
        raise InvalidValueBlock(f"value block must be 16 bytes, got {len(block)}")
    v, inv, v2 = block[0:4], block[4:8], block[8:12]
    if v != v2 or any((a ^ b) != 0xFF for a, b in zip(v, inv)):
        raise InvalidValueBlock("value copies disagree")
    a = block[12:16]
    if a[0] != a[2] or a[1] != a[3] or (a[0] ^ a[1]) != 0xFF:
        raise InvalidValueBlock("address copies disagree")
    return struct.unpack("<i", v)[0], a[0]


def is_value_block(block: bytes) -> bool:
    try:
        decode_value(block)
    except InvalidValueBlock:
        return False
    return True


# --- access conditions ------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessBits:
    """(C1, C2, C3) for blocks 0, 1, 2 and the trailer (3) of one sector."""

    blocks: tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]

    def encode(self) -> bytes:
        """The three access bytes 6..8 of a sector trailer (bit b of Cx is block b)."""
        c1 = sum(self.blocks[b][0] << b for b in range(4))
        c2 = sum(self.blocks[b][1] << b for b in range(4))
        c3 = sum(self.blocks[b][2] << b for b in range(4))
        return bytes([((~c2 & 0xF) << 4) | (~c1 & 0xF), (c1 << 4) | (~c3 & 0xF), (c3 << 4) | c2])

    @classmethod
    def decode(cls, raw: bytes) -> AccessBits:
        b6, b7, b8 = raw[0], raw[1], raw[2]
        c1, c2, c3 = b7 >> 4, b8 & 0xF, b8 >> 4
        if (b6 & 0xF) != (~c1 & 0xF) or (b6 >> 4) != (~c2 & 0xF) or (b7 & 0xF) != (~c3 & 0xF):
            raise InvalidData("access bits fail their inverted copy", error_code="accessBits")
        return cls(tuple(((c1 >> b) & 1, (c2 >> b) & 1, (c3 >> b) & 1) for b in range(4)))  # type: ignore[arg-type]


class Op(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    INCREMENT = "increment"
    DECREMENT = "decrement"  # also TRANSFER and RESTORE


# Data-block permissions by (C1, C2, C3): op -> keys allowed (MF1S50 table 8)
_DATA_RULES: dict[tuple[int, int, int], dict[Op, str]] = {
    (0, 0, 0): {Op.READ: "AB", Op.WRITE: "AB", Op.INCREMENT: "AB", Op.DECREMENT: "AB"},
    (0, 1, 0): {Op.READ: "AB", Op.WRITE: "", Op.INCREMENT: "", Op.DECREMENT: ""},
    (1, 0, 0): {Op.READ: "AB", Op.WRITE: "B", Op.INCREMENT: "", Op.DECREMENT: ""},
    (1, 1, 0): {Op.READ: "AB", Op.WRITE: "B", Op.INCREMENT: "B", Op.DECREMENT: "AB"},
    (0, 0, 1): {Op.READ: "AB", Op.WRITE: "", Op.INCREMENT: "", Op.DECREMENT: "AB"},
    (0, 1, 1): {Op.READ: "B", Op.WRITE: "B", Op.INCREMENT: "", Op.DECREMENT: ""},
    (1, 0, 1): {Op.READ: "B", Op.WRITE: "", Op.INCREMENT: "", Op.DECREMENT: ""},
    (1, 1, 1): {Op.READ: "", Op.WRITE: "", Op.INCREMENT: "", Op.DECREMENT: ""},
}

# Trailer permissions by (C1, C2, C3): what each key may do to the trailer (MF1S50 table 7).
# keys: key A write; access bits read / write; key B read / write
_TRAILER_RULES: dict[tuple[int, int, int], dict[str, str]] = {
    (0, 0, 0): {"keyA_w": "A", "acc_r": "A", "acc_w": "", "keyB_r": "A", "keyB_w": "A"},
    (0, 1, 0): {"keyA_w": "", "acc_r": "A", "acc_w": "", "keyB_r": "A", "keyB_w": ""},
    (1, 0, 0): {"keyA_w": "B", "acc_r": "AB", "acc_w": "", "keyB_r": "", "keyB_w": "B"},
    (1, 1, 0): {"keyA_w": "", "acc_r": "AB", "acc_w": "", "keyB_r": "", "keyB_w": ""},
    (0, 0, 1): {"keyA_w": "A", "acc_r": "A", "acc_w": "A", "keyB_r": "A", "keyB_w": "A"},
    (0, 1, 1): {"keyA_w": "B", "acc_r": "AB", "acc_w": "B", "keyB_r": "", "keyB_w": "B"},
    (1, 0, 1): {"keyA_w": "", "acc_r": "AB", "acc_w": "B", "keyB_r": "", "keyB_w": ""},
    (1, 1, 1): {"keyA_w": "", "acc_r": "AB", "acc_w": "", "keyB_r": "", "keyB_w": ""},
}


def data_allowed(bits: tuple[int, int, int], op: Op, key: str) -> bool:
    return key in _DATA_RULES[bits][op]


def trailer_rule(bits: tuple[int, int, int], what: str, key: str) -> bool:
    return key in _TRAILER_RULES[bits][what]


def key_b_readable(bits: tuple[int, int, int]) -> bool:
    """When key B is readable it is data, and cannot authenticate (MF1S50 §8.7.3)."""
    return bool(_TRAILER_RULES[bits]["keyB_r"])


TRANSPORT_ACCESS = bytes.fromhex("ff0780")  # factory setting: key A does everything
DEFAULT_KEY = b"\xff" * 6


def build_trailer(key_a: bytes, access: AccessBits, key_b: bytes, gpb: int = 0x69) -> bytes:
    if len(key_a) != 6 or len(key_b) != 6:
        raise InvalidData("MIFARE keys are 6 bytes", error_code="badKey")
    return key_a + access.encode() + bytes([gpb]) + key_b
