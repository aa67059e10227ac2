"""bench/bench_decode.py's frame generator: deterministic for a seed, valid bill barcodes,
every scene kind present, and the stream's bookkeeping (scene numbers, no-code frames)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from kiosk.bills import parse_barcode

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_decode.py"


def _bench():
    if "bench_decode_for_test" in sys.modules:
        return sys.modules["bench_decode_for_test"]
    spec = importlib.util.spec_from_file_location("bench_decode_for_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_same_seed_gives_the_same_stream() -> None:
    bench = _bench()
    a = bench.generate_stream(7, 5, 2)
    b = bench.generate_stream(7, 5, 2)
    assert [(f.kind, f.text, f.scene) for f in a] == [(f.kind, f.text, f.scene) for f in b]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0].image, bench.generate_stream(8, 1, 1)[0].image)


def test_bill_barcodes_are_valid_26_digit_pairs() -> None:
    bench = _bench()
    rng = np.random.default_rng(3)
    for _ in range(200):
        text = bench.bill_barcode(rng)
        bill = parse_barcode(text)
        assert len(text) == 26 and text == bill.bill_id.zfill(13) + bill.payment_id.zfill(13)


def test_a_scene_holds_one_code_over_frames_that_differ() -> None:
    bench = _bench()
    frames = bench.generate_stream(4, 24, 3)
    kinds = {f.kind for f in frames}
    assert {"qr", "bill128", "damaged", "none"} <= kinds
    for scene in {f.scene for f in frames}:
        same = [f for f in frames if f.scene == scene]
        assert len(same) == 3 and len({f.text for f in same}) == 1
        # fresh noise and JPEG per frame, as a camera gives
        assert not np.array_equal(same[0].image, same[1].image)
    assert all((f.text is None) == (f.kind == "none") for f in frames)
    assert all(f.image.shape == (720, 1280) and f.image.dtype == np.uint8 for f in frames)


def test_only_the_kinds_asked_for_are_generated() -> None:
    frames = _bench().generate_stream(9, 6, 1, kinds={"bill128": 1.0})
    assert {f.kind for f in frames} == {"bill128"}
    assert all(parse_barcode(f.text) for f in frames)
