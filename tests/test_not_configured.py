"""A data dir with a journal but no kiosk.json: `kiosk recover` and `kiosk doctor` must not
start the demo simulators and journal outcomes for sales a real terminal never saw (issue 6,
failure 2). The embedded environment is opt-in: `kiosk demo`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from kiosk.journal import Journal, TxState, journal_path

KIOSK = [sys.executable, "-m", "kiosk.cli"]


def _journal_with_open_sales(data: Path) -> tuple[str, str]:
    with Journal(journal_path(data), kiosk_id="kiosk-real-7") as journal:
        paying = journal.begin("fee_payment", 420_000, {"bill_id": "1", "payment_id": "2"}).tx_id
        journal.append(paying, TxState.PAYING, {"terminal": "terminal"})
        paid = journal.begin("fee_payment", 150_000, {"bill_id": "3", "payment_id": "4"}).tx_id
        journal.append(paid, TxState.PAYING, {"terminal": "terminal"})
        journal.append(paid, TxState.PAID, {"rrn": "123456789012"})
    return paying, paid


def _rows(data: Path) -> int:
    with Journal(journal_path(data), kiosk_id="check") as journal:
        return len(journal.entries())


def test_recover_without_configuration_refuses_and_moves_nothing(tmp_path: Path) -> None:
    paying, paid = _journal_with_open_sales(tmp_path)
    before = _rows(tmp_path)
    out = subprocess.run(KIOSK + ["recover", "--json", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "not configured" in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1  # one line for a person, no traceback
    assert _rows(tmp_path) == before  # nothing journaled: no DECLINED, no REVERSED
    with Journal(journal_path(tmp_path), kiosk_id="check") as journal:
        assert journal.state_of(paying) == TxState.PAYING
        assert journal.state_of(paid) == TxState.PAID
    assert not (tmp_path / "terminal-ledger.sqlite3").exists()  # no simulator was started
    assert not (tmp_path / "backoffice.sqlite3").exists()


def test_doctor_without_configuration_refuses_instead_of_starting_simulators(tmp_path: Path) -> None:
    out = subprocess.run(KIOSK + ["doctor", "--json", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "not configured" in out.stderr and "Traceback" not in out.stderr
    assert out.stdout == ""
    assert not (tmp_path / "terminal-ledger.sqlite3").exists()


def test_the_demo_recovers_its_own_data_dir_on_request(tmp_path: Path) -> None:
    out = subprocess.run(KIOSK + ["demo", "--script", "recover", "--json", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == []
