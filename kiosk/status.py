"""Device and service status for the screens: one coordinator, in the style of Home Assistant's
DataUpdateCoordinator. Devices publish typed state (their state, consumables such as paper
ok/low/out or the card stacker's level, and when they were last seen usable); screens and flows
subscribe and are called back on a change. Nobody polls a device for the screen: the device
layer already pushes StatusEvents (and polls the printer and dispenser itself), and
`attach(manager)` turns them into DeviceStatus rows.

A service is available when every device class it needs has a usable device and no kiosk-wide
blocker (a journal that fails verification, no transit key) holds it; otherwise it shows as
unavailable with the reason (a message key and params, shown in the citizen's language).
No Kivy here: the Kivy screens subscribe like anyone else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from devices.base import DeviceState, StatusEvent

log = logging.getLogger("kiosk.status")

_USABLE = (DeviceState.ONLINE, DeviceState.BUSY)


@dataclass(frozen=True)
class Reason:
    """Why something cannot be used now: a message key (kiosk.messages) and its params."""

    key: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "params": dict(self.params)}


@dataclass(frozen=True)
class DeviceStatus:
    """One device as the screens see it. `consumables` holds its levels ({"paper": "low"},
    {"stacker": "empty", "bin": "ok"}); `last_ok_at` is the time (epoch s) of the last update
    that found it usable (None: never); `reason` says why it is not usable now (None: it is)."""

    name: str
    device_class: str
    state: DeviceState
    consumables: Mapping[str, Any]
    last_ok_at: float | None
    reason: Reason | None
    updated_at: float

    @property
    def usable(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    available: bool
    reason: Reason | None = None
    #: the device (or blocker) the reason is about
    blocked_by: str | None = None


#: what each citizen service needs, by device contract class or blocker name. The scanner
#: (the keypad always works) and the receipt printer (a receipt not printed is shown as a QR
#: on the screen) are never required.
SERVICE_NEEDS: dict[str, tuple[str, ...]] = {
    "fee_payment": ("journal", "PaymentTerminal"),
    "card_topup": ("journal", "transit_keys", "PaymentTerminal", "CardReader"),
    "card_balance": ("transit_keys", "CardReader"),
    "card_sale": ("journal", "transit_keys", "PaymentTerminal", "CardDispenser", "CardReader"),
    "collect_pending": ("journal", "transit_keys", "CardReader"),
    "qr_ticket": ("journal", "PaymentTerminal"),
    "fee_slips": ("journal",),  # a look-up and a print need no device; paying asks the terminal
    "certificate": ("journal",),
    "traffic_permit": ("journal", "PaymentTerminal"),
}

#: consumable values that make a device unusable, and the reason shown
_EMPTY: dict[tuple[str, str], str] = {
    ("paper", "out"): "status.paper_out",
    ("paper", "jammed"): "status.jammed",
    ("stacker", "empty"): "status.stacker_empty",
    ("transport", "jammed"): "status.jammed",
    ("bin", "full"): "status.fault",
}


def judge(device_class: str, state: DeviceState, consumables: Mapping[str, Any]) -> Reason | None:
    """The reason a device in this state with these consumables cannot be used, or None."""
    device = {"device": f"device.{device_class}"}
    for (name, value), key in _EMPTY.items():
        if str(consumables.get(name, "")) == value:
            return Reason(key, device)
    if state in _USABLE:
        return None
    if state in (DeviceState.OFFLINE, DeviceState.STARTING):
        return Reason("status.offline", device)
    return Reason("status.fault", device)


Listener = Callable[["StatusCoordinator"], None]


class StatusCoordinator:
    """Holds the latest DeviceStatus per device and the availability of every service; calls
    its listeners (on the publishing thread, the kiosk's event loop) after each change."""

    def __init__(self, needs: Mapping[str, tuple[str, ...]] | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.needs = dict(SERVICE_NEEDS if needs is None else needs)
        self._clock = clock
        self._devices: dict[str, DeviceStatus] = {}
        self._blockers: dict[str, Reason] = {}
        self._listeners: list[Listener] = []
        self._services = self._compute_services()
        self.last_update_at: float | None = None

    # --- publishing ---------------------------------------------------------------------------
    def publish(self, name: str, *, device_class: str, state: DeviceState,
                consumables: Mapping[str, Any] | None = None) -> DeviceStatus:
        """A device's (or its adapter's) latest state; listeners are told if anything changed."""
        now = self._clock()
        old = self._devices.get(name)
        levels = dict(consumables if consumables is not None else (old.consumables if old else {}))
        reason = judge(device_class, DeviceState(state), levels)
        last_ok = now if reason is None else (old.last_ok_at if old else None)
        row = DeviceStatus(name, device_class, DeviceState(state), MappingProxyType(levels), last_ok, reason, now)
        changed = old is None or (old.state, dict(old.consumables), old.reason) != (row.state, levels, row.reason)
        self._devices[name] = row
        self.last_update_at = now
        if changed:
            self._changed()
        return row

    def set_blocker(self, name: str, reason: Reason | None) -> None:
        """A kiosk-wide condition a service may need ("journal", "transit_keys"): `reason`
        blocks every service that lists it, None lifts it."""
        if self._blockers.get(name) == reason:
            return
        if reason is None:
            self._blockers.pop(name, None)
        else:
            self._blockers[name] = reason
        self._changed()

    def attach(self, manager: Any) -> Callable[[], None]:
        """Follow a devices.manager.DeviceManager: one row per configured device from its
        published status map now, then an update on every StatusEvent it relays. Reads only
        what the devices already published (no I/O). Returns the unsubscribe function."""
        for name, st in manager.status_map().items():
            self.publish(name, device_class=st.device_class, state=st.state, consumables=st.consumables)

        def on_event(event: StatusEvent) -> None:
            try:
                st = manager.status_map()[event.device]
            except KeyError:
                return
            self.publish(event.device, device_class=st.device_class, state=st.state, consumables=st.consumables)

        return manager.subscribe(on_event)

    # --- reading ------------------------------------------------------------------------------
    @property
    def devices(self) -> Mapping[str, DeviceStatus]:
        return MappingProxyType(self._devices)

    @property
    def services(self) -> Mapping[str, ServiceStatus]:
        return MappingProxyType(self._services)

    def service(self, name: str) -> ServiceStatus:
        return self._services.get(name) or ServiceStatus(name, False, Reason("service.unavailable"))

    def blocker(self, name: str) -> Reason | None:
        return self._blockers.get(name)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(coordinator)` after every change; returns the function that stops it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def to_dict(self) -> dict[str, Any]:
        return {
            "devices": {n: {"class": d.device_class, "state": str(d.state), "consumables": dict(d.consumables),
                            "last_ok_at": d.last_ok_at, "reason": d.reason.to_dict() if d.reason else None}
                        for n, d in self._devices.items()},
            "services": {n: {"available": s.available, "reason": s.reason.to_dict() if s.reason else None,
                             "blocked_by": s.blocked_by} for n, s in self._services.items()},
        }

    # --- internals ----------------------------------------------------------------------------
    def _first_of(self, device_class: str) -> DeviceStatus | None:
        """The first device of that class, as KioskContext.available picks it."""
        for row in self._devices.values():
            if row.device_class == device_class:
                return row
        return None

    def _compute_services(self) -> dict[str, ServiceStatus]:
        out: dict[str, ServiceStatus] = {}
        for service, needs in self.needs.items():
            status = ServiceStatus(service, True)
            for need in needs:
                if need in self._blockers:
                    status = ServiceStatus(service, False, self._blockers[need], need)
                    break
                if not need[:1].isupper():
                    continue  # a blocker name that is not blocking now
                row = self._first_of(need)
                if row is None:
                    status = ServiceStatus(service, False, Reason("status.not_installed", {"device": f"device.{need}"}),
                                           need)
                    break
                if row.reason is not None:
                    status = ServiceStatus(service, False, row.reason, row.name)
                    break
            out[service] = status
        return out

    def _changed(self) -> None:
        self._services = self._compute_services()
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception:  # a broken screen must not break the status of the others
                log.exception("status listener failed")


__all__ = ["DeviceStatus", "Reason", "SERVICE_NEEDS", "ServiceStatus", "StatusCoordinator", "judge"]


def refresh_blockers(coordinator: StatusCoordinator, ctx: Any) -> None:
    """The kiosk-wide blockers from a KioskContext: a journal that fails verification stops
    every service that moves money; no readable transit key stops the transit services."""
    broken = ctx.out_of_service
    coordinator.set_blocker("journal", Reason("service.out_of_service") if broken is not None else None)
    coordinator.set_blocker("transit_keys", None if ctx.transit_keys is not None else Reason("service.unavailable"))
    apply_disabled(coordinator, _technician_disabled(ctx))  # services a technician took out (kiosk.maintenance)


def for_context(ctx: Any) -> StatusCoordinator:
    """A coordinator following a KioskContext's devices and blockers."""
    coordinator = StatusCoordinator()
    coordinator.attach(ctx.devices)
    refresh_blockers(coordinator, ctx)
    return coordinator


__all__ += ["for_context", "refresh_blockers"]


#: the reason a service a technician took out of service shows on its home tile
DISABLED_REASON = Reason("status.disabled_by_technician")


def apply_disabled(coordinator: StatusCoordinator, disabled: Any) -> None:
    """Services a technician took out of service (kiosk.maintenance): each is unavailable
    with DISABLED_REASON, ahead of any other reason; the others are put back. Each service
    gets a blocker of its own, "technician:<service>", first among its needs."""
    for service, needs in list(coordinator.needs.items()):
        name = f"technician:{service}"
        if name not in needs:
            coordinator.needs[service] = (name, *needs)
        coordinator.set_blocker(name, DISABLED_REASON if service in set(disabled) else None)


def _technician_disabled(ctx: Any) -> tuple[str, ...]:
    from kiosk.maintenance import disabled_services

    return disabled_services(getattr(ctx, "data_dir", None))


__all__ += ["DISABLED_REASON", "apply_disabled"]


# --- device-status.json: the running kiosk's status for the fleet agent ------------------------

#: the file in the data dir (provisioning/agent/local.py reads it)
STATUS_FILENAME = "device-status.json"
#: the file is written again at least this often with nothing changed, so its age tells a
#: reader whether the kiosk still writes it; a reader treats it as stale after 3 × this
STATUS_REFRESH_S = 15.0


def process_started(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (/proc/PID/stat field 22); with
    the pid it tells the process apart from a later one given the same pid. None: not there."""
    try:
        stat = open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace").read()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


class StatusFile:
    """Keeps `<data dir>/device-status.json` as the coordinator's to_dict() plus who wrote it and
    when ({"written_at": epoch s, "pid", "pid_started", "refresh_s", "devices", "services"}).

    A listener on the coordinator takes a snapshot on the publishing thread (the kiosk's event
    loop: nothing else reads the coordinator); a thread of its own writes it atomically (temp
    file, rename; no fsync: it is status, not money), at most once per `min_interval_s` however
    fast the changes come (the latest wins), and again every `refresh_s` with nothing changed.
    A write that fails is logged and tried at the next change or refresh: the kiosk never stops
    for it."""

    def __init__(self, data_dir: Any, *, min_interval_s: float = 1.0, refresh_s: float = STATUS_REFRESH_S) -> None:
        import threading
        from pathlib import Path

        self.path = Path(data_dir) / STATUS_FILENAME
        self.min_interval_s = min_interval_s
        self.refresh_s = refresh_s
        self.writes = 0
        self._cv = threading.Condition()
        self._snapshot: dict[str, Any] | None = None
        self._dirty = False
        self._closed = False
        self._remove: Callable[[], None] | None = None
        self._thread = threading.Thread(target=self._run, name="device-status-file", daemon=True)

    def attach(self, coordinator: StatusCoordinator) -> "StatusFile":
        """Follow `coordinator` (its state now, then every change) and start writing."""
        self._remove = coordinator.add_listener(self._changed)
        self._changed(coordinator)
        self._thread.start()
        return self

    def _changed(self, coordinator: StatusCoordinator) -> None:
        snapshot = coordinator.to_dict()
        with self._cv:
            self._snapshot, self._dirty = snapshot, True
            self._cv.notify()

    def _run(self) -> None:
        last = 0.0
        while True:
            with self._cv:
                while not self._closed:
                    now = time.monotonic()
                    if self._dirty and now - last >= self.min_interval_s:
                        break
                    wait = self.refresh_s - (now - last)
                    if self._dirty:
                        wait = min(wait, self.min_interval_s - (now - last))
                    if wait <= 0:
                        break  # the refresh is due
                    self._cv.wait(wait)
                if self._closed:
                    return
                snapshot, self._dirty = self._snapshot, False
            last = time.monotonic()
            if snapshot is not None:
                self._write(snapshot)

    def _write(self, snapshot: dict[str, Any]) -> None:
        import json
        import os

        body = {"written_at": time.time(), "pid": os.getpid(), "pid_started": process_started(os.getpid()),
                "refresh_s": self.refresh_s, **snapshot}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(body, out, ensure_ascii=False, sort_keys=True)
            os.replace(tmp, self.path)
            self.writes += 1
        except (OSError, TypeError, ValueError):
            log.exception("could not write %s", self.path)

    def close(self) -> None:
        """Stop following the coordinator; the last change not yet written is written now. The
        file stays: its writer's pid is gone, so a reader reports the devices unknown."""
        if self._remove is not None:
            self._remove()
            self._remove = None
        with self._cv:
            self._closed = True
            snapshot, dirty = self._snapshot, self._dirty
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if dirty and snapshot is not None:
            self._write(snapshot)


__all__ += ["STATUS_FILENAME", "STATUS_REFRESH_S", "StatusFile", "process_started"]
