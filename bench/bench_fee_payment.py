"""Headless fee payment: software time per transaction with zero-latency simulators.

Each transaction is the whole flow — validate, back-office lookup over loopback HTTP, nexo
payment through the driver and simulator, settlement post, signed receipt rendered and printed
through the ESC/POS driver to the network emulator, every journal step durable. Process start
and environment start are excluded. Baseline, same run: the I/O floor a transaction cannot
avoid — 4 loopback HTTP round trips to a trivial server and 7 durable SQLite commits.

Target (issue 2): p50 <= 50 ms. Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kiosk.context import KioskContext  # noqa: E402
from kiosk_demo.run import _pick_unpaid_slip  # noqa: E402
from kiosk_demo.environment import demo_environment  # noqa: E402
from kiosk.flows.fee_payment import FeePaymentFlow  # noqa: E402
from kiosk.journal import TxState  # noqa: E402
from kiosk.scripted_ui import ScriptedUI  # noqa: E402

N = 30


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


async def measure_flows(data: Path) -> list[float]:
    times = []
    with demo_environment(data) as env:
        ctx = await KioskContext.open(env.settings, data)
        try:
            for _ in range(N):
                slip = _pick_unpaid_slip(ctx.backoffice)
                ui = ScriptedUI({"fee.how_to_enter": "manual", "fee.enter_bill_id": slip.bill_id, "fee.enter_payment_id": slip.payment_id,
                                 "fee.confirm": True})
                t0 = time.perf_counter()
                result = await FeePaymentFlow(ctx, ui).run()
                times.append((time.perf_counter() - t0) * 1000)
                assert result.final_state == TxState.COMPLETED, result
        finally:
            await ctx.close()
    return times


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def measure_floor(data: Path) -> list[float]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    db = sqlite3.connect(data / "floor.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    session = requests.Session()
    times = []
    try:
        for _ in range(N):
            t0 = time.perf_counter()
            for _ in range(4):
                session.post(url, json={"x": 1}, timeout=5).raise_for_status()
            for _ in range(7):
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO t (body) VALUES (?)", ("x" * 200,))
                db.execute("COMMIT")
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        server.shutdown()
        db.close()
    return times


def main() -> None:
    root = Path(__file__).resolve().parents[1] / "bench" / "out"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        flows = asyncio.run(measure_flows(Path(tmp)))
        floor = measure_floor(Path(tmp))
    p50 = statistics.median(flows)
    print(json.dumps({
        "bench": "fee_payment",
        "transactions": N,
        "flow_ms": {"p50": round(p50, 2), "p95": round(pct(flows, 0.95), 2), "max": round(max(flows), 2)},
        "io_floor_ms": {"p50": round(statistics.median(floor), 2), "p95": round(pct(floor, 0.95), 2)},
        "ratio_p50_flow_to_floor": round(p50 / statistics.median(floor), 2),
        "target": {"flow_p50_ms_max": 50},
        "meets_target": p50 <= 50,
    }))


if __name__ == "__main__":
    main()
