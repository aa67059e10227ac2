"""The embedded demo environment: a back-office on SQLite, a nexo payment terminal simulator
and an ESC/POS network printer emulator, all on loopback, with their state under the data dir
so a crashed demo is recovered by the next one against the same terminal ledger and back-office.

Used by `kiosk demo` (and `make run`) only: the embedded environment is opt-in, so `kiosk
recover` or `kiosk doctor` on a data dir without kiosk.json never starts simulators that
would answer for a real terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from backoffice.seed import seed_demo
from backoffice.municipal import LookupLimits
from backoffice.server import RunningServer, serve_in_thread
from devices.contracts import DeviceConfig
from devices.dispenser.simulator import link_field, unlink_field
from devices.pn532.virtual import VirtualPN532
from devices.printer.emulator import NetworkPrinterEmulator
from devices.scanner.emulator import SerialScannerEmulator
from devices.terminal.simulator import NexoTerminalSimulator
from devices.terminal.tls import load_or_generate
from devices.transit_card.demo import DEMO_CARD_UID, demo_card
from devices.transit_card.keys import DEMO_MASTER_KEY
from kiosk.settings import KioskSettings

#: the demo looks its one demo owner up on every run: limits a person trying the demo again and
#: again does not hit (a city's back-office keeps the defaults, backoffice.municipal.LookupLimits)
DEMO_LOOKUP_LIMITS = LookupLimits(per_kiosk=600, kiosk_window_s=60, per_identifier=200, identifier_window_s=600)
KIOSK_ID = "kiosk-demo-01"


@dataclass
class DemoEnvironment:
    data_dir: Path
    settings: KioskSettings
    backoffice: RunningServer
    terminal: NexoTerminalSimulator
    printer: NetworkPrinterEmulator
    scanner: SerialScannerEmulator
    card_reader: VirtualPN532

    @property
    def backoffice_db_url(self) -> str:
        return _db_url(self.data_dir)


def _db_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'backoffice.sqlite3'}"


def _demo_token(data_dir: Path) -> str:
    """The demo kiosk's back-office credential, made once and kept (0600) in the data dir."""
    path = data_dir / "demo-credentials.json"
    if path.exists():
        return str(json.loads(path.read_text())["token"])
    token = secrets.token_urlsafe(24)
    tmp = path.with_suffix(".tmp")
    # private from the first byte: made 0600 by open() (O_EXCL: never a leftover file's mode)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps({"kiosk_id": KIOSK_ID, "token": token}))
    tmp.replace(path)
    return token


def _demo_master_key(data_dir: Path) -> Path:
    """The public demo master key (the demo cards are personalised with it), in the file a
    deployment keeps its own in (mode 0600)."""
    path = data_dir / "keys" / "transit-master.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(DEMO_MASTER_KEY.hex())
    return path


@contextlib.contextmanager
def demo_environment(data_dir: Path, *, extra_devices: tuple[DeviceConfig, ...] = (),
                     terminal_mode: str = "approve", terminal_latency_s: float = 0.0
                     ) -> Iterator[DemoEnvironment]:
    """Start the embedded servers and emulators; yield settings that point the kiosk at them.
    `terminal_mode` is the simulator's standing answer (approve, decline, timeout, …) and
    `terminal_latency_s` how long it takes to answer a payment, so waits can be seen."""
    token = _demo_token(data_dir)
    db_url = _db_url(data_dir)
    with contextlib.ExitStack() as stack:
        backoffice = stack.enter_context(serve_in_thread(db_url, lookup_limits=DEMO_LOOKUP_LIMITS))
        seed_demo(db_url, {KIOSK_ID: token})
        # HTTPS with a pinned certificate, as a real terminal's local API is served; the
        # certificate is kept in the data dir so the pin stays valid across demo runs
        tls = load_or_generate(data_dir / "terminal-tls", common_name="SIM-POI-1")
        terminal = NexoTerminalSimulator(mode=terminal_mode, latency_s=terminal_latency_s,
                                         state_path=data_dir / "terminal-ledger.sqlite3", tls=tls)
        terminal_url = terminal.start()
        stack.callback(terminal.stop)
        printer = NetworkPrinterEmulator()
        host, port = printer.start()
        stack.callback(printer.stop)
        scanner = SerialScannerEmulator(suffix="\r\n")
        scanner_port = scanner.start()
        stack.callback(scanner.stop)
        # the virtual cards live in the data dir, as the terminal's ledger does: a crash and a
        # restart meet the same card, a torn write included
        card_reader = VirtualPN532(baud=115200, cards_path=data_dir / "cards.json")
        reader_port = card_reader.start()
        card_reader.place(card_reader.cards.get(DEMO_CARD_UID) or demo_card())
        stack.callback(card_reader.stop)
        # the card dispenser's read position is this reader's field (the virtual link): a card
        # it dispenses is a blank card in the field, one it ejects or captures leaves it; its
        # counts and the card at its read position are kept in the data dir, as the cards are
        link_field(reader_port, card_reader)
        stack.callback(unlink_field, reader_port)
        devices = (
            DeviceConfig("terminal", "nexo-http", {"url": terminal_url, "sale_id": KIOSK_ID,
                                                   "poi_id": "SIM-POI-1", "tls_fingerprint": tls.fingerprint}),
            DeviceConfig("printer", "escpos", {"connection": "network", "host": host, "port": port}),
            DeviceConfig("scanner", "serial-scanner", {"port": scanner_port, "suffix": "\r\n"}),
            DeviceConfig("card_reader", "pn532-uart", {"port": reader_port}),
            DeviceConfig("dispenser", "dispenser-sim", {"stacker": 50, "field": reader_port,
                                                        "state_path": str(data_dir / "dispenser.json")}),
            *extra_devices,
        )
        settings = KioskSettings(
            kiosk_id=KIOSK_ID, backoffice_url=backoffice.url, backoffice_token=token,
            devices=devices, pay_timeout_s=10.0, status_timeout_s=3.0, extra={"embedded": True},
            card_wait_s=10.0, card_return_wait_s=10.0,
            transit_master_key_file=str(_demo_master_key(data_dir)),
        )
        yield DemoEnvironment(data_dir, settings, backoffice, terminal, printer, scanner, card_reader)
