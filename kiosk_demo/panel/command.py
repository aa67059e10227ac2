"""`kiosk demo --panel [--panel-port N]`: the embedded environment (back-office, terminal,
printer, scanner and card reader simulators) kept running with the device simulator panel
until Ctrl-C (or SIGTERM). Prints the panel's URL and where each simulator listens, so a kiosk
pointed at them (or a person with the page open) can use them. Exit 0 on Ctrl-C, 1 when the
data dir is taken or the port is in use, 2 for a bad port number."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from kiosk.errors import KioskError


def run_panel(args: argparse.Namespace) -> int:
    from kiosk.data_lock import DataLock
    from kiosk.paths import data_dir
    from kiosk_demo.environment import demo_environment
    from kiosk_demo.panel.server import PanelServer

    port = getattr(args, "panel_port", 0)
    if not 0 <= port <= 65535:
        print(f"kiosk demo: --panel-port {port} is not a port number (0-65535, 0: any free port)", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = _on_signals(stop)
    try:
        data = data_dir(args.data_dir, writable=True)
        with DataLock(data), demo_environment(data, terminal_mode=args.terminal_answer,
                                               terminal_latency_s=args.terminal_latency) as env:
            panel = PanelServer(env, port=port)
            try:
                url = panel.start()
            except OSError as exc:
                print(f"kiosk demo: cannot serve the panel on 127.0.0.1:{port}: {exc.strerror or exc}",
                      file=sys.stderr)
                return 1
            try:
                _print_addresses(url, env)
                while not stop.wait(0.5):
                    pass
            finally:
                panel.stop()
    except KioskError as exc:
        print(f"kiosk demo: {exc.message('en')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        _restore(previous)
    print("panel stopped", flush=True)
    return 0


def _print_addresses(url: str, env: Any) -> None:
    out = sys.stdout
    out.write(f"panel: {url}\n")
    out.write("پنل شبیه‌سازها در نشانی بالا؛ برای پایان Ctrl-C / the device simulator panel is at the URL "
              "above; Ctrl-C to stop\n")
    devices = {d.name: d.options for d in env.settings.devices}
    printer = devices.get("printer", {})
    out.write(f"  back-office   {env.backoffice.url}\n"
              f"  terminal      {env.terminal.url}\n"
              f"  printer       {printer.get('host')}:{printer.get('port')} (ESC/POS, raw TCP)\n"
              f"  scanner       {env.scanner.port}\n"
              f"  card reader   {env.card_reader.port} (PN532, HSU)\n"
              f"  data dir      {env.data_dir}\n")
    out.flush()


def _on_signals(stop: threading.Event) -> dict[int, Any]:
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    return previous


def _restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
