"""A simulated transit-card dispenser behind the CardDispenser contract: stacker, read
position and reject bin, with jam injection, for tests and the demo (no wire protocol yet).

The virtual link (issue 8, buy a new card): a dispenser given `field` (the name a card field
was linked under with `link_field`, e.g. the demo's virtual PN532) puts a factory-blank MIFARE
Classic 1K card (transport keys, a fresh UID: 4-byte, every `uid_lengths`-th one 7-byte) into
that reader's field when it moves a card to the read position, so the kiosk reads and
personalises it through the real reader driver. `eject` takes the card out of the field (the
citizen takes it); `capture` moves it to the reject bin (counted, its UID kept in
`captured_uids`).

`state_path` keeps the dispenser's counts and the card at its read position in a JSON file,
as a real dispenser's sensors and counters survive a power cut: after a crash the restarted
kiosk finds the same stacker level and, if a card was at the read position, that very card
back in the reader's field. A jam is not kept: a power cycle re-homes the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Any, Protocol

from devices.base import DeviceIdentity, DeviceState, InvalidData, MediaError, register
from devices.contracts import CardDispenser
from devices.mifare_classic_virtual import VirtualCard

log = logging.getLogger("devices.dispenser")

STATE_FORMAT = "city-kiosk/dispenser-sim"
STATE_VERSION = 1
CASCADE_TAG = 0x88  # never the first byte of a 4-byte UID (ISO/IEC 14443-3 §6.5.4)
NXP = 0x04  # manufacturer byte of a 7-byte UID


class CardField(Protocol):
    """What the dispenser needs of a reader's RF field (devices.pn532.virtual.VirtualPN532 has
    it): the card in it, every card it has held, and putting a card in or taking it out."""

    @property
    def card(self) -> VirtualCard | None: ...

    @property
    def cards(self) -> dict[str, VirtualCard]: ...

    def place(self, card: VirtualCard) -> None: ...

    def remove(self) -> None: ...


_FIELDS: dict[str, CardField] = {}
_FIELDS_LOCK = threading.Lock()


def link_field(name: str, field: CardField) -> None:
    """Make `field` the read position of every dispenser simulator configured with
    `field: name` (same process; the demo links its virtual PN532 under its port path)."""
    with _FIELDS_LOCK:
        _FIELDS[name] = field


def unlink_field(name: str) -> None:
    with _FIELDS_LOCK:
        _FIELDS.pop(name, None)


def linked_field(name: str) -> CardField | None:
    with _FIELDS_LOCK:
        return _FIELDS.get(name)


def fresh_uid(length: int, taken: set[str] | frozenset[str] = frozenset()) -> bytes:
    """A random UID of `length` (4 or 7) bytes no card in `taken` (hex) has."""
    if length not in (4, 7):
        raise ValueError("a MIFARE Classic UID is 4 or 7 bytes")
    while True:
        uid = bytearray(secrets.token_bytes(length))
        if length == 7:
            uid[0] = NXP
        elif uid[0] == CASCADE_TAG:
            continue
        if uid.hex() not in taken:
            return bytes(uid)


@register("dispenser-sim")
class SimulatedDispenser(CardDispenser):
    """Options: stacker (cards loaded, default 50), low_at (default 5), bin_capacity
    (default 20), bin (cards already captured, default 0), move_s (seconds a card move takes),
    field (a linked card field: the read position, see `link_field`), uid_lengths (UID sizes
    of the blank cards, cycled: default [4, 4, 4, 7]), state_path (keep counts and the card at
    the read position in this JSON file; when it exists it wins over stacker and bin)."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        try:
            self.stacker_count = int(options.get("stacker", 50))
            self.low_at = int(options.get("low_at", 5))
            self.bin_capacity = int(options.get("bin_capacity", 20))
            self.bin_count = int(options.get("bin", 0))
            self.move_s = float(options.get("move_s", 0.0))
            self.uid_lengths = [int(n) for n in options.get("uid_lengths", (4, 4, 4, 7))]
        except (TypeError, ValueError) as exc:
            raise InvalidData(f"{name}: bad dispenser option: {exc}", device=name, error_code="config") from exc
        if min(self.stacker_count, self.low_at, self.bin_capacity, self.bin_count) < 0:
            raise InvalidData(f"{name}: dispenser counts cannot be negative", device=name, error_code="config")
        if not self.uid_lengths or any(n not in (4, 7) for n in self.uid_lengths):
            raise InvalidData(f"{name}: uid_lengths holds 4 and 7 only", device=name, error_code="config")
        field = options.get("field")
        self.field_name = str(field) if field else ""
        state_path = options.get("state_path")
        self.state_path = Path(state_path) if state_path else None
        self.card_at_reader = False
        self.card_uid = ""  # the card at the read position (linked dispensers only)
        self.captured_uids: list[str] = []
        self._jammed = False
        self.identity_fields = {"model": "SimDispenser 1", "serial": f"SIM-{name}"}
        self.capabilities = {"capture": True, "stacker_capacity": self.stacker_count}
        if self.state_path is not None and self.state_path.exists():
            self._load_state()

    # --- fault injection --------------------------------------------------------------------
    def inject_jam(self) -> None:
        """The next movement jams (a card wedged in the transport)."""
        self._jammed = True

    def clear_jam(self) -> None:
        """A technician cleared the transport: back online."""
        self._jammed = False
        self.set_consumable("transport", "ok")
        if self.state == DeviceState.USER_ERROR:
            self._set_state(DeviceState.ONLINE)

    def refill(self, cards: int) -> None:
        self.stacker_count += cards
        self._publish_levels()
        self._save_state()
        if self.state == DeviceState.USER_ERROR and not self._jammed:
            self._set_state(DeviceState.ONLINE)

    def empty_bin(self) -> None:
        self.bin_count = 0
        self.captured_uids.clear()
        self._publish_levels()
        self._save_state()

    # --- lifecycle --------------------------------------------------------------------------
    async def _open(self) -> None:
        field = self._field()
        if self.field_name and field is None:
            # another process on the same config (`kiosk recover`, `kiosk doctor`): the counts
            # and state are there, the read position is not; moving a card is refused
            log.info("%s: card field %r not linked in this process; dispensing refused", self.name, self.field_name)
        self.identity = DeviceIdentity(model=self.identity_fields["model"], serial=self.identity_fields["serial"],
                                       firmware="1.0", vendor="CityKiosk")
        if field is not None and self.card_at_reader and self.card_uid:
            # the card that sat at the read position across the restart is in the field again
            card = field.cards.get(self.card_uid) or VirtualCard.blank(self.card_uid)
            field.place(card)
        self._publish_levels()

    # --- the contract -----------------------------------------------------------------------
    async def dispense_to_reader(self, *, timeout: float = 15.0) -> None:
        async def op() -> None:
            if self.field_name and self._field() is None:
                raise InvalidData(f"{self.name}: no card field linked as {self.field_name!r}", device=self.name,
                                  error_code="config")
            self._check_jam("dispense")
            if self.card_at_reader:
                raise InvalidData(f"{self.name}: a card is already at the read position", device=self.name,
                                  error_code="cardPresent")
            if self.stacker_count <= 0:
                raise MediaError(f"{self.name}: the card stacker is empty", device=self.name, error_code="noMedia")
            await self._move()
            self.stacker_count -= 1
            self.card_at_reader = True
            self.counters["dispensed"] += 1
            field = self._field()
            if field is not None:
                length = self.uid_lengths[(self.counters["dispensed"] - 1) % len(self.uid_lengths)]
                card = VirtualCard.blank(fresh_uid(length, set(field.cards)))
                self.card_uid = card.uid_hex
                field.place(card)
            self._save_state()
            self._publish_levels()
            self._recovered()

        await self.command("dispense", op, timeout=timeout)

    async def eject(self, *, timeout: float = 15.0) -> None:
        async def op() -> None:
            self._check_jam("eject")
            self._need_card("eject")
            await self._move()
            self._leave_field()  # the citizen takes it
            self.card_at_reader = False
            self.card_uid = ""
            self.counters["ejected"] += 1
            self._save_state()
            self.emit(card="presented")
            self._recovered()

        await self.command("eject", op, timeout=timeout)

    async def capture(self, *, timeout: float = 15.0) -> None:
        async def op() -> None:
            self._check_jam("capture")
            self._need_card("capture")
            if self.bin_count >= self.bin_capacity:
                raise MediaError(f"{self.name}: the reject bin is full", device=self.name, error_code="binFull")
            await self._move()
            self._leave_field()
            if self.card_uid:
                self.captured_uids.append(self.card_uid)
            self.card_at_reader = False
            self.card_uid = ""
            self.bin_count += 1
            self.counters["captured"] += 1
            self._save_state()
            self._publish_levels()
            self._recovered()

        await self.command("capture", op, timeout=timeout)

    async def levels(self) -> dict[str, Any]:
        return self._levels()

    async def poll_status(self) -> None:
        """Re-read the sensors (here: the counts) and publish what changed; the manager calls
        this every poll_interval_s."""
        self._publish_levels()

    # --- internals --------------------------------------------------------------------------
    def _field(self) -> CardField | None:
        return linked_field(self.field_name) if self.field_name else None

    def _leave_field(self) -> None:
        """The card at the read position leaves the reader's field (only if it is that card:
        a card torn out of the field mid-write is not there any more)."""
        field = self._field()
        if field is not None and self.card_uid and field.card is not None and field.card.uid_hex == self.card_uid:
            field.remove()

    def _levels(self) -> dict[str, Any]:
        if self.stacker_count <= 0:
            stacker = "empty"
        elif self.stacker_count <= self.low_at:
            stacker = "low"
        else:
            stacker = "ok"
        return {
            "stacker": stacker,
            "stacker_count": self.stacker_count,
            "bin": "full" if self.bin_count >= self.bin_capacity else "ok",
            "bin_count": self.bin_count,
        }

    def _publish_levels(self) -> None:
        # set_consumable emits only what changed ({"stacker": "low"}), as XFS4IoT status events do
        lv = self._levels()
        self.set_consumable("stacker", lv["stacker"])
        self.set_consumable("bin", lv["bin"])

    def _check_jam(self, what: str) -> None:
        if self._jammed:
            self.set_consumable("transport", "jammed")
            raise MediaError(f"{self.name}: card jammed during {what}; a technician must clear it",
                             device=self.name, error_code="mediaJam")

    def _need_card(self, what: str) -> None:
        if not self.card_at_reader:
            # a sequence error of the caller, not a media condition: the device stays online
            raise InvalidData(f"{self.name}: no card at the read position to {what}", device=self.name,
                              error_code="noCard")

    def _recovered(self) -> None:
        """A completed movement proves the transport works: leave a userError behind."""
        self._set_state(DeviceState.ONLINE)

    async def _move(self) -> None:
        if self.move_s > 0:
            await asyncio.sleep(self.move_s)

    # --- persistence ------------------------------------------------------------------------
    def _load_state(self) -> None:
        assert self.state_path is not None
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            if data.get("format") != STATE_FORMAT or data.get("version") != STATE_VERSION:
                raise ValueError("not a dispenser state file of this version")
            self.stacker_count = int(data["stacker_count"])
            self.bin_count = int(data["bin_count"])
            self.card_at_reader = bool(data["card_at_reader"])
            self.card_uid = str(data.get("card_uid") or "")
            self.captured_uids = [str(u) for u in data.get("captured_uids", [])]
            for key in ("dispensed", "ejected", "captured"):
                self.counters[key] = int(data.get("counters", {}).get(key, 0))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidData(f"{self.name}: dispenser state {self.state_path} unreadable: {exc}",
                              device=self.name, error_code="config") from exc

    def _save_state(self) -> None:
        """Write the state atomically (a crash leaves the old or the new file, never half)."""
        if self.state_path is None:
            return
        body = json.dumps({"format": STATE_FORMAT, "version": STATE_VERSION, "stacker_count": self.stacker_count,
                           "bin_count": self.bin_count, "card_at_reader": self.card_at_reader,
                           "card_uid": self.card_uid, "captured_uids": self.captured_uids,
                           "counters": {k: self.counters[k] for k in ("dispensed", "ejected", "captured")}})
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.state_path)
