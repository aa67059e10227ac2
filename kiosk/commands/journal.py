"""`kiosk journal verify|show`: check the journal's hash chain (optionally against the
back-office's anchors) and list its transactions. Both open the journal read-only, so an
auditor can run them on a copy on read-only media."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from kiosk.journal import (
    AnchorReport,
    Journal,
    JournalError,
    Transaction,
    TxState,
    VerifyReport,
    compare_anchors,
    journal_path,
)
from kiosk.paths import data_dir


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("journal", help="verify or show the transaction journal")
    actions = parser.add_subparsers(dest="journal_action", metavar="ACTION")
    # --data-dir/--log-level go on the leaf parsers only: argparse lets a sub-parser's
    # defaults overwrite values given to its parent, so one place is the safe place.
    verify = actions.add_parser("verify", parents=[common],
                                help="check the hash chain; exit 1 naming each bad row")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--against-backoffice", action="store_true",
                        help="also compare the chain with the anchors the back-office kept "
                        "(catches a cut tail or a rewritten chain); uses the data dir's kiosk.json")
    verify.add_argument("--backoffice-url", metavar="URL",
                        help="with --against-backoffice: this back-office instead of kiosk.json's")
    verify.add_argument("--token", metavar="T",
                        help="with --against-backoffice: this kiosk token instead of kiosk.json's")
    verify.set_defaults(func=_verify)
    show = actions.add_parser("show", parents=[common], help="list transactions, newest first")
    show.add_argument("--open", action="store_true", help="only transactions recover must resolve")
    show.add_argument("--state", type=_state_arg, metavar="STATE",
                      help="only transactions now in STATE (e.g. REFUND_PENDING: an operator "
                           "must refund them; recover does not)")
    show.add_argument("--json", action="store_true", help="print a JSON list")
    show.add_argument("--limit", type=int, default=50, help="at most N transactions (default 50)")
    show.set_defaults(func=_show)
    parser.set_defaults(func=lambda _args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _fail(action: str, message: str, code: int = 1) -> int:
    print(f"kiosk journal {action}: {message}", file=sys.stderr)
    return code


def _fetch_anchors(args: argparse.Namespace, directory: Path) -> list[Any]:
    """The back-office's anchors for this kiosk, from kiosk.json's back-office (or the URL
    and token given on the command line)."""
    from kiosk.backoffice_client import BackofficeClient
    from kiosk.settings import CONFIG_FILENAME, KioskSettings

    url, token = args.backoffice_url, args.token
    if url is None or token is None:
        settings = KioskSettings.load(directory / CONFIG_FILENAME)
        url = url or settings.backoffice_url
        token = token or settings.backoffice_token
    with BackofficeClient(url, token, retries=1) as client:
        return client.journal_anchors()


def _verify(args: argparse.Namespace) -> int:
    if (args.backoffice_url or args.token) and not args.against_backoffice:
        return _fail("verify", "--backoffice-url and --token only go with --against-backoffice", 2)
    directory = data_dir(args.data_dir)
    path = journal_path(directory)
    if not path.exists():
        print(f"no journal at {path}", file=sys.stderr)
        return 1
    try:
        with Journal.open_readonly(path) as journal:
            report = journal.verify()
            rows = journal.entries() if args.against_backoffice and report.ok else None
    except JournalError as exc:
        return _fail("verify", exc.detail)
    anchors: AnchorReport | None = None
    if args.against_backoffice:
        if rows is None:
            # entries() cannot even be read back from a chain that failed: say so, do not guess
            return _print_verify(args, path, report, None,
                                 "anchors not checked: the local chain is broken")
        if not (directory / "kiosk.json").exists() and (args.backoffice_url is None
                                                         or args.token is None):
            return _fail("verify", f"--against-backoffice needs {directory / 'kiosk.json'} "
                         "or both --backoffice-url and --token", 2)
        anchors = compare_anchors(rows, _fetch_anchors(args, directory))
    return _print_verify(args, path, report, anchors, None)


def _print_verify(args: argparse.Namespace, path: Path, report: VerifyReport,
                  anchors: AnchorReport | None, note: str | None) -> int:
    ok = report.ok and (anchors is None or anchors.ok) and note is None
    if args.json:
        out: dict[str, Any] = {
            "ok": ok, "checked": report.checked, "path": str(path),
            "problems": [{"seq": p.seq, "kind": p.kind, "detail": p.detail}
                         for p in report.problems]}
        if anchors is not None:
            out["anchors"] = {"ok": anchors.ok, "checked": anchors.checked,
                              "problems": [{"seq": f.seq, "kind": str(f.verdict),
                                            "transaction_id": f.transaction_id,
                                            "detail": f.detail} for f in anchors.problems]}
        if note:
            out["note"] = note
        print(json.dumps(out, ensure_ascii=False))
        return 0 if ok else 1
    if report.ok:
        print(f"journal ok: {report.checked} entries, chain intact ({path})")
    else:
        print(f"journal BROKEN: {len(report.problems)} problem(s) in {report.checked} entries "
              f"({path})")
        for p in report.problems:
            where = f"seq {p.seq}" if p.seq is not None else "seq ?"
            print(f"  {where}: {p.kind}: {p.detail}")
    if anchors is not None:
        if anchors.ok:
            print(f"back-office anchors ok: {anchors.checked} checked, local head at row "
                  f"{anchors.local_head_seq}")
        else:
            print(f"back-office anchors BROKEN: {len(anchors.problems)} of {anchors.checked}")
            for f in anchors.problems:
                print(f"  seq {f.seq}: {f.verdict}: {f.detail}")
    if note:
        print(note)
    return 0 if ok else 1


def _when(unix: float) -> str:
    """A moment in this machine's local zone, with its offset and name, e.g.
    "2026-11-30 12:01:02 +0330 (+0330)" under TZ=Asia/Tehran, "... +0000 (UTC)" in UTC."""
    local = dt.datetime.fromtimestamp(unix).astimezone()
    return f"{local:%Y-%m-%d %H:%M:%S %z} ({local.tzname()})"


def _owed(tx: Transaction) -> tuple[int, list[Any]] | None:
    """What an operator owes the card holder of a REFUND_PENDING transaction: (rials, bills).
    A fee basket owes only the refused bills' shares (`refund_pending_rials`, the bills in
    `bills_refund_pending`), not the basket's total; anything else owes its amount."""
    if tx.state != TxState.REFUND_PENDING:
        return None
    rials = tx.data.get("refund_pending_rials")
    bills = tx.data.get("bills_refund_pending")
    if isinstance(rials, int) and not isinstance(rials, bool) and 0 < rials <= tx.amount_rials:
        items = tx.data.get("items") if isinstance(tx.data.get("items"), list) else []
        named = []
        for i in bills if isinstance(bills, list) else []:
            item = items[i] if isinstance(i, int) and 0 <= i < len(items) and isinstance(items[i], dict) else {}
            named.append({"index": i, "bill_id": item.get("bill_id", ""), "payment_id": item.get("payment_id", ""),
                          "amount_rials": item.get("amount_rials")})
        return rials, named
    return tx.amount_rials, []


def _as_dict(tx: Transaction) -> dict[str, Any]:
    out = {"tx_id": tx.tx_id, "kind": tx.kind, "amount_rials": tx.amount_rials,
           "state": str(tx.state), "created_at": tx.created_at, "updated_at": tx.updated_at,
           "updated": _when(tx.updated_at), "entries": len(tx.entries), "data": tx.data}
    owed = _owed(tx)
    if owed is not None:
        out["owed_rials"], out["bills_owed"] = owed
    return out


def _owed_cell(tx: Transaction) -> str:
    owed = _owed(tx)
    if owed is None:
        return ""
    rials, bills = owed
    return f"{rials:,}" + (f" (bill {', '.join(str(b['bill_id'] or b['index']) for b in bills)})" if bills else "")


def _state_arg(text: str) -> TxState:
    """argparse type for --state: a journal state by name, any case; a usage error otherwise."""
    try:
        return TxState(text.strip().upper())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown state {text!r} (one of {', '.join(s.value for s in TxState)})") from None


def _show(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        print("--limit must be 0 or more", file=sys.stderr)
        return 2
    path = journal_path(data_dir(args.data_dir))
    txs: list[Transaction] = []
    if path.exists():
        try:
            with Journal.open_readonly(path) as journal:
                if args.open:
                    txs = journal.open_transactions()
                elif args.state is not None:
                    txs = [t for t in journal.transactions() if t.state == args.state]
                else:
                    txs = journal.transactions(args.limit)
        except JournalError as exc:
            return _fail("show", exc.detail)
    if args.open or args.state is not None:
        txs = [t for t in txs if args.state is None or t.state == args.state][: args.limit]
    if args.json:
        print(json.dumps([_as_dict(t) for t in txs], ensure_ascii=False))
        return 0
    if not txs:
        print("no transactions")
        return 0
    rows = [(t.tx_id, t.kind, f"{t.amount_rials:,}", str(t.state), _when(t.updated_at))
            for t in txs]
    header = ("id", "kind", "amount (rials)", "state", "updated (local time)")
    if any(t.state == TxState.REFUND_PENDING for t in txs):
        # what an operator gives back: a basket owes its refused bills' shares, not its total
        rows = [(*r, _owed_cell(t)) for r, t in zip(rows, txs)]
        header = (*header, "owed (rials)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.rjust(w) if i == 2 else c.ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    return 0
