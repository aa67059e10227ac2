"""bench/bench_ui.py runs quickly and reports every screen against its same-run baseline."""

from __future__ import annotations

import importlib.util
import os
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


def _load() -> object:
    spec = importlib.util.spec_from_file_location("bench_ui_app_for_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_app_bench_measures_the_kiosk_against_a_bare_kivy_app() -> None:
    # reduced: two starts of each app, 12 sessions (the full bench runs 200); the figures are
    # checked to be real measurements, the targets are the bench's own verdict (its JSON "ok")
    result = _load().run_app(sessions=12, starts=2)
    assert result["paid"] == "COMPLETED"  # the first session's fee, paid by touch
    assert 0 < result["bare_start_s"] and 0 < result["kiosk_start_s"] < 60
    # the ratio is of the unrounded times; the seconds are printed rounded
    assert abs(result["start_ratio"] - result["kiosk_start_s"] / result["bare_start_s"]) < 0.02
    # CPU seconds to the first frame: real, and no more than every core busy for the wall time
    cores = os.cpu_count() or 1
    assert 0 < result["bare_start_cpu_s"] <= cores * result["bare_start_s"]
    assert result["bare_start_cpu_s"] < result["kiosk_start_cpu_s"] <= cores * result["kiosk_start_s"]
    assert result["bare_peak_mb"] > 20 and result["kiosk_peak_mb"] > result["bare_peak_mb"]
    # resident memory at the first screen drawn: below each app's peak, the kiosk's above the bare app's
    assert 20 < result["bare_rss_at_drawn_mb"] <= result["bare_peak_mb"]
    assert result["bare_rss_at_drawn_mb"] < result["kiosk_rss_at_drawn_mb"] <= result["kiosk_peak_mb"]
    # every screen-changing tap timed: 5 in the paying session, 4 in each of the other 11
    assert result["touches"] >= 5 + 4 * 11
    assert 0 < result["touch_ms_p50"] <= result["touch_ms_p95"] <= result["touch_ms_max"]
    assert result["rss_after_10_mb"] > 0 and "rss_after_12_mb" in result
    assert set(result["ok"]) == {"start", "peak", "touch", "leak", "paid"}
    # the 100 ms target is the bench's to report (bench/bench_ui.py; ~60 ms measured): absolute
    # times do not hold on a shared machine, so the test only catches a gross regression
    assert result["touch_ms_p95"] <= 500, result
