"""`kiosk decode [--backend zxing|zbar] [--json] [--max-pixels N] FILE...`: decode barcodes in
image files with the kiosk's own decoder, to check a printed slip or a camera still in the field."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from devices.base import DeviceError
from devices.scanner.decode import MAX_IMAGE_PIXELS, FrameDecoder, load_image


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("decode", parents=[common],
                                   help="decode QR codes and barcodes in image files")
    parser.add_argument("--backend", choices=["zxing", "zbar"], default="zxing",
                        help="decoding library (default zxing: zxing-cpp)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")
    parser.add_argument("--max-pixels", type=_positive_int, default=MAX_IMAGE_PIXELS, metavar="N",
                        help=f"refuse images larger than N pixels, before decoding them "
                             f"(default {MAX_IMAGE_PIXELS:,})")
    parser.add_argument("files", nargs="+", metavar="FILE", help="image files (png, jpg, webp, …)")
    parser.set_defaults(func=_decode)


def _decode(args: argparse.Namespace) -> int:
    # a file is not a live camera: no frame budget, every rescue may run on it
    decoder = FrameDecoder(args.backend, frame_budget_ms=None)
    failed = False
    for name in args.files:
        result: dict[str, Any] = {"file": name}
        try:
            frame = load_image(name, max_pixels=args.max_pixels)
            start = time.perf_counter()
            codes = decoder.decode(frame)
            result["codes"] = [{"format": c.format, "text": c.text} for c in codes]
            result["ms"] = round((time.perf_counter() - start) * 1000, 2)
        except DeviceError as exc:
            failed = True
            result["error"] = str(exc)
            result["error_code"] = exc.error_code
        _print(result, args.json)
    return 1 if failed else 0


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, ensure_ascii=False), flush=True)
    elif "error" in result:
        # the message names the file already (load_image says which file and why)
        print(f"kiosk decode: {result['error']}", file=sys.stderr, flush=True)
    elif not result["codes"]:
        print(f"{result['file']}: no code found ({result['ms']} ms)", flush=True)
    else:
        found = "; ".join(f"{c['format']} {c['text']!r}" for c in result["codes"])
        print(f"{result['file']}: {found} ({result['ms']} ms)", flush=True)
