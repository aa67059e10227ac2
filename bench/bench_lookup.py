"""Municipal slip look-up (issue 9): how long from "look up" to the list ready for the screen.
Prints one JSON object.

A real back-office on loopback (uvicorn, SQLite, the demo seed) and the kiosk's real client.
Measured per round: the look-up — BackofficeClient.lookup_slips (HTTP, the limit check and
audit row written in one transaction, the query, JSON parsing into typed slips) plus the
lines the screen shows (amounts and due dates in Persian) — and, in the same run and the same
HTTP session, the bare round trip of GET /healthz, the back-office's trivial endpoint. The two
are interleaved so both see the same machine load.

Target: look-up with its list ready, p95 <= 50 ms. The look-up limits are raised for the
bench (it looks the same identifiers up hundreds of times on purpose).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from backoffice.municipal import LookupLimits
from backoffice.seed import BASKET_PLATE, BASKET_RENOVATION_CODE, UNPAID_BUSINESS_LICENSE, UNPAID_NATIONAL_CODE, seed_demo
from backoffice.server import serve_in_thread
from kiosk.backoffice_client import BackofficeClient, OwnerSlips
from kiosk.fmt import format_jalali_date, format_rials

TOKEN = "bench-lookup-Qm7Vx2Lp9Rt4Wz8Kc3Nd"
TARGET_P95_MS = 50.0
CASES = (("renovation_tax", BASKET_RENOVATION_CODE), ("business_tax", UNPAID_BUSINESS_LICENSE),
         ("waste_charge", UNPAID_NATIONAL_CODE), ("vehicle_tax", BASKET_PLATE))
NO_LIMITS = LookupLimits(per_kiosk=10**9, kiosk_window_s=60, per_identifier=10**9, identifier_window_s=60)


def screen_lines(owner: OwnerSlips) -> list[str]:
    """What the slip list screen shows: one line per slip, unpaid ones first (as listed)."""
    return [f"{slip.description_fa} — {format_rials(slip.amount_rials)}"
            + (f" — {format_jalali_date(slip.due_date)}" if slip.due_date else "")
            + (" ✓" if slip.status == "paid" else "")
            for slip in owner.slips] + [owner.owner_name]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(ms), 2), "p95_ms": round(_pct(ms, 0.95), 2),
            "max_ms": round(max(ms), 2)}


def run(rounds: int = 200, warmup: int = 20) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-lookup-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'backoffice.sqlite3'}"
        seed_demo(url, {"bench-kiosk": TOKEN})
        with serve_in_thread(url, lookup_limits=NO_LIMITS) as server, \
                BackofficeClient(server.url, TOKEN, retries=0) as client:
            lookup_ms: list[float] = []
            bare_ms: list[float] = []
            slips = 0
            for i in range(warmup + rounds):
                fee_type, identifier = CASES[i % len(CASES)]
                start = time.perf_counter()
                resp = client._session.get(server.url + "/healthz", timeout=client.timeout)
                resp.json()
                bare = (time.perf_counter() - start) * 1000
                start = time.perf_counter()
                owner = client.lookup_slips(fee_type, identifier)
                lines = screen_lines(owner)
                took = (time.perf_counter() - start) * 1000
                if i >= warmup:
                    bare_ms.append(bare)
                    lookup_ms.append(took)
                    slips += len(lines) - 1
    lookup, bare = _summary(lookup_ms), _summary(bare_ms)
    return {
        "bench": "lookup", "rounds": rounds, "database": "sqlite", "slips_per_lookup": round(slips / rounds, 1),
        "lookup_to_screen": lookup, "bare_round_trip": bare,
        "overhead_p95_ms": round(lookup["p95_ms"] - bare["p95_ms"], 2),
        "target_p95_ms": TARGET_P95_MS, "ok": lookup["p95_ms"] <= TARGET_P95_MS,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    result = run(args.rounds)
    print(json.dumps(result, ensure_ascii=False))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
