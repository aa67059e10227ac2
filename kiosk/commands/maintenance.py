"""`kiosk maintenance set-pin|status|report`: the technician PIN (only its salted scrypt hash
is written), the lockout and services taken out of service, and today's journal totals. The
maintenance screens themselves are in the touch UI (a long press in the attract screen's
corner); see docs/maintenance.md."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
import time
from pathlib import Path
from typing import Any

from kiosk.paths import data_dir


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("maintenance", help="technician PIN, lockout and day totals")
    actions = parser.add_subparsers(dest="maintenance_action", metavar="ACTION")
    pin = actions.add_parser("set-pin", parents=[common],
                             help="set the technician PIN (4 to 8 digits), asked without echo or read from stdin",
                             description="Set the technician PIN. On a terminal it is asked twice without echo; "
                                         "otherwise the first line of stdin is the PIN (a second line, if any, must "
                                         "repeat it). Only a salted scrypt hash is written: into kiosk.json's extra "
                                         "(maintenance_pin_hash) when the data dir has one, else into maintenance-pin.")
    pin.set_defaults(func=_set_pin)
    status = actions.add_parser("status", parents=[common], help="PIN set?, lockout, services out, refunds pending")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=_status)
    report = actions.add_parser("report", parents=[common], help="one day's journal totals by kind and state")
    report.add_argument("--day", type=_day, metavar="YYYY-MM-DD",
                        help="a Gregorian day in Tehran time (default today)")
    report.add_argument("--json", action="store_true", help="print JSON")
    report.set_defaults(func=_report)
    parser.set_defaults(func=lambda _args: _usage(parser))


def _day(text: str) -> dt.date:
    """argparse type for --day: a Gregorian date; a usage error otherwise."""
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date like 2026-11-30: {text!r}") from None


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _fail(action: str, message: str, code: int = 1) -> int:
    print(f"kiosk maintenance {action}: {message}", file=sys.stderr)
    return code


def _read_pin() -> str | None:
    """The PIN typed twice without echo, or stdin's first line (and its second, if given)."""
    if sys.stdin.isatty():
        first = getpass.getpass("technician PIN (4-8 digits): ")
        again = getpass.getpass("again: ")
        return first if first == again else None
    lines = sys.stdin.read().splitlines()
    if not lines or (len(lines) > 1 and lines[1].strip() and lines[1].strip() != lines[0].strip()):
        return None
    return lines[0]


def _set_pin(args: argparse.Namespace) -> int:
    from kiosk.maintenance import BadPin, set_pin

    directory = data_dir(args.data_dir, writable=True)
    pin = _read_pin()
    if pin is None:
        return _fail("set-pin", "no PIN given, or the two PINs differ")
    try:
        target = set_pin(directory, pin)
    except BadPin as exc:
        return _fail("set-pin", exc.message("en"))
    except ValueError as exc:
        return _fail("set-pin", str(exc))
    finally:
        pin = ""
    print(f"technician PIN set (its hash is in {target})")
    return 0


def _journal_readonly(directory: Path) -> Any:
    from kiosk.journal import Journal, journal_path

    path = journal_path(directory)
    return Journal.open_readonly(path) if path.exists() else None


def _status(args: argparse.Namespace) -> int:
    from kiosk.journal import TxState
    from kiosk.maintenance import Audit, MaintenanceState, stored_pin_hash

    directory = data_dir(args.data_dir)
    raw = MaintenanceState(directory).load()
    until = float(raw.get("locked_until", 0) or 0)
    journal = _journal_readonly(directory)
    pending = 0
    if journal is not None:
        with journal:
            pending = sum(1 for t in journal.transactions() if t.state == TxState.REFUND_PENDING)
    out = {"pin_set": bool(stored_pin_hash(directory)), "failures": int(raw.get("failures", 0) or 0),
           "lockouts": int(raw.get("lockouts", 0) or 0), "locked_for_s": max(0, round(until - time.time())),
           "disabled_services": list(raw.get("disabled_services", [])), "refund_pending": pending,
           "last_events": Audit(directory).lines()[-5:]}
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        return 0
    print(f"technician PIN: {'set' if out['pin_set'] else 'NOT SET (kiosk maintenance set-pin)'}")
    lock = f"locked for {out['locked_for_s']} s" if out["locked_for_s"] else "not locked"
    print(f"wrong PINs in a row: {out['failures']}, lockouts: {out['lockouts']}, {lock}")
    print(f"services out of service: {', '.join(out['disabled_services']) or 'none'}")
    print(f"transactions waiting for an operator refund (REFUND_PENDING): {pending}")
    for event in out["last_events"]:
        when = dt.datetime.fromtimestamp(event.get("at", 0)).astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
        rest = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("at", "event"))
        print(f"  {when}  {event.get('event')}" + (f"  {rest}" if rest else ""))
    return 0


def _report(args: argparse.Namespace) -> int:
    from kiosk.maintenance import journal_totals

    journal = _journal_readonly(data_dir(args.data_dir))
    if journal is None:
        return _fail("report", "no journal in this data dir")
    with journal:
        totals = journal_totals(journal, args.day)
    if args.json:
        print(json.dumps(totals.to_dict(), ensure_ascii=False))
        return 0
    print(f"{totals.day.isoformat()} (Tehran): {totals.count} transactions, {totals.sum_rials:,} rials")
    for title, table in (("by kind", totals.by_kind), ("by state", totals.by_state)):
        print(f"{title}:")
        for name, (count, total) in table.items():
            print(f"  {name:<20} {count:>6}  {total:>16,}")
    return 0
