"""`make run`'s fleet (issue 11's "done when"; docs/fleet.md "A fleet on one machine"): the demo
kiosk from `kiosk ui-demo` enrolls with a fleet server started on this machine, takes a signed
configuration, obeys a command, uploads its journal, and shows on the dashboard with its
running devices' status — signed in with the manager token it prints. Ctrl-C stops the kiosk,
the agent and the server; a demo killed outright takes its fleet processes with it.

Real processes throughout: `kiosk ui-demo --hold` with no display (the virtual screen), its
`fleet serve` and `kiosk agent run` subprocesses, the dashboard over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from make_run_support import KIOSK, no_display_env, read_until, x_server_gone


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line names `text` (the fleet server's database, the
    agent's data dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def _dashboard(url: str, token: str) -> str:
    req = urllib.request.Request(url, headers={"Cookie": f"fleet_token={token}"})
    with urllib.request.urlopen(req, timeout=10) as answer:
        return answer.read().decode()


def test_the_held_demo_kiosk_is_in_its_fleet_until_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen([*KIOSK, "ui-demo", "--hold", "--terminal-latency", "0.2"], env=no_display_env(tmp_path),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        enrolled = read_until(proc, r"^fleet: enrolled (\S+) with (http://127\.0\.0\.1:\d+) \(accepted", seen, 150)
        kiosk_id, server = enrolled.group(1), enrolled.group(2)
        assert kiosk_id == "kiosk-demo-01"
        read_until(proc, r"^fleet: configuration version 1 applied .* in sync: yes$", seen, 30)
        read_until(proc, r"^fleet: command 1 \(enable_service service=fee_payment\) done", seen, 30)
        journal = read_until(proc, r"^fleet: journal uploaded \((\d+) row\(s\) sent\): the server holds it up to "
                                    r"seq (\d+), the kiosk's head is seq (\d+)$", seen, 30)
        assert int(journal.group(1)) > 0 and journal.group(2) == journal.group(3)  # the walk-through's rows
        token = read_until(proc, r"^fleet dashboard: (\S+)/ui/ — sign in with the manager token (fleetm_\S+)$",
                            seen, 30)
        assert token.group(1) == server
        xvfb_pid = int(read_until(proc, r"virtual screen: Xvfb (:\d+) \(pid (\d+)\)", seen, 60).group(2))
        read_until(proc, r"^  fleet dashboard: ", seen, 90)  # beside the panel's address
        status = read_until(proc, r"^fleet: the dashboard shows kiosk-demo-01 online: (.*)$", seen, 150).group(1)
        assert "printer ok" in status and "terminal ok" in status and "9 of 9 services available" in status
        read_until(proc, r"^fleet: reconciliation \S+ \(Tehran\): 1 kiosk\(s\), 0 difference\(s\)", seen, 60)
        read_until(proc, r"waiting for a slip scanned on the panel", seen, 150)
        # a manager signs in with the printed token: the kiosk, online, its devices and its journal
        assert _processes_mentioning(str(tmp_path / "fleet-demo")), "no fleet server process"
        assert _processes_mentioning(f"agent run --data-dir {tmp_path}"), "no agent process"
        page = _dashboard(f"{server}/ui/kiosks/{kiosk_id}", token.group(2))
        assert f"Kiosk {kiosk_id}" in page and "online · last seen" in page, page[-3000:]
        assert kiosk_id in _dashboard(f"{server}/ui/", token.group(2))
        # the same token on the API: the running kiosk's devices, as its agent's heartbeat carried them
        req = urllib.request.Request(f"{server}/api/v1/kiosks/{kiosk_id}",
                                     headers={"Authorization": f"Bearer {token.group(2)}"})
        with urllib.request.urlopen(req, timeout=10) as answer:
            view = json.loads(answer.read())
        assert view["heartbeat"]["devices"]["printer"] == "ok" and view["journal"]["problems"] == []
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        rest, err = proc.communicate(timeout=90)
    finally:
        _stop(proc)
    text = "".join(seen) + rest
    assert proc.returncode == 0, (text[-3000:], err[-4000:])
    assert "kiosk stopped" in rest
    # after the kiosk stopped, the agent's last run sent what it journaled since
    last = re.findall(r"^fleet: journal uploaded \(\d+ row\(s\) sent\): the server holds it up to seq (\d+), "
                      r"the kiosk's head is seq (\d+)$", rest, re.M)
    assert last and last[-1][0] == last[-1][1], rest[-2000:]
    assert x_server_gone(xvfb_pid)
    assert not _processes_mentioning(str(tmp_path)), "a fleet process outlived the demo"
    assert "Traceback" not in err, err[-4000:]


def _stop(proc: subprocess.Popen[str]) -> None:
    """A test that failed half-way: Ctrl-C first (the demo stops its X server and its fleet),
    then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_a_demo_killed_outright_leaves_no_x_server_nor_fleet_process(tmp_path: Path) -> None:
    proc = subprocess.Popen([*KIOSK, "ui-demo", "--hold"], env=no_display_env(tmp_path), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen: list[str] = []
    try:
        xvfb_pid = int(read_until(proc, r"virtual screen: Xvfb (:\d+) \(pid (\d+)\)", seen, 150).group(2))
        read_until(proc, r"^panel: ", seen, 90)
        assert not x_server_gone(xvfb_pid)
        assert _processes_mentioning(str(tmp_path / "fleet-demo")) and _processes_mentioning(
            f"agent run --data-dir {tmp_path}")
        proc.kill()  # SIGKILL: no finally, no atexit
        proc.wait(timeout=10)
        end = time.monotonic() + 20
        while (not x_server_gone(xvfb_pid) or _processes_mentioning(str(tmp_path))) and time.monotonic() < end:
            time.sleep(0.2)
        assert x_server_gone(xvfb_pid), "the X server outlived the demo"
        assert not _processes_mentioning(str(tmp_path)), "a fleet process outlived the demo"
    finally:
        _stop(proc)


def test_a_killed_demo_takes_its_fleet_processes_with_it(tmp_path: Path) -> None:
    # what kiosk ui-demo does first, in a process that is then killed outright (SIGKILL: no
    # finally, no atexit): its fleet server and agent die with it (PR_SET_PDEATHSIG)
    code = ("import sys, time; from pathlib import Path; from provisioning.demo import KioskFleet\n"
            "fleet = KioskFleet(Path(sys.argv[1]), interval_s=2).start()\n"
            "assert fleet.join()\n"
            "print('ready', fleet.server.proc.pid, fleet.agent.proc.pid, flush=True)\n"
            "time.sleep(300)\n")
    data = tmp_path / "kiosk"
    data.mkdir(mode=0o700)
    proc = subprocess.Popen([sys.executable, "-c", code, str(data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        seen: list[str] = []
        ready = read_until(proc, r"^ready (\d+) (\d+)$", seen, 120)
        children = [int(ready.group(1)), int(ready.group(2))]
        assert sorted(set(_processes_mentioning(str(data))) - {proc.pid}) == sorted(children)
        proc.kill()
        proc.wait(timeout=10)
        end = time.monotonic() + 20
        while _processes_mentioning(str(data)) and time.monotonic() < end:
            time.sleep(0.2)
        assert not _processes_mentioning(str(data)), "the fleet processes outlived a killed demo"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _processes_mentioning(str(data)):  # never leave them behind, even when failing
            os.kill(pid, signal.SIGKILL)
