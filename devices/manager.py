"""The DeviceManager: opens devices from config, reconnects lost ones with back-off, polls the
ones that ask for it, and publishes one status map that the UI and the agent read."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from devices.base import (
    Device,
    DeviceError,
    DeviceIdentity,
    DeviceState,
    DeviceStatus,
    HealthLevel,
    HealthReport,
    InvalidData,
    Listener,
    StatusEvent,
)
from devices.contracts import DeviceConfig
from devices.registry import create

log = logging.getLogger("devices.manager")

D = TypeVar("D", bound=Device)

AVAILABLE = (DeviceState.ONLINE, DeviceState.BUSY)
DEFAULT_POLL_INTERVAL_S = 5.0


def load_device_configs(obj: Iterable[dict[str, Any]]) -> list[DeviceConfig]:
    """[{"name": "printer", "type": "escpos-network", "host": ...}, …] → DeviceConfig list.
    Options are the other keys; a nested "options" object is merged in too."""
    if isinstance(obj, (str, bytes, dict)) or not isinstance(obj, Iterable):
        raise InvalidData("device config must be a list of objects", error_code="config")
    configs: list[DeviceConfig] = []
    seen: set[str] = set()
    for i, entry in enumerate(obj):
        if not isinstance(entry, dict):
            raise InvalidData(f"device config #{i} is not an object", error_code="config")
        name, type_ = entry.get("name"), entry.get("type")
        if not isinstance(name, str) or not name or not isinstance(type_, str) or not type_:
            raise InvalidData(f"device config #{i} needs a non-empty 'name' and 'type'", error_code="config")
        if name in seen:
            raise InvalidData(f"device name {name!r} is used twice", error_code="config")
        seen.add(name)
        nested = entry.get("options", {})
        if not isinstance(nested, dict):
            raise InvalidData(f"device {name!r}: 'options' must be an object", error_code="config")
        options = {k: v for k, v in entry.items() if k not in ("name", "type", "options")}
        configs.append(DeviceConfig(name=name, type=type_, options={**options, **nested}))
    return configs


class DeviceManager:
    """Owns every configured device for the life of the app (one per kiosk, not a singleton)."""

    def __init__(self, configs: list[DeviceConfig], *, reconnect_initial: float = 0.5, reconnect_max: float = 30.0) -> None:
        self.reconnect_initial = reconnect_initial
        self.reconnect_max = reconnect_max
        self._devices: dict[str, Device] = {}
        self._configs: dict[str, DeviceConfig] = {}
        self._broken: dict[str, str] = {}  # name → why the driver could not even be created
        self._listeners: list[Listener] = []
        self._reconnects: dict[str, asyncio.Task[None]] = {}
        self._polls: dict[str, asyncio.Task[None]] = {}
        self._running = False
        for cfg in configs:
            if cfg.name in self._configs:
                raise InvalidData(f"device name {cfg.name!r} is used twice", error_code="config")
            self._configs[cfg.name] = cfg
            try:
                device = create(cfg)
            except (KeyError, DeviceError, TypeError, ValueError) as exc:
                # one bad entry must not take the whole kiosk down: it shows as offline
                log.error("device %s (%s) cannot be created: %s", cfg.name, cfg.type, exc, extra={"device": cfg.name})
                self._broken[cfg.name] = str(exc)
                continue
            device.subscribe(self._on_event)
            self._devices[cfg.name] = device

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Open every device at once; those that fail keep trying in the background."""
        self._running = True
        results = await asyncio.gather(*(d.open() for d in self._devices.values()), return_exceptions=True)
        for device, result in zip(self._devices.values(), results):
            if isinstance(result, BaseException):
                if not isinstance(result, (DeviceError, OSError)):
                    log.error("device %s failed to open: %r", device.name, result, extra={"device": device.name})
                else:
                    log.warning("device %s not available yet: %s", device.name, result, extra={"device": device.name})
                self._schedule_reconnect(device)
            self._start_poll(device)

    async def stop(self) -> None:
        self._running = False
        tasks = [*self._reconnects.values(), *self._polls.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._reconnects.clear()
        self._polls.clear()
        for device in self._devices.values():
            try:
                await device.close()
            except (DeviceError, OSError) as exc:
                log.warning("closing %s: %s", device.name, exc, extra={"device": device.name})

    async def __aenter__(self) -> DeviceManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- lookup -------------------------------------------------------------------------------
    def get(self, name: str) -> Device:
        try:
            return self._devices[name]
        except KeyError:
            why = f" (not created: {self._broken[name]})" if name in self._broken else ""
            raise KeyError(f"no device named {name!r}{why}; known: {sorted(self._devices)}") from None

    def first(self, contract_cls: type[D]) -> D | None:
        """The first device of a contract, preferring one that is available now."""
        matching = [d for d in self._devices.values() if isinstance(d, contract_cls)]
        for device in matching:
            if device.state in AVAILABLE:
                return device
        return matching[0] if matching else None

    def devices(self) -> list[Device]:
        return list(self._devices.values())

    def is_available(self, name: str) -> bool:
        device = self._devices.get(name)
        return device is not None and device.state in AVAILABLE

    # --- status -------------------------------------------------------------------------------
    def status_map(self) -> dict[str, DeviceStatus]:
        """One row per configured device, including those whose driver could not be created."""
        out: dict[str, DeviceStatus] = {}
        for name, cfg in self._configs.items():
            if name in self._devices:
                out[name] = self._devices[name].status()
            else:
                out[name] = DeviceStatus(
                    name=name, device_class="unknown", driver=cfg.type, state=DeviceState.OFFLINE,
                    identity=DeviceIdentity(), capabilities={}, consumables={}, counters={},
                    last_error={"type": "ConfigError", "code": "invalidData", "error_code": "config",
                                "device": name, "message": self._broken.get(name, "")},
                )
        return out

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Every device's StatusEvents, in one stream."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def check_health(self, level: HealthLevel = HealthLevel.INTERNAL) -> list[HealthReport]:
        devices = list(self._devices.values())
        results = await asyncio.gather(*(d.check_health(level) for d in devices), return_exceptions=True)
        reports: list[HealthReport] = []
        for device, result in zip(devices, results):
            if isinstance(result, HealthReport):
                reports.append(result)
            elif isinstance(result, Exception):
                reports.append(HealthReport(device.name, level, False, device.state, f"{type(result).__name__}: {result}"))
            else:
                raise result  # CancelledError and friends belong to the caller
        for name, why in self._broken.items():
            reports.append(HealthReport(name, level, False, DeviceState.OFFLINE, why))
        return reports

    # --- internals ----------------------------------------------------------------------------
    def _on_event(self, event: StatusEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not break the device layer
                log.exception("manager listener failed")
        if event.changes.get("state") == str(DeviceState.OFFLINE) and self._running:
            device = self._devices.get(event.device)
            if device is not None:
                self._schedule_reconnect(device)

    def _schedule_reconnect(self, device: Device) -> None:
        task = self._reconnects.get(device.name)
        if task is not None and not task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # an event from outside the loop; the next one will schedule it
            return
        self._reconnects[device.name] = loop.create_task(self._reconnect(device), name=f"reconnect-{device.name}")

    async def _reconnect(self, device: Device) -> None:
        delay = self.reconnect_initial
        attempt = 0
        while self._running:
            # full jitter keeps a fleet of kiosks from hammering a recovering host in step
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            if device.state in AVAILABLE:
                return  # the driver came back on its own (e.g. on its next call)
            attempt += 1
            try:
                await device._close()
            except (DeviceError, OSError) as exc:
                log.debug("close before reconnect of %s: %s", device.name, exc)
            try:
                await device.open()
            except (DeviceError, OSError) as exc:
                log.info("reconnect %s attempt %d failed: %s", device.name, attempt, exc, extra={"device": device.name})
                delay = min(delay * 2, self.reconnect_max)
                continue
            except Exception:  # a driver bug must not end the retry loop silently
                log.exception("reconnect %s attempt %d crashed", device.name, attempt, extra={"device": device.name})
                delay = min(delay * 2, self.reconnect_max)
                continue
            device.counters["reconnects"] += 1
            log.info("device %s reconnected after %d attempt(s)", device.name, attempt, extra={"device": device.name})
            return

    def _start_poll(self, device: Device) -> None:
        poll = getattr(device, "poll_status", None)
        if poll is None or not inspect.iscoroutinefunction(poll):
            return
        interval = float(device.options.get("poll_interval_s", DEFAULT_POLL_INTERVAL_S))
        self._polls[device.name] = asyncio.get_running_loop().create_task(
            self._poll(device, poll, interval), name=f"poll-{device.name}")

    async def _poll(self, device: Device, poll: Callable[[], Any], interval: float) -> None:
        while self._running:
            await asyncio.sleep(interval)
            if device.state in (DeviceState.OFFLINE, DeviceState.STARTING):
                continue  # offline devices are the reconnect loop's job
            try:
                await poll()
            except (DeviceError, OSError) as exc:
                log.info("poll of %s failed: %s", device.name, exc, extra={"device": device.name})
