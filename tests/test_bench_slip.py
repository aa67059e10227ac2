"""bench/bench_slip.py runs quickly: its slips are valid for every fee kind, its JSON has the
figures and the baseline, and a slip it times decodes back to its own barcode."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from devices.printer.decoder import decode_escpos
from kiosk.bills import parse_bill

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_slip.py"


def _bench():
    if "bench_slip_for_test" in sys.modules:
        return sys.modules["bench_slip_for_test"]
    spec = importlib.util.spec_from_file_location("bench_slip_for_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_slips_cover_every_kind_and_decode_to_their_barcode() -> None:
    bench = _bench()
    kinds = set()
    for i in range(8):
        slip = bench.slip(i)
        kinds.add(slip.kind)
        assert parse_bill(slip.bill_id, slip.payment_id).amount_rials == slip.amount_rials
    assert kinds == {"renovation_tax", "business_tax", "waste_charge", "vehicle_tax"}
    paper = decode_escpos(bench.slip_job(3))
    slip = bench.slip(3)
    assert paper.barcodes == [slip.bill_id.zfill(13) + slip.payment_id.zfill(13)]


def test_quick_run_reports_p50_p95_and_the_baseline_ratio() -> None:
    result = _bench().run(runs=6)
    assert result["runs"] == 6 and result["bench"] == "slip"
    for key in ("slip_p50_ms", "slip_p95_ms", "receipt_p50_ms", "receipt_p95_ms"):
        assert 0 < result[key] < 2000, key
    assert result["slip_p95_ms"] >= result["slip_p50_ms"]
    # the ratio is of the unrounded p50s; the printed p50s are rounded to 0.01 ms
    assert abs(result["slip_vs_receipt_p50_ratio"] - result["slip_p50_ms"] / result["receipt_p50_ms"]) < 0.05
    assert result["slip_bytes"] > 0 and result["receipt_bytes"] > 0
