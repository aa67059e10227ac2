"""One vocabulary for every device class: states, completion codes, typed errors, events,
health checks, counters and the command wrapper that keeps a timeout apart from a cancel.

Shapes follow XFS4IoT (completion codes, status events that carry only what changed) and
UnifiedPOS (check-health levels, statistics counters). Nothing here imports Kivy or kiosk/.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, ClassVar, TypeVar

log = logging.getLogger("devices")

T = TypeVar("T")


class DeviceState(enum.StrEnum):
    """XFS4IoT device status, reduced to what a kiosk acts on."""

    STARTING = "starting"
    ONLINE = "online"
    OFFLINE = "offline"
    BUSY = "busy"
    HARDWARE_ERROR = "hardwareError"
    USER_ERROR = "userError"


class CompletionCode(enum.StrEnum):
    """How a device command ended (XFS4IoT completion codes)."""

    SUCCESS = "success"
    CANCELED = "canceled"
    TIMEOUT = "timeOut"
    DEVICE_NOT_READY = "deviceNotReady"
    HARDWARE_ERROR = "hardwareError"
    INVALID_DATA = "invalidData"
    USER_ERROR = "userError"
    UNSUPPORTED = "unsupportedCommand"


class HealthLevel(enum.StrEnum):
    """UnifiedPOS CheckHealth levels."""

    INTERNAL = "internal"  # the driver's own view, no I/O beyond a status query
    EXTERNAL = "external"  # exercises the device (a status round trip, a firmware query)
    INTERACTIVE = "interactive"  # needs a person: a test print, a test card, a test scan


# --- errors -----------------------------------------------------------------------------


class DeviceError(Exception):
    """A device command failed. `code` is the completion code; `error_code` the per-command
    detail (mediaJam, noMedia, checksum, …) as XFS4IoT splits them."""

    code: ClassVar[CompletionCode] = CompletionCode.HARDWARE_ERROR
    #: the state the device is in after this error, when the error says so
    state_after: ClassVar[DeviceState | None] = DeviceState.HARDWARE_ERROR

    def __init__(self, message: str, *, device: str = "", error_code: str = "") -> None:
        super().__init__(message)
        self.device = device
        self.error_code = error_code

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": type(self).__name__,
            "code": str(self.code),
            "error_code": self.error_code,
            "device": self.device,
            "message": str(self),
        }


class DeviceOffline(DeviceError):
    """The device is not reachable (unplugged, port closed, connection refused)."""

    code = CompletionCode.DEVICE_NOT_READY
    state_after = DeviceState.OFFLINE


class DeviceBusy(DeviceError):
    code = CompletionCode.DEVICE_NOT_READY
    state_after = None


class HardwareError(DeviceError):
    code = CompletionCode.HARDWARE_ERROR
    state_after = DeviceState.HARDWARE_ERROR


class ProtocolError(HardwareError):
    """The device answered bytes that break its protocol (bad checksum, bad frame, bad JSON)."""


class CommandTimeout(DeviceError):
    """The device did not complete in the command's own time limit."""

    code = CompletionCode.TIMEOUT
    state_after = None


class CommandCanceled(DeviceError):
    """The command was cancelled by the caller (not a timeout)."""

    code = CompletionCode.CANCELED
    state_after = None


class InvalidData(DeviceError):
    code = CompletionCode.INVALID_DATA
    state_after = None


class MediaError(DeviceError):
    """User-fixable media condition: paper out, card jam, no card. error_code says which."""

    code = CompletionCode.USER_ERROR
    state_after = DeviceState.USER_ERROR


class Unsupported(DeviceError):
    code = CompletionCode.UNSUPPORTED
    state_after = None


# --- values -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceIdentity:
    model: str = ""
    serial: str = ""
    firmware: str = ""
    vendor: str = ""


@dataclass(frozen=True)
class StatusEvent:
    """An unsolicited status change. `changes` holds only the fields that changed
    (e.g. {"paper": "low"} or {"state": "offline"} or {"card": "present"})."""

    device: str
    changes: dict[str, Any]
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class HealthReport:
    device: str
    level: HealthLevel
    ok: bool
    state: DeviceState
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceStatus:
    """The published, read-only view of one device (one row of the manager's status map)."""

    name: str
    device_class: str
    driver: str
    state: DeviceState
    identity: DeviceIdentity
    capabilities: dict[str, Any]
    consumables: dict[str, Any]
    counters: dict[str, int]
    last_error: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": self.device_class,
            "driver": self.driver,
            "state": str(self.state),
            "identity": self.identity.__dict__,
            "capabilities": self.capabilities,
            "consumables": self.consumables,
            "counters": self.counters,
            "last_error": self.last_error,
        }


Listener = Callable[[StatusEvent], None]


# --- the base device --------------------------------------------------------------------


class Device:
    """Common lifecycle, state, events, counters and command execution for every driver.

    A driver subclasses one contract (which subclasses this), implements `_open`, `_close`
    and its commands, and runs each command through `self.command(...)` so timeouts,
    cancellation, counters and state changes are handled the same way everywhere.
    """

    #: contract name, e.g. "ReceiptPrinter"; set by each contract class
    device_class: ClassVar[str] = "Device"
    #: registry key for config `type`, set by drivers via @register
    driver_name: ClassVar[str] = ""

    def __init__(self, name: str, **options: Any) -> None:
        self.name = name
        self.options = options
        self._state = DeviceState.OFFLINE
        self.identity = DeviceIdentity()
        self.capabilities: dict[str, Any] = {}
        self.consumables: dict[str, Any] = {}
        self.counters: Counter[str] = Counter()
        self.busy_seconds = 0.0  # total time in command(): the device and the wire, see command()
        self.last_error: DeviceError | None = None
        self._listeners: list[Listener] = []
        self._lock = asyncio.Lock()

    # lifecycle ------------------------------------------------------------------------
    async def open(self) -> None:
        self._set_state(DeviceState.STARTING)
        try:
            await self._open()
        except DeviceError as exc:
            self._fail(exc)
            if self._state == DeviceState.STARTING:
                # an error that leaves the state alone (a timeout, a busy or rejected
                # answer) must not leave the device "starting" for good: it is not open, and
                # the next call (or the manager) opens it again
                self._set_state(DeviceState.OFFLINE)
            raise
        except OSError as exc:
            err = DeviceOffline(f"{self.name}: cannot open: {exc}", device=self.name)
            self._fail(err)
            raise err from exc
        self._set_state(DeviceState.ONLINE)

    async def close(self) -> None:
        try:
            await self._close()
        finally:
            self._set_state(DeviceState.OFFLINE)

    async def _open(self) -> None:  # pragma: no cover - drivers override
        raise NotImplementedError

    async def _close(self) -> None:
        return None

    # state and events -------------------------------------------------------------------
    @property
    def state(self) -> DeviceState:
        return self._state

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, **changes: Any) -> None:
        """Publish an unsolicited event holding only what changed."""
        event = StatusEvent(self.name, changes)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not break the device
                log.exception("status listener failed for %s", self.name)

    def _set_state(self, state: DeviceState) -> None:
        if state != self._state:
            self._state = state
            self.emit(state=str(state))

    def set_consumable(self, key: str, value: Any) -> None:
        if self.consumables.get(key) != value:
            self.consumables[key] = value
            self.emit(**{key: value})

    def _fail(self, exc: DeviceError) -> None:
        exc.device = exc.device or self.name
        self.last_error = exc
        self.counters["faults"] += 1
        if exc.state_after is not None:
            self._set_state(exc.state_after)

    # commands -----------------------------------------------------------------------------
    async def command(
        self, name: str, op: Callable[[], Awaitable[T]], *, timeout: float | None
    ) -> T:
        """Run one device command with its own timeout, apart from cancellation.

        A timeout raises CommandTimeout; a cancel by the caller raises CommandCanceled (and
        the asyncio.CancelledError is re-raised for the task machinery when the task itself
        is being cancelled). Commands on one device run one at a time.
        """
        if self._state in (DeviceState.OFFLINE, DeviceState.STARTING):
            raise DeviceOffline(f"{self.name}: {name} refused, device is {self._state}", device=self.name)
        async with self._lock:
            previous = self._state
            self._set_state(DeviceState.BUSY)
            started = time.perf_counter()
            try:
                result = await asyncio.wait_for(op(), timeout)
            except TimeoutError as exc:
                self._set_state(previous)
                err = CommandTimeout(f"{self.name}: {name} timed out after {timeout}s", device=self.name)
                self._fail(err)
                raise err from exc
            except asyncio.CancelledError:
                self._set_state(previous)
                self.counters["canceled"] += 1
                raise
            except DeviceError as exc:
                self._set_state(previous if exc.state_after is None else exc.state_after)
                self._fail(exc)
                raise
            except OSError as exc:
                err = DeviceOffline(f"{self.name}: {name} failed: {exc}", device=self.name)
                self._fail(err)
                raise err from exc
            else:
                if self._state == DeviceState.BUSY:
                    self._set_state(DeviceState.ONLINE if previous == DeviceState.BUSY else previous)
                self.counters[f"{name}_ok"] += 1
                return result
            finally:
                # time spent in commands (waiting on the device and the wire), for health
                # reports and for benchmarks that tell device time from the kiosk's own
                self.busy_seconds += time.perf_counter() - started

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Blocking I/O (pyserial, requests, OpenCV) goes to an executor, never the loop."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # health -----------------------------------------------------------------------------
    async def check_health(self, level: HealthLevel = HealthLevel.INTERNAL) -> HealthReport:
        ok = self._state in (DeviceState.ONLINE, DeviceState.BUSY)
        return HealthReport(self.name, level, ok, self._state, "" if ok else str(self.last_error or self._state))

    def status(self) -> DeviceStatus:
        return DeviceStatus(
            name=self.name,
            device_class=self.device_class,
            driver=self.driver_name,
            state=self._state,
            identity=self.identity,
            capabilities=dict(self.capabilities),
            consumables=dict(self.consumables),
            counters=dict(self.counters),
            last_error=self.last_error.to_dict() if self.last_error else None,
        )


# --- driver registration -----------------------------------------------------------------
# Drivers register themselves here when their module is imported; looking a type up (which
# imports a built-in driver's module on its first lookup, from devices.drivers.BUILTIN) is
# devices.registry's job, so base imports no driver.

_REGISTRY: dict[str, type[Device]] = {}


def register(type_name: str) -> Callable[[type[Device]], type[Device]]:
    """Class decorator: make a driver available to config as `type: <type_name>`."""

    def deco(cls: type[Device]) -> type[Device]:
        if type_name in _REGISTRY and _REGISTRY[type_name] is not cls:
            raise ValueError(f"driver type {type_name!r} registered twice")
        cls.driver_name = type_name
        _REGISTRY[type_name] = cls
        return cls

    return deco


__all__ = [n for n in dir() if not n.startswith("_")] + ["replace"]
