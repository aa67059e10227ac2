"""Receipt layout (kiosk.receipts.layout): Persian shaped right-to-left, ids kept left-to-right, blank paper sent as
feeds, and the native-QR job far smaller on the wire than one full raster."""

from __future__ import annotations

import pytest
import zxingcpp
from PIL import Image as PILImage

from devices.printer.escpos_driver import job_to_escpos_bytes
from kiosk.receipts.layout import (QR, Document, Feed, Heading, Image, Row, Separator, Text, ltr, render,
                                    render_full_raster)


def ink_columns(img: PILImage.Image) -> tuple[int, int]:
    box = img.convert("L").point(lambda v: 255 - v).getbbox()
    assert box is not None
    return box[0], box[2]


def test_rtl_text_starts_at_the_right_edge_and_ltr_text_at_the_left() -> None:
    rtl = render(Document((Text("سلام"),))).parts[0][1]
    ltr_doc = render(Document((Text("Hello"),), direction="ltr")).parts[0][1]
    assert ink_columns(rtl)[1] > 576 - 30
    assert ink_columns(ltr_doc)[0] < 30


def test_row_puts_label_at_start_and_latin_value_at_end() -> None:
    img = render(Document((Row("مبلغ", "170000"),))).parts[0][1]
    left, right = ink_columns(img)
    assert left < 30 and right > 576 - 30
    middle = img.crop((150, 0, 420, img.height))
    assert middle.convert("L").point(lambda v: 255 - v).getbbox() is None


def test_long_text_wraps_without_splitting_an_ltr_isolate() -> None:
    words = " ".join(["عوارض"] * 40) + " " + ltr("TX 2024 0611 000123")
    one_line = render(Document((Text("عوارض"),))).parts[0][1].height
    wrapped = render(Document((Text(words),))).parts[0][1]
    assert wrapped.height > 3 * one_line
    assert ink_columns(wrapped)[0] >= 8 and ink_columns(wrapped)[1] <= 576 - 8


def test_feeds_replace_blank_raster_and_qr_is_a_native_part() -> None:
    job = render(Document((Heading("رسید"), Feed(3), QR("abc", caption="کد"), Separator())))
    kinds = [k for k, _ in job.parts]
    assert kinds == ["image", "feed", "qr", "image"]
    assert job.parts[1][1] == 3
    assert all(v.mode == "1" for k, v in job.parts if k == "image")


def test_raster_qr_when_native_is_off_still_scans() -> None:
    job = render(Document((QR("https://verify.example/x"),)), native_qr=False)
    assert [k for k, _ in job.parts] == ["image"]
    assert [r.text for r in zxingcpp.read_barcodes(job.parts[0][1].convert("L"))] == ["https://verify.example/x"]


def test_full_raster_is_one_image_the_width_of_the_paper() -> None:
    doc = Document((Heading("شهرداری تهران"), Image(PILImage.new("L", (900, 90), 0)), QR("x" * 150)))
    img = render_full_raster(doc, width_dots=384)
    assert img.width == 384 and img.mode == "1"
    assert [r.text for r in zxingcpp.read_barcodes(img.convert("L"))] == ["x" * 150]


def test_native_qr_job_is_much_smaller_than_the_full_raster() -> None:
    doc = Document((Heading("رسید"), Row("مبلغ", "170000"), Feed(2), QR("y" * 150)))
    full = job_to_escpos_bytes(render(Document((Image(render_full_raster(doc)),))))
    ours = job_to_escpos_bytes(render(doc))
    assert len(ours) < 0.75 * len(full)


@pytest.mark.parametrize("bad", [Document((Text("x", align="left"),)), Document((Text("x"),), direction="up"),
                                 Document(("not a block",))])
def test_bad_documents_are_rejected_with_clear_errors(bad: Document) -> None:
    with pytest.raises((ValueError, TypeError)):
        render(bad)


def test_devices_never_reaches_into_kiosk_not_even_for_font_files() -> None:
    """Layout, fonts and shaping are the kiosk's; the printer driver encodes rendered rasters."""
    import ast
    from pathlib import Path

    import devices

    root = Path(devices.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            offenders += [f"{path.name}: {n}" for n in names if n == "kiosk" or n.startswith("kiosk.")]
        if "find_spec" in text or ".ttf" in text:
            offenders.append(f"{path.name}: looks for kiosk's files")
    assert offenders == []
