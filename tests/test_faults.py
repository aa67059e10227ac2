"""Crash the demo at every named fault point (os._exit(99), as a power cut), start it again on
the same data dir, and prove the money invariant: the fee is either paid once and posted once,
or not charged at all — never charged twice, never charged and left unposted — and no
journal entry is left open."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.faults import POINTS

EXPECTED = {
    # point: (state the crashed transaction ends in, charged and settled?)
    "after-created": ("CANCELLED", False),
    "after-paying": ("DECLINED", False),
    # approved at the terminal, PAID not journaled: found PAYING, the terminal says approved,
    # the back-office holds no payment → the money goes back
    "after-approved": ("REVERSED", False),
    "after-paid": ("REVERSED", False),
    "after-post-sent": ("COMPLETED", True),
    "before-receipt": ("COMPLETED", True),
}


def run_demo(data: Path, fault: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("KIOSK_FAULT", None)
    if fault:
        env["KIOSK_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "kiosk.cli", "demo", "--headless", "--script", "pay-fee-manual",
         "--data-dir", str(data), "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )


#: the transit services' points, each crashed in a subprocess and recovered by its service's
#: tests (the fee demo never reaches them)
TRANSIT = {
    "before-card-write": ("test_card_topup.py", "test_collect_pending.py"),
    "after-card-write": ("test_card_topup.py", "test_collect_pending.py"),
    "after-dispense": ("test_card_sale.py",),
    "after-card-eject": ("test_card_sale.py",),
    "between-basket-settlements": ("test_fee_basket.py",),
    "after-partial-refund": ("test_fee_basket.py",),
}


def test_every_documented_fault_point_is_tested() -> None:
    assert set(EXPECTED) | set(TRANSIT) == set(POINTS) and not set(EXPECTED) & set(TRANSIT)
    here = Path(__file__).parent
    for point, files in TRANSIT.items():
        for name in files:
            assert f'"{point}"' in (here / name).read_text(encoding="utf-8"), (point, name)


@pytest.mark.parametrize("point", sorted(EXPECTED))
def test_crash_at_point_then_recovery_leaves_fee_paid_once_or_not_charged(tmp_path: Path, point: str) -> None:
    crashed = run_demo(tmp_path, point)
    assert crashed.returncode == 99, crashed.stderr[-2000:]
    assert f"KIOSK_FAULT: crashing at {point}" in crashed.stderr

    journal = sqlite3.connect(tmp_path / "journal.sqlite3")
    (tx_id,) = journal.execute("SELECT DISTINCT tx_id FROM journal").fetchone()
    journal.close()

    again = run_demo(tmp_path, None)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    recovered = {r["tx_id"]: r for r in summary["recovered"]}
    assert list(recovered) == [tx_id]
    want_state, settled = EXPECTED[point]
    assert recovered[tx_id]["to_state"] == want_state and recovered[tx_id]["resolved"]
    assert summary["journal_ok"] and summary["final_state"] == "COMPLETED"  # the next citizen is served

    terminal = sqlite3.connect(tmp_path / "terminal-ledger.sqlite3")
    charged = terminal.execute(
        "SELECT coalesce(sum(amount_rials), 0) FROM sales WHERE reference = ? AND status = 'approved'", (tx_id,)
    ).fetchone()[0]
    terminal.close()
    backoffice = sqlite3.connect(tmp_path / "backoffice.sqlite3")
    posted = backoffice.execute("SELECT count(*) FROM payments WHERE transaction_id = ?", (tx_id,)).fetchone()[0]
    backoffice.close()
    amount = recovered[tx_id]["amount_rials"]
    if settled:
        assert (charged, posted) == (amount, 1)
    else:
        assert (charged, posted) == (0, 0)

    verify = subprocess.run([sys.executable, "-m", "kiosk.cli", "journal", "show", "--open", "--json",
                             "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and json.loads(verify.stdout) == []


@pytest.mark.parametrize("command", [["demo", "--headless", "--script", "pay-fee-manual"], ["recover"]])
def test_an_unknown_fault_name_refuses_to_start(tmp_path: Path, command: list[str]) -> None:
    env = {**os.environ, "KIOSK_FAULT": "after-payed"}  # misspelt: would silently never crash
    (tmp_path / "kiosk.json").write_text("{}")
    out = subprocess.run([sys.executable, "-m", "kiosk.cli", *command, "--data-dir", str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "after-payed" in out.stderr and "after-approved" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "journal.sqlite3").exists()  # nothing started, nothing journaled
