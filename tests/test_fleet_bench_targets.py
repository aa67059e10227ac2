"""The benchmarks of issue 11's two other fleet targets run end to end at a small size, on
SQLite and PostgreSQL: bench/bench_fleet_journal.py (batch verification in entries/s, the
upload endpoint's own function on real chain rows, a tampered batch refused, and a signed
upload through a real `fleet serve`) and bench/bench_fleet_rollout.py (a rollout to every
simulated kiosk, each fetching and verifying its signed configuration, every action done).
No absolute timing is asserted: the machine is shared."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_fleet_support import fleet_db, fleet_pg_database  # noqa: F401

from provisioning.server.db import make_engine

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_the_journal_bench_verifies_real_rows_and_refuses_tampered_batches(fleet_db: str) -> None:
    result = _run(str(BENCH / "bench_fleet_journal.py"), "--db", fleet_db, "--entries", "1200", "--repeat", "1",
                  "--http")
    assert result["db"] == ("postgresql" if fleet_db.startswith("postgresql") else "sqlite")
    assert result["entries"] == 1200 and result["batch"] == 500
    assert result["entries_per_s"] > 0 and result["stored_per_s"] > 0
    assert result["baseline"]["sha256_per_s"] > 0 and result["baseline"]["kiosk_verify_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["entries_per_s"] / result["baseline"]["sha256_per_s"], abs=0.002)
    assert result["target"] == 50_000 and result["ok"] == (result["entries_per_s"] >= 50_000)
    assert result["refused"] == {"edited": "edited", "swapped": "gap", "gap": "gap", "fork": "fork",
                                 "rewrite": "rewrite", "illegal_transition": "illegal_transition"}
    assert result["http"] == {"entries": 1200, "batches": 3, "entries_per_s": result["http"]["entries_per_s"],
                              "head_seq": 1200}
    engine = make_engine(fleet_db)
    try:
        with engine.connect() as conn:  # the bench leaves no rows behind
            assert conn.exec_driver_sql("SELECT count(*) FROM fleet_journal").scalar() == 0
    finally:
        engine.dispose()


def test_the_journal_rows_are_the_kiosks_own_chain() -> None:
    """The bench's rows pass the kiosk's own verifier, and an edit to any of them is seen."""
    from kiosk.journal.chain import verify_rows

    rows = _load("bench_fleet_journal").make_rows(300)
    assert verify_rows(rows).ok and {r[4] for r in rows} >= {"fee", "pending_load"}
    rows[150] = [*rows[150][:5], rows[150][5] + 1, *rows[150][6:]]
    assert [p.kind for p in verify_rows(rows).problems] == ["edited"]


def test_the_rollout_bench_reaches_every_kiosk(fleet_db: str) -> None:
    result = _run(str(BENCH / "bench_fleet_rollout.py"), "--db", fleet_db, "--kiosks", "100", "--interval", "3",
                  "--processes", "2", "--threads", "4")
    assert result["db"] == ("postgresql" if fleet_db.startswith("postgresql") else "sqlite")
    assert result["kiosks"] == 100 and result["interval_s"] == 3 and result["stages"] == [100]
    assert result["kiosks_reached"] == 100 and result["actions_done"] == 100  # every kiosk, every action
    assert result["configs"] >= 100 and result["errors"] == 0 and result["heartbeats"] >= 200
    assert 0 < result["reached_all_s"] <= result["done_all_s"]
    assert result["intervals"] == pytest.approx(result["reached_all_s"] / 3, abs=0.002)
    assert result["target"] == 2.0 and result["ok"] == (result["intervals"] <= 2.0)
    engine = make_engine(fleet_db)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT status, count(*) FROM fleet_rollout_actions GROUP BY status").all()
            assert [tuple(r) for r in rows] == [("done", 100)]
            assert conn.exec_driver_sql("SELECT count(*) FROM fleet_kiosks WHERE reported_version >= 1").scalar() == 100
    finally:
        engine.dispose()
