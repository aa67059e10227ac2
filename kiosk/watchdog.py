"""systemd's service notifications and watchdog, with the standard library only (no Kivy, no
libsystemd): the appliance's unit (deploy/city-kiosk.service) is Type=notify with WatchdogSec=,
so the UI says READY=1 once its first screen is up and then pings WATCHDOG=1 from its own clock.
A UI whose clock stops (a frozen event loop, a dead lock, a busy loop) stops pinging, and
systemd kills and restarts the whole service.

The protocol (sd_notify(3)): newline-separated KEY=VALUE lines in one datagram sent to the
AF_UNIX socket named by $NOTIFY_SOCKET — a path, or '@name' for Linux's abstract namespace.
$WATCHDOG_USEC is the watchdog's timeout; libsystemd's advice is to ping at half of it.

Everything here is a no-op when $NOTIFY_SOCKET is unset (a developer's shell, the tests, the
demo), and a failing send is logged, never raised: the kiosk must not fall over because the
service manager is not listening.

Under cage the main process of the unit is the compositor and the UI is its child, so systemd
sets $WATCHDOG_PID to cage's pid. libsystemd's sd_watchdog_enabled() would tell the child the
watchdog is not meant for it; here it is (the unit says NotifyAccess=all and the UI is the
process whose liveness matters), so a $WATCHDOG_PID naming another process is accepted unless
`pid_must_match=True` is asked for.

How the Kivy app wires it (kiosk/ui_main.py or screens/app.py, once the first frame is drawn):

    from kivy.clock import Clock
    from kiosk.watchdog import start_watchdog
    pinger = start_watchdog(Clock.schedule_interval, status="serving citizens")
    ...
    pinger.stopping()   # in on_stop, before the window closes

`start_watchdog` sends READY=1 and STATUS=, and (when systemd asked for a watchdog) schedules
`pinger.on_clock` every `pinger.tick_every_s` seconds, which calls `tick()`; `tick()` sends
WATCHDOG=1 when half of WatchdogSec has passed since the last ping. Never schedule `tick`
itself with Kivy: it returns False between pings, and a Kivy interval callback that returns
False is unscheduled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("kiosk.watchdog")

#: the environment variables systemd sets for a Type=notify service with WatchdogSec=
NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


def socket_address(value: str) -> str | None:
    """The address to sendto() for a $NOTIFY_SOCKET value: a filesystem path as it is, '@name'
    as the abstract-namespace address '\\0name'; None for anything else (systemd also knows
    vsock: addresses, which a kiosk never gets)."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


def _field(key: str, value: object) -> str:
    # one datagram is newline-separated KEY=VALUE lines: a newline inside a value would start a
    # line of its own (a STATUS text could forge READY=1); flatten it
    text = str(value).replace("\r", " ").replace("\n", " ")
    return f"{key}={text}"


class Notifier:
    """Sends sd_notify datagrams to $NOTIFY_SOCKET; does nothing when it is unset."""

    def __init__(self, address: str | None = None, *, env: Mapping[str, str] | None = None) -> None:
        environ = os.environ if env is None else env
        raw = address if address is not None else environ.get(NOTIFY_SOCKET, "")
        self.raw_address = raw
        self.address = socket_address(raw) if raw else None
        if raw and self.address is None:
            log.warning("NOTIFY_SOCKET=%r is not a unix socket address: systemd notifications are off", raw)
        self._sock: socket.socket | None = None
        self._warned = False
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send one datagram of `fields` ('KEY=VALUE' lines); True when the socket took it."""
        if self.address is None or not fields:
            return False
        payload = "\n".join(fields).encode("utf-8")
        try:
            if self._sock is None:
                # non-blocking: a datagram socket whose reader lags (its queue holds ~10 datagrams)
                # would block sendto, and a UI stuck in sendto is the freeze the watchdog is for
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(payload, self.address)
        except OSError as exc:
            # systemd gone (ECONNREFUSED/ENOENT) or its queue full (EAGAIN): say so once, go on
            if not self._warned:
                log.warning("systemd notification %s not sent to %s: %s",
                            fields[0].split("=", 1)[0], self.raw_address, exc)
                self._warned = True
            self.close()
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1: the service has started (systemd's start job completes, the watchdog arms)."""
        return self.send("READY=1", *([_field("STATUS", status)] if status else []))

    def status(self, text: str) -> bool:
        """STATUS=: one line `systemctl status city-kiosk` shows."""
        return self.send(_field("STATUS", text))

    def watchdog(self) -> bool:
        """WATCHDOG=1: still alive."""
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: shutting down on purpose (not a crash)."""
        return self.send("STOPPING=1", *([_field("STATUS", status)] if status else []))

    def extend_timeout(self, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC=: a start-up step (recovery with a slow back-office) needs this
        much longer than TimeoutStartSec allows."""
        return self.send(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}")

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


def watchdog_interval(env: Mapping[str, str] | None = None, *, pid_must_match: bool = False) -> float | None:
    """How often to ping, in seconds: half of $WATCHDOG_USEC; None when systemd asked for no
    watchdog (unset, zero, not a number) or, with `pid_must_match`, asked it of another pid."""
    environ = os.environ if env is None else env
    raw = environ.get(WATCHDOG_USEC, "").strip()
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not a number: the watchdog is not pinged", raw)
        return None
    if usec <= 0:
        return None
    pid = environ.get(WATCHDOG_PID, "").strip()
    if pid and pid != str(os.getpid()):
        if pid_must_match:
            return None
        log.info("WATCHDOG_PID=%s is not this process (%s): pinging for it (NotifyAccess=all, under cage)",
                 pid, os.getpid())
    return usec / 1_000_000 / 2


class WatchdogPinger:
    """Pings systemd's watchdog from the UI's clock: call `tick()` often (every `tick_every_s`);
    it sends WATCHDOG=1 when `interval_s` (half of WatchdogSec) has passed since the last ping.
    The clock is injectable for tests. When systemd set no watchdog, `tick()` does nothing."""

    def __init__(self, notifier: Notifier | None = None, *, interval_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic, env: Mapping[str, str] | None = None,
                 pid_must_match: bool = False) -> None:
        self.notifier = notifier if notifier is not None else Notifier(env=env)
        if interval_s is None and self.notifier.enabled:
            interval_s = watchdog_interval(env, pid_must_match=pid_must_match)
        self.interval_s = interval_s if self.notifier.enabled else None
        self.clock = clock
        self.last_ping: float | None = None
        self.pings = 0

    @property
    def enabled(self) -> bool:
        """True when there is a watchdog to ping."""
        return self.interval_s is not None

    @property
    def tick_every_s(self) -> float:
        """How often the UI clock should call tick(): half the ping interval, so the longest gap
        between two pings is 1.5 × interval = ¾ of WatchdogSec, even with a late clock."""
        return self.interval_s / 2 if self.interval_s is not None else 1.0

    def tick(self, *_: Any) -> bool:
        """Called from the UI clock (Kivy passes dt; it is ignored). True when a ping went out."""
        if self.interval_s is None:
            return False
        now = self.clock()
        if self.last_ping is not None and now - self.last_ping < self.interval_s:
            return False
        if self.notifier.watchdog():
            self.last_ping = now
            self.pings += 1
            return True
        return False

    def on_clock(self, dt: float = 0.0) -> None:
        """What the UI clock calls: tick(), returning None (Kivy unschedules an interval
        callback that returns False, which tick() does between pings)."""
        self.tick()

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (and STATUS=), then the first ping at once."""
        sent = self.notifier.ready(status)
        self.tick()
        return sent

    def status(self, text: str) -> bool:
        return self.notifier.status(text)

    def stopping(self, status: str | None = "stopping") -> bool:
        return self.notifier.stopping(status)

    def close(self) -> None:
        self.notifier.close()


#: what Kivy's Clock.schedule_interval looks like: (callback(dt), seconds) -> handle
Schedule = Callable[[Callable[[float], Any], float], Any]


def start_watchdog(schedule: Schedule, *, status: str | None = "serving citizens",
                   env: Mapping[str, str] | None = None,
                   clock: Callable[[], float] = time.monotonic) -> WatchdogPinger:
    """Tell systemd the UI is up and keep its watchdog fed from the UI's own clock.

    `schedule(callback, seconds)` runs `callback(dt)` every `seconds` on the UI's loop — Kivy's
    `Clock.schedule_interval`, or `schedule_on_asyncio(loop)` for a loop without Kivy. Sends
    READY=1 with `status`; schedules `pinger.on_clock` only when systemd set a watchdog. Returns the
    pinger (its `status()` and `stopping()` are for the app's later life)."""
    pinger = WatchdogPinger(env=env, clock=clock)
    if pinger.enabled:
        schedule(pinger.on_clock, pinger.tick_every_s)
        log.info("systemd watchdog: ping every %.1f s (checked every %.1f s)", pinger.interval_s, pinger.tick_every_s)
    pinger.ready(status)
    return pinger


class _Repeating:
    """callback(dt) every `seconds` on an asyncio loop, until cancel()."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[float], Any], seconds: float) -> None:
        self.loop, self.callback, self.seconds = loop, callback, seconds
        self.last = loop.time()
        self.handle = loop.call_later(seconds, self._run)

    def _run(self) -> None:
        now = self.loop.time()
        self.handle = self.loop.call_later(self.seconds, self._run)
        self.callback(now - self.last)
        self.last = now

    def cancel(self) -> None:
        self.handle.cancel()


def schedule_on_asyncio(loop: asyncio.AbstractEventLoop) -> Schedule:
    """A `schedule` for start_watchdog on a bare asyncio loop: the callback runs on the loop, so
    a blocked loop stops the pings just as a frozen Kivy clock does."""

    def schedule(callback: Callable[[float], Any], seconds: float) -> _Repeating:
        return _Repeating(loop, callback, seconds)

    return schedule


__all__ = ["Notifier", "WatchdogPinger", "schedule_on_asyncio", "socket_address", "start_watchdog",
           "watchdog_interval"]
