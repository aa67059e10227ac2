"""Virtual MIFARE Classic 1K cards and the RF field they sit in, answering every command as an
NXP MF1S50 card does, with no reader in the picture. The virtual PN532 (devices/pn532/virtual.py)
puts its frames and status bytes around a `VirtualField`; another reader's simulator (or a test
reader) can use the same field, so a card behaves the same whichever reader talks to it.

Card rules (sources in docs/card-layout.md): a failed AUTH, or a command the card refuses (NAK),
halts the card until it is selected again; a readable key B authenticates but opens nothing;
TRANSFER only right after INCREMENT/DECREMENT/RESTORE; block 0 never changes; a trailer WRITE
changes each part only where its own permission allows.

Tear model (card leaving the field mid-write): MIFARE Classic writes EEPROM one 16-byte block per
WRITE or TRANSFER. `tear_next_write(at_op=n, after_bytes=k)` lets n-1 block writes land; the
n-th lands only its first k bytes over the old block, then the card is out of the field.

Persistence: given `cards_path`, the field keeps every card it has held (its wallet) and which
one is in the field in a JSON file, rewritten (atomically) after every block that lands, so a
process that dies and starts again meets the same cards, torn blocks included.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.base import InvalidData
from devices.mifare_classic import (
    BLOCK_SIZE,
    BLOCKS_1K,
    DEFAULT_KEY,
    TRANSPORT_ACCESS,
    VALUE_MAX,
    VALUE_MIN,
    AccessBits,
    InvalidValueBlock,
    MifareCmd,
    Op,
    data_allowed,
    decode_value,
    encode_value,
    is_trailer,
    key_b_readable,
    sector_of,
    trailer_of,
    trailer_rule,
)

log = logging.getLogger("devices.mifare_classic_virtual")

CARD_FILE_FORMAT = "city-kiosk/virtual-mifare-classic-cards"
CARD_FILE_VERSION = 1


@dataclass
class VirtualCard:
    """A MIFARE Classic 1K card, 64 blocks of 16 bytes, with a 4-byte NUID or a 7-byte UID.

    A 7-byte UID card (NXP AN10927, MIFARE and handling of UIDs) answers ATQA 0x0044 and is
    selected in two cascade levels (ISO/IEC 14443-3 anticollision, cascade level 2); readers
    hand the host all 7 bytes, and Crypto1 authentication uses the last 4 (AN10927; libnfc
    nfc-mfclassic.c copies abtUid + szUidLen - 4). Block 0 holds the UID (and BCC for a 4-byte
    NUID), SAK, ATQA and manufacturer data."""

    uid: bytes
    blocks: list[bytearray] = field(default_factory=list)
    atqa: bytes = b""
    sak: int = 0x08

    def __post_init__(self) -> None:
        if len(self.uid) not in (4, 7):
            raise ValueError("the virtual card models 4-byte NUIDs and 7-byte UIDs")
        if not self.atqa:
            self.atqa = b"\x00\x04" if len(self.uid) == 4 else b"\x00\x44"
        if not self.blocks:
            self.blocks = [bytearray(BLOCK_SIZE) for _ in range(BLOCKS_1K)]
            if len(self.uid) == 4:
                bcc = self.uid[0] ^ self.uid[1] ^ self.uid[2] ^ self.uid[3]
                head = self.uid + bytes([bcc, self.sak]) + self.atqa[::-1]
            else:
                head = self.uid + bytes([self.sak]) + self.atqa[::-1]
            self.blocks[0] = bytearray(head + bytes(BLOCK_SIZE - len(head)))
            for sector in range(16):
                self.blocks[trailer_of(sector)] = bytearray(DEFAULT_KEY + TRANSPORT_ACCESS + b"\x69" + DEFAULT_KEY)
        if len(self.blocks) != BLOCKS_1K or any(len(b) != BLOCK_SIZE for b in self.blocks):
            raise ValueError(f"a MIFARE Classic 1K card has {BLOCKS_1K} blocks of {BLOCK_SIZE} bytes")

    @classmethod
    def blank(cls, uid: bytes | str) -> VirtualCard:
        """A factory-fresh card: transport keys FF…FF, transport access bits."""
        return cls(bytes.fromhex(uid) if isinstance(uid, str) else bytes(uid))

    @property
    def uid_hex(self) -> str:
        return self.uid.hex()

    def block(self, n: int) -> bytes:
        return bytes(self.blocks[n])

    def load_blocks(self, blocks: dict[int, bytes]) -> VirtualCard:
        """Set blocks directly, as an issuer's personalisation machine would (block 0 excluded)."""
        for n, data in blocks.items():
            if n == 0 or not 0 < n < BLOCKS_1K or len(data) != BLOCK_SIZE:
                raise ValueError(f"cannot load block {n} ({len(data)} bytes)")
            self.blocks[n] = bytearray(data)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid.hex(), "atqa": self.atqa.hex(), "sak": self.sak,
                "blocks": [bytes(b).hex() for b in self.blocks]}

    @classmethod
    def from_dict(cls, data: Any) -> VirtualCard:
        try:
            blocks = [bytearray.fromhex(b) for b in data["blocks"]]
            return cls(bytes.fromhex(data["uid"]), blocks, bytes.fromhex(data["atqa"]), int(data["sak"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a virtual card: {exc}") from exc


class CardFileError(InvalidData):
    """A virtual cards file that cannot be read back (not ours, damaged, another version)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="cardFile")


def load_cards(path: str | Path) -> tuple[dict[str, VirtualCard], str | None]:
    """(cards by UID hex, UID of the card in the field or None) from a cards file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CardFileError(f"{path}: cannot read virtual cards: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != CARD_FILE_FORMAT or data.get("version") != CARD_FILE_VERSION:
        raise CardFileError(f"{path}: not a version {CARD_FILE_VERSION} virtual cards file")
    try:
        cards = [VirtualCard.from_dict(c) for c in data["cards"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise CardFileError(f"{path}: {exc}") from exc
    wallet = {c.uid_hex: c for c in cards}
    in_field = data.get("in_field")
    if in_field is not None and in_field not in wallet:
        raise CardFileError(f"{path}: the card in the field ({in_field}) is not among the cards")
    return wallet, in_field


def save_cards(path: str | Path, cards: dict[str, VirtualCard], in_field: str | None) -> None:
    """Write the cards file atomically (a crash leaves the old or the new file, never half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"format": CARD_FILE_FORMAT, "version": CARD_FILE_VERSION, "in_field": in_field,
                       "cards": [c.to_dict() for c in cards.values()]}, indent=1)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    # card images hold the cards' (diversified) keys: private from the first byte
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(body)
    tmp.replace(path)


class Answer(enum.Enum):
    """How a card answered one command."""

    OK = "ok"  # data follows (READ) or the command was done
    NAK = "nak"  # the card refused (access bits, bad block, no transfer buffer); it is halted
    AUTH_FAILED = "authFailed"  # wrong key or UID; the card is halted
    SILENT = "silent"  # no card, or a halted card: nothing answers
    TORN = "torn"  # the card left the field during this write


@dataclass(frozen=True)
class Reply:
    answer: Answer
    data: bytes = b""


@dataclass
class _Tear:
    at_op: int
    after_bytes: int


class VirtualField:
    """The RF field of one reader: at most one card in it, and that card's session (selected,
    authenticated sector and key, transfer buffer, halted). Not thread-safe on its own: the
    reader simulator that owns it serialises calls."""

    def __init__(self, cards_path: str | Path | None = None) -> None:
        self.cards_path = Path(cards_path) if cards_path else None
        self.cards: dict[str, VirtualCard] = {}  # every card this field has held, by UID hex
        self._card: VirtualCard | None = None
        self.torn_card: VirtualCard | None = None  # the card a tear took out of the field
        self._tear: _Tear | None = None
        self.reset_session()
        if self.cards_path is not None and self.cards_path.exists():
            self.cards, in_field = load_cards(self.cards_path)
            self._card = self.cards[in_field] if in_field else None

    # the field -------------------------------------------------------------------------------
    @property
    def card(self) -> VirtualCard | None:
        return self._card

    @property
    def selected(self) -> bool:
        return self._selected

    def place(self, card: VirtualCard) -> None:
        self.cards[card.uid_hex] = card
        self._card = card
        self.reset_session()
        self.save()

    def place_uid(self, uid: str) -> VirtualCard:
        """Put a card this field has held before back in the field (KeyError if unknown)."""
        card = self.cards[uid.lower()]
        self.place(card)
        return card

    def remove(self) -> None:
        self._card = None
        self.reset_session()
        self.save()

    def save(self) -> None:
        if self.cards_path is not None:
            save_cards(self.cards_path, self.cards, self._card.uid_hex if self._card else None)

    def tear_next_write(self, *, at_op: int = 1, after_bytes: int = 0) -> None:
        """The card leaves the field during the `at_op`-th block write from now (WRITE or
        TRANSFER); that block keeps its first `after_bytes` new bytes over the old ones."""
        if at_op < 1 or not 0 <= after_bytes <= BLOCK_SIZE:
            raise ValueError("at_op >= 1, 0 <= after_bytes <= 16")
        self._tear = _Tear(at_op, after_bytes)

    # the session (MF1S50 §9 states: idle, active, authenticated, halted) ---------------------
    def reset_session(self) -> None:
        self._selected = False
        self._auth: tuple[int, str, bool] | None = None  # sector, key, may access memory
        self._tbuf: bytes | None = None
        self._halted = False

    def select(self) -> VirtualCard | None:
        """Anticollision and select: the card in the field, now active (None if the field is empty)."""
        self.reset_session()
        if self._card is None:
            return None
        self._selected = True
        return self._card

    def _halt(self) -> None:
        self._auth = None
        self._tbuf = None
        self._halted = True

    def _auth_failed(self) -> Reply:
        self._halt()
        return Reply(Answer.AUTH_FAILED)

    def _nak(self) -> Reply:
        """MF1S50 §9: a refused command gets a 4-bit NAK; the card drops its authentication
        and stops answering until selected again."""
        self._halt()
        return Reply(Answer.NAK)

    def command(self, cmd: int, args: bytes) -> Reply:
        """One MIFARE Classic command as the card receives it: `cmd`, then the block address
        and the command's data (key + UID for AUTH, 16 bytes for WRITE, 4 for value ops)."""
        card = self._card
        if card is None or self._halted or not self._selected:
            return Reply(Answer.SILENT)
        # MF1S50 §9 (value operations): TRANSFER takes the transfer buffer filled by the
        # command just before it (INCREMENT, DECREMENT or RESTORE); any other command between
        # them leaves nothing to transfer.
        tbuf, self._tbuf = self._tbuf, None
        if not args or args[0] >= BLOCKS_1K:
            return self._auth_failed() if cmd in (MifareCmd.AUTH_A, MifareCmd.AUTH_B) else self._nak()
        block, payload = args[0], args[1:]
        if cmd in (MifareCmd.AUTH_A, MifareCmd.AUTH_B):
            return self._authenticate(card, block, "A" if cmd == MifareCmd.AUTH_A else "B", payload)
        if self._auth is None or self._auth[0] != sector_of(block):
            return self._nak()
        _, key, usable = self._auth
        if not usable:
            # MF1S50 §8.7.3 (note [1] to tables 7 and 8): where key B is readable it cannot serve for
            # authentication; an AUTH with it succeeds but the card refuses every later access
            return self._nak()
        try:
            bits = AccessBits.decode(bytes(card.blocks[trailer_of(sector_of(block))][6:9]))
        except InvalidData:
            return self._nak()
        mine = bits.blocks[block % 4]
        if cmd == MifareCmd.READ:
            if is_trailer(block):
                return Reply(Answer.OK, self._read_trailer(card.blocks[block], bits, key))
            if not data_allowed(mine, Op.READ, key):
                return self._nak()
            return Reply(Answer.OK, bytes(card.blocks[block]))
        if cmd == MifareCmd.WRITE:
            # MF1S50 §8.6.1 and §8.7.3: block 0 (manufacturer block) is read-only whatever the access bits
            if len(payload) != BLOCK_SIZE or block == 0:
                return self._nak()
            if is_trailer(block):
                return self._write_trailer(card, block, payload, mine, key)
            if not data_allowed(mine, Op.WRITE, key):
                return self._nak()
            return self._land(card, block, payload)
        if cmd in (MifareCmd.INCREMENT, MifareCmd.DECREMENT, MifareCmd.RESTORE):
            if is_trailer(block) or len(payload) != 4:
                return self._nak()
            op = Op.INCREMENT if cmd == MifareCmd.INCREMENT else Op.DECREMENT
            if not data_allowed(mine, op, key):
                return self._nak()
            try:
                value, addr = decode_value(bytes(card.blocks[block]))
            except InvalidValueBlock:
                return self._nak()
            operand = int.from_bytes(payload, "little")
            if cmd == MifareCmd.INCREMENT:
                value += operand
            elif cmd == MifareCmd.DECREMENT:
                value -= operand
            if not VALUE_MIN <= value <= VALUE_MAX:
                return self._nak()
            self._tbuf = encode_value(value, addr)
            return Reply(Answer.OK)
        if cmd == MifareCmd.TRANSFER:
            # block 0 is read-only by any command (MF1S50 §8.6.1), RESTORE + TRANSFER included
            if tbuf is None or block == 0 or is_trailer(block) or not data_allowed(mine, Op.DECREMENT, key):
                return self._nak()
            return self._land(card, block, tbuf)
        return self._nak()

    def _write_trailer(self, card: VirtualCard, block: int, payload: bytes,
                       rule: tuple[int, int, int], key: str) -> Reply:
        """MF1S50 §8.7.2 table 7, as the Flipper Zero MIFARE Classic emulator applies it
        (lib/nfc/protocols/mifare_classic.c, write to a sector trailer): key A, the access bits
        (bytes 6..9 with the GPB) and key B each change only where their own permission allows;
        the rest of the trailer keeps its old bytes. No permission at all: the card NAKs."""
        keya_w = trailer_rule(rule, "keyA_w", key)
        acc_w = trailer_rule(rule, "acc_w", key)
        keyb_w = trailer_rule(rule, "keyB_w", key)
        if not (keya_w or acc_w or keyb_w):
            return self._nak()
        data = bytearray(card.blocks[block])
        if keya_w:
            data[0:6] = payload[0:6]
        if acc_w:
            data[6:10] = payload[6:10]
        if keyb_w:
            data[10:16] = payload[10:16]
        return self._land(card, block, bytes(data))

    def _authenticate(self, card: VirtualCard, block: int, key: str, payload: bytes) -> Reply:
        if len(payload) != 10 or payload[6:10] != card.uid[-4:]:
            return self._auth_failed()
        trailer = card.blocks[trailer_of(sector_of(block))]
        try:
            bits = AccessBits.decode(bytes(trailer[6:9]))
        except InvalidData:
            return self._auth_failed()
        expected = trailer[0:6] if key == "A" else trailer[10:16]
        if bytes(payload[:6]) != bytes(expected):
            return self._auth_failed()
        # a readable key B authenticates, but no memory access follows (MF1S50 §8.7.3 note [1])
        usable = not (key == "B" and key_b_readable(bits.blocks[3]))
        self._auth = (sector_of(block), key, usable)
        self._tbuf = None
        return Reply(Answer.OK)

    @staticmethod
    def _read_trailer(trailer: bytearray, bits: AccessBits, key: str) -> bytes:
        rule = bits.blocks[3]
        access = bytes(trailer[6:10]) if trailer_rule(rule, "acc_r", key) else bytes(4)
        key_b = bytes(trailer[10:16]) if trailer_rule(rule, "keyB_r", key) else bytes(6)
        return bytes(6) + access + key_b  # key A never reads back

    def _land(self, card: VirtualCard, block: int, data: bytes) -> Reply:
        if block == 0:  # MF1S50 §8.6.1: the manufacturer block never changes
            return self._nak()
        tear = self._tear
        if tear is not None:
            tear.at_op -= 1
            if tear.at_op == 0:
                self._tear = None
                k = tear.after_bytes
                card.blocks[block] = bytearray(data[:k]) + card.blocks[block][k:]
                self.torn_card = card
                self._card = None
                self.reset_session()
                log.info("virtual card torn at block %d after %d bytes", block, k)
                self.save()
                return Reply(Answer.TORN)
        card.blocks[block] = bytearray(data)
        self.save()
        return Reply(Answer.OK)
