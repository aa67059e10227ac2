"""Protocol tests: the real EscposPrinter driver and python-escpos against the ESC/POS emulators
over a real loopback socket, a pseudo-terminal and a file; jobs decoded back into paper."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from escpos.printer import Network

from devices.base import DeviceOffline, DeviceState, HardwareError, MediaError
from devices.registry import driver_for
from devices.contracts import PaperState
from devices.printer.decoder import decode_escpos
from devices.printer.emulator import NetworkPrinterEmulator, PtyPrinterEmulator
from devices.printer.escpos_driver import EscposPrinter, job_to_escpos_bytes
from kiosk.receipts.layout import QR, Document, Feed, Heading, Row, Separator, Text, ltr, render

PAYLOAD = "https://verify.kiosk.tehran.ir/r?tx=TX-20240611-000123&amt=170000&sig=" + "Ab3dEf9h" * 8


def persian_receipt() -> Document:
    return Document((
        Heading("شهرداری تهران"),
        Text("رسید پرداخت عوارض", align="center"),
        Separator(),
        Row("شناسه قبض", "7748317800142"),
        Row("شناسه پرداخت", "1770160"),
        Row("مبلغ", "۱۷٬۰۰۰ ریال"),
        Text(f"کد رهگیری {ltr('TX-20240611-000123')} ثبت شد"),
        Feed(1),
        QR(PAYLOAD, caption="برای بررسی اصالت رسید، کد را اسکن کنید"),
    ))


@pytest.fixture
def emulator() -> Any:
    em = NetworkPrinterEmulator()
    em.start()
    yield em
    em.stop()


def network_printer(em: NetworkPrinterEmulator) -> EscposPrinter:
    return EscposPrinter("printer", connection="network", host=em.host, port=em.port, timeout=3)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def qr_texts(image: Any) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(image.convert("L"))]


@pytest.mark.parametrize(("paper", "online", "status"), [("ok", True, 2), ("low", True, 1), ("out", False, 0)])
def test_python_escpos_network_reads_emulator_paper_and_online_status(emulator, paper, online, status) -> None:
    emulator.set_paper(paper)
    printer = Network(emulator.host, emulator.port, timeout=3)
    try:
        assert printer.is_online() is online
        assert printer.paper_status() == status
    finally:
        printer.close()


def test_python_escpos_sees_offline_printer_and_open_cover(emulator) -> None:
    emulator.set_cover_open(True)
    printer = Network(emulator.host, emulator.port, timeout=3)
    try:
        assert printer.is_online() is False
        assert printer.paper_status() == 2
    finally:
        printer.close()


def test_persian_receipt_prints_native_qr_and_cut_at_profile_width(emulator) -> None:
    async def scenario() -> EscposPrinter:
        dev = network_printer(emulator)
        await dev.open()
        await dev.print_job(render(persian_receipt(), width_dots=dev.profile.width_dots))
        return dev

    dev = run(scenario())
    emulator.wait_for_jobs(1, 5)
    receipt = emulator.receipts()[0]
    assert receipt.image.width == dev.profile.width_dots == 576
    assert receipt.qr_codes == [PAYLOAD]
    assert "GS ( k 2d-code" in receipt.commands  # native QR, not a raster picture of one
    assert qr_texts(receipt.image) == [PAYLOAD]
    assert receipt.cuts == 1
    assert dev.counters["jobs"] == 1 and dev.counters["cuts"] == 1
    assert dev.counters["bytes"] == len(job_to_escpos_bytes(render(persian_receipt()), dev.profile))
    assert dev.state == DeviceState.ONLINE
    receipt.image.save("/tmp/printer_receipt_decoded.png")


def test_job_is_refused_when_paper_is_out_and_nothing_is_sent(emulator) -> None:
    async def scenario() -> EscposPrinter:
        dev = network_printer(emulator)
        await dev.open()
        emulator.set_paper("out")
        with pytest.raises(MediaError) as err:
            await dev.print_job(render(persian_receipt()))
        assert err.value.error_code == "noMedia"
        return dev

    dev = run(scenario())
    assert emulator.jobs == []
    assert dev.consumables["paper"] == "out"
    assert dev.counters["jobs"] == 0 and dev.counters["faults"] >= 1


def test_job_is_refused_when_printer_is_offline_and_nothing_is_sent(emulator) -> None:
    async def scenario() -> EscposPrinter:
        dev = network_printer(emulator)
        await dev.open()
        emulator.set_online(False)
        with pytest.raises(DeviceOffline):
            await dev.print_job(render(persian_receipt()))
        return dev

    dev = run(scenario())
    assert emulator.jobs == []
    assert dev.state == DeviceState.OFFLINE


def test_connection_dropped_mid_job_is_hardware_error_and_next_job_restores_online(emulator) -> None:
    events: list[dict] = []

    async def scenario() -> EscposPrinter:
        dev = network_printer(emulator)
        dev.subscribe(lambda e: events.append(e.changes))
        await dev.open()
        emulator.fail_after_bytes(2000)
        with pytest.raises(HardwareError) as err:
            await dev.print_job(render(persian_receipt()))
        assert err.value.error_code == "connectionLost"
        assert dev.state == DeviceState.HARDWARE_ERROR
        assert dev.counters["faults"] == 1
        await dev.print_job(render(persian_receipt()))
        return dev

    dev = run(scenario())
    assert len(emulator.dropped) == 1 and len(emulator.dropped[0]) >= 2000
    assert dev.state == DeviceState.ONLINE
    assert {"state": "hardwareError"} in events
    assert events[-1] == {"state": "online"}
    assert dev.counters["jobs"] == 1
    emulator.wait_for_jobs(1, 5)  # the emulator records a job when its connection ends, on its own thread
    assert emulator.receipts()[0].qr_codes == [PAYLOAD]


def test_unreachable_printer_goes_offline_and_poll_brings_it_back(emulator) -> None:
    async def scenario() -> None:
        dev = network_printer(emulator)
        await dev.open()
        emulator.stop()
        assert await dev.poll_status() == PaperState.UNKNOWN
        assert dev.state == DeviceState.OFFLINE
        with pytest.raises(DeviceOffline):
            await dev.print_job(render(persian_receipt()))
        emulator.start()  # same port: the printer is back
        assert await dev.poll_status() == PaperState.OK
        assert dev.state == DeviceState.ONLINE

    run(scenario())


def test_paper_low_is_emitted_once_while_it_stays_low(emulator) -> None:
    events: list[dict] = []

    async def scenario() -> None:
        dev = network_printer(emulator)
        await dev.open()
        dev.subscribe(lambda e: events.append(e.changes))
        emulator.set_paper("low")
        for _ in range(3):
            assert await dev.poll_status() == PaperState.LOW
        await dev.print_job(render(persian_receipt()))  # still prints on a near-end roll
        await dev.poll_status()

    run(scenario())
    assert [e for e in events if "paper" in e] == [{"paper": "low"}]
    assert len(emulator.jobs) == 1


def test_paper_running_out_during_the_job_is_a_media_error(emulator) -> None:
    async def scenario() -> EscposPrinter:
        dev = network_printer(emulator)
        await dev.open()
        emulator.paper_out_after_bytes(3000)  # the roll ends under the job, after the check
        with pytest.raises(MediaError) as err:
            await dev.print_job(render(persian_receipt()))
        assert err.value.error_code == "noMedia"
        return dev

    dev = run(scenario())
    assert dev.state == DeviceState.USER_ERROR
    assert dev.consumables["paper"] == "out"
    assert dev.counters["jobs"] == 0 and dev.counters["faults"] == 1


def test_file_connection_writes_bytes_that_decode_to_the_same_receipt(tmp_path: Path) -> None:
    out = tmp_path / "lp0"

    async def scenario() -> EscposPrinter:
        dev = driver_for("escpos")("printer", connection="file", devfile=str(out))
        await dev.open()
        assert await dev.poll_status() == PaperState.UNKNOWN  # a file cannot answer DLE EOT
        await dev.print_job(render(persian_receipt()))
        await dev.close()
        return dev

    dev = run(scenario())
    data = out.read_bytes()
    assert data == job_to_escpos_bytes(render(persian_receipt()), dev.profile)
    receipt = decode_escpos(data)
    assert receipt.qr_codes == [PAYLOAD] and receipt.cuts == 1
    assert qr_texts(receipt.image) == [PAYLOAD]
    assert dev.capabilities["status"] is False


def test_serial_printer_on_a_pty_answers_status_and_its_job_decodes() -> None:
    em = PtyPrinterEmulator()
    em.start()
    try:
        async def scenario() -> EscposPrinter:
            dev = EscposPrinter("printer", connection="serial", devfile=em.devfile, baudrate=115200)
            await dev.open()
            assert dev.consumables["paper"] == "ok"
            await dev.print_job(render(persian_receipt()))
            em.set_paper("out")
            with pytest.raises(MediaError):
                await dev.print_job(render(persian_receipt()))
            await dev.close()
            return dev

        dev = run(scenario())
        jobs = em.wait_for_jobs(1, 5)
        assert len(jobs) == 1
        receipt = decode_escpos(jobs[0])
        assert receipt.qr_codes == [PAYLOAD] and receipt.cuts == 1
        assert qr_texts(receipt.image) == [PAYLOAD]
        assert dev.counters["jobs"] == 1
    finally:
        em.stop()


def test_driver_identity_and_capabilities_come_from_the_profile() -> None:
    dev = EscposPrinter("printer", connection="network", host="127.0.0.1", profile="TM-T88V")
    assert dev.identity.vendor == "Epson" and dev.identity.model == "TM-T88V"
    assert dev.capabilities["width_dots"] == 512 and dev.capabilities["native_qr"] is True


def test_unknown_connection_and_profile_are_typed_errors() -> None:
    from devices.base import InvalidData

    with pytest.raises(InvalidData):
        EscposPrinter("printer", connection="bluetooth")
    with pytest.raises(InvalidData):
        EscposPrinter("printer", connection="file", profile="No-Such-Printer")


def test_profile_without_native_qr_gets_a_raster_qr_that_still_scans() -> None:
    data = job_to_escpos_bytes(render(persian_receipt()), "simple")
    receipt = decode_escpos(data)
    assert "GS ( k 2d-code" not in receipt.commands
    assert receipt.qr_codes == []
    assert qr_texts(receipt.image) == [PAYLOAD]


def test_our_raster_command_is_byte_identical_to_python_escpos_bit_image_raster() -> None:
    from escpos.printer import Dummy

    from devices.printer.escpos_driver import raster_command
    from kiosk.receipts.layout import Document, Row, Text, render

    job = render(Document((Text("رسید پرداخت عوارض", align="center"), Row("شناسه قبض", "7748317800142"))))
    images = [value for kind, value in job.parts if kind == "image"]
    assert images
    for image in images:
        reference = Dummy(profile="TM-T20II")
        reference.image(image, impl="bitImageRaster", center=False)
        assert raster_command(image) == reference.output
