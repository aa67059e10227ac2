"""`kiosk decode` as a citizen-support technician runs it: a real subprocess on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import zxingcpp

REPO = Path(__file__).resolve().parents[1]
BILL = "77483178001420000001770160"


def _kiosk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kiosk.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)


def _write_code(path: Path, text: str, fmt: zxingcpp.BarcodeFormat) -> Path:
    img = np.array(zxingcpp.write_barcode_to_image(zxingcpp.create_barcode(text, fmt), scale=4))
    cv2.imwrite(str(path), cv2.copyMakeBorder(img, 30, 30, 30, 30, cv2.BORDER_CONSTANT, value=255))
    return path


def test_json_output_is_one_line_per_file_with_codes_and_time(tmp_path: Path) -> None:
    qr = _write_code(tmp_path / "receipt.png", "https://kiosk.tehran.ir/v?tx=9", zxingcpp.BarcodeFormat.QRCode)
    bill = _write_code(tmp_path / "bill.png", BILL, zxingcpp.BarcodeFormat.ITF)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((100, 100), 255, np.uint8))
    done = _kiosk("decode", "--json", str(qr), str(bill), str(blank))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(qr), str(bill), str(blank)]
    assert lines[0]["codes"] == [{"format": "QRCode", "text": "https://kiosk.tehran.ir/v?tx=9"}]
    assert lines[1]["codes"] == [{"format": "ITF", "text": BILL}]
    assert lines[2]["codes"] == []
    assert all(isinstance(line["ms"], float) and line["ms"] >= 0 for line in lines)


def test_an_unreadable_file_is_reported_and_the_exit_code_is_1_after_the_rest(tmp_path: Path) -> None:
    good = _write_code(tmp_path / "slip.png", BILL, zxingcpp.BarcodeFormat.Code128)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\x00not an image")
    missing = tmp_path / "missing.png"
    done = _kiosk("decode", "--json", str(bad), str(missing), str(good))
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert set(lines[0]) == {"file", "error", "error_code"} and lines[0]["file"] == str(bad)
    assert set(lines[1]) == {"file", "error", "error_code"}
    assert lines[2]["codes"] == [{"format": "Code128", "text": BILL}]


def test_readable_output_names_the_format_and_text(tmp_path: Path) -> None:
    slip = _write_code(tmp_path / "slip.png", BILL, zxingcpp.BarcodeFormat.Code128)
    done = _kiosk("decode", "--backend", "zbar", str(slip))
    assert done.returncode == 0, done.stderr
    assert f"Code128 '{BILL}'" in done.stdout and str(slip) in done.stdout


def test_an_unknown_backend_is_a_usage_error(tmp_path: Path) -> None:
    done = _kiosk("decode", "--backend", "opencv", "x.png")
    assert done.returncode == 2
