"""`kiosk decode` as a citizen-support technician runs it: a real subprocess on real files,
including a huge PNG refused from its header, and files that are not images."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import zxingcpp

from devices.base import InvalidData
from devices.scanner.decode import ImageTooLarge, load_image

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


def _png_of_white_rows(path: Path, width: int, height: int, *, valid_data: bool) -> Path:
    """A gray PNG of `width` x `height` white pixels, a few hundred KB to a couple of MB on
    disk however large it declares itself. With `valid_data` the zlib stream is complete
    (built from one full-flushed deflate block repeated, so it costs no time to write);
    otherwise it holds only a few rows, which is enough for a reader that stops at the header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + b"\xff" * width  # filter byte 0, then the pixels
    rows_per_block = max(1, (8 << 20) // len(row))
    if valid_data and height % rows_per_block == 0:
        block = row * rows_per_block
        raw = zlib.compressobj(1, zlib.DEFLATED, -15)
        # a full flush resets the compressor: every block compresses to the same bytes
        packed = raw.compress(block) + raw.flush(zlib.Z_FULL_FLUSH)
        adler = 1
        for _ in range(height // rows_per_block):
            adler = zlib.adler32(block, adler)
        stream = (b"\x78\x01" + packed * (height // rows_per_block)
                  + zlib.compressobj(1, zlib.DEFLATED, -15).flush() + struct.pack(">I", adler))
    else:
        stream = zlib.compress(row * 8)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream)
                     + chunk(b"IEND", b""))
    return path


def _kiosk_peak_rss_mb(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `kiosk ARGS` from a fresh Python that has no other child, and report the child's
    peak resident memory (RUSAGE_CHILDREN of that parent is this one child's)."""
    probe = ("import json, resource, subprocess, sys\n"
             "done = subprocess.run([sys.executable, '-m', 'kiosk.cli', *sys.argv[1:]], "
             "capture_output=True, text=True)\n"
             "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
             "print(json.dumps({'rc': done.returncode, 'out': done.stdout, 'err': done.stderr, 'mb': peak}))\n")
    ran = subprocess.run([sys.executable, "-c", probe, *args], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True)
    report = json.loads(ran.stdout)
    return subprocess.CompletedProcess(args, report["rc"], report["out"], report["err"]), report["mb"]


def test_a_20000_square_png_is_refused_from_its_header_without_decoding(tmp_path: Path) -> None:
    # a complete, valid PNG: decoding it would take 400 MB of pixels (1.3 GB in the field)
    big = _png_of_white_rows(tmp_path / "poster.png", 20000, 20000, valid_data=True)
    assert big.stat().st_size < 3_000_000
    done, peak_mb = _kiosk_peak_rss_mb("decode", str(big))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "400,000,000 pixels" in done.stderr and "over the limit" in done.stderr
    # the header was read, not the pixels: far below the 400 MB the pixels need
    assert peak_mb < 300, f"peak RSS {peak_mb:.0f} MB: the image was decoded"


def test_a_40000_square_png_is_refused_with_a_typed_error_in_json(tmp_path: Path) -> None:
    big = _png_of_white_rows(tmp_path / "huge.png", 40000, 40000, valid_data=False)
    good = _write_code(tmp_path / "slip.png", BILL, zxingcpp.BarcodeFormat.Code128)
    done = _kiosk("decode", "--json", str(big), str(good))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["error_code"] == "imageTooLarge" and "1,600,000,000" in lines[0]["error"]
    # the files after it are still decoded
    assert lines[1]["codes"] == [{"format": "Code128", "text": BILL}]


def test_the_pixel_limit_is_an_option(tmp_path: Path) -> None:
    slip = _write_code(tmp_path / "slip.png", BILL, zxingcpp.BarcodeFormat.Code128)
    height, width = cv2.imread(str(slip), cv2.IMREAD_GRAYSCALE).shape
    refused = _kiosk("decode", "--max-pixels", str(width * height - 1), str(slip))
    assert refused.returncode == 1 and "over the limit" in refused.stderr
    assert _kiosk("decode", "--max-pixels", str(width * height), str(slip)).returncode == 0
    usage = _kiosk("decode", "--max-pixels", "0", str(slip))
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


@pytest.mark.parametrize(("make", "expected"), [
    (lambda d: d / "missing.png", "no such file"),
    (lambda d: _write_bytes(d / "notes.png", b"these are not pixels\n" * 20), "not an image file"),
    (lambda d: _write_bytes(d / "cut.png", _truncated_png()), "cannot decode the image"),
    (lambda d: d, "is a directory"),
])
def test_a_file_that_is_not_a_readable_image_is_one_line_and_exit_1(tmp_path: Path, make, expected: str) -> None:
    path = make(tmp_path)
    done = _kiosk("decode", str(path))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"kiosk decode: {path}: {expected}" + done.stderr.split(expected, 1)[1]
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_in_process_main_prints_one_line_for_a_huge_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kiosk.cli import main

    big = _png_of_white_rows(tmp_path / "huge.png", 40000, 40000, valid_data=False)
    assert main(["decode", str(big)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"kiosk decode: {big}: image declares 1,600,000,000 pixels")
    assert captured.err.count("\n") == 1


def test_load_image_raises_image_too_large_before_decoding(tmp_path: Path) -> None:
    big = _png_of_white_rows(tmp_path / "tall.png", 3000, 20000, valid_data=False)
    with pytest.raises(ImageTooLarge) as caught:
        load_image(big)
    assert isinstance(caught.value, InvalidData) and caught.value.error_code == "imageTooLarge"
    # the limit, nothing else, stopped it: without one the 60 MP file is read
    assert load_image(big, max_pixels=None).shape == (20000, 3000)
    assert load_image(big, max_pixels=60_000_000).shape == (20000, 3000)


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated_png() -> bytes:
    ok, data = cv2.imencode(".png", np.random.default_rng(3).integers(0, 256, (200, 200), np.uint8))
    assert ok
    return data.tobytes()[: len(data) // 2]
