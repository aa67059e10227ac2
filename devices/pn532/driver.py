"""PN532 card reader over UART (HSU) with pyserial, implementing the CardReader contract:
wake-up, SAM configuration, target discovery and MIFARE Classic commands through
InDataExchange, with ACK/NACK handling, resend, resync and unplug detection. Registered as
config type "pn532-uart". The typed card errors (AuthenticationError, AccessDenied, NoCard,
CardRemoved) are the contract's; they stay importable from here."""

from __future__ import annotations

import asyncio
import logging
import termios
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import serial

from devices.base import (
    CommandTimeout,
    DeviceError,
    DeviceIdentity,
    DeviceOffline,
    HardwareError,
    HealthLevel,
    HealthReport,
    InvalidData,
    ProtocolError,
    register,
)
from devices.contracts import (
    AccessDenied,
    AuthenticationError,
    CardInfo,
    CardReader,
    CardRemoved,
    KeyType,
    NoCard,
)
from devices.mifare_classic import BLOCK_SIZE, BLOCKS_1K, MifareCmd, auth_command
from devices.pn532 import frames
from devices.pn532.frames import (
    DataChecksumError,
    Frame,
    FrameError,
    FrameKind,
    FrameReader,
)

log = logging.getLogger("devices.pn532.driver")

T = TypeVar("T")

CMD_GET_FIRMWARE_VERSION = 0x02
CMD_SAM_CONFIGURATION = 0x14
CMD_RF_CONFIGURATION = 0x32
CMD_IN_LIST_PASSIVE_TARGET = 0x4A
CMD_IN_DATA_EXCHANGE = 0x40
CMD_IN_RELEASE = 0x52

# InDataExchange status byte (PN532 user manual UM0701-02 §7.1 error table; libnfc
# pn53x-internal.h ETIMEOUT 0x01, ECRC 0x02, EPARITY 0x03, EFRAMING 0x05, EINVRXFRAM 0x13,
# EMFAUTH 0x14; nfcpy nfc/clf/pn53x.py has the same table)
STATUS_OK = 0x00
STATUS_TIMEOUT = 0x01  # the target did not answer: it left the field
STATUS_INVALID_FRAME = 0x13  # the card's answer was no valid frame: a NAK (refused) or a tear
STATUS_AUTH_ERROR = 0x14  # MIFARE authentication failed (only AUTH answers this)
# RF errors of a card leaving the field mid-frame: timeout, CRC, parity, framing
RF_ERRORS = frozenset({0x01, 0x02, 0x03, 0x05})

# HSU wake-up (UM0701 §7.2.11): a long 0x55 preamble then zeros while the PN532 wakes
WAKEUP = b"\x55\x55" + b"\x00" * 14
ACK_TIMEOUT_S = 0.1  # the PN532 acknowledges within 15 ms; leave room for a busy host
#: how long a command sent twice (a late ACK) waits for the second copy's answer, to drop it
DUPLICATE_WAIT_S = 1.0
_READ_SLICE_S = 0.01  # one blocking read never holds the executor longer
# a PN532 streams a frame without pauses; USB-serial adapters batch bytes for up to ~16 ms
IDLE_GAP_S = 0.04

#: what the wire raises when the port goes away under a command: pyserial's own error, the OS's
#: (EIO on a tty whose other end closed) and termios.error, which is no OSError (tcflush in
#: reset_input_buffer on a vanished pty raises it)
PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)
#: what pyserial raises when its port is closed by another thread mid-call (its fd set to None
#: under select/ioctl/os.read): a lost port only when the port is in fact closed, else a bug
_CLOSED_UNDER_US = (TypeError, AttributeError, ValueError)


__all__ = ["AccessDenied", "AuthenticationError", "CardRemoved", "ChipError", "NoCard", "PN532Reader"]


def _describe(exc: BaseException) -> str:
    """An OS-level error in words (termios.error carries a bare (errno, text) tuple)."""
    if isinstance(exc, termios.error) and len(exc.args) == 2:
        return f"{exc.args[1]} (errno {exc.args[0]})"
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, (OSError, serial.SerialException)) else str(exc)


class ChipError(HardwareError):
    """The PN532 reported an error status other than timeout or authentication."""


@register("pn532-uart")
class PN532Reader(CardReader):
    """Options: port, baudrate=115200, timeout=1.0 (per command), poll_interval=0.02 (how often
    an empty field is asked again: half of it is on average between a card placed and seen)."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.port = str(options.get("port", ""))
        self.baudrate = int(options.get("baudrate", 115200))
        self.timeout = float(options.get("timeout", 1.0))
        self.poll_interval = float(options.get("poll_interval", 0.02))
        self._serial: serial.Serial | None = None
        self._reader = FrameReader()
        self._io_lock = threading.Lock()
        self._card: CardInfo | None = None
        self.capabilities = {"transport": "uart", "baudrate": self.baudrate,
                             "card_types": ["mifare-classic-1k"], "protocol": "pn532-hsu"}

    # lifecycle ---------------------------------------------------------------------------------
    async def _open(self) -> None:
        if not self.port:
            raise DeviceOffline(f"{self.name}: no serial port configured", device=self.name)
        await self.run_blocking(self._open_blocking)

    def _open_blocking(self) -> None:
        self._close_port()
        try:
            self._serial = serial.Serial(self.port, self.baudrate, timeout=_READ_SLICE_S,
                                         write_timeout=1.0)
        except PORT_ERRORS as exc:
            raise DeviceOffline(f"{self.name}: cannot open {self.port}: {_describe(exc)}",
                                device=self.name) from exc
        self._reader.clear()
        try:
            self._wake_and_configure()
        except CommandTimeout as exc:
            self._close_port()
            raise DeviceOffline(f"{self.name}: no PN532 answers on {self.port}: {exc}",
                                device=self.name) from exc

    def _wake_and_configure(self) -> None:
        self._write(WAKEUP)
        # normal mode, no virtual card timeout, no IRQ pin (UM0701 §7.2.10)
        self._exchange(CMD_SAM_CONFIGURATION, b"\x01\x00\x00", self.timeout)
        ic, ver, rev, support = self._exchange(CMD_GET_FIRMWARE_VERSION, b"", self.timeout)[:4]
        if ic != 0x32:
            raise HardwareError(f"{self.name}: not a PN532 (IC {ic:#04x})", device=self.name,
                                error_code="wrongChip")
        # MxRtyPassiveActivation = 2: InListPassiveTarget answers "no target" instead of
        # waiting forever, so polling stays responsive (UM0701 §7.3.1, CfgItem 5)
        self._exchange(CMD_RF_CONFIGURATION, b"\x05\xff\x01\x02", self.timeout)
        self.identity = DeviceIdentity(model="PN532", firmware=f"{ver}.{rev}", vendor="NXP",
                                       serial=self.port)
        self.capabilities["support"] = support
        log.info("PN532 on %s: firmware %d.%d", self.port, ver, rev)

    async def _close(self) -> None:
        await self.run_blocking(self._close_port)

    def _close_port(self) -> None:
        if self._serial is not None:
            port, self._serial = self._serial, None
            try:
                port.close()
            except PORT_ERRORS as exc:
                log.debug("closing %s: %s", self.port, exc)

    # the wire ------------------------------------------------------------------------------------
    def _offline(self, exc: BaseException, port: serial.Serial | None = None) -> DeviceOffline:
        if port is None or self._serial is port:  # never close a port reopened meanwhile
            self._close_port()
        return DeviceOffline(f"{self.name}: port {self.port} lost mid-command: {_describe(exc)}",
                             device=self.name, error_code="portLost")

    def _port(self) -> serial.Serial:
        port = self._serial
        if port is None:
            raise DeviceOffline(f"{self.name}: port {self.port} is closed", device=self.name,
                                error_code="portClosed")
        return port

    def _on_wire(self, fn: Callable[[serial.Serial], T]) -> T:
        """One call on the port; the port going away (unplugged, the emulator stopped, closed by
        another thread) is DeviceOffline, whatever pyserial or termios raised for it."""
        port = self._port()
        try:
            return fn(port)
        except PORT_ERRORS as exc:
            raise self._offline(exc, port) from exc
        except _CLOSED_UNDER_US as exc:
            if port.is_open and getattr(port, "fd", 0) is not None and self._serial is port:
                raise  # the port is fine: a real bug, not a lost port
            raise self._offline(exc, port) from exc

    def _write(self, data: bytes) -> None:
        self._on_wire(lambda port: port.write(data))

    def _next_frame(self, deadline: float) -> Frame | None:
        """The next frame off the wire before `deadline`, or None. Bad frames are logged and
        skipped (resync); a bad response checksum asks the PN532 to resend with a NACK."""
        last_rx = time.monotonic()
        while True:
            try:
                frame = self._reader.pop()
            except DataChecksumError as exc:
                self.counters["checksum_errors"] += 1
                log.warning("%s: %s; asking for a resend", self.name, exc)
                self._write(frames.NACK)
                continue
            except FrameError as exc:
                self.counters["frame_errors"] += 1
                log.warning("%s: skipping bad frame: %s", self.name, exc)
                continue
            if frame is not None:
                return frame
            now = time.monotonic()
            if now >= deadline:
                return None
            if self._reader.pending and now - last_rx > IDLE_GAP_S and self._reader.expire():
                # a frame header whose bytes stopped coming was line noise: look behind it
                self.counters["frame_errors"] += 1
                continue
            chunk = self._on_wire(lambda port: port.read(max(1, port.in_waiting)))
            if chunk:
                self._reader.feed(chunk)
                last_rx = time.monotonic()

    def _exchange(self, code: int, params: bytes, timeout: float) -> bytes:
        """Send one command; return the response parameters (after the response code)."""
        request = frames.build_command(code, params)
        self._on_wire(lambda port: port.reset_input_buffer())  # stale bytes of an abandoned command
        self._reader.clear()
        acked = False
        copies = 0  # how many copies of the command went out
        for attempt in range(3):  # first send + resend on NACK or a lost ACK
            self._write(request)
            copies += 1
            frame = self._next_frame(time.monotonic() + ACK_TIMEOUT_S)
            if frame is not None and frame.kind == FrameKind.ACK:
                acked = True
                break
            if frame is not None and frame.kind == FrameKind.NACK:
                self.counters["nacks"] += 1
                log.info("%s: NACK for command %#04x, resending", self.name, code)
                continue
            if frame is not None and frame.kind == FrameKind.ERROR:
                raise ProtocolError(f"{self.name}: PN532 rejected command {code:#04x} (syntax error)",
                                    device=self.name, error_code="syntax")
            if frame is not None and frame.kind == FrameKind.INFO:
                # the ACK was lost in line noise but the answer arrived: accept it below
                return self._answered(code, frame, copies, timeout)
            self.counters["ack_timeouts"] += 1
            log.info("%s: no ACK for command %#04x (attempt %d)", self.name, code, attempt + 1)
            if attempt >= 1:
                break
        if not acked:
            raise CommandTimeout(f"{self.name}: PN532 did not acknowledge command {code:#04x}",
                                 device=self.name, error_code="noAck")
        deadline = time.monotonic() + timeout
        while True:
            frame = self._next_frame(deadline)
            if frame is None:
                self._write(frames.ACK)  # an ACK from the host aborts the command (UM0701 §6.2.1.3)
                raise CommandTimeout(f"{self.name}: no response to command {code:#04x} in {timeout}s",
                                     device=self.name, error_code="noResponse")
            if frame.kind == FrameKind.INFO:
                return self._answered(code, frame, copies, timeout)
            if frame.kind == FrameKind.ERROR:
                raise ProtocolError(f"{self.name}: PN532 error frame for {code:#04x}",
                                    device=self.name, error_code="syntax")
            # a duplicate ACK/NACK: keep waiting for the answer

    def _answered(self, code: int, frame: Frame, copies: int, timeout: float) -> bytes:
        """The answer to a command; when the command went out more than once (its ACK was
        late, not lost), the chip runs every copy it received and answers each: wait for those
        answers too (bounded) and drop them, or the next command would take a stale one for
        its own (a WRITE's bare OK read as a READ's 16 bytes)."""
        params = self._check_response(code, frame)
        late = copies - 1
        deadline = time.monotonic() + min(timeout, DUPLICATE_WAIT_S)
        while late > 0:
            extra = self._next_frame(deadline)
            if extra is None:
                break  # that copy was really lost: nothing more will come
            if extra.kind == FrameKind.INFO:
                late -= 1
                self.counters["duplicate_answers"] += 1
                log.info("%s: dropped the answer to a second copy of command %#04x", self.name, code)
        return params

    def _check_response(self, code: int, frame: Frame) -> bytes:
        if frame.tfi != frames.TFI_PN532 or frame.code != code + 1:
            raise ProtocolError(f"{self.name}: expected response {code + 1:#04x}, got "
                                f"{frame.code:#04x} (TFI {frame.tfi:#04x})", device=self.name,
                                error_code="unexpectedResponse")
        return frame.params

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        # a command abandoned by an asyncio timeout keeps its executor thread until its own
        # deadline; the next command must not interleave bytes with it on the wire
        with self._io_lock:
            return fn(*args)

    async def _run(self, name: str, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        limit = (timeout if timeout is not None else self.timeout) + 2 * ACK_TIMEOUT_S + 0.5
        return await self.command(name, lambda: self.run_blocking(self._locked, fn, *args), timeout=limit)

    async def check_health(self, level: HealthLevel = HealthLevel.INTERNAL) -> HealthReport:
        """External: a firmware round trip. Interactive: a technician taps any card."""
        if level == HealthLevel.INTERNAL:
            return await super().check_health(level)
        try:
            if level == HealthLevel.EXTERNAL:
                _, ver, rev, _ = await self.firmware_version()
                detail, data = f"PN532 firmware {ver}.{rev}", {"firmware": f"{ver}.{rev}"}
            else:
                card = await self.wait_for_card(timeout=15.0)
                detail, data = f"card {card.card_type} read", {"card_type": card.card_type}
        except DeviceError as exc:
            return HealthReport(self.name, level, False, self.state, str(exc))
        return HealthReport(self.name, level, True, self.state, detail, data)

    # discovery -----------------------------------------------------------------------------------
    def _list_target(self, timeout: float) -> CardInfo | None:
        # one target, 106 kbps type A (UM0701 §7.3.5)
        data = self._exchange(CMD_IN_LIST_PASSIVE_TARGET, b"\x01\x00", timeout)
        if not data or data[0] == 0:
            return None
        if len(data) < 6:
            raise ProtocolError(f"{self.name}: short InListPassiveTarget answer", device=self.name)
        atqa, sak, uid_len = data[2:4], data[4], data[5]
        uid = data[6 : 6 + uid_len]
        if len(uid) != uid_len:
            raise ProtocolError(f"{self.name}: truncated UID", device=self.name)
        return CardInfo(uid=uid.hex(), atqa=atqa.hex(), sak=sak,
                        card_type="mifare-classic-1k" if sak in (0x08, 0x88) else f"iso14443a-sak{sak:02x}")

    def _note_card(self, card: CardInfo | None) -> None:
        if card is not None and (self._card is None or self._card.uid != card.uid):
            self.emit(card="present", uid=card.uid)
        elif card is None and self._card is not None:
            self.emit(card="removed")
        self._card = card

    async def card_present(self) -> CardInfo | None:
        card = await self._run("card_present", self._list_target, self.timeout)
        self._note_card(card)
        return card

    async def select(self, *, timeout: float | None = None) -> CardInfo:
        """Select the card on the field (a fresh session: any authentication is dropped)."""
        card = await self._run("select", self._list_target, timeout or self.timeout, timeout=timeout)
        self._note_card(card)
        if card is None:
            raise NoCard(f"{self.name}: no card on the reader", device=self.name)
        return card

    async def wait_for_card(self, *, timeout: float = 30.0) -> CardInfo:
        deadline = time.monotonic() + timeout
        while True:
            card = await self.card_present()
            if card is not None:
                return card
            if time.monotonic() >= deadline:
                raise CommandTimeout(f"{self.name}: no card within {timeout}s", device=self.name,
                                     error_code="noCard")
            await asyncio.sleep(self.poll_interval)

    async def halt(self, *, timeout: float | None = None) -> None:
        """InRelease: the PN532 lets the card go; the next command needs a select."""
        await self._run("halt", self._exchange, CMD_IN_RELEASE, b"\x00", timeout or self.timeout,
                        timeout=timeout)

    async def firmware_version(self) -> tuple[int, int, int, int]:
        data = await self._run("firmware", self._exchange, CMD_GET_FIRMWARE_VERSION, b"", self.timeout)
        return data[0], data[1], data[2], data[3]

    # MIFARE Classic through InDataExchange ----------------------------------------------------
    def _mifare(self, op: MifareCmd, block: int, payload: bytes, timeout: float) -> bytes:
        if not 0 <= block < BLOCKS_1K:
            raise InvalidData(f"block {block} is not on a MIFARE Classic 1K card", device=self.name,
                              error_code="badBlock")
        data = self._exchange(CMD_IN_DATA_EXCHANGE, bytes([1, op, block]) + payload, timeout)
        if not data:
            raise ProtocolError(f"{self.name}: InDataExchange answer without status", device=self.name)
        status = data[0] & 0x3F  # bit 6 = more information, bit 7 = NAD present
        if status == STATUS_OK:
            return data[1:]
        if status == STATUS_AUTH_ERROR:
            raise AuthenticationError(f"{self.name}: card refused {op.name} on block {block}",
                                      device=self.name)
        if status == STATUS_INVALID_FRAME:
            # a NAK (access bits) and a card leaving mid-answer both show as 0x13: ask the
            # field. A card still there (same UID) refused; otherwise it left, and a torn write
            # takes the "settle on the next tap" path like any other tear.
            card = self._list_target(self.timeout)
            if card is not None and (self._card is None or card.uid == self._card.uid):
                raise AccessDenied(f"{self.name}: card refused {op.name} on block {block} "
                                   f"(access bits)", device=self.name)
            self._note_card(card)
            raise CardRemoved(f"{self.name}: card left the reader during {op.name} on block {block}"
                              f" (status {status:#04x})", device=self.name)
        if status in RF_ERRORS:
            self._note_card(None)
            raise CardRemoved(f"{self.name}: card left the reader during {op.name} on block {block}"
                              f" (status {status:#04x})", device=self.name)
        raise ChipError(f"{self.name}: PN532 status {status:#04x} on {op.name}", device=self.name,
                        error_code=f"status{status:02x}")

    async def authenticate(self, block: int, key_type: KeyType, key: bytes, uid: bytes,
                           *, timeout: float | None = None) -> None:
        if len(key) != 6:
            raise InvalidData("MIFARE keys are 6 bytes", device=self.name, error_code="badKey")
        op = auth_command(KeyType(key_type))
        # the PN532 takes the last 4 bytes of a 7-byte UID for Crypto1 (AN10927)
        await self._run("authenticate", self._mifare, op, block, bytes(key) + bytes(uid[-4:]),
                        timeout or self.timeout, timeout=timeout)

    async def read_block(self, block: int, *, timeout: float | None = None) -> bytes:
        data = await self._run("read", self._mifare, MifareCmd.READ, block, b"", timeout or self.timeout,
                               timeout=timeout)
        if len(data) != BLOCK_SIZE:
            raise ProtocolError(f"{self.name}: READ returned {len(data)} bytes", device=self.name)
        return data

    async def write_block(self, block: int, data: bytes, *, timeout: float | None = None) -> None:
        if len(data) != BLOCK_SIZE:
            raise InvalidData(f"a block is 16 bytes, got {len(data)}", device=self.name,
                              error_code="badBlockData")
        await self._run("write", self._mifare, MifareCmd.WRITE, block, bytes(data),
                        timeout or self.timeout, timeout=timeout)

    async def _value_op(self, op: MifareCmd, block: int, amount: int, timeout: float | None) -> None:
        if not 0 <= amount < 2**31:
            raise InvalidData(f"value operand {amount} out of range", device=self.name,
                              error_code="valueRange")
        await self._run(op.name.lower(), self._mifare, op, block, amount.to_bytes(4, "little"),
                        timeout or self.timeout, timeout=timeout)

    async def decrement(self, block: int, amount: int, *, timeout: float | None = None) -> None:
        """Value block minus amount into the card's transfer buffer (TRANSFER writes it)."""
        await self._value_op(MifareCmd.DECREMENT, block, amount, timeout)

    async def increment(self, block: int, amount: int, *, timeout: float | None = None) -> None:
        await self._value_op(MifareCmd.INCREMENT, block, amount, timeout)

    async def restore(self, block: int, *, timeout: float | None = None) -> None:
        """Copy a value block into the transfer buffer (same sector only)."""
        await self._value_op(MifareCmd.RESTORE, block, 0, timeout)

    async def transfer(self, block: int, *, timeout: float | None = None) -> None:
        await self._run("transfer", self._mifare, MifareCmd.TRANSFER, block, b"",
                        timeout or self.timeout, timeout=timeout)
