"""A virtual PN532 on a pseudo-terminal holding virtual MIFARE Classic 1K cards: it parses host
frames with the same frames.py and answers byte for byte as a PN532 in HSU mode would.

Tear model (card leaving the field mid-write): MIFARE Classic writes EEPROM one 16-byte block
per WRITE or TRANSFER. `tear_next_write(at_op=n, after_bytes=k)` lets n-1 block writes land;
the n-th lands only its first k bytes (k=0: nothing) over the old block — the torn block a
power loss mid-programming leaves — then the card is gone and the PN532 reports an RF error
(status 0x01 timeout by default; `status=` picks 0x02 CRC, 0x03 parity, 0x05 framing or 0x13
invalid frame, the other codes a real PN532 shows when the card leaves mid-frame). Value ops
(INCREMENT/DECREMENT/RESTORE) only fill the card's transfer buffer and never tear memory.

Status bytes (PN532 user manual UM0701-02 §7.1 error table; the same codes as libnfc's
pn53x-internal.h ETIMEOUT/ECRC/EPARITY/EFRAMING/EINVRXFRAM/EMFAUTH and nfcpy's
`nfc/clf/pn53x.py` error table): only a failed AUTH answers 0x14 (EMFAUTH) and leaves the card
halted; a READ/WRITE/value op/TRANSFER the card refuses is a 4-bit NAK, which the PN532 reports
as 0x13 (EINVRXFRAM: the answer is not a valid frame), and the card is halted too (MF1S50 §9:
after a NAK the card drops its authentication and must be selected again). A halted card answers nothing:
later commands get 0x01 (timeout) until InListPassiveTarget selects it again.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from dataclasses import dataclass, field
from typing import Self

from devices.base import InvalidData
from devices.pn532 import frames
from devices.pn532.card_layout import initial_blocks
from devices.pn532.frames import Frame, FrameError, FrameKind, FrameReader
from devices.pn532.keys import CardKeys
from devices.pn532.mifare import (
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
from devices.pty import PtyPort

log = logging.getLogger("devices.pn532.virtual")

FIRMWARE = bytes([0x32, 0x01, 0x06, 0x07])  # IC PN532, version 1.6, supports ISO A/B + ISO 18092
BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1288000)
# UM0701-02 §7.1 / libnfc ETIMEOUT, EINVRXFRAM, EMFAUTH
STATUS_OK, STATUS_TIMEOUT, STATUS_INVALID_FRAME, STATUS_MIFARE = 0x00, 0x01, 0x13, 0x14
# the RF errors a card leaving the field mid-command shows (timeout, CRC, parity, framing, invalid frame)
TEAR_STATUSES = (0x01, 0x02, 0x03, 0x05, 0x13)
REG_CIU_FIFO_DATA = 0x6309
SENS_REQ = 0x26


@dataclass
class VirtualCard:
    """A MIFARE Classic 1K card, 64 blocks of 16 bytes, with a 4-byte NUID or a 7-byte UID.

    A 7-byte UID card (NXP AN10927, MIFARE and handling of UIDs) answers ATQA 0x0044 and is
    selected in two cascade levels (ISO/IEC 14443-3 anticollision, cascade level 2); the PN532
    hands the host all 7 bytes, and Crypto1 authentication uses the last 4 (AN10927; libnfc
    nfc-mfclassic.c copies abtUid + szUidLen - 4). Block 0 holds the 7 UID bytes, SAK, ATQA
    and manufacturer data (no BCC)."""

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
            self.blocks = [bytearray(16) for _ in range(BLOCKS_1K)]
            if len(self.uid) == 4:
                bcc = self.uid[0] ^ self.uid[1] ^ self.uid[2] ^ self.uid[3]
                head = self.uid + bytes([bcc, self.sak]) + self.atqa[::-1]
            else:
                head = self.uid + bytes([self.sak]) + self.atqa[::-1]
            self.blocks[0] = bytearray(head + bytes(16 - len(head)))
            for sector in range(16):
                self.blocks[trailer_of(sector)] = bytearray(DEFAULT_KEY + TRANSPORT_ACCESS + b"\x69" + DEFAULT_KEY)

    @classmethod
    def blank(cls, uid: bytes | str) -> VirtualCard:
        """A factory-fresh card: transport keys FF…FF, transport access bits."""
        return cls(bytes.fromhex(uid) if isinstance(uid, str) else bytes(uid))

    def personalise(self, master_key: bytes, balance: int) -> VirtualCard:
        """Lay the card out as the issuer does (card_layout.initial_blocks)."""
        for block, data in initial_blocks(self.uid, CardKeys(master_key), balance).items():
            self.blocks[block] = bytearray(data)
        return self

    def block(self, n: int) -> bytes:
        return bytes(self.blocks[n])


# The demo card (for `kiosk sim pn532`, the demo environment and `kiosk doctor`). Its master
# key is demo-only: a deployment's master key lives in the kiosk's secure storage.
DEMO_MASTER_KEY = b"city-kiosk/demo-only/master-key!"
DEMO_CARD_UID = "04a1b2c3"
DEMO_CARD_BALANCE = 250_000


def demo_card(uid: str = DEMO_CARD_UID, balance: int = DEMO_CARD_BALANCE) -> VirtualCard:
    return VirtualCard.blank(uid).personalise(DEMO_MASTER_KEY, balance)


@dataclass
class _Tear:
    at_op: int
    after_bytes: int
    status: int = STATUS_TIMEOUT


class VirtualPN532:
    """`start()` returns a stable port path (a symlink to the current /dev/pts/N, like
    /dev/serial/by-id) for pyserial; `unplug()` closes the master side; `replug()` brings a
    fresh pty back at the same path. Output is paced at `baud` (10 bits a byte); baud=None
    answers as fast as the pty carries bytes."""

    def __init__(self, baud: int | None = 115200) -> None:
        self.baud = baud
        self._lock = threading.RLock()
        # the port shares our lock: a plug swaps the fds and resets the session in one step
        self._port = PtyPort("pn532", prefix="kiosk-pn532-", lock=self._lock)
        self.port = self._port.path
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._reader = FrameReader()
        self._card: VirtualCard | None = None
        self.torn_card: VirtualCard | None = None  # the card a tear took out of the field
        self._tear: _Tear | None = None
        self._reset_session()
        self._registers: dict[int, int] = {}
        self._max_retries_passive = 0xFF
        self._pending_list = False
        self._pending_baud: int | None = None
        self._last_response: bytes | None = None
        self._tx_free_at = 0.0
        self._rx_done_at = 0.0
        # fault injection for the host driver's tests (cleared by a replug)
        self._nack_next = self._corrupt_next = self._mute_next = 0
        self._garbage_next = b""
        self.bytes_in = 0
        self.bytes_out = 0
        self.commands: list[int] = []

    # lifecycle ----------------------------------------------------------------------------------
    def start(self) -> str:
        self._plug()
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="virtual-pn532", daemon=True)
        self._thread.start()
        return self.port

    @property
    def pty_path(self) -> str:
        """The /dev/pts/N behind `port` now ("" while unplugged)."""
        return self._port.pty_path

    def _plug(self) -> None:
        with self._lock:
            self._port.plug()
            self._reader.clear()
            self._tx_free_at = self._rx_done_at = 0.0
            # a freshly plugged device has no half-done business
            self._nack_next = self._corrupt_next = self._mute_next = 0
            self._garbage_next = b""
            self._pending_list = False
            self._pending_baud = None

    def unplug(self) -> None:
        """Pull the cable: the host's next read or write fails."""
        self._port.unplug()

    def replug(self) -> str:
        with self._lock:
            if not self._port.plugged:
                self._plug()
        return self.port

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._port.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # the field ---------------------------------------------------------------------------------
    def place(self, card: VirtualCard) -> None:
        with self._lock:
            self._card = card
            self._reset_session()

    def remove(self) -> None:
        with self._lock:
            self._card = None
            self._reset_session()

    @property
    def card(self) -> VirtualCard | None:
        return self._card

    def tear_next_write(self, *, after_bytes: int = 0, at_op: int = 1,
                        status: int = STATUS_TIMEOUT) -> None:
        """The card leaves the field during the `at_op`-th block write from now (WRITE or
        TRANSFER); that block keeps its first `after_bytes` new bytes over the old ones, and the
        PN532 answers `status` (one of TEAR_STATUSES)."""
        if at_op < 1 or not 0 <= after_bytes <= 16 or status not in TEAR_STATUSES:
            raise ValueError("at_op >= 1, 0 <= after_bytes <= 16, status in TEAR_STATUSES")
        with self._lock:
            self._tear = _Tear(at_op, after_bytes, status)

    # fault injection ---------------------------------------------------------------------------
    def nack_next(self, count: int = 1) -> None:
        """Answer the next `count` host commands with NACK (fault injection for the driver's
        resend path; a frame that really arrives corrupted gets no answer at all)."""
        self._nack_next = count

    def garbage_before_next_response(self, data: bytes) -> None:
        self._garbage_next = bytes(data)

    def corrupt_next_response(self, count: int = 1) -> None:
        """Send the next response with a bad DCS; a host NACK gets the good copy."""
        self._corrupt_next = count

    def ignore_next(self, count: int = 1) -> None:
        """Say nothing (no ACK) to the next `count` commands, as if lost on the line."""
        self._mute_next = count

    # the wire ----------------------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            fd = self._port.master_fd
            if fd is None:
                time.sleep(0.01)
                continue
            try:
                ready, _, _ = select.select([fd], [], [], 0.01)
                data = os.read(fd, 4096) if ready else b""
            except (OSError, ValueError):
                time.sleep(0.01)  # unplugged under us, or the host side is not open
                continue
            with self._lock:
                if self._pending_list and self._card is not None:
                    self._pending_list = False
                    self._send_response(frames.build_response(0x4A, self._list_target()))
                if data:
                    self._receive(data)

    def _receive(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self.baud:
            # the host's bytes take wire time to arrive; we answer only after the last one
            self._rx_done_at = max(self._rx_done_at, time.perf_counter()) + len(data) * 10 / self.baud
        self._reader.feed(data)
        while True:
            try:
                frame = self._reader.pop()
            except FrameError as exc:
                # UM0701-02 §6.2.1.3: the PN532 acknowledges only a frame whose LCS and DCS
                # check; a corrupted host frame gets no ACK, NACK or answer. The host notices
                # the missing ACK and sends again.
                log.debug("virtual PN532: bad host frame (%s), ignored", exc)
                continue
            if frame is None:
                return
            self._handle(frame)

    def _send(self, data: bytes) -> None:
        fd = self._port.master_fd
        if fd is None:
            return
        try:
            if not self.baud:
                os.write(fd, data)
            else:
                start = max(time.perf_counter(), self._tx_free_at, self._rx_done_at)
                per_byte = 10 / self.baud
                for i in range(0, len(data), 8):
                    chunk = data[i : i + 8]
                    due = start + (i + len(chunk)) * per_byte
                    delay = due - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    os.write(fd, chunk)
                self._tx_free_at = start + len(data) * per_byte
            self.bytes_out += len(data)
        except OSError as exc:
            log.debug("virtual PN532: write failed: %s", exc)

    def _send_response(self, response: bytes) -> None:
        self._last_response = response
        if self._garbage_next:
            self._send(self._garbage_next)
            self._garbage_next = b""
        if self._corrupt_next:
            self._corrupt_next -= 1
            bad = bytearray(response)
            bad[-2] ^= 0x5A  # DCS
            self._send(bytes(bad))
            return
        self._send(response)

    def _handle(self, frame: Frame) -> None:
        if frame.kind == FrameKind.ACK:
            # a host ACK aborts the command in progress; after SetSerialBaudrate it confirms
            self._pending_list = False
            if self._pending_baud is not None:
                if self.baud:
                    self.baud = self._pending_baud
                self._pending_baud = None
            return
        if frame.kind == FrameKind.NACK:
            if self._last_response is not None:
                self._send(self._last_response)
            return
        if frame.kind != FrameKind.INFO or frame.tfi != frames.TFI_HOST or not frame.data:
            return
        if self._mute_next:
            self._mute_next -= 1
            return
        if self._nack_next:
            self._nack_next -= 1
            self._send(frames.NACK)
            return
        self._send(frames.ACK)
        self.commands.append(frame.code)
        try:
            params = self._dispatch(frame.code, frame.params)
        except _SyntaxError:
            self._send_response(frames.ERROR_FRAME)
            return
        if params is not None:
            self._send_response(frames.build_response(frame.code, params))

    # PN532 commands (UM0701 §7) -----------------------------------------------------------------
    def _dispatch(self, code: int, p: bytes) -> bytes | None:
        if code == 0x00:  # Diagnose
            if not p:
                raise _SyntaxError
            return p if p[0] == 0x00 else b"\x00"
        if code == 0x02:
            return FIRMWARE
        if code == 0x04:  # GetGeneralStatus: err, field, NbTg, SAM status
            return bytes([0, int(self._card is not None), int(self._selected), 0])
        if code == 0x06:  # ReadRegister
            if len(p) % 2:
                raise _SyntaxError
            return bytes(self._registers.get((p[i] << 8) | p[i + 1], 0) for i in range(0, len(p), 2))
        if code == 0x08:  # WriteRegister
            if len(p) % 3:
                raise _SyntaxError
            for i in range(0, len(p), 3):
                self._registers[(p[i] << 8) | p[i + 1]] = p[i + 2]
            return b""
        if code == 0x10:  # SetSerialBaudrate: takes effect after the host's ACK
            if not p or p[0] >= len(BAUD_RATES):
                raise _SyntaxError
            self._pending_baud = BAUD_RATES[p[0]]
            return b""
        if code == 0x12:  # SetParameters
            return b""
        if code == 0x14:  # SAMConfiguration
            if not p or not 1 <= p[0] <= 4:
                raise _SyntaxError
            return b""
        if code == 0x16:  # PowerDown
            return b"\x00"
        if code == 0x32:  # RFConfiguration
            if not p:
                raise _SyntaxError
            if p[0] == 0x05 and len(p) >= 4:
                self._max_retries_passive = p[3]
            return b""
        if code == 0x4A:  # InListPassiveTarget
            if len(p) < 2 or p[0] not in (1, 2):
                raise _SyntaxError
            if p[1] != 0x00:
                return b"\x00"  # only 106 kbps type A cards live here
            if self._card is None and self._max_retries_passive == 0xFF:
                self._pending_list = True  # a real PN532 keeps polling until a card comes
                return None
            return self._list_target()
        if code == 0x40:  # InDataExchange
            if len(p) < 2:
                raise _SyntaxError
            if p[0] & 0x0F != 1 or not self._selected:
                return b"\x27"  # no such target
            return self._mifare(p[1], p[2:])
        if code in (0x52, 0x44):  # InRelease, InDeselect
            self._reset_session()
            return b"\x00"
        raise _SyntaxError

    def _reset_session(self) -> None:
        self._selected = False
        self._auth: tuple[int, str, bool] | None = None  # sector, key, may access memory
        self._tbuf: bytes | None = None
        self._halted = False

    def _list_target(self) -> bytes:
        card = self._card
        if card is None:
            self._registers[REG_CIU_FIFO_DATA] = SENS_REQ  # the request went out, nothing answered
            return b"\x00"
        self._reset_session()
        self._selected = True
        self._registers[REG_CIU_FIFO_DATA] = 0x00
        return bytes([1, 1]) + card.atqa + bytes([card.sak, len(card.uid)]) + card.uid

    # MIFARE Classic (MF1S50) ------------------------------------------------------------------
    def _halt(self) -> None:
        self._auth = None
        self._tbuf = None
        self._halted = True

    def _auth_failed(self) -> bytes:
        """A failed AUTH: status 0x14 (UM0701-02 §7.1, libnfc EMFAUTH) and the card halts."""
        self._halt()
        return bytes([STATUS_MIFARE])

    def _nak(self) -> bytes:
        """The card NAKs a command (MF1S50 §9: a 4-bit NAK); the PN532 reports 0x13, an invalid
        received frame (UM0701-02 §7.1, libnfc EINVRXFRAM). The card drops its authentication
        and stops answering until selected again."""
        self._halt()
        return bytes([STATUS_INVALID_FRAME])

    def _mifare(self, cmd: int, args: bytes) -> bytes:
        card = self._card
        if card is None or self._halted:
            return bytes([STATUS_TIMEOUT])
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
                return bytes([STATUS_OK]) + self._read_trailer(card.blocks[block], bits, key)
            if not data_allowed(mine, Op.READ, key):
                return self._nak()
            return bytes([STATUS_OK]) + bytes(card.blocks[block])
        if cmd == MifareCmd.WRITE:
            # MF1S50 §8.6.1 and §8.7.3: block 0 (manufacturer block) is read-only whatever the access bits
            if len(payload) != 16 or block == 0:
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
            return bytes([STATUS_OK])
        if cmd == MifareCmd.TRANSFER:
            # block 0 is read-only by any command (MF1S50 §8.6.1), RESTORE + TRANSFER included
            if tbuf is None or block == 0 or is_trailer(block) or not data_allowed(mine, Op.DECREMENT, key):
                return self._nak()
            return self._land(card, block, tbuf)
        return self._nak()

    def _write_trailer(self, card: VirtualCard, block: int, payload: bytes,
                       rule: tuple[int, int, int], key: str) -> bytes:
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

    def _authenticate(self, card: VirtualCard, block: int, key: str, payload: bytes) -> bytes:
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
        return bytes([STATUS_OK])

    @staticmethod
    def _read_trailer(trailer: bytearray, bits: AccessBits, key: str) -> bytes:
        rule = bits.blocks[3]
        access = bytes(trailer[6:10]) if trailer_rule(rule, "acc_r", key) else bytes(4)
        key_b = bytes(trailer[10:16]) if trailer_rule(rule, "keyB_r", key) else bytes(6)
        return bytes(6) + access + key_b  # key A never reads back

    def _land(self, card: VirtualCard, block: int, data: bytes) -> bytes:
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
                self._reset_session()
                log.info("virtual card torn at block %d after %d bytes", block, k)
                return bytes([tear.status])
        card.blocks[block] = bytearray(data)
        return bytes([STATUS_OK])


class _SyntaxError(Exception):
    """The host sent a command the PN532 answers with the syntax error frame."""
