"""`make run` (kiosk ui-demo, docs/ui.md "Running it") on a machine with no display, as CI and a
fresh Debian box without a desktop run it: it says the kiosk runs on a virtual screen, prints
the headless pay-fee walk-through with its summary (what the README's quick start shows),
puts the kiosk in a fleet on this machine (enrolled, configured, commanded, journal uploaded),
serves the simulator panel, has a citizen pay a fee by touch on an Xvfb screen, and ends on its
own with exit 0 because stdin is not a terminal — leaving no X server behind. In a terminal
(`--hold`, what a TTY gets) the kiosk stays up and the panel drives it: a slip scanned on the
panel is paid on the virtual screen, and Ctrl-C ends it cleanly. With a display it opens the
window and the panel, runs no walk-through, and Ctrl-C ends it.

Each case runs the real command in a subprocess (the Makefile's own recipe for the first:
`make -o venv run`, so nothing is installed) against the demo's real back-office, simulators
and panel server."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from make_run_support import KIOSK, no_display_env, read_until, x_server_gone

ROOT = Path(__file__).resolve().parents[1]


def test_make_run_without_a_display_walks_through_on_a_virtual_screen_and_ends(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = subprocess.run(["make", "--no-print-directory", "-o", "venv", "run"], cwd=ROOT, env=no_display_env(data),
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    text = out.stdout
    assert out.returncode == 0, (text[-3000:], out.stderr[-4000:])
    assert "no display" in text and "virtual screen" in text
    # the headless walk-through and its summary, as the README's quick start shows them
    assert "a citizen pays a fee, headless" in text
    assert "— نتیجه / Result —" in text and "final state   COMPLETED" in text and "outcome       fee.paid" in text
    assert "journal chain ok" in text
    # the touch kiosk on Xvfb, with the panel's address
    screen = re.search(r"virtual screen: Xvfb (:\d+) \(pid (\d+)\)", text)
    assert screen, text[-3000:]
    assert re.search(r"^panel: http://127\.0\.0\.1:\d+/$", text, re.M)
    assert "touch walk-through: COMPLETED" in text
    for name in ("attract", "home", "choose", "digits", "confirm", "outcome"):
        assert f"  {name} " in text, name
    shots = sorted(p.name for p in (data / "ui-demo").glob("*.png"))
    assert shots[0] == "01-attract.png" and shots[-1].endswith("-outcome.png"), shots
    assert "stdin is not a terminal" in text
    assert x_server_gone(int(screen.group(2)))  # the X server went with it
    # the kiosk in its fleet (tests/test_make_run_fleet.py has the rest): enrolled with a fleet
    # server on this machine, the signed configuration applied, the command done, the journal
    # uploaded, the dashboard's address and a manager token printed with the panel's
    assert re.search(r"^fleet: enrolled kiosk-demo-01 with http://127\.0\.0\.1:\d+ \(accepted", text, re.M)
    assert re.search(r"^fleet: configuration version 1 applied .* in sync: yes$", text, re.M)
    assert re.search(r"^fleet: command 1 \(enable_service service=fee_payment\) done", text, re.M)
    uploads = re.findall(r"^fleet: journal uploaded .*up to seq (\d+), the kiosk's head is seq (\d+)$", text, re.M)
    assert len(uploads) == 2 and all(held == head for held, head in uploads), uploads
    assert re.search(r"^  fleet dashboard: http://127\.0\.0\.1:\d+/ui/ — sign in with the manager token fleetm_",
                     text, re.M)
    assert re.search(r"^fleet: the dashboard shows kiosk-demo-01 online: .*printer ok", text, re.M)
    # and its journal reconciled with the back-office: both its citizens' payments, no difference
    assert re.search(r"^fleet: reconciliation \S+ \(Tehran\): 1 kiosk\(s\), 0 difference\(s\)", text, re.M)
    assert re.search(r"^fleet: kiosk-demo-01: ok; kiosk (\d+) tx", text, re.M)
    assert "fleet: failed" not in text and "reconciliation failed" not in text
    assert "Traceback" not in out.stderr, out.stderr[-4000:]


def _post(url: str, body: dict[str, object]) -> dict[str, object]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "X-Kiosk-Panel": "1"})
    with urllib.request.urlopen(req, timeout=10) as answer:
        return json.loads(answer.read())


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def test_held_in_a_terminal_the_panel_drives_the_virtual_screen_kiosk(tmp_path: Path) -> None:
    proc = subprocess.Popen([*KIOSK, "ui-demo", "--hold", "--terminal-latency", "0.2"], env=no_display_env(tmp_path),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        xvfb_pid = int(read_until(proc, r"virtual screen: Xvfb (:\d+) \(pid (\d+)\)", seen, 150).group(2))
        url = read_until(proc, r"^panel: (http://127\.0\.0\.1:\d+/)$", seen, 60).group(1)
        read_until(proc, r"waiting for a slip scanned on the panel", seen, 150)
        # the person at the browser: decline the next payment and scan a slip — declined; scan
        # another (the scanner drops the same code read again within 3 s) — paid
        slips = _get(url + "api/slips?limit=10")["slips"]
        _post(url + "api/terminal", {"answer": "decline", "once": True})
        _post(url + "api/scan", {"bill_id": slips[0]["bill_id"], "payment_id": slips[0]["payment_id"]})
        declined = read_until(proc, r"^  (outcome|error) .*", seen, 90).group(0)
        read_until(proc, r"waiting for a slip scanned on the panel", seen, 60)
        printed_before = len(_get(url + "api/printed")["printed"])
        _post(url + "api/scan", {"bill_id": slips[1]["bill_id"], "payment_id": slips[1]["payment_id"]})
        paid = read_until(proc, r"^  (outcome|error) .*", seen, 90).group(0)
        read_until(proc, r"waiting for a slip scanned on the panel", seen, 60)
        assert len(_get(url + "api/printed")["printed"]) == printed_before + 1  # its receipt, on the panel
        assert (tmp_path / "ui-demo" / "screen.png").stat().st_size > 1000
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = "".join(seen) + rest
    assert "کد رهگیری" not in declined and "outcome" in declined  # nothing paid, no tracking code
    assert "کد رهگیری" in paid
    assert proc.returncode == 0, (text[-3000:], err[-4000:])
    assert "kiosk stopped" in rest
    assert x_server_gone(xvfb_pid)
    assert "Traceback" not in err, err[-4000:]  # stopped while a citizen waited on the scanner: no stray error


def test_with_a_display_it_opens_the_window_and_the_panel_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    from kiosk.ui_main import VirtualScreen

    with VirtualScreen("720x1280") as screen:  # stands in for a developer's desktop
        display = screen.start()
        assert display is not None, "Xvfb is not installed (make deps installs it)"
        env = {**no_display_env(tmp_path), "DISPLAY": display}
        proc = subprocess.Popen([*KIOSK, "ui-demo"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        seen: list[str] = []
        try:
            read_until(proc, rf"display {display}: the kiosk opens in a window", seen, 60)
            url = read_until(proc, r"^panel: (http://127\.0\.0\.1:\d+/)$", seen, 150).group(1)
            state = _get(url + "api/state")
            assert state["printer"]["paper"] == "ok"
            time.sleep(3)  # the window up and serving
            assert proc.poll() is None
            proc.send_signal(signal.SIGINT)
            rest, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    text = "".join(seen) + rest
    assert proc.returncode == 0, (text[-3000:], err[-4000:])
    assert "kiosk stopped" in rest
    assert "Result" not in text and "virtual screen" not in text  # no walk-through with a display
    assert "Traceback" not in err, err[-3000:]
