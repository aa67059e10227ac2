"""One process owns a data dir's money (issue 6, failure 1): a second demo or `kiosk recover`
on a data dir whose demo waits on a slow terminal is refused with the holder's pid, and the
first completes with the citizen charged once and the back-office holding the payment."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiosk.data_lock import DataDirLocked, DataLock

KIOSK = [sys.executable, "-m", "kiosk.cli"]


def test_a_second_lock_on_the_same_dir_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    with DataLock(tmp_path):
        with pytest.raises(DataDirLocked) as refused:
            DataLock(tmp_path).acquire()
        assert refused.value.context["pid"] == str(os.getpid())
        assert str(os.getpid()) in refused.value.message("en")
        assert (tmp_path / "kiosk.lock").stat().st_mode & 0o777 == 0o600
    with DataLock(tmp_path) as again:  # released: the next owner takes it
        assert again.held


def test_a_killed_holder_never_leaves_the_dir_locked(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from kiosk.data_lock import DataLock;"
         f"DataLock(Path({str(tmp_path)!r})).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DataDirLocked) as refused:
            DataLock(tmp_path).acquire()
        assert refused.value.context["pid"] == str(holder.pid)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with DataLock(tmp_path) as lock:  # the kernel released the flock with the process
        assert lock.held


def _state_of_first_tx(journal: Path) -> str | None:
    if not journal.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1)
        try:
            row = db.execute("SELECT state FROM journal WHERE tx_id = (SELECT tx_id FROM journal "
                             "ORDER BY seq LIMIT 1) ORDER BY seq DESC LIMIT 1").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


@pytest.mark.slow
def test_recover_and_a_second_demo_are_refused_while_the_demo_waits_on_a_slow_terminal(tmp_path: Path) -> None:
    first = subprocess.Popen(
        KIOSK + ["demo", "--headless", "--script", "pay-fee-manual", "--terminal-latency", "8",
                 "--json", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while _state_of_first_tx(tmp_path / "journal.sqlite3") != "PAYING":
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the demo never reached PAYING"
            time.sleep(0.02)
        # the demo is waiting on the terminal now (the 1.5 s, made 8 s so three
        # interpreters can start inside the wait on a loaded machine): every other
        # money-moving command is refused, naming the demo's pid
        others = [subprocess.Popen(KIOSK + other + ["--data-dir", str(tmp_path)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for other in (["recover", "--json"], ["demo", "--script", "recover", "--json"],
                                ["demo", "--headless", "--script", "pay-fee-manual", "--json"])]
        for proc in others:
            out_text, err_text = proc.communicate(timeout=60)
            out = subprocess.CompletedProcess(proc.args, proc.returncode, out_text, err_text)
            assert out.returncode == 1, (proc.args, out.stdout, out.stderr)
            assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
            assert f"pid {first.pid}" in out.stderr, out.stderr
        stdout, stderr = first.communicate(timeout=90)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stderr[-2000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["final_state"] == "COMPLETED" and summary["journal_ok"]
    tx_id = summary["transaction_id"]

    terminal = sqlite3.connect(tmp_path / "terminal-ledger.sqlite3")
    sales = terminal.execute("SELECT reference, status, amount_rials FROM sales").fetchall()
    terminal.close()
    assert sales == [(tx_id, "approved", summary["amount_rials"])]  # charged once
    backoffice = sqlite3.connect(tmp_path / "backoffice.sqlite3")
    posted = backoffice.execute("SELECT count(*) FROM payments WHERE transaction_id = ?", (tx_id,)).fetchone()[0]
    backoffice.close()
    assert posted == 1
    journal = sqlite3.connect(tmp_path / "journal.sqlite3")
    states = [r[0] for r in journal.execute("SELECT state FROM journal WHERE tx_id = ? ORDER BY seq", (tx_id,))]
    journal.close()
    assert states == ["CREATED", "PAYING", "PAID", "FULFILLING", "FULFILLED", "POSTED", "COMPLETED"]
