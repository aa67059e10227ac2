"""`kiosk demo --headless --script NAME`: a scripted citizen through a real flow, against the
embedded back-office, the nexo terminal simulator and the ESC/POS printer emulator.
Recovery runs first, so a data dir left by a crashed run is resolved and reported.

The demo owns its data dir while it runs (kiosk.data_lock): a second demo or a `recover` on
the same dir is refused with the first one's pid (exit 1). `--terminal-latency 1.5` makes the
simulated terminal take that long to answer, `--terminal-answer` chooses its answer."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from kiosk.errors import KioskError
from kiosk.faults import UnknownFaultPoint
from kiosk.cli import kiosk_command
from kiosk.paths import data_dir
from kiosk_demo.municipal_scripts import MUNICIPAL_SCRIPTS
from kiosk_demo.transit_scripts import TRANSIT_SCRIPTS

SCRIPTS = {
    "pay-fee": "scan a fee slip's barcode (typed ids when no scanner), confirm, pay, receipt",
    "pay-fee-manual": "type the bill and payment ids on the keypad, confirm, pay, receipt",
    "pay-fee-declined": "the bank declines the card: nothing is charged",
    "pay-fee-cancel": "the citizen looks the slip up, then cancels: nothing is charged",
}
SCRIPTS.update({name: t.description for name, t in TRANSIT_SCRIPTS.items()})
SCRIPTS.update({name: t.description for name, t in MUNICIPAL_SCRIPTS.items()})
#: not citizens: the technician's commands, run against the embedded simulators
TOOLS = {
    "recover": "resolve the data dir's open transactions against the embedded environment",
    "doctor": "open every simulated device and run its health check",
}


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("demo", parents=[common], help="run a scripted citizen through a flow",
                       description=__doc__)
    p.add_argument("--headless", action="store_true", help="no screen: a scripted UI (the only mode until the touch UI lands)")
    p.add_argument("--script", default="pay-fee", choices=sorted({**SCRIPTS, **TOOLS}))
    p.add_argument("--json", action="store_true", help="print only the JSON summary")
    p.add_argument("--terminal-latency", type=_seconds, default=0.0, metavar="SECONDS",
                   help="how long the simulated terminal takes to answer a payment (default 0)")
    p.add_argument("--terminal-answer", choices=TERMINAL_ANSWERS, default="approve",
                   help="what the simulated terminal answers every payment (default approve)")
    # the device simulator panel (kiosk_demo/panel, docs/panel.md): no citizen, the simulators stay up
    p.add_argument("--panel", action="store_true", help="keep the simulators running with the device simulator "
                   "panel (a web page on 127.0.0.1) until Ctrl-C; prints its URL (--script is not run)")
    p.add_argument("--panel-port", type=int, default=0, metavar="PORT", help="the panel's port (default: any free one)")
    p.set_defaults(func=handle)


#: the simulated terminal's standing answers a demo user may choose
TERMINAL_ANSWERS = ("approve", "decline", "timeout")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 120:
        raise argparse.ArgumentTypeError(f"{value} s is not between 0 and 120")
    return value


def handle(args: argparse.Namespace) -> int:
    if getattr(args, "panel", False):  # kiosk demo --panel: the simulators and their panel, no citizen
        from kiosk_demo.panel.command import run_panel
        return run_panel(args)
    from kiosk_demo.run import DemoOptions, run_demo, run_tool

    options = DemoOptions(terminal_latency_s=args.terminal_latency, terminal_answer=args.terminal_answer)
    try:
        if args.script in TOOLS:
            return asyncio.run(run_tool(data_dir(args.data_dir, writable=True), args.script, as_json=args.json,
                                        options=options))
        summary = asyncio.run(run_demo(data_dir(args.data_dir, writable=True), args.script, echo=not args.json,
                                       options=options))
    except KioskError as exc:
        print(f"kiosk demo: {exc.message('en')}", file=sys.stderr)
        return 2 if isinstance(exc, UnknownFaultPoint) else 1
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
    else:
        _print_human(summary)
    return 0 if summary["ok"] else 1


def _print_human(s: dict[str, Any]) -> None:
    out = sys.stdout
    out.write("\n— نتیجه / Result —\n")
    for r in s["recovered"]:
        out.write(f"  recovered {r['tx_id']}: {r['from_state']} → {r['to_state']} ({r['action']})\n")
    if s["transaction_id"]:
        out.write(f"  transaction   {s['transaction_id']}\n  final state   {s['final_state']}\n")
    else:
        out.write("  transaction   no transaction: nothing charged\n")
    out.write(f"  outcome       {s['outcome']}\n"
              f"  amount        {s['amount_rials']:,} rials\n  journal chain {'ok' if s['journal_ok'] else 'BROKEN'}\n")
    if s.get("card_serial"):
        out.write(f"  card serial   {s['card_serial']}\n  balance       {s.get('balance_before')} → "
                  f"{s.get('balance_after')} rials\n")
    if s.get("receipt_png"):
        out.write(f"  receipt image {s['receipt_png']}\n")
    for path in s.get("printed") or ():
        out.write(f"  printed       {path}\n")
    if s.get("receipt_payload"):
        # a command the person can paste: `kiosk` is not on the PATH after `make run`
        out.write(f"  verify with   {kiosk_command()} receipt verify {shlex.quote(s['receipt_payload'])} "
                  f"--data-dir {shlex.quote(str(Path(s['data_dir'])))}\n")
