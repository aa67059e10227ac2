"""A virtual PN532 on a pseudo-terminal: it parses host frames with the same frames.py and
answers byte for byte as a PN532 in HSU mode would. The cards and how they answer are the
reader-independent model in devices/mifare_classic_virtual.py (`VirtualField`); this module adds
the PN532's frames, commands and status bytes around it.

Tear model: `tear_next_write(at_op=n, after_bytes=k, status=…)` arms the field's tear (n-1
block writes land, the n-th keeps its first k bytes, the card leaves) and picks the RF error the
PN532 reports: 0x01 timeout by default, or 0x02 CRC, 0x03 parity, 0x05 framing or 0x13 invalid
frame, the codes a real PN532 shows when the card leaves mid-frame.

Status bytes (PN532 user manual UM0701-02 §7.1 error table; the same codes as libnfc's
pn53x-internal.h ETIMEOUT/ECRC/EPARITY/EFRAMING/EINVRXFRAM/EMFAUTH and nfcpy's
`nfc/clf/pn53x.py` error table): only a failed AUTH answers 0x14 (EMFAUTH); a command the card
refuses is its 4-bit NAK, which the PN532 reports as 0x13 (EINVRXFRAM: the answer is not a valid
frame); a halted card answers nothing, so later commands get 0x01 (timeout) until
InListPassiveTarget selects it again.

Persistence: `VirtualPN532(cards_path=…)` keeps its cards in a JSON file (see the field), so a
kiosk that crashes mid-write meets the same, possibly torn, card after a restart.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from pathlib import Path
from typing import Self

from devices.mifare_classic_virtual import Answer, VirtualCard, VirtualField
from devices.pn532 import frames
from devices.pn532.frames import Frame, FrameError, FrameKind, FrameReader
from devices.pty import PtyPort

__all__ = ["FIRMWARE", "TEAR_STATUSES", "VirtualCard", "VirtualField", "VirtualPN532"]

log = logging.getLogger("devices.pn532.virtual")

FIRMWARE = bytes([0x32, 0x01, 0x06, 0x07])  # IC PN532, version 1.6, supports ISO A/B + ISO 18092
BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1288000)
# UM0701-02 §7.1 / libnfc ETIMEOUT, EINVRXFRAM, EMFAUTH
STATUS_OK, STATUS_TIMEOUT, STATUS_INVALID_FRAME, STATUS_MIFARE = 0x00, 0x01, 0x13, 0x14
# the RF errors a card leaving the field mid-command shows (timeout, CRC, parity, framing, invalid frame)
TEAR_STATUSES = (0x01, 0x02, 0x03, 0x05, 0x13)
REG_CIU_FIFO_DATA = 0x6309
SENS_REQ = 0x26


class VirtualPN532:
    """`start()` returns a stable port path (a symlink to the current /dev/pts/N, like
    /dev/serial/by-id) for pyserial; `unplug()` closes the master side; `replug()` brings a
    fresh pty back at the same path. Output is paced at `baud` (10 bits a byte); baud=None
    answers as fast as the pty carries bytes. `cards_path`: keep the cards in this JSON file
    (loaded if it exists, rewritten after every block that lands)."""

    def __init__(self, baud: int | None = 115200, *, cards_path: str | Path | None = None) -> None:
        self.baud = baud
        self._lock = threading.RLock()
        # the port shares our lock: a plug swaps the fds and resets the session in one step
        self._port = PtyPort("pn532", prefix="kiosk-pn532-", lock=self._lock)
        self.port = self._port.path
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._reader = FrameReader()
        self.field = VirtualField(cards_path)
        self._tear_status = STATUS_TIMEOUT
        self._registers: dict[int, int] = {}
        self._max_retries_passive = 0xFF
        self._pending_list = False
        self._pending_baud: int | None = None
        self._last_response: bytes | None = None
        self._tx_free_at = 0.0
        self._rx_done_at = 0.0
        # fault injection for the host driver's tests (cleared by a replug)
        self._nack_next = self._corrupt_next = self._mute_next = 0
        self._slow_next, self._slow_count = 0.0, 0
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
            self.field.place(card)

    def place_uid(self, uid: str) -> VirtualCard:
        """Put back a card this reader has held (one loaded from `cards_path` too)."""
        with self._lock:
            return self.field.place_uid(uid)

    def remove(self) -> None:
        with self._lock:
            self.field.remove()

    @property
    def card(self) -> VirtualCard | None:
        return self.field.card

    @property
    def cards(self) -> dict[str, VirtualCard]:
        """Every card this reader has held, by UID hex (persisted with `cards_path`)."""
        return self.field.cards

    @property
    def torn_card(self) -> VirtualCard | None:
        """The card a tear took out of the field."""
        return self.field.torn_card

    def tear_next_write(self, *, after_bytes: int = 0, at_op: int = 1,
                        status: int = STATUS_TIMEOUT) -> None:
        """The card leaves the field during the `at_op`-th block write from now (WRITE or
        TRANSFER); that block keeps its first `after_bytes` new bytes over the old ones, and the
        PN532 answers `status` (one of TEAR_STATUSES)."""
        if at_op < 1 or not 0 <= after_bytes <= 16 or status not in TEAR_STATUSES:
            raise ValueError("at_op >= 1, 0 <= after_bytes <= 16, status in TEAR_STATUSES")
        with self._lock:
            self.field.tear_next_write(at_op=at_op, after_bytes=after_bytes)
            self._tear_status = status

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

    def slow_next(self, seconds: float, count: int = 1) -> None:
        """Take `seconds` before acknowledging each of the next `count` host commands (a chip,
        or a line, that is late): a host that gives up on the ACK sends the command again, and
        both copies run, each with its ACK and its answer — the second answer can arrive after
        the host has moved on to its next command."""
        self._slow_next, self._slow_count = seconds, count

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
                if self._pending_list and self.field.card is not None:
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
        if self._slow_count:
            self._slow_count -= 1
            time.sleep(self._slow_next)
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
            return bytes([0, int(self.field.card is not None), int(self.field.selected), 0])
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
            if self.field.card is None and self._max_retries_passive == 0xFF:
                self._pending_list = True  # a real PN532 keeps polling until a card comes
                return None
            return self._list_target()
        if code == 0x40:  # InDataExchange
            if len(p) < 2:
                raise _SyntaxError
            if p[0] & 0x0F != 1 or not self.field.selected:
                return b"\x27"  # no such target
            return self._mifare(p[1], p[2:])
        if code in (0x52, 0x44):  # InRelease, InDeselect
            self.field.reset_session()
            return b"\x00"
        raise _SyntaxError

    def _list_target(self) -> bytes:
        card = self.field.select()
        if card is None:
            self._registers[REG_CIU_FIFO_DATA] = SENS_REQ  # the request went out, nothing answered
            return b"\x00"
        self._registers[REG_CIU_FIFO_DATA] = 0x00
        return bytes([1, 1]) + card.atqa + bytes([card.sak, len(card.uid)]) + card.uid

    # MIFARE Classic through InDataExchange: the card answers, the PN532 reports ------------------
    def _mifare(self, cmd: int, args: bytes) -> bytes:
        reply = self.field.command(cmd, args)
        if reply.answer is Answer.OK:
            return bytes([STATUS_OK]) + reply.data
        if reply.answer is Answer.AUTH_FAILED:
            return bytes([STATUS_MIFARE])  # UM0701-02 §7.1, libnfc EMFAUTH
        if reply.answer is Answer.NAK:
            return bytes([STATUS_INVALID_FRAME])  # the card's 4-bit NAK: libnfc EINVRXFRAM
        if reply.answer is Answer.TORN:
            return bytes([self._tear_status])
        return bytes([STATUS_TIMEOUT])  # nothing answered


class _SyntaxError(Exception):
    """The host sent a command the PN532 answers with the syntax error frame."""
