"""Fee slip printing benchmark: a slip built (kiosk.slips.build_slip_document) and rendered to
the exact ESC/POS bytes the driver sends (slip_bytes), against a baseline measured in the same
run — the kiosk's fee payment receipt built and encoded the same way (build_document +
print_receipt_bytes), the print the kiosk already makes after every payment.

Every run uses a different slip (ids, amount, period, print time) and a different receipt, so
the layout's block cache holds only what repeats on real paper (labels, titles, notes).
Target: slip p50 <= 50 ms. Prints one JSON object; `--runs N` for fewer or more rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kiosk.backoffice_client import FeeSlip  # noqa: E402
from kiosk.bills import make_bill_id, make_payment_id  # noqa: E402
from kiosk.receipts import ReceiptData, build_document, print_receipt_bytes  # noqa: E402
from kiosk.slips import FEE_KINDS, build_slip_document, mask_person_name, slip_bytes  # noqa: E402

TARGET_P50_MS = 50.0
RUNS = 60
_KINDS = tuple(FEE_KINDS)
_COMPANY = {"renovation_tax": "201", "business_tax": "202", "waste_charge": "203", "vehicle_tax": "204"}
_T0 = dt.datetime(2025, 11, 30, 8, 0, tzinfo=dt.UTC)


def slip(i: int) -> FeeSlip:
    kind = _KINDS[i % len(_KINDS)]
    period = 1 + i % 12
    amount = 420_000 + 10_000 * (i % 311)
    bill_id = make_bill_id(f"3{i:06d}", _COMPANY[kind], 6)
    return FeeSlip(slip_id=5000 + i, kind=kind, bill_id=bill_id,
                   payment_id=make_payment_id(bill_id, amount, 4, period), amount_rials=amount,
                   period=f"{period:02d}/1404", due_date=dt.date(2025, 10, 22) + dt.timedelta(days=i % 90),
                   description_fa=f"{FEE_KINDS[kind][0]} — دوره {period}", status="unpaid")


def receipt(i: int) -> tuple[ReceiptData, str]:
    data = ReceiptData(
        tx_id=f"kiosk-0042-20251130-{(i * 7919) % 2**32:08x}", kiosk_id="kiosk-0042", kind="fee_payment",
        amount_rials=420_000 + 10_000 * (i % 311), at=_T0 + dt.timedelta(minutes=i), bill_id="7748317800142",
        payment_id="1770160", service_label_fa="عوارض شهرداری", service_label_en="Municipal fees",
        tracking_code=f"1404090{i:05d}", rrn=f"5123456{i:05d}", stan="123456", masked_pan="603799******1234",
        status="paid", journal_seq=1_000_000 + 7 * i, journal_hash=f"{i:064x}")
    payload = "CK2:" + ("Ab3dEf9h" * 19)[:110] + f"{i:08d}" + "." + "S" * 28  # a signed payload's length
    return data, payload


def slip_job(i: int) -> bytes:
    doc = build_slip_document(slip(i), owner_name_masked=mask_person_name("زهرا محمدی"), kiosk_id="kiosk-0042",
                              printed_at=_T0 + dt.timedelta(minutes=i))
    return slip_bytes(doc)


def receipt_job(i: int) -> bytes:
    data, payload = receipt(i)
    return print_receipt_bytes(build_document(data, payload))


def _times(fn: Callable[[int], bytes], start: int, runs: int) -> list[float]:
    out = []
    for i in range(start, start + runs):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return out


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def run(runs: int = RUNS) -> dict[str, Any]:
    slip_job(0)  # fonts and caches warm for both alike
    receipt_job(0)
    slip_ms: list[float] = []
    receipt_ms: list[float] = []
    # interleaved in rounds of 10, so a busy neighbour on the CPU slows both sides alike
    for start in range(1, runs + 1, 10):
        n = min(10, runs + 1 - start)
        slip_ms += _times(slip_job, start, n)
        receipt_ms += _times(receipt_job, start, n)
    slip_p50, receipt_p50 = statistics.median(slip_ms), statistics.median(receipt_ms)
    return {
        "bench": "slip",
        "runs": runs,
        "slip_bytes": len(slip_job(1)),
        "receipt_bytes": len(receipt_job(1)),
        "slip_p50_ms": round(slip_p50, 2),
        "slip_p95_ms": round(_p95(slip_ms), 2),
        "baseline": "fee payment receipt: build_document + print_receipt_bytes",
        "receipt_p50_ms": round(receipt_p50, 2),
        "receipt_p95_ms": round(_p95(receipt_ms), 2),
        "slip_vs_receipt_p50_ratio": round(slip_p50 / receipt_p50, 3),
        "target_p50_ms": TARGET_P50_MS,
        "meets_target": slip_p50 <= TARGET_P50_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    print(json.dumps(run(max(2, parser.parse_args().runs))))


if __name__ == "__main__":
    main()
