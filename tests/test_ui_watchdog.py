"""The touch UI tells systemd it is up and keeps its watchdog fed (docs/appliance.md): a `kiosk
ui` process run as systemd runs it — $NOTIFY_SOCKET naming a real AF_UNIX datagram socket,
$WATCHDOG_USEC set — sends READY=1 once its first screen is up, WATCHDOG=1 from Kivy's clock
for as long as it runs (not once: a scheduled tick() would be unscheduled after its first
False), and STOPPING=1 when it stops. One Kivy app per process: the UI runs in a subprocess,
offscreen, on the demo environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

SCRIPT = textwrap.dedent('''
    import asyncio, sys
    from pathlib import Path
    from kiosk.ui_main import UIOptions, configure_kivy, run_demo_kiosk

    data, seconds = Path(sys.argv[1]), float(sys.argv[2])
    options = UIOptions(windowed=True, idle_s=600)
    configure_kivy(options, data)

    async def script(ui, app, ctx, env):
        from screens.driver import Citizen
        sessions = asyncio.ensure_future(ui.run_sessions(ctx))
        await Citizen(ui).screen("attract")
        print("ATTRACT", flush=True)
        await asyncio.sleep(seconds)  # the kiosk idles on attract; only its clock can ping
        sessions.cancel()
        await asyncio.gather(sessions, return_exceptions=True)

    asyncio.run(run_demo_kiosk(data, options, script))
    print("STOPPED", flush=True)
''')


def _collect(sock: socket.socket, proc: subprocess.Popen[str], timeout: float) -> list[tuple[float, str]]:
    """Every datagram until the process ends (or `timeout`), then whatever is still queued."""
    got: list[tuple[float, str]] = []
    end = time.monotonic() + timeout
    sock.settimeout(0.2)
    while time.monotonic() < end:
        try:
            got.append((time.monotonic(), sock.recv(4096).decode()))
        except TimeoutError:
            if proc.poll() is not None:
                break
    return got


def test_the_ui_says_ready_and_feeds_the_watchdog_from_its_clock(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    # WatchdogSec=2 s: a ping every 1 s, the clock checking every 0.5 s
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "KIVY_NO_ARGS": "1", "NOTIFY_SOCKET": address,
           "WATCHDOG_USEC": "2000000"}
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    (tmp_path / "data").mkdir()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / "data"), "6"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got = _collect(sock, proc, 150)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
    assert proc.returncode == 0, (out[-2000:], err[-4000:])
    assert "ATTRACT" in out and "STOPPED" in out
    messages = [m for _, m in got]
    assert messages, err[-3000:]
    assert messages[0] == "READY=1\nSTATUS=serving citizens", messages[:3]
    pings = [t for t, m in got if m == "WATCHDOG=1"]
    # the first ping goes with READY; then one about every second for the ~6 s on attract
    assert len(pings) >= 4, messages
    assert max(b - a for a, b in zip(pings, pings[1:])) < 2.0, pings  # never a WatchdogSec gap
    assert messages[-1].startswith("STOPPING=1"), messages[-3:]
    assert messages.index(messages[-1]) > messages.index("READY=1\nSTATUS=serving citizens")


def test_no_notify_socket_no_notifications(tmp_path: Path) -> None:
    # a developer's shell: no $NOTIFY_SOCKET, nothing is sent and nothing fails
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "KIVY_NO_ARGS": "1"}
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
        env.pop(name, None)
    (tmp_path / "data").mkdir()
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "data"), "0.5"], env=env,
                         capture_output=True, text=True, timeout=150)
    assert out.returncode == 0 and "STOPPED" in out.stdout, out.stderr[-3000:]
    assert "systemd notification" not in out.stderr
