"""`kiosk decode [--backend zxing|zbar] [--json] FILE...`: decode barcodes in image files with
the kiosk's own decoder, to check a printed slip or a camera still in the field."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from devices.base import DeviceError
from devices.scanner.decode import FrameDecoder, load_image

#: files are not a live camera: let the rescue cascade run well past a frame's 33 ms
FILE_RESCUE_BUDGET_MS = 500.0


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("decode", parents=[common],
                                   help="decode QR codes and barcodes in image files")
    parser.add_argument("--backend", choices=["zxing", "zbar"], default="zxing",
                        help="decoding library (default zxing: zxing-cpp)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")
    parser.add_argument("files", nargs="+", metavar="FILE", help="image files (png, jpg, webp, …)")
    parser.set_defaults(func=_decode)


def _decode(args: argparse.Namespace) -> int:
    decoder = FrameDecoder(args.backend, rescue_budget_ms=FILE_RESCUE_BUDGET_MS)
    failed = False
    for name in args.files:
        result: dict[str, Any] = {"file": name}
        try:
            frame = load_image(name)
            start = time.perf_counter()
            codes = decoder.decode(frame)
            result["codes"] = [{"format": c.format, "text": c.text} for c in codes]
            result["ms"] = round((time.perf_counter() - start) * 1000, 2)
        except DeviceError as exc:
            failed = True
            result["error"] = str(exc)
        _print(result, args.json)
    return 1 if failed else 0


def _print(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, ensure_ascii=False), flush=True)
    elif "error" in result:
        print(f"{result['file']}: ERROR {result['error']}", file=sys.stderr, flush=True)
    elif not result["codes"]:
        print(f"{result['file']}: no code found ({result['ms']} ms)", flush=True)
    else:
        found = "; ".join(f"{c['format']} {c['text']!r}" for c in result["codes"])
        print(f"{result['file']}: {found} ({result['ms']} ms)", flush=True)
