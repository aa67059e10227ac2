"""Fee slips (kiosk.slips) printed as real ESC/POS bytes and read back the way a bank or another
kiosk would: the printer decoder finds the native Code 128 and QR, and the kiosk's own camera
decoder (zxing-cpp, and zbar as an independent reader) reads them off the paper image, where
kiosk.bills.parse_scanned gives back the slip's bill id, payment id and amount. Also the real
printer driver against the network printer emulator, the Barcode layout block, and what a
slip may never carry (an unmasked name, a national code)."""

from __future__ import annotations

import dataclasses
import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devices.printer.decoder import decode_escpos
from devices.printer.emulator import NetworkPrinterEmulator
from devices.printer.escpos_driver import EscposPrinter, job_to_escpos_bytes
from devices.scanner.decode import FrameDecoder, load_image
from kiosk.backoffice_client import FeeSlip
from kiosk.bills import InvalidBill, make_bill_id, make_payment_id, parse_scanned
from kiosk.receipts.layout import Barcode, BarcodeCommand, Document, Heading, render, render_full_raster
from kiosk.slips import (FEE_KINDS, SlipNotPrintable, build_slip_document, fee_kind_label, mask_person_name,
                         save_slip_png, slip_barcode, slip_bytes)
from kiosk.text.words import rials_in_words_fa

PRINTED_AT = dt.datetime(2025, 11, 30, 12, 5, tzinfo=dt.UTC)
NATIONAL_CODE = "0029163846"  # passes the national-code check (the back-office demo owner's)
OWNER = "زهرا محمدی"

# one slip of each kind, as the back-office issues them: municipal service digit 6, the
# kind's company code, amount/year/period in the payment id
_KINDS = (("renovation_tax", "201", 1_850_000, 4, 6), ("business_tax", "202", 3_250_000, 4, 5),
          ("waste_charge", "203", 420_000, 3, 12), ("vehicle_tax", "204", 1_150_000, 4, 1))


def _slip(kind: str, company: str, amount: int, year: int, period: int, n: int = 1) -> FeeSlip:
    bill_id = make_bill_id(f"2{n}1{period:03d}", company, 6)
    payment_id = make_payment_id(bill_id, amount, year, period)
    return FeeSlip(slip_id=100 + n, kind=kind, bill_id=bill_id, payment_id=payment_id, amount_rials=amount,
                   period=f"{period:02d}/140{year}", due_date=dt.date(2025, 10, 22),
                   description_fa=f"{FEE_KINDS[kind][0]} — دوره {period}", status="unpaid")


SLIPS = {spec[0]: _slip(*spec, n=i) for i, spec in enumerate(_KINDS, start=1)}


def _doc(slip: FeeSlip, lang: str = "fa") -> Document:
    return build_slip_document(slip, owner_name_masked=mask_person_name(OWNER), kiosk_id="kiosk-0042",
                               printed_at=PRINTED_AT, lang=lang)


def _camera_reads(image: Any, backend: str = "zxing") -> dict[str, str]:
    """What the kiosk's camera decoder reads off the paper: {format: text}."""
    frame = np.asarray(image.convert("L"))
    codes = FrameDecoder(backend, frame_budget_ms=None).decode(frame)
    return {c.format: c.text for c in codes}


def _texts(doc: Document) -> str:
    return "\n".join(str(v) for b in doc.blocks for v in vars(b).values() if isinstance(v, str))


# --- the round trip, every fee kind -------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SLIPS))
def test_every_fee_kind_prints_a_barcode_and_qr_that_scan_back_to_the_slip(kind: str) -> None:
    slip = SLIPS[kind]
    code = slip.bill_id.zfill(13) + slip.payment_id.zfill(13)
    assert slip_barcode(slip) == code and len(code) == 26
    paper = decode_escpos(slip_bytes(_doc(slip)))
    # the printer got a native Code 128 (GS k) and a native QR (GS ( k), both the 26 digits
    assert paper.barcodes == [code]
    assert paper.qr_codes == [code]
    assert "GS k barcode" in paper.commands and "GS ( k 2d-code" in paper.commands
    assert paper.unhandled == [] and paper.cuts == 1
    # the kiosk's camera decoder, on the paper the printer would produce
    for backend in ("zxing", "zbar"):
        read = _camera_reads(paper.image, backend)
        assert read == {"Code128": code, "QRCode": code}, backend
        for text in read.values():
            bill = parse_scanned(text)
            assert (bill.bill_id, bill.payment_id, bill.amount_rials) == (slip.bill_id, slip.payment_id,
                                                                         slip.amount_rials)
            assert int(bill.service_type) == 6


def test_english_slip_round_trips_too() -> None:
    slip = SLIPS["vehicle_tax"]
    doc = _doc(slip, "en")
    assert doc.direction == "ltr"
    paper = decode_escpos(slip_bytes(doc))
    assert paper.barcodes == [slip_barcode(slip)]
    assert _camera_reads(paper.image)["Code128"] == slip_barcode(slip)
    assert "one million one hundred fifty thousand rials" in _texts(doc)


def test_a_printer_without_native_codes_gets_the_same_bars_as_raster() -> None:
    slip = SLIPS["waste_charge"]
    job = render(_doc(slip), native_qr=False)
    assert [k for k, _ in job.parts if k not in ("image", "feed")] == []
    paper = decode_escpos(job_to_escpos_bytes(job))
    assert paper.barcodes == [] and paper.qr_codes == []  # nothing native: it is all pixels
    assert _camera_reads(paper.image) == {"Code128": slip_barcode(slip), "QRCode": slip_barcode(slip)}
    assert _camera_reads(render_full_raster(_doc(slip)))["Code128"] == slip_barcode(slip)


def test_the_real_driver_prints_a_slip_on_the_emulator() -> None:
    slip = SLIPS["business_tax"]
    doc = _doc(slip)

    async def scenario() -> EscposPrinter:
        dev = EscposPrinter("printer", connection="network", host=em.host, port=em.port, timeout=3)
        await dev.open()
        await dev.print_job(render(doc, width_dots=dev.profile.width_dots))
        await dev.close()
        return dev

    with NetworkPrinterEmulator() as em:
        dev = asyncio.run(asyncio.wait_for(scenario(), 30))
        em.wait_for_jobs(1, 5)
        receipt = em.receipts()[0]
    assert dev.counters["jobs"] == 1 and dev.counters["bytes"] == len(slip_bytes(doc))
    assert receipt.barcodes == [slip_barcode(slip)] and receipt.qr_codes == [slip_barcode(slip)]
    assert receipt.unhandled == []
    bill = parse_scanned(_camera_reads(receipt.image)["Code128"])
    assert (bill.bill_id, bill.payment_id, bill.amount_rials) == (slip.bill_id, slip.payment_id, slip.amount_rials)


def test_saved_png_is_the_printed_paper_and_kiosk_decode_reads_it(tmp_path: Path) -> None:
    slip = SLIPS["renovation_tax"]
    path = save_slip_png(_doc(slip), tmp_path / "slips" / "slip-101.png")
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    codes = FrameDecoder("zxing", frame_budget_ms=None).decode(load_image(path))
    assert {c.format: c.text for c in codes} == {"Code128": slip_barcode(slip), "QRCode": slip_barcode(slip)}


# --- what is on the slip ------------------------------------------------------------------------


def test_slip_reads_persian_but_ids_stay_ascii() -> None:
    slip = SLIPS["renovation_tax"]
    doc = _doc(slip)
    texts = _texts(doc)
    rows = {b.label: b.value for b in doc.blocks if type(b).__name__ == "Row"}
    assert rows["شناسه قبض"] == slip.bill_id and rows["شناسه پرداخت"] == slip.payment_id
    assert "۱٬۸۵۰٬۰۰۰" in rows["مبلغ"] and rows["مبلغ"].endswith("ریال")
    assert rows["مهلت پرداخت"] == "۱۴۰۴/۰۷/۳۰"  # 2025-10-22
    assert rows["نوع عوارض"] == "عوارض نوسازی"
    assert "به حروف: " + rials_in_words_fa(1_850_000) in texts
    assert "یک میلیون و هشتصد و پنجاه هزار ریال" in texts
    assert "رسید پرداخت نیست" in texts  # not proof of payment, said twice
    assert "فیش عوارض نوسازی" in texts and "شهرداری تهران" in texts
    barcode = next(b for b in doc.blocks if isinstance(b, Barcode))
    assert barcode.data == slip_barcode(slip) and slip_barcode(slip) in barcode.caption


def test_the_period_is_in_the_readers_language() -> None:
    """The back-office labels a period "شهریور ۱۴۰۴"; the English slip names the month in English."""
    slip = dataclasses.replace(SLIPS["waste_charge"], period="شهریور ۱۴۰۴")
    en = {b.label: b.value for b in _doc(slip, "en").blocks if type(b).__name__ == "Row"}
    fa = {b.label: b.value for b in _doc(slip, "fa").blocks if type(b).__name__ == "Row"}
    assert "Shahrivar 1404" in en.values() and "شهریور" not in "".join(en.values())
    assert "شهریور ۱۴۰۴" in fa.values()


def test_every_kind_has_a_persian_and_an_english_label() -> None:
    assert set(FEE_KINDS) == {"renovation_tax", "business_tax", "waste_charge", "vehicle_tax"}
    for kind in FEE_KINDS:
        assert fee_kind_label(kind, "fa") != fee_kind_label(kind, "en")
        assert fee_kind_label(kind, "fa") in _texts(_doc(SLIPS[kind]))


def test_a_paid_slip_says_so() -> None:
    paid = FeeSlip(**{**vars(SLIPS["waste_charge"]), "status": "paid"})
    assert "پیش‌تر پرداخت شده" in _texts(_doc(paid))
    assert "پیش‌تر پرداخت شده" not in _texts(_doc(SLIPS["waste_charge"]))


# --- what a slip never carries -----------------------------------------------------------------


def test_no_full_name_or_national_code_on_the_slip() -> None:
    slip = FeeSlip(**{**vars(SLIPS["renovation_tax"]),
                      "description_fa": f"عوارض نوسازی ملک {OWNER} کد ملی {NATIONAL_CODE}"})
    doc = _doc(slip)
    texts = _texts(doc)
    assert NATIONAL_CODE not in texts and "002****846" in texts
    assert "ز*** م***" in texts
    # the description is the back-office's; the payer line is only ever the masked name
    rows = {b.label: b.value for b in doc.blocks if type(b).__name__ == "Row"}
    assert rows["پرداخت‌کننده"] == "ز*** م***"
    for bad in (OWNER, f"ز*** {NATIONAL_CODE}", "Zahra Mohammadi"):
        with pytest.raises(SlipNotPrintable) as err:
            build_slip_document(slip, owner_name_masked=bad, kiosk_id="k", printed_at=PRINTED_AT)
        assert err.value.check == "unmasked_name"


def test_bad_slips_are_refused_before_anything_prints() -> None:
    slip = SLIPS["vehicle_tax"]
    with pytest.raises(SlipNotPrintable) as err:
        _doc(FeeSlip(**{**vars(slip), "amount_rials": slip.amount_rials + 1000}))
    assert err.value.check == "amount_mismatch"
    with pytest.raises(SlipNotPrintable) as err:
        _doc(FeeSlip(**{**vars(slip), "kind": "parking_fine"}))
    assert err.value.check == "kind"
    with pytest.raises(InvalidBill):
        _doc(FeeSlip(**{**vars(slip), "payment_id": slip.payment_id[:-1] + str((int(slip.payment_id[-1]) + 1) % 10)}))
    with pytest.raises(SlipNotPrintable):
        _doc(slip, "de")
    with pytest.raises(ValueError):  # a naive print time has no zone
        build_slip_document(slip, owner_name_masked="ز***", kiosk_id="k", printed_at=dt.datetime(2025, 1, 1))


# --- the Barcode layout block -------------------------------------------------------------------


def test_barcode_block_itf_prints_natively_and_reads_back() -> None:
    code = slip_barcode(SLIPS["waste_charge"])
    job = render(Document((Heading("ITF"), Barcode(code, "itf", module_dots=2))))
    native = [v for k, v in job.parts if k == "text"]
    assert len(native) == 1 and isinstance(native[0], BarcodeCommand) and native[0].data == code
    paper = decode_escpos(job_to_escpos_bytes(job))
    assert paper.barcodes == [code] and paper.unhandled == []
    assert _camera_reads(paper.image) == {"ITF": code}


def test_code128_command_packs_digit_pairs_in_code_set_c() -> None:
    cmd = str(render(Document((Barcode("0102991000"),))).parts[0][1])
    assert cmd.endswith("\x1dkI\x07{C\x01\x02\x63\x0a\x00\x1ba\x00")
    assert cmd.isascii()


@pytest.mark.parametrize("bad", [Barcode("123"), Barcode("12ab"), Barcode("12", "ean13"), Barcode("12", module_dots=1),
                                 Barcode("12" * 40, module_dots=6)])
def test_barcode_block_refuses_what_it_cannot_print(bad: Barcode) -> None:
    with pytest.raises(ValueError):
        render(Document((bad,)))


def test_a_58mm_roll_still_carries_a_readable_barcode() -> None:
    slip = SLIPS["business_tax"]
    paper = decode_escpos(slip_bytes(_doc(slip), width_dots=384), width_dots=384)
    assert paper.image.width == 384 and paper.barcodes == [slip_barcode(slip)]
    for backend in ("zxing", "zbar"):
        assert _camera_reads(paper.image, backend) == {"Code128": slip_barcode(slip), "QRCode": slip_barcode(slip)}


@pytest.mark.parametrize("profile", ["TM-T20II", "TM-T88V", "POS-5890", "TSP600"])
def test_the_native_barcode_reaches_the_wire_byte_for_byte_on_other_printer_profiles(profile: str) -> None:
    # python-escpos's text() may put its own code page select first; the GS k it must not touch
    from devices.printer.profile import load_profile

    slip = SLIPS["vehicle_tax"]
    width = load_profile(profile).width_dots
    job = render(_doc(slip), width_dots=width)
    (command,) = [v for k, v in job.parts if k == "text"]
    raw = job_to_escpos_bytes(job, profile)
    assert str(command).encode("ascii") in raw
    assert decode_escpos(raw, width_dots=width).barcodes == [slip_barcode(slip)]
