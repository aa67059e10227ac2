"""`<data dir>/device-status.json` (docs/fleet.md "Heartbeats and presence"): the running kiosk
writes its status coordinator's state there (kiosk.status.StatusFile), and the fleet agent
reports it in its heartbeat — or every device `unknown` once the writer is gone or the file has
not been written for three refresh periods, never a dead kiosk's last status.

The first test runs a real kiosk (`kiosk ui --demo --panel` on SDL's offscreen driver), runs its
printer out of paper from the simulator panel, and has a real agent enrolled with a real fleet
server report it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from devices.base import DeviceState
from kiosk.status import STATUS_FILENAME, StatusCoordinator, StatusFile, process_started
from provisioning.agent.local import device_status, service_status

KIOSK = [sys.executable, "-c", "import sys; from kiosk.cli import main; sys.exit(main(sys.argv[1:]))"]


def _wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"no {what} in {timeout:g} s")


def _read(data: Path) -> dict[str, Any]:
    try:
        return json.loads((data / STATUS_FILENAME).read_text())
    except (OSError, ValueError):
        return {}


def _printer_paper(data: Path) -> str | None:
    return ((_read(data).get("devices") or {}).get("printer") or {}).get("consumables", {}).get("paper")


def test_a_running_kiosk_writes_its_status_and_the_agent_reports_it(tmp_path: Path) -> None:
    from provisioning import demo

    data = tmp_path / "kiosk"
    data.mkdir(mode=0o700)
    env = {**os.environ, "KIOSK_DATA_DIR": str(data), "SDL_VIDEODRIVER": "offscreen", "KIVY_NO_ARGS": "1"}
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
        env.pop(name, None)
    proc = subprocess.Popen([*KIOSK, "ui", "--demo", "--windowed", "--panel"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fleet_dir = tmp_path / "fleet"
    fleet_dir.mkdir()
    db = demo.sqlite_url(fleet_dir)
    server = demo.ServerProcess(db, fleet_dir / "server.log", interval_s=5).start()
    try:
        panel = None
        end = time.monotonic() + 150
        while panel is None and time.monotonic() < end:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line and proc.poll() is not None:
                break
            if line.startswith("panel: "):
                panel = line.split()[1]
        assert panel, proc.stderr.read()[-3000:] if proc.poll() is not None else "no panel line"
        # the kiosk writes the file once its screens follow the coordinator
        assert _wait("printer in the status file", lambda: _printer_paper(data) == "ok", 60)
        first = _read(data)
        assert first["pid"] == proc.pid and first["pid_started"] == process_started(proc.pid)
        assert first["services"]["fee_payment"]["available"] is True
        assert device_status(data)["printer"] == "ok"  # fresh: the writer runs
        # the person at the panel runs the printer out of paper; the kiosk's printer poll sees it
        req = urllib.request.Request(panel + "api/printer", data=json.dumps({"paper": "out"}).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "X-Kiosk-Panel": "1"})
        urllib.request.urlopen(req, timeout=10).read()
        assert _wait("paper out in the status file", lambda: _printer_paper(data) == "out", 60)
        updated = _read(data)
        assert updated["devices"]["printer"]["reason"]["key"] == "status.paper_out"
        assert updated["written_at"] > first["written_at"]
        # an agent enrolled with a real fleet server reports it in its heartbeat
        url = server.url()
        tokens = demo.prepare(db, site="north")
        from provisioning.agent.runner import Agent, enroll

        enroll(data, url, tokens.enroll, serial="kiosk-demo-01")
        agent = Agent(data)
        body = agent.heartbeat_body()
        paper_out = body["devices"]["printer"]  # "<its state>: status.paper_out"
        assert paper_out.endswith(": status.paper_out"), paper_out
        assert body["devices"]["terminal"] == "ok"
        assert body["services"]["fee_payment"] == "available"
        agent.run_once()
        view = demo.server_view(db, "kiosk-demo-01", 5)
        assert view["heartbeat"]["devices"]["printer"] == paper_out
        assert f"device printer: {paper_out}" in view["alerts"]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
        # the kiosk is gone: its last status is not reported as the devices' status
        assert _printer_paper(data) == "out"  # the file is still there…
        assert set(device_status(data).values()) == {"unknown"}  # …but its writer is gone
        assert set(service_status(data).values()) == {"unknown"}
        agent.run_once()
        view = demo.server_view(db, "kiosk-demo-01", 5)
        assert set(view["heartbeat"]["devices"].values()) == {"unknown"}
        assert "Traceback" not in err, err[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.stop()


def _coordinator() -> StatusCoordinator:
    status = StatusCoordinator()
    status.publish("printer", device_class="ReceiptPrinter", state=DeviceState.ONLINE, consumables={"paper": "ok"})
    status.publish("terminal", device_class="PaymentTerminal", state=DeviceState.ONLINE)
    return status


def test_changes_are_coalesced_and_the_file_is_refreshed(tmp_path: Path) -> None:
    status = _coordinator()
    writer = StatusFile(tmp_path, min_interval_s=1.0, refresh_s=60).attach(status)
    try:
        _wait("the first write", lambda: writer.writes == 1, 5)
        first_at = _read(tmp_path)["written_at"]
        for n in range(200):  # a burst of changes: paper low/ok flapping
            status.publish("printer", device_class="ReceiptPrinter", state=DeviceState.ONLINE,
                           consumables={"paper": "low" if n % 2 == 0 else "ok"})
        status.publish("printer", device_class="ReceiptPrinter", state=DeviceState.ONLINE, consumables={"paper": "out"})
        _wait("the burst written", lambda: _printer_paper(tmp_path) == "out", 5)
        # one write for the whole burst (two if the burst straddled the 1 s window), none within
        # a second of the one before
        assert writer.writes <= 3, writer.writes
        assert _read(tmp_path)["written_at"] - first_at >= 0.95
        assert device_status(tmp_path) == {"printer": "online: status.paper_out", "terminal": "ok"}
    finally:
        writer.close()
    assert (tmp_path / STATUS_FILENAME).stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed, not left

    refreshing = StatusFile(tmp_path, min_interval_s=0.1, refresh_s=0.3).attach(_coordinator())
    try:
        first = _read(tmp_path)["written_at"]
        _wait("a refresh with nothing changed", lambda: _read(tmp_path).get("written_at", 0) > first, 5)
    finally:
        refreshing.close()


def _write(data: Path, **meta: Any) -> None:
    body = {**_coordinator().to_dict(), "written_at": time.time(), "pid": os.getpid(),
            "pid_started": process_started(os.getpid()), "refresh_s": 15.0, **meta}
    (data / STATUS_FILENAME).write_text(json.dumps(body))


@pytest.mark.parametrize("stale", [
    {"written_at": time.time() - 46},  # three refreshes (45 s) without a write: the kiosk is stuck
    {"pid_started": 1},  # the pid now belongs to another process
    {"pid": 2 ** 22 + 7},  # no such process
])
def test_a_stale_file_is_reported_unknown(tmp_path: Path, stale: dict[str, Any]) -> None:
    (tmp_path / "kiosk.json").write_text(json.dumps({"kiosk_id": "k", "devices": [
        {"name": "printer", "type": "escpos"}, {"name": "terminal", "type": "nexo-http"}]}))
    _write(tmp_path)
    assert device_status(tmp_path) == {"printer": "ok", "terminal": "ok"}
    assert service_status(tmp_path)["fee_payment"] == "available"
    _write(tmp_path, **stale)
    assert device_status(tmp_path) == {"printer": "unknown", "terminal": "unknown"}
    assert set(service_status(tmp_path).values()) == {"unknown"}


def test_an_old_plain_file_without_a_writer_is_judged_by_its_age(tmp_path: Path) -> None:
    path = tmp_path / STATUS_FILENAME
    path.write_text(json.dumps({"printer": "ok"}))
    assert device_status(tmp_path) == {"printer": "ok"}
    old = time.time() - 3600
    os.utime(path, (old, old))
    assert device_status(tmp_path) == {"printer": "unknown"}
