"""`kiosk sim pn532|printer|terminal|scanner`: one emulator on its real wire, until stopped.

Prints one JSON line saying where to reach it (a pseudo-terminal path or a loopback URL/port),
then runs until SIGINT/SIGTERM, so integrators can point other tools at it:
  kiosk sim pn532 [--no-card] [--uid HEX] [--balance RIALS] [--serial DIGITS] [--profile P]
                  [--cards FILE] [--baud N|0]     (--cards: keep the cards there across restarts)
  kiosk sim printer [--port N] [--paper ok|low|out] [--save-dir DIR]   (decoded receipts as PNG)
  kiosk sim terminal [--port N] [--mode approve|decline|…] [--state FILE] [--plain-http]
                                               (HTTPS; the line names the fingerprint to pin)
  kiosk sim scanner [--suffix crlf|cr|lf]      (each line typed on stdin is sent as one scan)

A bad value (an unknown mode, a UID that is not 8 or 14 hex digits, a negative balance, a port out
of range) is a usage error (exit 2); a port already in use is one line and exit 1.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, TypeVar

from devices.transit_card.demo import DEMO_CARD_BALANCE, DEMO_CARD_SERIAL, DEMO_CARD_UID
from devices.transit_card.layout import MAX_BALANCE_RIALS
from devices.transit_card.records import SERIAL_DIGITS, CardProfile
from kiosk.errors import KioskError

UID_HEX_DIGITS = (8, 14)  # a MIFARE Classic 1K UID: 4 bytes (single size) or 7 (double size)


class SimStartError(KioskError):
    """An emulator could not take its wire (a port in use, no pseudo-terminals left)."""

    key = "sim.start"
    fa = "شبیه‌ساز {kind} راه‌اندازی نشد: {reason}"
    en = "the {kind} simulator could not start: {reason}"


def _uid(text: str) -> str:
    digits = text.strip().lower()
    if len(digits) not in UID_HEX_DIGITS or any(c not in "0123456789abcdef" for c in digits):
        raise argparse.ArgumentTypeError(f"{text!r} is not a card UID (8 hex digits for a 4-byte UID or 14 for "
                                         f"a 7-byte one, e.g. {DEMO_CARD_UID})")
    return digits


def _serial(text: str) -> str:
    if len(text) != SERIAL_DIGITS or not text.isdigit() or not text.isascii():
        raise argparse.ArgumentTypeError(f"{text!r} is not a card serial ({SERIAL_DIGITS} digits, e.g. {DEMO_CARD_SERIAL})")
    return text


def _balance(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of rials") from None
    if not 0 <= value <= MAX_BALANCE_RIALS:
        raise argparse.ArgumentTypeError(f"{value} is outside 0..{MAX_BALANCE_RIALS} rials (a card value block)")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def _port(text: str) -> int:
    value = _non_negative(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (0..65535; 0 picks a free one)")
    return value


def _terminal_mode(text: str) -> str:
    # the simulator owns its list of modes; asked only when --mode is given
    from devices.terminal.simulator import MODES

    if text.removeprefix("once-") not in MODES:
        raise argparse.ArgumentTypeError(f"unknown mode {text!r} (choose from {', '.join(MODES)}, or once-MODE)")
    return text


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("sim", parents=[common], help="run one device emulator on its real wire",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", metavar="DEVICE", required=True)
    pn = kinds.add_parser("pn532", help="virtual PN532 on a pseudo-terminal, with a demo card")
    pn.add_argument("--no-card", action="store_true", help="start with an empty field")
    pn.add_argument("--uid", type=_uid, default=DEMO_CARD_UID, help="demo card UID (8 or 14 hex digits)")
    pn.add_argument("--balance", type=_balance, default=DEMO_CARD_BALANCE,
                    help="a new demo card's balance in rials (a card kept in --cards keeps its own)")
    pn.add_argument("--serial", type=_serial, default=DEMO_CARD_SERIAL, help="a new demo card's 10-digit serial")
    pn.add_argument("--profile", choices=[str(p) for p in CardProfile], default=str(CardProfile.REGULAR),
                    help="a new demo card's profile")
    pn.add_argument("--cards", help="keep the virtual cards in this JSON file (loaded if it exists)")
    pn.add_argument("--baud", type=_non_negative, default=115200, help="pace output at this baud rate (0: no pacing)")
    pr = kinds.add_parser("printer", help="ESC/POS network printer (port 9100 protocol) on loopback")
    pr.add_argument("--port", type=_port, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    pr.add_argument("--paper", choices=["ok", "low", "out"], default="ok")
    pr.add_argument("--save-dir", help="save each received job, decoded, as a PNG here")
    te = kinds.add_parser("terminal", help="nexo Sale-to-POI payment terminal on loopback HTTPS")
    te.add_argument("--port", type=_port, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    te.add_argument("--mode", type=_terminal_mode, default="approve",
                    help="approve, decline, timeout, lost-response, busy, malformed, or once-MODE")
    te.add_argument("--state", help="ledger file (kept across restarts); its TLS certificate is kept beside it")
    te.add_argument("--plain-http", action="store_true",
                    help="serve plain HTTP instead of HTTPS (development only; the driver then needs allow_plain_http)")
    sc = kinds.add_parser("scanner", help="serial barcode scanner on a pseudo-terminal; stdin lines are scans")
    sc.add_argument("--suffix", choices=["crlf", "cr", "lf"], default="crlf")
    p.set_defaults(func=handle)


def _announce(info: dict[str, Any]) -> None:
    print(json.dumps(info, ensure_ascii=False), flush=True)


T = TypeVar("T")


def _start(kind: str, start: Callable[[], T], port: int = 0) -> T:
    """Start an emulator; a wire it cannot take is a one-line failure, not a traceback."""
    try:
        return start()
    except OSError as exc:
        where = f"port {port}: " if port else ""
        raise SimStartError(f"{kind}: {exc}", kind=kind, reason=f"{where}{exc.strerror or exc}") from exc


#: set by SIGINT/SIGTERM; the handlers are installed before anything starts (see handle), so
#: a signal that arrives right after the "ready" line is announced still stops cleanly
_STOP = threading.Event()


def _run_until_stopped(stop: Callable[[], None], work: Callable[[threading.Event], None] | None = None) -> int:
    done = _STOP
    try:
        if work is not None:
            threading.Thread(target=work, args=(done,), daemon=True).start()
        while not done.wait(0.5):
            pass
    finally:
        stop()
    return 0


def _pn532(args: argparse.Namespace) -> int:
    from devices.base import DeviceError
    from devices.pn532.virtual import VirtualPN532
    from devices.transit_card.demo import demo_card, describe_virtual_card

    try:
        reader = VirtualPN532(baud=args.baud or None, cards_path=args.cards)
    except DeviceError as exc:  # a cards file that is not ours or is damaged
        raise SimStartError(str(exc), kind="pn532", reason=str(exc)) from exc
    path = _start("pn532", reader.start)
    card = None
    if not args.no_card:
        # a card kept in --cards comes back as it was left (a torn write included)
        card = reader.cards.get(args.uid) or demo_card(args.uid, args.balance, args.serial, args.profile)
        reader.place(card)
    _announce({"sim": "pn532", "device": path, "baud": args.baud, "cards": args.cards,
               "card": None if card is None else describe_virtual_card(card)})
    return _run_until_stopped(reader.stop)


def _printer(args: argparse.Namespace) -> int:
    from devices.printer.emulator import NetworkPrinterEmulator

    emulator = NetworkPrinterEmulator(port=args.port)
    host, port = _start("printer", emulator.start, args.port)
    emulator.set_paper(args.paper)
    _announce({"sim": "printer", "host": host, "port": port, "paper": args.paper})

    def save(done: threading.Event) -> None:
        saved = 0
        target = Path(args.save_dir)
        target.mkdir(parents=True, exist_ok=True)
        while not done.is_set():
            receipts = emulator.receipts()
            for receipt in receipts[saved:]:
                saved += 1
                receipt.image.save(target / f"receipt-{saved:04d}.png")
                _announce({"saved": str(target / f"receipt-{saved:04d}.png"), "qr": receipt.qr_codes})
            done.wait(0.5)

    return _run_until_stopped(emulator.stop, save if args.save_dir else None)


def _terminal(args: argparse.Namespace) -> int:
    from devices.terminal.simulator import NexoTerminalSimulator

    from devices.terminal.tls import load_or_generate

    tls = None
    if not args.plain_http:
        # HTTPS as a real terminal serves it; the certificate lives beside the ledger (or in
        # a temporary dir) and its fingerprint is announced for the driver's tls_fingerprint
        tls_dir = Path(args.state).parent / "terminal-tls" if args.state else Path(tempfile.mkdtemp(prefix="nexo-sim-tls-"))
        tls = load_or_generate(tls_dir, common_name="SIM-POI-1")
    sim = NexoTerminalSimulator(port=args.port, mode=args.mode, state_path=Path(args.state) if args.state else None,
                                tls=tls)
    url = _start("terminal", sim.start, args.port)
    base = url.removesuffix("nexo")
    _announce({"sim": "terminal", "url": url, "mode": sim.mode, "poi_id": sim.poi_id,
               "tls_fingerprint": tls.fingerprint if tls else None,
               "control": {"mode": base + "sim/mode", "ledger": base + "sim/ledger"}})
    return _run_until_stopped(sim.stop)


def _scanner(args: argparse.Namespace) -> int:
    from devices.scanner.emulator import SerialScannerEmulator

    suffix = {"crlf": "\r\n", "cr": "\r", "lf": "\n"}[args.suffix]
    emulator = SerialScannerEmulator(suffix=suffix)
    path = _start("scanner", emulator.start)
    _announce({"sim": "scanner", "device": path, "suffix": args.suffix})

    def feed(done: threading.Event) -> None:
        for line in sys.stdin:
            if line.strip():
                emulator.send(line.strip())
        # stdin closed: keep running until a signal, as the other emulators do

    return _run_until_stopped(emulator.stop, feed)


def handle(args: argparse.Namespace) -> int:
    _STOP.clear()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: _STOP.set())
    return {"pn532": _pn532, "printer": _printer, "terminal": _terminal, "scanner": _scanner}[args.kind](args)
