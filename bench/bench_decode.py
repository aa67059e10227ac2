"""Decoding benchmark: the project's FrameDecoder against raw zxing-cpp and raw pyzbar on a
seeded stream of camera-like 1280x720 frames, one thread; prints one JSON object.

The stream is a run of *scenes*: one slip (or nothing) held in front of the camera for
`--scene-frames` successive frames (4 by default: about a quarter of a second at the
camera's 15 fps; a citizen holds a slip up for longer).
Within a scene geometry, light and blur stay put and only drift a little; noise and JPEG
compression are drawn afresh per frame, as a camera's are. Scene kinds:
  qr        a QR code: half 26-digit bill codes, half ~120-char receipt payloads
  bill128   a 26-digit Code 128 bill barcode (valid bill id + payment id from kiosk.bills,
            each zero-padded to 13), mostly level (±5°), 15% turned upright
  damaged   a QR or a Code 128 under a smudge: an ink blot, a grey smear or glare over 4-25%
            of the symbol (some stay readable through QR error correction or intact bar rows)
  none      no code at all: a printed slip with text only, or just the background
Per scene, from one seeded numpy Generator:
  QR           zxing-cpp encoder, EC level M, module size 3.2-6.0 px before warping
  Code 128     zxing-cpp encoder, module width 2.0-3.6 px, bars 50-110 px tall
  geometry     QR: rotation uniform ±40°, each corner jittered by up to 18% of the side;
               Code 128: ±5° (or 90°±5°), corners jittered by up to 2.5%
  background   mid-grey base + 12 random rectangles, 8 lines, 6 text strings (clutter)
  lighting     low contrast: paper/ink levels squeezed to a span of 45-200 grey levels;
               uneven light: a linear gradient (gain 0.55-1.0 across the frame) times a
               radial vignette
  blur         60% Gaussian sigma 0.3-1.8, 40% motion blur 2-6 px at a random angle
Per frame: corners drift by up to 2 px, blur by ±15%; Gaussian noise sigma 0.5-3, then
JPEG q 55-90 (camera compression).

Rates count *scenes* read (the expected text in any of the scene's frames: what a citizen
waits for), per decoder, on the same frames; per-frame rates are reported too. Times are per
frame over ALL frames, misses and no-code frames included.

Usage: .venv/bin/python bench/bench_decode.py [--scenes 150] [--scene-frames 4] [--seed 1]
       [--seed2 2] [--stages]
"""

from __future__ import annotations

import argparse
import json
import statistics
import string
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devices.scanner.decode import FrameDecoder  # noqa: E402
from kiosk.bills import make_bill_id, make_payment_id, parse_barcode  # noqa: E402

W, H = 1280, 720

#: the generator's knobs (documented in the module docstring); tuned so raw zxing-cpp reads
#: about 85-90% of code-bearing frames
GEN: dict = {
    "kinds": {"qr": 0.35, "bill128": 0.25, "damaged": 0.2, "none": 0.2},
    "module_px": (3.2, 6.0),
    "bar_module_px": (2.0, 3.6),
    "bar_height_px": (50, 110),
    "perspective": 0.18,
    "bar_perspective": 0.025,
    "rotation_deg": 40.0,
    "bar_rotation_deg": 5.0,
    "bar_upright": 0.15,
    "smudge_area": (0.04, 0.25),
    "contrast_span": (45.0, 200.0),
    "light_gain_min": 0.55,
    "gauss_sigma": (0.3, 1.8),
    "motion_px": (2, 6),
    "noise_sigma": (0.5, 3.0),
    "jpeg_q": (55, 90),
    "clutter_rects": 12,
    "clutter_lines": 8,
    "clutter_texts": 6,
    "drift_px": 2.0,
}

_YY, _XX = np.mgrid[0:H, 0:W].astype(np.float32)


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # gray uint8, H x W
    text: str | None  # None: the frame holds no code
    kind: str = "qr"
    scene: int = 0


def bill_barcode(rng: np.random.Generator) -> str:
    """A valid 26-digit bill barcode: bill id and payment id, each zero-padded to 13."""
    subscriber = str(int(rng.integers(1, 10**8)))
    bill_id = make_bill_id(subscriber, str(int(rng.integers(0, 1000))), int(rng.integers(1, 10)))
    amount = int(rng.integers(1, 50_000)) * 1000
    payment_id = make_payment_id(bill_id, amount, int(rng.integers(0, 10)), int(rng.integers(1, 13)))
    text = bill_id.zfill(13) + payment_id.zfill(13)
    assert parse_barcode(text).bill_id == bill_id  # the bench only shows valid bills
    return text


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


def _code128(text: str, module: float, height: int) -> np.ndarray:
    import zxingcpp

    code = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.Code128)
    row = np.array(zxingcpp.write_barcode_to_image(code, scale=1, add_quiet_zones=True))[:1]
    width = round(row.shape[1] * module)
    # INTER_AREA: a fractional module width gives grey edge pixels, as a real print does
    return cv2.resize(np.repeat(row, height, axis=0).astype(np.uint8), (width, height),
                      interpolation=cv2.INTER_AREA)


def _smudge(rng: np.random.Generator, symbol: np.ndarray) -> np.ndarray:
    """An ink blot, a grey smear or glare over a random part of the symbol, soft-edged."""
    h, w = symbol.shape
    area = rng.uniform(*GEN["smudge_area"]) * h * w
    aspect = rng.uniform(0.4, 2.5)
    ax = max(3, int(np.sqrt(area * aspect / np.pi)))
    ay = max(3, int(np.sqrt(area / aspect / np.pi)))
    centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, centre, (ax, ay), float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, min(ax, ay) / 6))
    colour = float(rng.choice([rng.uniform(20, 90), rng.uniform(100, 170), rng.uniform(235, 255)]))
    alpha = rng.uniform(0.7, 1.0)
    out = symbol.astype(np.float32) * (1 - alpha * mask) + colour * alpha * mask
    return np.clip(out, 0, 255).astype(np.uint8)


def _text_card(rng: np.random.Generator) -> np.ndarray:
    """A printed slip without any code: a few lines of text and rules on white."""
    card = np.full((int(rng.integers(180, 360)), int(rng.integers(240, 420))), 255, np.uint8)
    for y in range(30, card.shape[0] - 10, int(rng.integers(22, 40))):
        txt = "".join(rng.choice(list(string.ascii_uppercase + string.digits + "   "), int(rng.integers(6, 18))))
        cv2.putText(card, txt, (10, y), cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.4, 0.8)), 0, 1)
    cv2.line(card, (8, 12), (card.shape[1] - 8, 12), 0, 2)
    return card


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


def _card_corners(rng: np.random.Generator, shape: tuple[int, int], rotation_deg: float,
                  perspective: float, upright: bool) -> np.ndarray:
    """Where the card's corners land in the frame: rotated, jittered, placed inside it."""
    ch, cw = shape
    src = np.float32([[0, 0], [cw, 0], [cw, ch], [0, ch]])
    angle = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg) + (90.0 * rng.choice([-1, 1]) if upright else 0.0))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centred = (src - [cw / 2, ch / 2]) @ rot.T
    dst = centred + rng.uniform(-perspective, perspective, (4, 2)) * max(cw, ch)
    span = dst.max(axis=0) - dst.min(axis=0)
    cx = rng.uniform(span[0] / 2 + 5, W - span[0] / 2 - 5) if span[0] < W - 10 else W / 2
    cy = rng.uniform(span[1] / 2 + 5, H - span[1] / 2 - 5) if span[1] < H - 10 else H / 2
    return (dst + [cx, cy]).astype(np.float32)


@dataclass(frozen=True)
class _Scene:
    """What stays put while a slip is held in front of the camera."""

    kind: str
    text: str | None
    card: np.ndarray | None
    corners: np.ndarray | None
    background: np.ndarray
    lo: float
    span: float
    light: np.ndarray  # gain map, H x W float32
    gauss_sigma: float | None  # None: motion blur
    motion_px: int
    motion_deg: float


def _make_scene(rng: np.random.Generator, kinds: dict[str, float] | None = None) -> _Scene:
    kinds = kinds or GEN["kinds"]
    kind = str(rng.choice(list(kinds), p=np.array(list(kinds.values())) / sum(kinds.values())))
    text: str | None = None
    card: np.ndarray | None = None
    corners: np.ndarray | None = None
    symbol: np.ndarray | None = None
    linear = kind == "bill128" or (kind == "damaged" and rng.random() < 0.5)
    if kind == "none":
        if rng.random() < 0.5:
            card = _text_card(rng)
    elif linear:
        text = bill_barcode(rng)
        symbol = _code128(text, float(rng.uniform(*GEN["bar_module_px"])),
                          int(rng.integers(*GEN["bar_height_px"])))
    else:
        text = _payload(rng)
        symbol = _qr(text, float(rng.uniform(*GEN["module_px"])))
    if symbol is not None:
        if kind == "damaged":
            symbol = _smudge(rng, symbol)
        # the symbol on a white card with a margin, warped into the scene
        card = np.full((symbol.shape[0] + 40, symbol.shape[1] + 40), 255, np.uint8)
        card[20:20 + symbol.shape[0], 20:20 + symbol.shape[1]] = symbol
    if card is not None:
        if linear:
            corners = _card_corners(rng, card.shape, GEN["bar_rotation_deg"], GEN["bar_perspective"],
                                    bool(rng.random() < GEN["bar_upright"]))
        else:
            corners = _card_corners(rng, card.shape, GEN["rotation_deg"], GEN["perspective"], False)
    background = _background(rng)
    span = rng.uniform(*GEN["contrast_span"])
    lo = rng.uniform(10, 250 - span)
    theta = rng.uniform(0, 2 * np.pi)
    g = (np.cos(theta) * (_XX / W - 0.5) + np.sin(theta) * (_YY / H - 0.5)) + 0.5
    gain_lo = rng.uniform(GEN["light_gain_min"], 1.0)
    grad = gain_lo + (1 - gain_lo) * np.clip(g, 0, 1)
    r2 = ((_XX - W / 2) / W) ** 2 + ((_YY - H / 2) / H) ** 2
    light = (grad * (1 - 0.5 * r2)).astype(np.float32)
    gauss = float(rng.uniform(*GEN["gauss_sigma"])) if rng.random() < 0.6 else None
    return _Scene(kind, text, card, corners, background, float(lo), float(span), light, gauss,
                  int(rng.integers(GEN["motion_px"][0], GEN["motion_px"][1] + 1)),
                  float(rng.uniform(0, 180)))


_NOISE_BANK: list[np.ndarray] = []


def _noise(rng: np.random.Generator) -> np.ndarray:
    """Unit Gaussian noise for one frame: a random shift, drawn from `rng`, of one of a few
    fields drawn once from a fixed seed (drawing 0.9 M normals per frame would cost more
    than decoding it; a fixed seed keeps every stream reproducible whatever ran before)."""
    if not _NOISE_BANK:
        _NOISE_BANK.append(np.random.default_rng(20261130).standard_normal((3, H, W), dtype=np.float32))
    bank = _NOISE_BANK[0]
    field = bank[int(rng.integers(0, len(bank)))]
    return np.roll(field, (int(rng.integers(0, H)), int(rng.integers(0, W))), axis=(0, 1))


def _render(rng: np.random.Generator, scene: _Scene) -> np.ndarray:
    """One camera frame of `scene`: a little drift, fresh noise and compression."""
    img = scene.background.astype(np.float32)
    if scene.card is not None and scene.corners is not None:
        ch, cw = scene.card.shape
        src = np.float32([[0, 0], [cw, 0], [cw, ch], [0, ch]])
        drift = rng.uniform(-1, 1, 2) * GEN["drift_px"] + rng.uniform(-0.5, 0.5, (4, 2))
        m = cv2.getPerspectiveTransform(src, (scene.corners + drift).astype(np.float32))
        warped = cv2.warpPerspective(scene.card, m, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
        mask = cv2.warpPerspective(np.full_like(scene.card, 255), m, (W, H), flags=cv2.INTER_LINEAR,
                                   borderValue=0).astype(np.float32) / 255
        img = img + (warped.astype(np.float32) - img) * mask
    img = (scene.lo + img * (scene.span / 255)) * scene.light
    if scene.gauss_sigma is not None:
        img = cv2.GaussianBlur(img, (0, 0), scene.gauss_sigma * float(rng.uniform(0.85, 1.15)))
    else:
        length = scene.motion_px
        k = np.zeros((length, length), np.float32)
        k[length // 2, :] = 1.0
        rm = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5),
                                     scene.motion_deg + float(rng.uniform(-5, 5)), 1.0)
        k = cv2.warpAffine(k, rm, (length, length))
        img = cv2.filter2D(img, -1, k / max(k.sum(), 1e-6))
    img = img + _noise(rng) * float(rng.uniform(*GEN["noise_sigma"]))
    gray = np.clip(img, 0, 255).astype(np.uint8)
    q = int(rng.integers(GEN["jpeg_q"][0], GEN["jpeg_q"][1] + 1))
    _ok, jpg = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(jpg, cv2.IMREAD_GRAYSCALE)


def make_scene_frames(rng: np.random.Generator, n_frames: int, scene_no: int = 0,
                      kinds: dict[str, float] | None = None) -> list[Frame]:
    """The successive frames of one scene, in camera order (`kinds`: weights, GEN's default)."""
    scene = _make_scene(rng, kinds)
    return [Frame(_render(rng, scene), scene.text, scene.kind, scene_no) for _ in range(n_frames)]


def make_frame(rng: np.random.Generator) -> Frame:
    """One frame of a fresh scene (independent frames: older tests and `--scene-frames 1`)."""
    return make_scene_frames(rng, 1)[0]


def generate_stream(seed: int, scenes: int, scene_frames: int,
                    kinds: dict[str, float] | None = None) -> list[Frame]:
    rng = np.random.default_rng(seed)
    return [f for s in range(scenes) for f in make_scene_frames(rng, scene_frames, s, kinds)]


def _pct(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return round(ordered[int(q * (len(ordered) - 1))], 2)


def _measure(name: str, fn: Callable[[np.ndarray], list[str]], frames: list[Frame]) -> dict:
    """Run `fn` over the stream in order; rates per scene and per frame, times per frame."""
    times: list[float] = []
    frame_hits = 0
    false_reads = 0
    read_scenes: set[int] = set()
    scenes_by_kind: dict[str, set[int]] = {}
    none_times: list[float] = []
    for f in frames:
        t0 = time.perf_counter()
        texts = fn(f.image)
        ms = (time.perf_counter() - t0) * 1000
        times.append(ms)
        scenes_by_kind.setdefault(f.kind, set()).add(f.scene)
        if f.text is None:
            none_times.append(ms)
        elif f.text in texts:
            frame_hits += 1
            read_scenes.add(f.scene)
        false_reads += any(t != f.text for t in texts)
    code_scenes = {s for k, ss in scenes_by_kind.items() if k != "none" for s in ss}
    code_frames = sum(f.text is not None for f in frames)
    return {
        "decoder": name,
        "scenes_read": len(read_scenes),
        "code_scenes": len(code_scenes),
        "rate": round(len(read_scenes) / len(code_scenes), 4),
        "rate_by_kind": {k: round(len(ss & read_scenes) / len(ss), 3)
                         for k, ss in sorted(scenes_by_kind.items()) if k != "none"},
        "frame_rate": round(frame_hits / code_frames, 4),
        "false_read_frames": false_reads,
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": _pct(times, 0.95),
        "max_ms": round(max(times), 2),
        "no_code_p95_ms": _pct(none_times, 0.95) if none_times else None,
    }


def run_seed(seed: int, scenes: int, scene_frames: int, stages: bool) -> dict:
    import zxingcpp
    from pyzbar import pyzbar

    t0 = time.perf_counter()
    frames = generate_stream(seed, scenes, scene_frames)
    generated_s = time.perf_counter() - t0
    project = FrameDecoder()  # one decoder over the whole stream, as a camera keeps it
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
        "frames": len(frames),
        "frames_by_kind": dict(Counter(f.kind for f in frames)),
        "project": _measure("project FrameDecoder(zxing)", ours, frames),
        "raw_zxing": _measure("zxingcpp.read_barcodes defaults", raw_zx, frames),
        "raw_pyzbar": _measure("pyzbar.decode defaults", raw_zbar, frames),
        "project_stage_counts": dict(used),
        "project_frame_budget_ms": project.frame_budget_ms,
        "generate_s": round(generated_s, 1),
    }
    if stages:
        result["rescue_table"] = _rescue_table(frames)
    return result


def _rescue_table(frames: list[Frame]) -> dict:
    """For code frames the fast path misses: how many each rescue alone reads, and its cost
    (also on no-code frames, where every rescue is pure cost)."""
    plain = FrameDecoder(rescues=False)
    dec = FrameDecoder(frame_budget_ms=None)
    missed = [f for f in frames if f.text is not None
              and f.text not in [c.text for c in plain.decode(f.image)]]
    empty = [f for f in frames if f.text is None]
    table: dict = {"fast_path_misses": len(missed)}
    for r in dec._rescues:
        hits, times, empty_times = 0, [], []
        for f in missed + empty:
            t0 = time.perf_counter()
            codes = dec._run_rescue(r, f.image)
            (times if f.text is not None else empty_times).append((time.perf_counter() - t0) * 1000)
            hits += f.text is not None and f.text in [c.text for c in codes]
        table[r.name] = {"reads": hits,
                         "median_ms": round(statistics.median(times), 2) if times else 0,
                         "no_code_p95_ms": _pct(empty_times, 0.95) if empty_times else 0}
    return table


#: the targets, checked on every seed
TARGET = {
    "rate_vs_zxing_points": 3.0,  # project scene rate >= raw zxing-cpp + 3 points
    "rate_vs_pyzbar_points": 20.0,  # ... and >= raw pyzbar + 20 points
    "median_vs_zxing_ratio": 1.5,  # project median <= 1.5x raw zxing-cpp median
    "p95_ms": 33.0,  # over ALL frames: a 30 fps camera's frame time
}


def _verdict(r: dict) -> dict:
    p, zx, zb = r["project"], r["raw_zxing"], r["raw_pyzbar"]
    vs_zx = round((p["rate"] - zx["rate"]) * 100, 2)
    vs_zb = round((p["rate"] - zb["rate"]) * 100, 2)
    median_ratio = round(p["median_ms"] / zx["median_ms"], 3)
    checks = {
        "rate_vs_zxing_points": vs_zx,
        "rate_vs_pyzbar_points": vs_zb,
        "median_vs_zxing_ratio": median_ratio,
        "p95_ms": p["p95_ms"],
        "rate_ok_vs_zxing": vs_zx >= TARGET["rate_vs_zxing_points"],
        "rate_ok_vs_pyzbar": vs_zb >= TARGET["rate_vs_pyzbar_points"],
        "median_ok": median_ratio <= TARGET["median_vs_zxing_ratio"],
        "p95_ok": p["p95_ms"] <= TARGET["p95_ms"],
        "no_more_false_reads_than_zxing": p["false_read_frames"] <= zx["false_read_frames"],
        # not a target: where the gaps come from (pyzbar reads bill barcodes well, QR poorly)
        "points_by_kind_vs_zxing": {k: round((v - zx["rate_by_kind"][k]) * 100, 1)
                                    for k, v in p["rate_by_kind"].items()},
        "points_by_kind_vs_pyzbar": {k: round((v - zb["rate_by_kind"][k]) * 100, 1)
                                     for k, v in p["rate_by_kind"].items()},
    }
    checks["meets_target"] = all(checks[k] for k in ("rate_ok_vs_zxing", "rate_ok_vs_pyzbar",
                                                       "median_ok", "p95_ok",
                                                       "no_more_false_reads_than_zxing"))
    return checks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=150, help="scenes per seed")
    ap.add_argument("--scene-frames", type=int, default=4, help="frames per scene")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seed2", type=int, default=2, help="second seed, against overfitting")
    ap.add_argument("--stages", action="store_true", help="add a per-rescue table")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    started = time.perf_counter()
    runs = [run_seed(s, args.scenes, args.scene_frames, args.stages) for s in (args.seed, args.seed2)]
    for r in runs:
        r["checks"] = _verdict(r)
    out = {
        "bench": "decode",
        "scenes_per_seed": args.scenes,
        "frames_per_scene": args.scene_frames,
        "target": {
            "rate": "scenes read: project >= raw zxing-cpp + 3 points and >= raw pyzbar + 20 points",
            "median": "project <= 1.5x raw zxing-cpp median",
            "p95_ms": "project p95 per frame <= 33 ms over all frames, no-code frames included",
        },
        "seeds": runs,
        "meets_target": all(r["checks"]["meets_target"] for r in runs),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
