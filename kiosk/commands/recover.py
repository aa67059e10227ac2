"""`kiosk recover [--json]`: resolve every open transaction now (it also runs at every start).

Uses the kiosk's configured devices and back-office (<data_dir>/kiosk.json). A data dir with
no configuration is refused: recovery never asks a simulator about a real terminal's sales
(the demo's data dirs are recovered by `kiosk demo --script recover`).

Refused with one line on stderr and exit 1: another process holds the data dir (its pid is
named), no kiosk.json, or a journal that fails verification (nothing is resolved then: money
moved on a falsified record could pay a bill for free). Exit 2: an unknown $KIOSK_FAULT."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from kiosk.data_lock import DataLock
from kiosk.errors import KioskError
from kiosk.faults import UnknownFaultPoint, check_fault_env
from kiosk.paths import data_dir
from kiosk.settings import KioskSettings, load_settings


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("recover", parents=[common], help="resolve open transactions", description=__doc__)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=handle)


async def recover(data: Path, settings: KioskSettings | None = None, *,
                  lock: DataLock | None = None) -> list[dict[str, Any]]:
    """Resolve every open transaction of the kiosk at `data` (settings: its kiosk.json).
    The data dir's lock is taken first (unless the caller holds it): a dir another process
    is moving money in is refused as such. Raises DataDirLocked, NotConfigured,
    JournalBroken, UnknownFaultPoint."""
    from kiosk.context import KioskContext
    from kiosk.recovery import Recovery

    check_fault_env()
    own_lock = lock is None
    lock = lock if lock is not None else DataLock(data).acquire()
    try:
        settings = settings or load_settings(data)
        ctx = await KioskContext.open(settings, data, lock=lock)
        try:
            return [r.to_dict() for r in await Recovery(ctx.journal, ctx.money).run()]
        finally:
            await ctx.close()
    finally:
        if own_lock:
            lock.release()


def handle(args: argparse.Namespace) -> int:
    try:
        results = asyncio.run(recover(data_dir(args.data_dir, writable=True)))
    except KioskError as exc:
        print(f"kiosk recover: {exc.message('en')}", file=sys.stderr)
        return 2 if isinstance(exc, UnknownFaultPoint) else 1
    return report(results, as_json=args.json)


def report(results: list[dict[str, Any]], *, as_json: bool) -> int:
    """Print what recovery did; 0 when every transaction was resolved."""
    if as_json:
        print(json.dumps(results, ensure_ascii=False))
    elif not results:
        print("nothing to recover: no open transactions")
    else:
        for r in results:
            print(f"{r['tx_id']}: {r['from_state']} → {r['to_state']} ({r['action']})"
                  + ("" if r["resolved"] else "  [still open: will retry]")
                  + ("  [an operator must refund it: kiosk journal show --state REFUND_PENDING]"
                     if r["to_state"] == "REFUND_PENDING" else ""))
    return 0 if all(r["resolved"] for r in results) else 1
