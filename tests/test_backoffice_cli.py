"""`backoffice` as a person runs it (a real process): `serve` says where it listens, and a bad
database URL, an unreachable database or a port in use is one line on stderr and an exit code,
never a traceback."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
import requests

from backoffice import cli as backoffice_cli


def _backoffice(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backoffice.cli", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def _assert_one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert stderr.startswith("backoffice: ")
    return stderr


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bo.sqlite3'}"


class Serving:
    """`backoffice serve --port 0` in a child process, with the URL it printed."""

    def __init__(self, db_url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backoffice.cli", "serve", "--db", db_url, "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        self.first_line = ""
        reader = threading.Thread(target=self._read_first_line, daemon=True)
        reader.start()
        reader.join(60)
        match = re.search(r"serving (http://127\.0\.0\.1:(\d+)) \(API docs: (\S+)\)", self.first_line)
        if match is None:
            self.proc.kill()
            raise AssertionError(f"no URL announced: {self.first_line!r} {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.url, self.port, self.docs = match.group(1), int(match.group(2)), match.group(3)

    def _read_first_line(self) -> None:
        assert self.proc.stdout is not None
        self.first_line = self.proc.stdout.readline()

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        _out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


@pytest.fixture
def serving(sqlite_url: str) -> Iterator[Serving]:
    running = Serving(sqlite_url)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait(10)


def test_serve_prints_its_url_and_docs_url_once_it_answers(serving: Serving) -> None:
    assert serving.port > 0 and serving.docs == serving.url + "/docs"
    # printed once listening: the URL answers at once
    assert requests.get(serving.url + "/healthz", timeout=5).json() == {"ok": True}
    docs = requests.get(serving.docs, timeout=5)
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    code, err = serving.stop()
    assert code in (0, 130) and "Traceback" not in err


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(serving: Serving, sqlite_url: str) -> None:
    second = _backoffice("serve", "--db", sqlite_url, "--port", str(serving.port))
    assert second.returncode == 1
    assert "in use" in _assert_one_line(second.stderr) and str(serving.port) in second.stderr
    assert second.stdout == ""
    assert requests.get(serving.url + "/healthz", timeout=5).status_code == 200  # the first is unharmed


def test_serve_with_an_unknown_database_kind_is_one_line_and_exit_2() -> None:
    result = _backoffice("serve", "--db", "foo://")
    assert result.returncode == 2
    assert "foo" in _assert_one_line(result.stderr)


def test_serve_with_an_unreachable_database_is_one_line_and_exit_1() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _backoffice("serve", "--db", f"postgresql+psycopg://kiosk:s3cret-pw@127.0.0.1:{port}/bo", "--port", "0")
    assert result.returncode == 1
    err = _assert_one_line(result.stderr)
    assert "s3cret-pw" not in err and "127.0.0.1" in err  # the password is never shown


@pytest.mark.parametrize("argv,code", [
    (["migrate", "--db", "not a url"], 2),
    (["migrate", "--db", "sqlite://"], 2),  # in-memory: private to each connection
    (["migrate", "--db", "sqlite:////nonexistent-dir/bo.sqlite3"], 1),
    (["serve", "--port", "70000"], 2),
    (["serve", "--log-level", "LOUD"], 2),
    (["seed", "--db", "sqlite:////tmp/unused.sqlite3"], 2),  # no --demo
    (["kiosk", "add", "bad id!", "--db", "sqlite:///{tmp}/bo.sqlite3"], 2),
])
def test_mistakes_are_one_line_with_exit_2_for_usage_1_for_failure(
        argv: list[str], code: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert backoffice_cli.main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()
    if not err.startswith("usage:"):  # argparse's own refusals print usage + one error line
        _assert_one_line(err)


def test_a_file_that_is_not_a_database_is_one_line_and_exit_1(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(os.urandom(8192))
    assert backoffice_cli.main(["migrate", "--db", f"sqlite:///{junk}"]) == 1
    assert "not a database" in _assert_one_line(capsys.readouterr().err)


def test_kiosk_add_without_token_generates_a_strong_one(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from backoffice.auth import token_problem

    assert backoffice_cli.main(["kiosk", "add", "kiosk-x", "--db", sqlite_url]) == 0
    token = capsys.readouterr().out.strip()
    assert token_problem(token) is None and len(token) >= 40


def test_the_servers_log_lines_mask_card_numbers_and_national_codes() -> None:
    from backoffice.logs import JsonLines

    record = logging.LogRecord("backoffice.x", logging.WARNING, __file__, 1,
                               "card %s, dotted %s, citizen %s", ("6037991234567893", "6037.9912.3456.7893",
                                                                  "0084137258"), None)
    line = JsonLines().format(record)
    assert "6037991234567893" not in line and "6037.9912.3456.7893" not in line and "0084137258" not in line
    assert json.loads(line)["msg"].startswith("card 603799")
