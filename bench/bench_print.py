"""Printing benchmark: bytes on the wire and render time of a typical Persian fee receipt,
against the same receipt sent as one full raster image (the baseline, measured in this run)."""

from __future__ import annotations

import json
import statistics
import time

from escpos.printer import Dummy

from devices.printer.escpos_driver import job_to_escpos_bytes
from kiosk.receipts.layout import QR, Document, Feed, Heading, Row, Separator, Text, ltr, render, render_full_raster
from devices.printer.profile import load_profile

BYTES_RATIO_TARGET = 0.75
RENDER_P50_TARGET_MS = 50.0
RUNS = 40


def fee_receipt(n: int = 0) -> Document:
    """A typical receipt; n varies the per-transaction values, so timing runs never reuse a
    layout the block cache already holds (labels and titles repeat, as on real receipts)."""
    payload = ("https://verify.kiosk.tehran.ir/r?k=TK-0042&tx=TX-20240611-000123&bill=7748317800142"
               "&pay=1770160&amt=17000&h=9f2c4e7a1b3d5f60")
    payload += "&s=" + "A" * (150 - len(payload) - 3)
    return Document((
        Heading("شهرداری تهران"),
        Text("رسید پرداخت عوارض شهرداری", align="center"),
        Separator(),
        Row("نوع عوارض", "عوارض نوسازی"),
        Row("شناسه قبض", "7748317800142"),
        Row("شناسه پرداخت", "1770160"),
        Row("مبلغ", f"{17_000 + 1000 * n:,} ریال", bold=True),
        Row("شماره مرجع", f"{482913557201 + n}"),
        Row("کد رهگیری", f"TX-20240611-{n:06d}"),
        Row("کارت", "603799******1234"),
        Row("تاریخ", "1403/03/22 14:05"),
        Row("کیوسک", "TK-0042"),
        Row("پایانه", "POI-17"),
        Separator(),
        Text(f"پرداخت با موفقیت انجام شد. شماره مرجع {ltr('482913557201')} را نگه دارید.", align="center"),
        Feed(1),
        QR(payload, caption="برای بررسی اصالت رسید، کد را اسکن کنید"),
    )), payload


def full_raster_bytes(doc: Document, profile_name: str) -> bytes:
    p = Dummy(profile=profile_name)
    p.hw("INIT")
    p.image(render_full_raster(doc), impl="bitImageRaster")
    p.cut()
    return p.output


def p50_ms(fn) -> float:
    times = []
    docs = [fee_receipt(1000 + len(times) * RUNS + i)[0] for i in range(RUNS)]
    for doc in docs:
        t = time.perf_counter()
        fn(doc)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    profile = load_profile()
    doc, payload = fee_receipt()
    assert len(payload) == 150
    render(doc)  # warm the font cache for both paths alike
    ours = len(job_to_escpos_bytes(render(doc, width_dots=profile.width_dots), profile))
    full = len(full_raster_bytes(doc, profile.name))
    render_ms = p50_ms(lambda d: render(d, width_dots=profile.width_dots))
    encode_ms = p50_ms(lambda d: job_to_escpos_bytes(render(d, width_dots=profile.width_dots), profile))
    full_ms = p50_ms(lambda d: render_full_raster(d, width_dots=profile.width_dots))
    ratio = ours / full
    result = {
        "bench": "print",
        "profile": profile.name,
        "bytes_job": ours,
        "bytes_full_raster": full,
        "bytes_ratio": round(ratio, 3),
        "bytes_ratio_target": BYTES_RATIO_TARGET,
        "render_p50_ms": round(render_ms, 2),
        "render_and_encode_p50_ms": round(encode_ms, 2),
        "full_raster_render_p50_ms": round(full_ms, 2),
        "render_vs_full_raster_ratio": round(render_ms / full_ms, 3),
        "render_p50_target_ms": RENDER_P50_TARGET_MS,
        "runs": RUNS,
        "meets_target": ratio <= BYTES_RATIO_TARGET and render_ms <= RENDER_P50_TARGET_MS,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
