"""Payment terminal driver overhead: a full pay() through NexoTerminal (build, executor, HTTPS
with the pinned certificate, strict parse, state machine) against a bare requests POST of the
same JSON over HTTPS (verified against the same certificate) to the same simulator, measured
in the same run. Prints one JSON object."""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import requests

from devices.terminal import nexo
from devices.terminal.driver import NexoTerminal
from devices.terminal.simulator import NexoTerminalSimulator
from devices.terminal.tls import generate_self_signed

N = 300
TARGET_RATIO = 1.5  # the driver may cost at most 50 % over a raw HTTP round trip


def bare(url: str, n: int, ca_file: str) -> list[float]:
    session = requests.Session()
    times = []
    for i in range(n):
        header = nexo.Header(nexo.Category.PAYMENT, nexo.new_service_id(), "BENCH", "SIM-POI-1")
        payload = nexo.payment_request(header, f"bare-{i}", 10_000, nexo.now_iso())
        t0 = time.perf_counter()
        resp = session.post(url, json=payload, timeout=5, verify=ca_file)
        resp.json()
        times.append(time.perf_counter() - t0)
    return times


async def driver(url: str, n: int, fingerprint: str) -> list[float]:
    term = NexoTerminal("bench", url=url, sale_id="BENCH", poi_id="SIM-POI-1", tls_fingerprint=fingerprint)
    await term.open()
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        result = await term.pay(term.new_ref(f"drv-{i}"), 10_000, timeout=5)
        times.append(time.perf_counter() - t0)
        assert result.approved
    return times


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tls = generate_self_signed(Path(tmp) / "tls", common_name="SIM-POI-1")
        with NexoTerminalSimulator(state_path=Path(tmp) / "b.sqlite", tls=tls) as sim:
            bare(sim.url, 20, str(tls.cert_path))  # warm-up
            base = bare(sim.url, N, str(tls.cert_path))
            drv = asyncio.run(driver(sim.url, N, tls.fingerprint))
    base_med, drv_med = statistics.median(base), statistics.median(drv)
    ratio = drv_med / base_med
    print(json.dumps({
        "bench": "terminal_pay_round_trip",
        "n": N,
        "baseline": "bare requests POST + json over HTTPS to the same simulator",
        "baseline_median_ms": round(base_med * 1000, 3),
        "driver_median_ms": round(drv_med * 1000, 3),
        "driver_p95_ms": round(sorted(drv)[int(N * 0.95)] * 1000, 3),
        "ratio": round(ratio, 3),
        "target": f"ratio <= {TARGET_RATIO}",
        "meets_target": ratio <= TARGET_RATIO,
    }))


if __name__ == "__main__":
    main()
