"""Decoding benchmark: the project's FrameDecoder against raw zxing-cpp and raw pyzbar on
seeded camera-like 1280x720 frames, one thread; prints one JSON object.

Frame generator (per frame, from one seeded numpy Generator):
  payload      half 26-digit bill codes, half ~120-char receipt payloads (URL + fields)
  QR           zxing-cpp encoder, EC level M, module size 3.2-6.0 px before warping
  geometry     rotation uniform ±40°, perspective: each corner jittered by up to 18% of the side
  background   mid-grey base + 12 random rectangles, 8 lines, 6 text strings (clutter)
  lighting     low contrast: paper/ink levels squeezed to a span of 45-200 grey levels;
               uneven light: a linear gradient (gain 0.55-1.0 across the frame) times a
               radial vignette
  blur         60% Gaussian sigma 0.3-1.8, 40% motion blur 2-6 px at a random angle
  noise        Gaussian sigma 0.5-3, then JPEG q 55-90 (camera compression)
With these, raw zxing-cpp reads about 85-90% (FIELD-NOTES measured 263/300 on a similar set).

Usage: .venv/bin/python bench/bench_decode.py [--frames 300] [--seed 1] [--seed2 2] [--stages]
"""

from __future__ import annotations

import argparse
import json
import statistics
import string
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devices.scanner.decode import FrameDecoder

W, H = 1280, 720

#: the generator's knobs (documented in the module docstring); tuned so raw zxing-cpp reads
#: about 85-90% of frames
GEN: dict = {
    "module_px": (3.2, 6.0),
    "perspective": 0.18,
    "rotation_deg": 40.0,
    "contrast_span": (45.0, 200.0),
    "light_gain_min": 0.55,
    "gauss_sigma": (0.3, 1.8),
    "motion_px": (2, 6),
    "noise_sigma": (0.5, 3.0),
    "jpeg_q": (55, 90),
    "clutter_rects": 12,
    "clutter_lines": 8,
    "clutter_texts": 6,
}


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # gray uint8, H x W
    text: str


def _payload(rng: np.random.Generator) -> str:
    if rng.random() < 0.5:
        return "".join(str(d) for d in rng.integers(0, 10, 26))
    alphabet = string.ascii_letters + string.digits
    token = "".join(rng.choice(list(alphabet), 40))
    tx = "".join(str(d) for d in rng.integers(0, 10, 18))
    amount = int(rng.integers(1, 5000)) * 1000
    return f"https://kiosk.tehran.ir/v?tx={tx}&a={amount}&k=K{int(rng.integers(100, 999))}&s={token}"[:120]


def _qr(text: str, module: float) -> np.ndarray:
    import zxingcpp

    code = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    bits = np.array(zxingcpp.write_barcode_to_image(code, scale=1, add_quiet_zones=True))
    # one pixel per module (plus quiet zone): scale to the module size
    side = round(bits.shape[0] * module)
    return cv2.resize(bits, (side, side), interpolation=cv2.INTER_NEAREST)


def _background(rng: np.random.Generator) -> np.ndarray:
    bg = np.full((H, W), int(rng.integers(90, 170)), np.uint8)
    for _ in range(GEN["clutter_rects"]):
        x, y = int(rng.integers(0, W)), int(rng.integers(0, H))
        w, h = int(rng.integers(20, 300)), int(rng.integers(20, 200))
        cv2.rectangle(bg, (x, y), (x + w, y + h), int(rng.integers(0, 256)), -1)
    for _ in range(GEN["clutter_lines"]):
        p1 = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        p2 = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        cv2.line(bg, p1, p2, int(rng.integers(0, 256)), int(rng.integers(1, 6)))
    for _ in range(GEN["clutter_texts"]):
        txt = "".join(rng.choice(list(string.ascii_uppercase + string.digits), int(rng.integers(4, 14))))
        cv2.putText(bg, txt, (int(rng.integers(0, W - 100)), int(rng.integers(20, H))),
                    cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.5, 2.0)), int(rng.integers(0, 256)), 2)
    return bg


def make_frame(rng: np.random.Generator) -> Frame:
    text = _payload(rng)
    qr = _qr(text, float(rng.uniform(*GEN["module_px"])))
    side = qr.shape[0]
    # paste the QR on a white card with a margin, then warp the card into the scene
    card = np.full((side + 40, side + 40), 255, np.uint8)
    card[20:20 + side, 20:20 + side] = qr
    cs = card.shape[0]
    src = np.float32([[0, 0], [cs, 0], [cs, cs], [0, cs]])
    angle = np.deg2rad(rng.uniform(-GEN["rotation_deg"], GEN["rotation_deg"]))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centred = (src - cs / 2) @ rot.T
    jitter = rng.uniform(-GEN["perspective"], GEN["perspective"], (4, 2)) * cs
    dst = centred + jitter
    span = dst.max(axis=0) - dst.min(axis=0)
    cx = rng.uniform(span[0] / 2 + 5, W - span[0] / 2 - 5) if span[0] < W - 10 else W / 2
    cy = rng.uniform(span[1] / 2 + 5, H - span[1] / 2 - 5) if span[1] < H - 10 else H / 2
    dst = (dst + [cx, cy]).astype(np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    scene = _background(rng)
    warped = cv2.warpPerspective(card, m, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
    mask = cv2.warpPerspective(np.full_like(card, 255), m, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
    alpha = mask.astype(np.float32) / 255
    img = scene.astype(np.float32) * (1 - alpha) + warped.astype(np.float32) * alpha
    # low contrast: squeeze 0..255 into [lo, lo+span]
    cspan = rng.uniform(*GEN["contrast_span"])
    lo = rng.uniform(10, 250 - cspan)
    img = lo + img / 255 * cspan
    # uneven light: linear gradient times vignette
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    g = (np.cos(theta) * (xx / W - 0.5) + np.sin(theta) * (yy / H - 0.5)) + 0.5
    gain_lo = rng.uniform(GEN["light_gain_min"], 1.0)
    grad = gain_lo + (1 - gain_lo) * np.clip(g, 0, 1)
    r2 = ((xx - W / 2) / W) ** 2 + ((yy - H / 2) / H) ** 2
    img = img * grad * (1 - 0.5 * r2)
    if rng.random() < 0.6:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(*GEN["gauss_sigma"])))
    else:
        length = int(rng.integers(GEN["motion_px"][0], GEN["motion_px"][1] + 1))
        k = np.zeros((length, length), np.float32)
        k[length // 2, :] = 1.0
        rm = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        k = cv2.warpAffine(k, rm, (length, length))
        img = cv2.filter2D(img, -1, k / max(k.sum(), 1e-6))
    img = img + rng.normal(0, rng.uniform(*GEN["noise_sigma"]), img.shape)
    gray = np.clip(img, 0, 255).astype(np.uint8)
    _ok, jpg = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(GEN["jpeg_q"][0], GEN["jpeg_q"][1] + 1))])
    return Frame(cv2.imdecode(jpg, cv2.IMREAD_GRAYSCALE), text)


def generate_frames(seed: int, n: int) -> list[Frame]:
    rng = np.random.default_rng(seed)
    return [make_frame(rng) for _ in range(n)]


def _measure(name: str, fn, frames: list[Frame]) -> dict:
    times, hits = [], 0
    for f in frames:
        t0 = time.perf_counter()
        texts = fn(f.image)
        times.append((time.perf_counter() - t0) * 1000)
        hits += f.text in texts
    times.sort()
    return {
        "decoder": name,
        "decoded": hits,
        "frames": len(frames),
        "rate": round(hits / len(frames), 4),
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
    }


def run_seed(seed: int, n: int, stages: bool) -> dict:
    import zxingcpp
    from pyzbar import pyzbar

    frames = generate_frames(seed, n)
    project = FrameDecoder()
    used: Counter[str] = Counter()

    def ours(img: np.ndarray) -> list[str]:
        out = [c.text for c in project.decode(img)]
        used[project.last_stats.stage] += 1
        return out

    def raw_zx(img: np.ndarray) -> list[str]:
        return [b.text for b in zxingcpp.read_barcodes(img)]

    def raw_zbar(img: np.ndarray) -> list[str]:
        return [s.data.decode("utf-8", "replace") for s in pyzbar.decode(img)]

    result = {
        "seed": seed,
        "project": _measure("project FrameDecoder(zxing)", ours, frames),
        "raw_zxing": _measure("zxingcpp.read_barcodes defaults", raw_zx, frames),
        "raw_pyzbar": _measure("pyzbar.decode defaults", raw_zbar, frames),
        "project_stage_counts": dict(used),
    }
    if stages:
        result["rescue_table"] = _rescue_table(frames)
    return result


def _rescue_table(frames: list[Frame]) -> dict:
    """For frames the fast path misses: how many each rescue alone reads, and its cost."""
    from devices.scanner.decode import _build_rescues

    dec = FrameDecoder(rescues=False)
    # rescue formats restricted per rescue are ignored here: each is tried on all formats
    missed = [f for f in frames if f.text not in [c.text for c in dec.decode(f.image)]]
    table = {"fast_path_misses": len(missed)}
    for r in _build_rescues():
        hits, times = 0, []
        for f in missed:
            t0 = time.perf_counter()
            codes = dec._read_zxing(r.prepare(f.image), dec._zx_formats, r.options)
            times.append((time.perf_counter() - t0) * 1000)
            hits += f.text in [c.text for c in codes]
        table[r.name] = {"reads": hits, "median_ms": round(statistics.median(times), 2) if times else 0}
    return table


def _verdict(r: dict) -> dict:
    p, zx, zb = r["project"], r["raw_zxing"], r["raw_pyzbar"]
    checks = {
        "rate_vs_zxing_points": round((p["rate"] - zx["rate"]) * 100, 2),
        "rate_vs_pyzbar_ratio": round(p["rate"] / zb["rate"], 3) if zb["rate"] else None,
        "median_vs_zxing_ratio": round(p["median_ms"] / zx["median_ms"], 3),
        "p95_ms": p["p95_ms"],
    }
    checks["meets_target"] = bool(
        checks["rate_vs_zxing_points"] >= 3.0
        and (checks["rate_vs_pyzbar_ratio"] is None or checks["rate_vs_pyzbar_ratio"] >= 1.6)
        and checks["median_vs_zxing_ratio"] <= 1.5
        and checks["p95_ms"] <= 33.0
    )
    return checks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seed2", type=int, default=2, help="second seed, against overfitting")
    ap.add_argument("--stages", action="store_true", help="add a per-rescue table")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    started = time.perf_counter()
    runs = [run_seed(s, args.frames, args.stages) for s in (args.seed, args.seed2)]
    for r in runs:
        r["checks"] = _verdict(r)
    out = {
        "bench": "decode",
        "frames_per_seed": args.frames,
        "target": {
            "rate": "project >= raw zxing-cpp + 3 points and >= 1.6x raw pyzbar",
            "median": "project <= 1.5x raw zxing-cpp median",
            "p95_ms": 33.0,
        },
        "seeds": runs,
        "meets_target": all(r["checks"]["meets_target"] for r in runs),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
