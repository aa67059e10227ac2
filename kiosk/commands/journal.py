"""`kiosk journal verify|show`: check the journal's hash chain and list its transactions."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from kiosk.journal import Journal, Transaction, journal_path
from kiosk.paths import data_dir


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("journal", help="verify or show the transaction journal")
    actions = parser.add_subparsers(dest="journal_action", metavar="ACTION")
    # --data-dir/--log-level go on the leaf parsers only: argparse lets a sub-parser's
    # defaults overwrite values given to its parent, so one place is the safe place.
    verify = actions.add_parser("verify", parents=[common],
                                help="check the hash chain; exit 1 naming each bad row")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(func=_verify)
    show = actions.add_parser("show", parents=[common], help="list transactions, newest first")
    show.add_argument("--open", action="store_true", help="only transactions recover must resolve")
    show.add_argument("--json", action="store_true", help="print a JSON list")
    show.add_argument("--limit", type=int, default=50, help="at most N transactions (default 50)")
    show.set_defaults(func=_show)
    parser.set_defaults(func=lambda _args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _verify(args: argparse.Namespace) -> int:
    path = journal_path(data_dir(args.data_dir))
    if not path.exists():
        print(f"no journal at {path}", file=sys.stderr)
        return 1
    with Journal(path) as journal:
        report = journal.verify()
    if args.json:
        print(json.dumps({"ok": report.ok, "checked": report.checked, "path": str(path),
                          "problems": [{"seq": p.seq, "kind": p.kind, "detail": p.detail}
                                       for p in report.problems]}, ensure_ascii=False))
    elif report.ok:
        print(f"journal ok: {report.checked} entries, chain intact ({path})")
    else:
        print(f"journal BROKEN: {len(report.problems)} problem(s) in {report.checked} entries "
              f"({path})")
        for p in report.problems:
            where = f"seq {p.seq}" if p.seq is not None else "seq ?"
            print(f"  {where}: {p.kind}: {p.detail}")
    return 0 if report.ok else 1


def _as_dict(tx: Transaction) -> dict[str, Any]:
    return {"tx_id": tx.tx_id, "kind": tx.kind, "amount_rials": tx.amount_rials,
            "state": str(tx.state), "created_at": tx.created_at, "updated_at": tx.updated_at,
            "entries": len(tx.entries), "data": tx.data}


def _show(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        print("--limit must be 0 or more", file=sys.stderr)
        return 2
    path = journal_path(data_dir(args.data_dir))
    if not path.exists():
        txs: list[Transaction] = []
    else:
        with Journal(path) as journal:
            txs = journal.open_transactions() if args.open else journal.transactions(args.limit)
    if args.open:
        txs = txs[: args.limit]
    if args.json:
        print(json.dumps([_as_dict(t) for t in txs], ensure_ascii=False))
        return 0
    if not txs:
        print("no transactions")
        return 0
    rows = [(t.tx_id, t.kind, f"{t.amount_rials:,}", str(t.state),
             time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t.updated_at))) for t in txs]
    header = ("id", "kind", "amount (rials)", "state", "updated")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.rjust(w) if i == 2 else c.ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    return 0
