"""kiosk.watchdog against a real AF_UNIX datagram socket standing in for systemd's notify socket:
the exact datagrams (READY=1, STATUS=, WATCHDOG=1, STOPPING=1), the ping cadence from
$WATCHDOG_USEC on an injected clock, abstract '@' addresses, the sender's credentials (what
systemd checks against NotifyAccess=), and a loop that freezes: its pings stop for longer than
WatchdogSec, which is what makes systemd restart the kiosk."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.watchdog import (
    Notifier,
    WatchdogPinger,
    schedule_on_asyncio,
    socket_address,
    start_watchdog,
    watchdog_interval,
)

ROOT = Path(__file__).resolve().parent.parent


class NotifySocket:
    """What systemd listens on: a bound datagram socket that also asks for the sender's
    credentials (SO_PASSCRED), as PID 1 does to match a sender against NotifyAccess=."""

    def __init__(self, address: str, env_value: str) -> None:
        self.env_value = env_value
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.sock.settimeout(2.0)

    def receive(self, timeout: float = 2.0) -> tuple[bytes, int]:
        """One datagram and the pid the kernel says sent it."""
        self.sock.settimeout(timeout)
        data, ancdata, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = -1
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("iII", payload[:12])
        return data, pid

    def drain(self) -> list[bytes]:
        got = []
        self.sock.setblocking(False)
        try:
            while True:
                got.append(self.sock.recv(4096))
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)
        return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # a short directory: sun_path holds 108 bytes, and pytest's tmp_path can be long
    with tempfile.TemporaryDirectory(prefix="ck-", dir="/tmp") as tmp:
        path = os.path.join(tmp, "notify")
        sock = NotifySocket(path, path)
        try:
            yield sock
        finally:
            sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[NotifySocket]:
    name = f"city-kiosk-test-{uuid.uuid4().hex}"
    sock = NotifySocket("\0" + name, "@" + name)
    try:
        yield sock
    finally:
        sock.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_addresses_systemd_may_give() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@/org/freedesktop/systemd1/notify/123") == "\0/org/freedesktop/systemd1/notify/123"
    assert socket_address("vsock:2:1234") is None
    assert socket_address("@") is None
    assert socket_address("relative/path") is None


def test_without_notify_socket_everything_is_a_no_op() -> None:
    env = {"WATCHDOG_USEC": "30000000"}  # a watchdog without a socket is still nothing to ping
    notifier = Notifier(env=env)
    assert not notifier.enabled
    assert notifier.ready("x") is False and notifier.watchdog() is False and notifier.stopping() is False
    assert notifier._sock is None  # not even a socket was made
    scheduled: list[tuple[object, float]] = []
    pinger = start_watchdog(lambda cb, s: scheduled.append((cb, s)), env=env)
    assert not pinger.enabled and scheduled == []
    assert pinger.tick() is False and pinger.pings == 0


def test_ready_status_stopping_are_the_exact_datagrams(notify_socket: NotifySocket) -> None:
    notifier = Notifier(env={"NOTIFY_SOCKET": notify_socket.env_value})
    assert notifier.enabled
    assert notifier.ready("serving citizens")
    assert notify_socket.receive() == (b"READY=1\nSTATUS=serving citizens", os.getpid())
    assert notifier.status("out of service: printer")
    assert notify_socket.receive()[0] == b"STATUS=out of service: printer"
    # a newline in a status cannot smuggle a line of its own (READY=1, MAINPID=...)
    assert notifier.status("journal broken\nREADY=1")
    assert notify_socket.receive()[0] == b"STATUS=journal broken READY=1"
    assert notifier.extend_timeout(90)
    assert notify_socket.receive()[0] == b"EXTEND_TIMEOUT_USEC=90000000"
    assert notifier.stopping("bye")
    assert notify_socket.receive()[0] == b"STOPPING=1\nSTATUS=bye"
    assert notifier.ready()
    assert notify_socket.receive()[0] == b"READY=1"
    assert notifier.sent == 6
    assert notify_socket.drain() == []
    notifier.close()


def test_abstract_namespace_address(abstract_socket: NotifySocket) -> None:
    pinger = WatchdogPinger(env={"NOTIFY_SOCKET": abstract_socket.env_value, "WATCHDOG_USEC": "20000000"})
    assert pinger.enabled and pinger.interval_s == 10.0
    assert pinger.ready("up")
    assert abstract_socket.receive()[0] == b"READY=1\nSTATUS=up"
    assert abstract_socket.receive()[0] == b"WATCHDOG=1"  # the first ping goes out with READY
    pinger.close()


def test_pings_at_half_the_watchdog_timeout(notify_socket: NotifySocket) -> None:
    clock = FakeClock()
    env = {"NOTIFY_SOCKET": notify_socket.env_value, "WATCHDOG_USEC": "10000000"}  # WatchdogSec=10s
    scheduled: list[tuple[object, float]] = []
    pinger = start_watchdog(lambda cb, s: scheduled.append((cb, s)), env=env, clock=clock, status="serving citizens")
    assert pinger.interval_s == 5.0 and pinger.tick_every_s == 2.5
    assert scheduled == [(pinger.on_clock, 2.5)]  # Kivy's Clock.schedule_interval(pinger.on_clock, 2.5)
    assert notify_socket.receive()[0] == b"READY=1\nSTATUS=serving citizens"
    assert notify_socket.receive()[0] == b"WATCHDOG=1"
    sent_at = [clock.now]
    for _ in range(60):  # the UI clock ticks every 0.5 s for 30 s
        clock.now += 0.5
        if pinger.tick(0.5):
            sent_at.append(clock.now)
    got = notify_socket.drain()
    assert got == [b"WATCHDOG=1"] * (len(sent_at) - 1)
    gaps = [b - a for a, b in zip(sent_at, sent_at[1:])]
    assert gaps == [5.0] * 6 and pinger.pings == 7
    pinger.close()


def test_a_clock_that_stops_ticking_stops_the_pings(notify_socket: NotifySocket) -> None:
    clock = FakeClock()
    env = {"NOTIFY_SOCKET": notify_socket.env_value, "WATCHDOG_USEC": "30000000"}
    pinger = WatchdogPinger(env=env, clock=clock)
    pinger.ready()
    assert len(notify_socket.drain()) == 2
    clock.now += 7.5
    assert pinger.tick() is False  # not yet half of 30 s
    clock.now += 7.5
    assert pinger.tick() is True
    clock.now += 60  # the UI is frozen for a minute: nothing calls tick, nothing is sent
    assert notify_socket.drain() == [b"WATCHDOG=1"]
    assert pinger.tick() is True  # a UI that comes back pings at once (systemd has restarted it by then)
    pinger.close()


def test_watchdog_environment_edge_cases() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "3000000"}) == 1.5
    mine = {"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(mine, pid_must_match=True) == 1.5
    # under cage systemd names cage's pid; the UI (its child) pings anyway, unless told to be strict
    cages = {"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}
    assert watchdog_interval(cages) == 1.5
    assert watchdog_interval(cages, pid_must_match=True) is None


def test_a_socket_nobody_listens_on_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with tempfile.TemporaryDirectory(prefix="ck-", dir="/tmp") as tmp:
        pinger = WatchdogPinger(env={"NOTIFY_SOCKET": os.path.join(tmp, "gone"), "WATCHDOG_USEC": "2000000"})
        assert pinger.ready() is False and pinger.tick() is False and pinger.tick() is False
    warnings = [r for r in caplog.records if r.name == "kiosk.watchdog" and "not sent" in r.getMessage()]
    assert len(warnings) == 1  # once, not every tick


def test_a_reader_that_lags_never_blocks_the_ui(notify_socket: NotifySocket, caplog: pytest.LogCaptureFixture) -> None:
    """Nobody reads the socket: its queue fills after a few datagrams, and then a send fails at
    once (logged once) instead of blocking the UI's clock; the pinger tries again next tick."""
    clock = FakeClock()
    pinger = WatchdogPinger(env={"NOTIFY_SOCKET": notify_socket.env_value, "WATCHDOG_USEC": "2000000"}, clock=clock)
    started = time.monotonic()
    results = []
    for _ in range(200):
        clock.now += 1.0
        results.append(pinger.tick())
    assert time.monotonic() - started < 2.0
    assert results[0] is True and False in results
    assert pinger.pings == results.count(True) < 200
    assert sum("not sent" in r.getMessage() for r in caplog.records if r.name == "kiosk.watchdog") == 1
    queued = len(notify_socket.drain())
    assert queued == pinger.pings
    clock.now += 1.0
    assert pinger.tick() is True  # room again: the next tick pings
    pinger.close()


def test_a_child_process_sends_with_its_own_pid(notify_socket: NotifySocket) -> None:
    """Under `cage -- kiosk ui` the datagrams come from cage's child, not the unit's main pid:
    systemd drops them unless NotifyAccess=all (deploy/city-kiosk.service says so)."""
    env = dict(os.environ, NOTIFY_SOCKET=notify_socket.env_value, WATCHDOG_USEC="8000000", WATCHDOG_PID="1",
               PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from kiosk.watchdog import start_watchdog; "
         "start_watchdog(lambda cb, s: None, status='child up'); sys.stdin.read()"],
        env=env, stdin=subprocess.PIPE)
    try:
        first, pid = notify_socket.receive(timeout=20)
        second, pid2 = notify_socket.receive(timeout=5)
    finally:
        child.communicate(b"", timeout=20)
    assert (first, second) == (b"READY=1\nSTATUS=child up", b"WATCHDOG=1")
    assert pid == pid2 == child.pid != os.getpid()


def test_a_frozen_event_loop_misses_the_watchdog(notify_socket: NotifySocket) -> None:
    """A real asyncio loop pings through start_watchdog(schedule_on_asyncio(loop)); a callback
    that blocks the loop for longer than WatchdogSec leaves a gap systemd would act on, and
    while the loop runs no gap comes near WatchdogSec."""
    # pings every 0.8 s, ticks every 0.4 s: the longest healthy gap is 1.2 s by design, which
    # leaves a loaded machine 0.4 s of lateness before a healthy loop would look frozen
    watchdog_sec = 1.6
    env = {"NOTIFY_SOCKET": notify_socket.env_value, "WATCHDOG_USEC": str(int(watchdog_sec * 1_000_000))}
    arrivals: list[float] = []
    stop = threading.Event()

    def listen() -> None:
        notify_socket.sock.settimeout(0.05)
        while not stop.is_set():
            try:
                data = notify_socket.sock.recv(4096)
            except TimeoutError:
                continue
            if data == b"WATCHDOG=1":
                arrivals.append(time.monotonic())

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    marks: dict[str, float] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pinger = start_watchdog(schedule_on_asyncio(loop), env=env)
        assert pinger.enabled and pinger.tick_every_s == 0.4
        await asyncio.sleep(3.0)  # healthy
        marks["freeze"] = time.monotonic()
        time.sleep(2.5)  # the UI hangs: nothing on the loop runs, the clock does not tick
        marks["thaw"] = time.monotonic()
        await asyncio.sleep(1.0)
        pinger.close()

    try:
        asyncio.run(main())
    finally:
        stop.set()
        listener.join(5)
    healthy = [t for t in arrivals if t <= marks["freeze"]]
    assert len(healthy) >= 3
    assert max(b - a for a, b in zip(healthy, healthy[1:])) < watchdog_sec
    during = [t for t in arrivals if marks["freeze"] < t < marks["thaw"]]
    assert during == []
    gap = min(t for t in arrivals if t >= marks["thaw"]) - max(healthy)
    assert gap > watchdog_sec  # systemd would have killed and restarted the service by now


KIVY_CLOCK = """
import os, sys, time
for k in ("KIVY_NO_ARGS", "KIVY_NO_CONSOLELOG", "KIVY_NO_FILELOG"):
    os.environ.setdefault(k, "1")
from kivy.clock import Clock
from kiosk.watchdog import start_watchdog
pinger = start_watchdog(Clock.schedule_interval, status="kivy up")
start = time.monotonic()
while time.monotonic() - start < 1.2:
    Clock.tick()
    time.sleep(0.01)
print(pinger.pings)
"""


def test_kivys_own_clock_keeps_pinging(notify_socket: NotifySocket, tmp_path: Path) -> None:
    """Wired the way the UI wires it, on Kivy's real Clock (in a child process, so this test
    session's Kivy state is untouched): with WatchdogSec=0.2 s the pings keep coming for the
    whole second, not once (a callback returning False would have been unscheduled)."""
    env = dict(os.environ, NOTIFY_SOCKET=notify_socket.env_value, WATCHDOG_USEC="200000",
               PYTHONPATH=str(ROOT), KIVY_HOME=str(tmp_path / "kivy"))
    got: list[bytes] = []
    stop = threading.Event()

    def listen() -> None:  # read as systemd does: a datagram socket's queue is short
        notify_socket.sock.settimeout(0.05)
        while not stop.is_set():
            try:
                got.append(notify_socket.sock.recv(4096))
            except TimeoutError:
                continue

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        result = subprocess.run([sys.executable, "-c", KIVY_CLOCK], env=env, capture_output=True, text=True,
                                timeout=60)
    finally:
        time.sleep(0.2)
        stop.set()
        listener.join(5)
    assert result.returncode == 0, result.stderr[-2000:]
    assert got[0] == b"READY=1\nSTATUS=kivy up"
    pings = got[1:]
    assert set(pings) == {b"WATCHDOG=1"} and len(pings) == int(result.stdout.split()[-1])
    assert len(pings) >= 5  # one per 0.1 s over 1.2 s (about 12), with room for a slow machine
