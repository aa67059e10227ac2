"""bench/bench_lookup.py runs quickly end to end (a real server, the real client) and reports
both measurements of one run; its screen lines hold every slip with its amount."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from kiosk.backoffice_client import FeeSlip, OwnerSlips

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_lookup.py"


def _bench() -> Any:
    if "bench_lookup_for_test" in sys.modules:
        return sys.modules["bench_lookup_for_test"]
    spec = importlib.util.spec_from_file_location("bench_lookup_for_test", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_a_short_run_reports_lookup_and_baseline() -> None:
    result = _bench().run(rounds=12, warmup=2)
    assert result["rounds"] == 12 and result["slips_per_lookup"] >= 2
    for part in ("lookup_to_screen", "bare_round_trip"):
        assert 0 < result[part]["p50_ms"] <= result[part]["p95_ms"] <= result[part]["max_ms"]
    # the look-up does the round trip and more: its median cannot beat the bare one's by much
    assert result["lookup_to_screen"]["p50_ms"] > 0.5 * result["bare_round_trip"]["p50_ms"]
    assert isinstance(result["ok"], bool) and result["target_p95_ms"] == 50.0


def test_screen_lines_show_every_slip_and_the_masked_name() -> None:
    slip = FeeSlip(slip_id=1, kind="waste_charge", bill_id="1", payment_id="2", amount_rials=420_000,
                   period="مهر ۱۴۰۴", due_date=None, description_fa="بهای خدمات پسماند — مهر ۱۴۰۴", status="unpaid")
    lines = _bench().screen_lines(OwnerSlips("ز*** م***", (slip, slip)))
    assert len(lines) == 3 and lines[-1] == "ز*** م***"
    assert all("۴۲۰" in line for line in lines[:2])
