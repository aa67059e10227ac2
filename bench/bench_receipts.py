"""Receipt payload size and speed: the compact CK2 payload against a baseline measured in the
same run — the same signed fields as short JSON, signed the same way (Ed25519, base64url).
The journal witness (PAID row seq + 16 hex of its hash) is in both; seqs are those of a
journal a million rows long.

Target: a typical receipt's payload under 200 characters (a small QR that a worn print head
and a cheap phone camera still read). Prints one JSON object.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devices.printer.qr import qr_matrix
from kiosk.receipts import ReceiptData, ReceiptSigner, verify_payload

TARGET_CHARS = 200
ROUNDS = 2000


def typical(i: int) -> ReceiptData:
    return ReceiptData(
        tx_id=f"kiosk-0042-20251128-{(i * 7919) % 2**32:08x}{os.urandom(3).hex()}", kiosk_id="kiosk-0042",
        kind="fee_payment", amount_rials=17_000 * (1 + i % 50), at=dt.datetime(2025, 11, 28, 11, 2, tzinfo=dt.UTC),
        bill_id="7748317800142", payment_id="1770160", service_label_fa="عوارض شهرداری",
        service_label_en="Municipal fees", tracking_code=f"1404090{i:05d}", rrn=f"5123456{i:05d}",
        stan="123456", masked_pan="603799******1234", status="paid",
        journal_seq=1_000_000 + 7 * i, journal_hash=os.urandom(32).hex())


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def json_payload(key: Ed25519PrivateKey, d: ReceiptData) -> str:
    body = json.dumps({"k": d.kiosk_id, "t": d.tx_id, "a": d.amount_rials, "b": d.bill_id, "p": d.payment_id,
                       "r": d.rrn, "u": int(d.at.timestamp()), "q": d.journal_seq, "h": d.journal_hash_prefix},
                      separators=(",", ":")).encode()
    return f"CKJ:{b64(body)}.{b64(key.sign(body))}"


def main() -> None:
    key = Ed25519PrivateKey.generate()
    signer = ReceiptSigner(key)
    receipts = [typical(i) for i in range(ROUNDS)]

    t0 = time.perf_counter()
    payloads = [signer.sign(d) for d in receipts]
    sign_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for p in payloads:
        verify_payload(p, signer.public_key)
    verify_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    baseline = [json_payload(key, d) for d in receipts]
    baseline_sign_s = time.perf_counter() - t0

    chars = [len(p) for p in payloads]
    base_chars = [len(p) for p in baseline]
    median_chars = statistics.median(chars)
    base_median = statistics.median(base_chars)
    qr_modules = len(qr_matrix(payloads[0]))
    base_qr_modules = len(qr_matrix(baseline[0]))
    print(json.dumps({
        "bench": "receipts",
        "target": f"typical payload < {TARGET_CHARS} characters",
        "payload_chars_median": median_chars,
        "payload_chars_max": max(chars),
        "baseline_json_chars_median": base_median,
        "size_ratio_vs_json": round(median_chars / base_median, 3),
        "qr_modules_with_quiet_zone": qr_modules,
        "baseline_qr_modules": base_qr_modules,
        "sign_us_per_receipt": round(sign_s / ROUNDS * 1e6, 1),
        "baseline_sign_us_per_receipt": round(baseline_sign_s / ROUNDS * 1e6, 1),
        "sign_time_ratio_vs_json": round(sign_s / baseline_sign_s, 3),
        "verify_us_per_receipt": round(verify_s / ROUNDS * 1e6, 1),
        "meets_target": max(chars) < TARGET_CHARS and median_chars < base_median,
    }))


if __name__ == "__main__":
    main()
