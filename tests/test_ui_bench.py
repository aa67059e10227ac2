"""bench/bench_ui.py runs quickly and reports every screen against its same-run baseline."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_ui.py"


def test_the_ui_text_bench_measures_every_screen() -> None:
    spec = importlib.util.spec_from_file_location("bench_ui_for_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    result = module.run(rounds=2)
    assert set(result["screens"]) == {"home", "confirm", "outcome", "keypad"}
    for row in result["screens"].values():
        assert row["cold_ms_p50"] > 0 and row["baseline_one_line_ms_p50"] > 0 and row["labels"] >= 4
    assert result["worst_screen_cold_ms_p95"] == max(r["cold_ms_p95"] for r in result["screens"].values())
    assert isinstance(result["ok"], bool)
