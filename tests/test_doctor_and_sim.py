"""`kiosk doctor` and `kiosk sim`: run as a technician or integrator would, as real processes,
and reached over each emulator's real wire by the real drivers (and python-escpos itself)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from escpos.printer import Network

KIOSK = [sys.executable, "-m", "kiosk.cli"]


def test_doctor_on_the_demo_configuration_finds_every_device_class_online(tmp_path: Path) -> None:
    out = subprocess.run(KIOSK + ["demo", "--script", "doctor", "--json", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {r["class"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"PaymentTerminal", "ReceiptPrinter", "Scanner", "CardReader", "CardDispenser"}
    for row in rows.values():
        assert row["state"] == "online" and row["health"]["ok"], row
        assert row["simulated"] is True, row  # the demo's devices are all simulators
    assert rows["CardReader"]["identity"]["firmware"] == "1.6"
    assert rows["ReceiptPrinter"]["consumables"]["paper"] == "ok"


def test_doctor_reports_a_device_that_is_not_there_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "kiosk.json").write_text(json.dumps({
        "kiosk_id": "kiosk-t", "devices": [
            {"name": "printer", "type": "escpos", "connection": "network", "host": "127.0.0.1", "port": 9},
            {"name": "dispenser", "type": "dispenser-sim"},
        ]}))
    out = subprocess.run(KIOSK + ["doctor", "--json", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["printer"]["state"] == "offline" and rows["printer"]["last_error"]
    assert rows["dispenser"]["state"] == "online"


def test_doctor_says_which_devices_are_simulators_in_the_table_and_json(tmp_path: Path) -> None:
    # a simulator by its driver type, one marked in its entry (a real driver aimed at
    # `kiosk sim`), and real hardware: only the first two may be called simulators
    (tmp_path / "kiosk.json").write_text(json.dumps({
        "kiosk_id": "kiosk-t", "devices": [
            {"name": "dispenser", "type": "dispenser-sim"},
            {"name": "sim_printer", "type": "escpos", "connection": "network", "host": "127.0.0.1",
             "port": 9, "simulator": True},
            {"name": "printer", "type": "escpos", "connection": "network", "host": "127.0.0.1", "port": 9},
        ]}))
    out = subprocess.run(KIOSK + ["doctor", "--json", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert {n: r["simulated"] for n, r in rows.items()} == {"dispenser": True, "sim_printer": True, "printer": False}
    table = subprocess.run(KIOSK + ["doctor", "--data-dir", str(tmp_path)],
                           capture_output=True, text=True, timeout=120)
    lines = {line.split()[0]: line for line in table.stdout.splitlines() if line and not line.startswith(" ")}
    assert "simulator" in lines["dispenser"] and "simulator" in lines["sim_printer"]
    assert "simulator" not in lines["printer"]


class Sim:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(KIOSK + ["sim", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read() if self.proc.stderr else ""
        self.info: dict[str, Any] = json.loads(line)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)


@pytest.fixture
def sims() -> Iterator[list[Sim]]:
    started: list[Sim] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def test_sim_printer_answers_python_escpos_and_renders_what_it_sends(sims: list[Sim], tmp_path: Path) -> None:
    sim = Sim("printer", "--paper", "low", "--save-dir", str(tmp_path))
    sims.append(sim)
    printer = Network(sim.info["host"], sim.info["port"], timeout=5)
    printer.open()
    assert printer.is_online() is True
    assert printer.paper_status() == 1  # near end
    printer.text("City Kiosk\n")
    printer.qr("CK1:test-payload", native=True, size=6)
    printer.cut()
    printer.close()
    assert sim.proc.stdout is not None
    saved = json.loads(sim.proc.stdout.readline())
    assert saved["qr"] == ["CK1:test-payload"] and Path(saved["saved"]).exists()
    assert sim.stop() == 0


def test_sim_pn532_serves_the_demo_card_to_the_real_driver(sims: list[Sim]) -> None:
    from devices.pn532.driver import PN532Reader

    sim = Sim("pn532")
    sims.append(sim)

    async def read_uid() -> str:
        reader = PN532Reader("reader", port=sim.info["device"])
        await reader.open()
        try:
            return (await reader.wait_for_card(timeout=5)).uid
        finally:
            await reader.close()

    assert asyncio.run(read_uid()) == sim.info["card"]["uid"]
    assert sim.stop() == 0


def test_sim_terminal_takes_a_payment_from_the_nexo_driver(sims: list[Sim], tmp_path: Path) -> None:
    from devices.contracts import PaymentOutcome
    from devices.terminal.driver import NexoTerminal

    sim = Sim("terminal", "--state", str(tmp_path / "ledger.sqlite3"))
    sims.append(sim)

    async def pay() -> Any:
        assert sim.info["url"].startswith("https://")  # served as a real terminal serves it
        term = NexoTerminal("terminal", url=sim.info["url"], sale_id="kiosk-t", poi_id=sim.info["poi_id"],
                            tls_fingerprint=sim.info["tls_fingerprint"])
        await term.open()
        try:
            return await term.pay(term.new_ref("kiosk-t-1"), 17_000, timeout=10)
        finally:
            await term.close()

    result = asyncio.run(pay())
    assert result.outcome == PaymentOutcome.APPROVED and result.masked_pan.count("*") >= 6
    assert sim.stop() == 0


def test_sim_scanner_sends_each_stdin_line_as_a_scan(sims: list[Sim]) -> None:
    from devices.scanner.serial_scanner import SerialScanner

    sim = Sim("scanner", "--suffix", "cr")
    sims.append(sim)

    async def scan() -> str:
        scanner = SerialScanner("scanner", port=sim.info["device"], suffix="CR")
        await scanner.open()
        try:
            assert sim.proc.stdin is not None
            sim.proc.stdin.write("77483178001420000001770160\n")
            sim.proc.stdin.flush()
            return (await scanner.read(timeout=5)).text
        finally:
            await scanner.close()

    assert asyncio.run(scan()) == "77483178001420000001770160"
    assert sim.stop() == 0


