"""`kiosk recover [--json]`: resolve every open transaction now (it also runs at every start).

With <data_dir>/kiosk.json the kiosk's configured devices and back-office are used; without it
(embedded defaults) the embedded demo environment is started against the data dir's state."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from kiosk.paths import data_dir


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("recover", parents=[common], help="resolve open transactions", description=__doc__)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=handle)


async def recover(data: Path) -> list[dict[str, Any]]:
    from kiosk.context import KioskContext
    from kiosk.demo_env import kiosk_settings
    from kiosk.recovery import Recovery

    with contextlib.ExitStack() as stack:
        settings = kiosk_settings(data, stack)
        ctx = await KioskContext.open(settings, data)
        try:
            return [r.to_dict() for r in await Recovery(ctx.journal, ctx.money).run()]
        finally:
            await ctx.close()


def handle(args: argparse.Namespace) -> int:
    results = asyncio.run(recover(data_dir(args.data_dir)))
    if args.json:
        print(json.dumps(results, ensure_ascii=False))
    elif not results:
        print("nothing to recover: no open transactions")
    else:
        for r in results:
            print(f"{r['tx_id']}: {r['from_state']} → {r['to_state']} ({r['action']})"
                  + ("" if r["resolved"] else "  [still open: will retry]"))
    return 0 if all(r["resolved"] for r in results) else 1
