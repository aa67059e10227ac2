"""A simulated transit-card dispenser behind the CardDispenser contract: stacker, read
position and reject bin, with jam injection, for tests and the demo (no wire protocol yet)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from devices.base import DeviceIdentity, DeviceState, InvalidData, MediaError, register
from devices.contracts import CardDispenser

log = logging.getLogger("devices.dispenser")


@register("dispenser-sim")
class SimulatedDispenser(CardDispenser):
    """Options: stacker (cards loaded, default 50), low_at (default 5), bin_capacity
    (default 20), bin (cards already captured, default 0), move_s (seconds a card move takes)."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        try:
            self.stacker_count = int(options.get("stacker", 50))
            self.low_at = int(options.get("low_at", 5))
            self.bin_capacity = int(options.get("bin_capacity", 20))
            self.bin_count = int(options.get("bin", 0))
            self.move_s = float(options.get("move_s", 0.0))
        except (TypeError, ValueError) as exc:
            raise InvalidData(f"{name}: bad dispenser option: {exc}", device=name, error_code="config") from exc
        if min(self.stacker_count, self.low_at, self.bin_capacity, self.bin_count) < 0:
            raise InvalidData(f"{name}: dispenser counts cannot be negative", device=name, error_code="config")
        self.card_at_reader = False
        self._jammed = False
        self.identity_fields = {"model": "SimDispenser 1", "serial": f"SIM-{name}"}
        self.capabilities = {"capture": True, "stacker_capacity": self.stacker_count}

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
        if self.state == DeviceState.USER_ERROR and not self._jammed:
            self._set_state(DeviceState.ONLINE)

    def empty_bin(self) -> None:
        self.bin_count = 0
        self._publish_levels()

    # --- lifecycle --------------------------------------------------------------------------
    async def _open(self) -> None:
        self.identity = DeviceIdentity(model=self.identity_fields["model"], serial=self.identity_fields["serial"],
                                       firmware="1.0", vendor="CityKiosk")
        self._publish_levels()

    # --- the contract -----------------------------------------------------------------------
    async def dispense_to_reader(self, *, timeout: float = 15.0) -> None:
        async def op() -> None:
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
            self._publish_levels()
            self._recovered()

        await self.command("dispense", op, timeout=timeout)

    async def eject(self, *, timeout: float = 15.0) -> None:
        async def op() -> None:
            self._check_jam("eject")
            self._need_card("eject")
            await self._move()
            self.card_at_reader = False
            self.counters["ejected"] += 1
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
            self.card_at_reader = False
            self.bin_count += 1
            self.counters["captured"] += 1
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
