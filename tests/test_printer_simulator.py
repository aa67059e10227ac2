"""The printer simulator renders jobs from ANY ESC/POS client faithfully: driven by plain
python-escpos (not our driver) it shows alignment, emphasis, character size, 1D barcodes,
raster/column/graphics images and native QR, and lists the commands it did not draw."""

from __future__ import annotations

import numpy as np
import pytest
import zxingcpp
from escpos.printer import Dummy, Network
from PIL import Image as PILImage

from devices.printer.decoder import DecodedReceipt, decode_escpos
from devices.printer.emulator import NetworkPrinterEmulator

WIDTH = 576


def _job(build) -> DecodedReceipt:  # type: ignore[no-untyped-def]
    p = Dummy(profile="TM-T20II")
    p.hw("INIT")
    build(p)
    return decode_escpos(p.output, width_dots=WIDTH)


def _ink_box(img: PILImage.Image) -> tuple[int, int, int, int]:
    box = img.convert("L").point(lambda v: 255 - v).getbbox()
    assert box is not None, "nothing was printed"
    return box


def _ink(img: PILImage.Image) -> int:
    return int((np.asarray(img.convert("L")) < 128).sum())


def test_python_escpos_over_the_network_prints_centred_text_and_a_readable_code128() -> None:
    with NetworkPrinterEmulator() as emulator:
        p = Network(emulator.host, emulator.port, timeout=5, profile="TM-T20II")
        p.open()
        p.set(align="center")
        p.text("TOTAL 17000\n")
        p.barcode("{B7748317800142", "CODE128", function_type="B", height=100, width=2, pos="BELOW")
        p.qr("https://verify.example/r?tx=42", size=6, native=True)
        p.cut()
        p.close()
        emulator.wait_for_jobs(1)
        [paper] = emulator.receipts()
    assert paper.texts[0] == "TOTAL 17000" and paper.barcodes == ["7748317800142"]
    assert paper.qr_codes == ["https://verify.example/r?tx=42"] and paper.unhandled == []
    read = {(r.format.name, r.text) for r in zxingcpp.read_barcodes(paper.image.convert("L"))}
    assert ("Code128", "7748317800142") in read
    assert ("QRCode", "https://verify.example/r?tx=42") in read
    # the text line is centred on the paper
    line = paper.image.crop((0, 0, WIDTH, 30))
    left, _, right, _ = _ink_box(line)
    assert abs((left + right) / 2 - WIDTH / 2) <= 6, (left, right)


@pytest.mark.parametrize(("align", "where"), [("left", "left"), ("center", "center"), ("right", "right")])
def test_alignment_moves_the_text(align: str, where: str) -> None:
    paper = _job(lambda p: (p.set(align=align), p.text("ALIGN ME\n")))
    left, _, right, _ = _ink_box(paper.image)
    centre = (left + right) / 2
    expected = {"left": (right - left) / 2, "center": WIDTH / 2, "right": WIDTH - (right - left) / 2}[where]
    assert abs(centre - expected) <= 8, (align, left, right)


def test_bold_text_has_more_ink_than_regular() -> None:
    regular = _job(lambda p: (p.set(bold=False), p.text("EMPHASIS 123\n")))
    bold = _job(lambda p: (p.set(bold=True), p.text("EMPHASIS 123\n")))
    assert _ink(bold.image) > 1.2 * _ink(regular.image)
    # ESC ! bit 3 is the same emphasis
    mode = _job(lambda p: (p._raw(b"\x1b!\x08"), p.text("EMPHASIS 123\n")))
    assert _ink(mode.image) == _ink(bold.image)


def test_double_height_and_width_double_the_glyphs() -> None:
    normal = _ink_box(_job(lambda p: p.text("HEIGHT\n")).image)
    tall = _ink_box(_job(lambda p: (p.set(double_height=True), p.text("HEIGHT\n"))).image)
    wide = _ink_box(_job(lambda p: (p.set(double_width=True), p.text("HEIGHT\n"))).image)
    big = _ink_box(_job(lambda p: (p.set(custom_size=True, width=3, height=3), p.text("HEIGHT\n"))).image)
    height, width = normal[3] - normal[1], normal[2] - normal[0]
    assert tall[3] - tall[1] == pytest.approx(2 * height, abs=2) and tall[2] - tall[0] == width
    assert wide[2] - wide[0] == pytest.approx(2 * width, abs=2) and wide[3] - wide[1] == height
    assert big[3] - big[1] == pytest.approx(3 * height, abs=3)


@pytest.mark.parametrize(("code", "kind", "fmt"), [
    ("{B" + "KIOSK-42", "CODE128", "Code128"),
    ("{C" + "".join(chr(int("7748317800142"[i:i + 2])) for i in range(0, 12, 2)), "CODE128", "Code128"),
    ("4006381333931", "EAN13", "EAN13"),
    ("CITY KIOSK", "CODE39", "Code39"),
])
def test_1d_barcodes_print_back_to_their_text(code: str, kind: str, fmt: str) -> None:
    paper = _job(lambda p: p.barcode(code, kind, function_type="B", height=90, width=3, pos="OFF"))
    read = [(r.format.name, r.text) for r in zxingcpp.read_barcodes(paper.image.convert("L"))]
    assert len(read) == 1 and read[0][0] == fmt, read
    assert read[0][1] == paper.barcodes[0]
    assert paper.unhandled == []


def test_barcode_height_and_module_width_are_obeyed() -> None:
    short = _ink_box(_job(lambda p: p.barcode("{B42", "CODE128", function_type="B", height=50, width=2,
                                              pos="OFF")).image)
    tall = _ink_box(_job(lambda p: p.barcode("{B42", "CODE128", function_type="B", height=150, width=4,
                                             pos="OFF")).image)
    assert (short[3] - short[1], tall[3] - tall[1]) == (50, 150)
    assert tall[2] - tall[0] == pytest.approx(2 * (short[2] - short[0]), abs=4)


@pytest.mark.parametrize("impl", ["bitImageRaster", "bitImageColumn", "graphics"])
def test_every_python_escpos_image_method_prints_the_picture(impl: str) -> None:
    picture = PILImage.new("1", (96, 48), 1)
    picture.paste(0, (16, 8, 80, 40))  # a 64 x 32 black box
    paper = _job(lambda p: p.image(picture, impl=impl, center=False))
    left, top, right, bottom = _ink_box(paper.image)
    assert (right - left, bottom - top) == (64, 32), impl
    assert paper.unhandled == []


def test_commands_it_does_not_draw_are_reported_per_job() -> None:
    paper = _job(lambda p: (p.text("A\n"), p.cashdraw(2), p._raw(b"\x1bt\x11"), p.text("B\n"), p._raw(b"\x1b{\x01")))
    assert [u.split(" @")[0] for u in paper.unhandled] == ["ESC p drawer 0 50 50", "ESC t codepage 17",
                                                           "ESC { upside-down 1"]


def test_the_emulator_skips_unknown_bytes_like_a_printer_and_lists_them() -> None:
    with NetworkPrinterEmulator() as emulator:
        p = Network(emulator.host, emulator.port, timeout=5, profile="TM-T20II")
        p.open()
        p.text("BEFORE\n")
        p._raw(b"\x1b\x99")  # no such command
        p.text("AFTER\n")
        p.close()
        emulator.wait_for_jobs(1)
        [paper] = emulator.receipts()
    assert paper.texts == ["BEFORE", "AFTER"]
    assert paper.unhandled and paper.unhandled[0].startswith("unknown bytes 1b 99 @")
