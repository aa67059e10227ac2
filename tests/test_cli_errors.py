"""The `kiosk` command as a person types it (issue 6, "A new user's first hour"): global options
before or after the sub-command, and one line on stderr with exit 2 (usage) or 1 (failure)
for each mistake that used to print a traceback. Every case runs the real command."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from kiosk.cli import build_parser
from kiosk.journal import Journal, journal_path

KIOSK = [sys.executable, "-m", "kiosk.cli"]


def kiosk(*args: str, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(KIOSK + list(args), capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]


def one_line_error(out: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """Exit `code`, no traceback, and the error itself on one stderr line naming `needles`.
    (argparse's usage errors put the usage above it: that is the convention for exit 2.)"""
    assert out.returncode == code, (out.returncode, out.stdout[-1000:], out.stderr[-2000:])
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith(("usage:", " "))]
    assert len(lines) == 1, out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _journal_with(data: Path, n: int, kiosk_id: str = "kiosk-cli-t") -> list[str]:
    with Journal(journal_path(data), kiosk_id=kiosk_id) as journal:
        return [journal.begin("fee_payment", 1_000 + i, {"bill_id": str(i)}).tx_id for i in range(n)]


# --- global options anywhere ---------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["--data-dir", "{d}", "journal", "show", "--json"],
    ["journal", "show", "--json", "--data-dir", "{d}"],
    ["journal", "--data-dir", "{d}", "show", "--json"],
    ["--data-dir", "{other}", "journal", "show", "--json", "--data-dir", "{d}"],  # innermost wins
    ["--log-level", "debug", "journal", "show", "--json", "--data-dir", "{d}"],
    ["journal", "show", "--json", "--log-level", "INFO", "--data-dir", "{d}"],
])
def test_global_options_work_before_or_after_the_subcommand(tmp_path: Path, argv: list[str]) -> None:
    data, other = tmp_path / "d", tmp_path / "other"
    data.mkdir()
    other.mkdir()
    (tx,) = _journal_with(data, 1)
    out = kiosk(*[a.format(d=data, other=other) for a in argv])
    assert out.returncode == 0, out.stderr
    assert [t["tx_id"] for t in json.loads(out.stdout)] == [tx]


def test_global_options_merge_with_the_innermost_winning() -> None:
    parser = build_parser()
    args = parser.parse_args(["--data-dir", "A", "--log-level", "info", "sim", "printer", "--data-dir", "B"])
    assert (args.data_dir, args.log_level) == ("B", "INFO")
    args = parser.parse_args(["--data-dir", "A", "journal", "verify"])
    assert (args.data_dir, args.log_level) == ("A", "WARNING")
    args = parser.parse_args(["recover"])
    assert (args.data_dir, args.log_level) == (None, "WARNING")


def test_verify_takes_data_dir_before_the_subcommand(tmp_path: Path) -> None:
    _journal_with(tmp_path, 2)
    out = kiosk("--data-dir", str(tmp_path), "journal", "verify")
    assert out.returncode == 0, out.stderr
    assert "journal ok" in out.stdout and str(tmp_path) in out.stdout


class Running:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(KIOSK + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read() if self.proc.stderr else ""
        self.info = json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        r.stop()


def test_sim_takes_global_options_after_the_device(tmp_path: Path, running: list[Running]) -> None:
    sim = Running("sim", "printer", "--data-dir", str(tmp_path), "--log-level", "info")
    running.append(sim)
    assert sim.info["sim"] == "printer" and sim.info["port"] > 0
    with socket.create_connection((sim.info["host"], sim.info["port"]), timeout=5):
        pass


# --- a person's mistakes: one line, exit 2 or 1 --------------------------------------------
def test_unknown_log_level_is_a_usage_error() -> None:
    one_line_error(kiosk("--log-level", "LOUD", "journal", "show"), 2, "LOUD", "DEBUG")
    one_line_error(kiosk("journal", "show", "--log-level", "LOUD"), 2, "LOUD")


def test_unknown_terminal_mode_is_a_usage_error() -> None:
    one_line_error(kiosk("sim", "terminal", "--mode", "bogus"), 2, "bogus", "approve")


@pytest.mark.parametrize("args, needle", [
    (["--uid", "zz"], "'zz'"),
    (["--uid", "04a1b2c3d4"], "8 hex digits"),
    (["--balance", "-5"], "-5"),
    (["--balance", "lots"], "lots"),
    (["--baud", "-1"], "-1"),
])
def test_bad_card_reader_sim_arguments_are_usage_errors(args: list[str], needle: str) -> None:
    one_line_error(kiosk("sim", "pn532", *args), 2, needle)


@pytest.mark.parametrize("kind", ["printer", "terminal"])
def test_a_port_in_use_is_one_line_and_exit_1(kind: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        one_line_error(kiosk("sim", kind, "--port", str(port)), 1, str(port), "in use")


def test_a_port_out_of_range_is_a_usage_error() -> None:
    one_line_error(kiosk("sim", "printer", "--port", "70000"), 2, "70000")


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "notes.txt"
    not_a_dir.write_text("hello")
    for argv in (["journal", "show"], ["journal", "verify"], ["doctor"], ["recover"]):
        one_line_error(kiosk(*argv, "--data-dir", str(not_a_dir)), 1, str(not_a_dir), "not a directory")
    assert not_a_dir.read_text() == "hello"


def test_a_data_dir_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(kiosk("journal", "show", "--data-dir", str(blocker / "sub")), 1, str(blocker / "sub"))


def test_a_read_only_data_dir_is_one_line_for_a_command_that_writes() -> None:
    # /proc/sys refuses new files even to root: a read-only place whatever the user
    out = kiosk("demo", "--headless", "--script", "pay-fee", "--data-dir", "/proc/sys", timeout=120)
    one_line_error(out, 1, "/proc/sys")


def test_a_read_only_data_dir_still_serves_a_reader() -> None:
    out = kiosk("journal", "show", "--data-dir", "/proc/sys")
    assert out.returncode == 0 and "no transactions" in out.stdout, out.stderr


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    # more rows than a pipe holds, so the writer meets the closed pipe while head has gone
    _journal_with(tmp_path, 1200)
    cmd = " ".join(f"'{a}'" for a in KIOSK) + f" journal show --limit 1200 --data-dir '{tmp_path}'"
    out = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd} | head -1"], capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.count("\n") == 1 and out.stdout.split()[:2] == ["id", "kind"]  # the header
    assert out.stderr == ""  # no "BrokenPipeError", no "Exception ignored"
    assert out.returncode == 0


# --- hints a person can paste ----------------------------------------------------------------
def test_kiosk_command_is_what_the_shell_can_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kiosk.cli import kiosk_command

    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    script = bin_dir / "kiosk"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert kiosk_command(str(script)) == "venv/bin/kiosk"  # not on the PATH: its path
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert kiosk_command(str(script)) == "kiosk"  # on the PATH: the bare name
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert kiosk_command(str(script)) == str(script)  # outside the cwd: the full path
    assert kiosk_command("/x/kiosk/cli.py").endswith(" -m kiosk.cli")  # python -m kiosk.cli
