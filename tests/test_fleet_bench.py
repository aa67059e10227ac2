"""bench/bench_fleet_heartbeat.py runs end to end at a small size: real `fleet serve` process,
signed heartbeats from every identity, pings as the baseline, one JSON object."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_fleet_heartbeat.py"


def test_the_heartbeat_bench_measures_both_endpoints() -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--kiosks", "60", "--processes", "1", "--threads", "2"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["kiosks"] == 60 and result["db"] == "sqlite"
    for part in ("ping", "heartbeat"):
        assert result[part]["requests"] == 60 and result[part]["per_s"] > 0
        assert 0 < result[part]["p50_ms"] <= result[part]["p99_ms"]
    assert result["ratio"] == round(result["heartbeat"]["per_s"] / result["ping"]["per_s"], 3)
