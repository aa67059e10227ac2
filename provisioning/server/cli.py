"""`fleet` command line: serve the fleet server, and manage it straight on its database
(manager and enrollment tokens, kiosks, configuration, commands, the audit log).

The CLI acts with the database's authority (it holds the URL, so it holds everything): it is
an admin, and every action it takes is in the audit log as `cli:<user>`. Remote managers use
the HTTP API with a token of their role.

Exit codes: 0 ok, 1 failed or refused, 2 usage error; a mistake is one line on stderr."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

from backoffice.cli import CliError, _bind, _db_failure, _level, _port, check_db_url

DEFAULT_DB = "sqlite:///fleet.sqlite3"


def _db(args: argparse.Namespace) -> str:
    return str(args.db or os.environ.get("FLEET_DB_URL") or DEFAULT_DB)


def _duration(text: str) -> dt.timedelta:
    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"a duration is a number and s, m, h or d (e.g. 24h), not {text!r}")
    return dt.timedelta(seconds=int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)])


def _cli_manager() -> Any:
    from provisioning.server.models import Role
    from provisioning.server.service import Manager

    try:
        who = getpass.getuser()
    except Exception:  # no user name (a container without passwd entry)
        who = str(os.getuid())
    return Manager(f"cli:{who}"[:64], Role.ADMIN)


def _in_session(args: argparse.Namespace, work: Callable[[Any, Any], Any], *, migrate: bool = True) -> Any:
    """Run work(session, manager) in one transaction; a FleetError is audited and refused."""
    from provisioning.server.db import make_engine, session_factory, upgrade
    from provisioning.server.service import FleetError, audit_refusal

    url = _db(args)
    if migrate:
        upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    manager = _cli_manager()
    try:
        with sessions() as session, session.begin():
            return work(session, manager)
    except FleetError as exc:
        audit_refusal(sessions, manager.actor, exc)
        raise CliError(f"{exc.message} ({exc.code})", 1) from None
    finally:
        engine.dispose()


def _print(value: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2) if as_json else text(value))


def _migrate(args: argparse.Namespace) -> int:
    from provisioning.server.db import current_revision, upgrade

    upgrade(_db(args))
    print(current_revision(_db(args)))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from provisioning.server.app import Settings
    from provisioning.server.server import serve_foreground, url_of

    sock = _bind(args.host, args.port)
    base = url_of(args.host, sock.getsockname()[1])

    def announce() -> None:
        print(f"fleet: serving {base}; Ctrl-C stops", flush=True)

    try:
        settings = Settings(interval_s=args.interval, backoffice_url=args.backoffice,
                            backoffice_token=os.environ.get("FLEET_BACKOFFICE_TOKEN") if args.backoffice else None)
        serve_foreground(_db(args), sock, settings=settings, log_level=args.log_level.lower(),
                         on_started=announce, workers=args.workers)
    finally:
        sock.close()
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from provisioning.server.models import Role
    from provisioning.server.service import create_manager_token

    print(_in_session(args, lambda s, m: create_manager_token(s, m, args.name, Role(args.role))))
    return 0


def _token_disable(args: argparse.Namespace) -> int:
    from provisioning.server.service import disable_manager_token

    _in_session(args, lambda s, m: disable_manager_token(s, m, args.name))
    return 0


def _enroll_token(args: argparse.Namespace) -> int:
    from provisioning.server.service import create_enroll_token

    print(_in_session(args, lambda s, m: create_enroll_token(
        s, m, label=args.label, site=args.site, needs_approval=args.approval, max_uses=args.uses,
        ttl=args.expires)))
    return 0


def _kiosks(args: argparse.Namespace) -> int:
    from provisioning.server.service import list_kiosks

    rows = _in_session(args, lambda s, m: list_kiosks(s, args.interval))

    def table(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return "no kiosks"
        lines = [f"{'KIOSK':<20} {'STATUS':<9} {'SITE':<12} {'PRESENCE':<8} {'CONFIG':<9} ALERTS"]
        for r in rows:
            c = r["config"]
            cfg = f"{c['reported_version'] or 0}/{c['desired_version']}"
            lines.append(f"{r['kiosk_id']:<20} {r['status']:<9} {r['site'] or '-':<12} {r['presence']:<8} "
                         f"{cfg:<9} {'; '.join(r['alerts']) or '-'}")
        return "\n".join(lines)

    _print(rows, args.json, table)
    return 0


def _kiosk_show(args: argparse.Namespace) -> int:
    from provisioning.server.service import get_kiosk

    view = _in_session(args, lambda s, m: get_kiosk(s, args.kiosk_id, args.interval))
    _print(view, True, str)
    return 0


def _decide(decision: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from provisioning.server.service import decide

        status = _in_session(args, lambda s, m: decide(s, m, args.kiosk_id, decision).status)
        print(f"{args.kiosk_id}: {status}")
        return 0

    return run


def _target(text: str) -> tuple[str, str]:
    scope, _, name = text.partition(":")
    if scope == "fleet" and not name:
        return "fleet", ""
    if scope in ("site", "kiosk") and name:
        return scope, name
    raise argparse.ArgumentTypeError(f"--target is fleet, site:NAME or kiosk:ID, not {text!r}")


def _config_push(args: argparse.Namespace) -> int:
    from provisioning.server.service import push_layer

    try:
        settings = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"{args.file}: {exc.strerror or exc}", 1) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CliError(f"{args.file}: not JSON ({exc})", 1) from None
    scope, target = args.target
    revision = _in_session(args, lambda s, m: push_layer(s, m, scope, target, settings))
    print(f"{scope}{':' + target if target else ''}: revision {revision}")
    return 0


def _command(args: argparse.Namespace) -> int:
    from provisioning.server.service import command_view, queue_command

    cmd_args = {}
    for item in args.arg or []:
        k, sep, v = item.partition("=")
        if not sep:
            raise CliError("--arg wants KEY=VALUE", 2)
        cmd_args[k] = v
    view = _in_session(args, lambda s, m: command_view(queue_command(s, m, args.kiosk_id, args.kind, cmd_args,
                                                                     args.expires)))
    _print(view, args.json, lambda v: f"command {v['id']} ({v['kind']}) queued for {v['kiosk_id']}, "
                                      f"expires {v['expires_at']}")
    return 0


def _commands(args: argparse.Namespace) -> int:
    from provisioning.server.service import list_commands

    rows = _in_session(args, lambda s, m: list_commands(s, args.kiosk_id))
    _print(rows, args.json, lambda rows: "\n".join(
        f"{r['id']:>5} {r['kind']:<16} {r['status']:<9} {r['updated_at']}" for r in rows) or "no commands")
    return 0


def _rollout_create(args: argparse.Namespace) -> int:
    from provisioning.server import rollout

    try:
        settings = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"{args.file}: {exc.strerror or exc}", 1) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CliError(f"{args.file}: not JSON ({exc})", 1) from None
    scope, target = args.target
    view = _in_session(args, lambda s, m: rollout.view(s, rollout.create(
        s, m, scope=scope, target=target, settings=settings, stages=args.stages,
        action_timeout_s=int(args.timeout.total_seconds()), max_failure_pct=args.max_failures, window=args.window)))
    _print(view, args.json, _rollout_line)
    return 0


def _rollout_line(v: dict[str, Any]) -> str:
    counts = ", ".join(f"{k} {n}" for k, n in sorted(v["actions"].items()))
    stage = f"stage {v['stage'] + 1}/{len(v['stages'])}" if v["stage"] >= 0 else "not started"
    return f"rollout {v['id']} {v['target']}: {v['status']}, {stage} ({counts})" + \
        (f" — {v['reason']}" if v.get("reason") else "")


def _rollout_status(args: argparse.Namespace) -> int:
    from provisioning.server import rollout

    def work(s: Any, m: Any) -> Any:
        rollout.tick(s)  # move on what is due, as the server's background tick would
        return rollout.show(s, args.rollout_id) if args.rollout_id is not None else rollout.list_views(s)

    value = _in_session(args, work)
    if args.rollout_id is not None:
        _print(value, args.json, lambda v: _rollout_line(v) + "".join(
            f"\n  {k['kiosk_id']:<20} stage {k['stage'] + 1} {k['status']}" for k in v["kiosks"]))
    else:
        _print(value, args.json, lambda rows: "\n".join(_rollout_line(v) for v in rows) or "no rollouts")
    return 0


def _rollout_control(verb: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from provisioning.server import rollout

        print(_rollout_line(_in_session(args, lambda s, m: rollout.view(
            s, rollout.control(s, m, args.rollout_id, verb)))))
        return 0

    return run


def _stages(text: str) -> list[int]:
    from provisioning.server.rollout import parse_stages

    try:
        return parse_stages(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _statement_issue(args: argparse.Namespace) -> int:
    from provisioning.server import journal

    doc = _in_session(args, lambda s, m: journal.statement(s, m, args.date))
    text = json.dumps(doc, ensure_ascii=False, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        print(f"statement {args.date}: {len(doc['signed']['heads'])} kiosk(s) -> {args.out}")
    else:
        print(text)
    return 0


def _statement_verify(args: argparse.Namespace) -> int:
    from provisioning.common import signing
    from provisioning.server.journal import STATEMENT_TYPE

    try:
        doc = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"{args.file}: {exc.strerror or exc}", 1) from None
    except ValueError as exc:
        raise CliError(f"{args.file}: not JSON ({exc})", 1) from None
    key = args.key
    if key is None:
        from provisioning.server.service import signing_key

        key = _in_session(args, lambda s, m: signing.public_b64(signing_key(s)))
    try:
        checked = signing.verify_document(doc, key, doc_type=STATEMENT_TYPE, now=signing.parse_iso(
            doc["signed"]["issued_at"]))
    except (signing.SignatureError, KeyError, TypeError) as exc:
        raise CliError(f"{args.file}: NOT a valid statement: {exc}", 1) from None
    print(f"{args.file}: valid statement of {checked.signed['date']}, {len(checked.signed['heads'])} kiosk(s)")
    return 0


def _backoffice(args: argparse.Namespace) -> tuple[str, str]:
    url = args.backoffice or os.environ.get("FLEET_BACKOFFICE_URL")
    token = args.token or os.environ.get("FLEET_BACKOFFICE_TOKEN")
    if not url or not token:
        raise CliError("reconcile needs the back-office: --backoffice URL and --token T (an integration token), "
                       "or $FLEET_BACKOFFICE_URL and $FLEET_BACKOFFICE_TOKEN", 2)
    return str(url), str(token)


def _reconcile(args: argparse.Namespace) -> int:
    from provisioning.server import reconcile

    url, token = _backoffice(args)
    try:
        records = reconcile.fetch_window(url, token, args.date, args.kiosk)
    except reconcile.BackofficeUnreachable as exc:
        raise CliError(exc.message, 1) from None
    view = _in_session(args, lambda s, m: reconcile.reconcile(s, m, args.date, records, args.kiosk))
    _print(view, args.json, reconcile.text_report)
    return 1 if view["fleet"]["differences"] else 0


def _statement_check_receipt(args: argparse.Namespace) -> int:
    from provisioning.common import signing
    from provisioning.server import reconcile

    try:
        doc = json.loads(Path(args.file).read_text(encoding="utf-8"))
        head = doc["signed"]["heads"][args.kiosk]
        head_seq = int(head["seq"])
    except OSError as exc:
        raise CliError(f"{args.file}: {exc.strerror or exc}", 1) from None
    except ValueError as exc:
        raise CliError(f"{args.file}: not JSON ({exc})", 1) from None
    except (KeyError, TypeError):
        raise CliError(f"{args.file}: the statement holds no journal head of {args.kiosk}", 1) from None

    def work(s: Any, m: Any) -> tuple[str, list[list[Any]]]:
        from provisioning.server.service import signing_key

        key = args.key or signing.public_b64(signing_key(s))
        return key, reconcile.journal_rows(s, args.kiosk, args.seq, max(head_seq, args.seq))

    key, rows = _in_session(args, work)
    try:
        print(reconcile.check_receipt(doc, key, kiosk_id=args.kiosk, seq=args.seq, hash_prefix=args.hash, rows=rows))
    except (signing.SignatureError, reconcile.ReceiptMismatch, KeyError, TypeError) as exc:
        raise CliError(f"receipt row {args.seq} of {args.kiosk}: NOT confirmed by {args.file}: {exc}", 1) from None
    return 0


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a date is YYYY-MM-DD, not {text!r}") from None


def _audit(args: argparse.Namespace) -> int:
    from provisioning.server.service import audit_entries

    rows = _in_session(args, lambda s, m: audit_entries(s, args.limit))
    _print(rows, args.json, lambda rows: "\n".join(
        f"{r['at']} {r['actor']:<24} {r['action']:<24} {r['target']:<20} {r['outcome']}" for r in rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help=f"database URL (default $FLEET_DB_URL or {DEFAULT_DB})")
    common.add_argument("--log-level", default="WARNING", type=_level, help="DEBUG, INFO, WARNING, ERROR")
    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--interval", type=int, default=60, help="the heartbeat interval the server uses (s)")
    parser = argparse.ArgumentParser(prog="fleet", description="City Kiosk fleet server and its management")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("migrate", parents=[common], help="bring the database to the newest schema")
    p.set_defaults(func=_migrate)
    p = sub.add_parser("serve", parents=[common], help="migrate, then serve the fleet API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8710, help="TCP port (default 8710; 0 = any free port)")
    p.add_argument("--interval", type=int, default=60, help="heartbeat interval told to agents (s, default 60)")
    p.add_argument("--workers", type=int, default=1, help="server processes sharing the port and the database "
                   "(default 1; on SQLite keep 1: its writers take turns)")
    p.add_argument("--backoffice", help="the back-office URL for reconciliation from the API and dashboard "
                   "(its integration token in $FLEET_BACKOFFICE_TOKEN)")
    p.set_defaults(func=_serve)

    tok = sub.add_parser("token", help="manager API tokens (roles viewer, operator, admin)")
    tsub = tok.add_subparsers(dest="token_command", metavar="ACTION")
    p = tsub.add_parser("create", parents=[common], help="create (or rotate) a manager's token; prints it once")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=("viewer", "operator", "admin"))
    p.set_defaults(func=_token_create)
    p = tsub.add_parser("disable", parents=[common], help="disable a manager's token")
    p.add_argument("name")
    p.set_defaults(func=_token_disable)

    en = sub.add_parser("enrollment", help="enrollment tokens kiosks enroll with")
    esub = en.add_subparsers(dest="enrollment_command", metavar="ACTION")
    p = esub.add_parser("create", parents=[common], help="create an enrollment token; prints it once")
    p.add_argument("--label", required=True, help="what it is for (shown in the audit log)")
    p.add_argument("--site", help="kiosks enrolled with it belong to this site")
    p.add_argument("--uses", type=int, default=1, help="how many kiosks may enroll with it (default 1)")
    p.add_argument("--expires", type=_duration, default=dt.timedelta(days=1), help="lifetime (default 24h)")
    p.add_argument("--approval", action="store_true", help="kiosks wait (pending) until a manager accepts them")
    p.set_defaults(func=_enroll_token)

    p = sub.add_parser("kiosks", parents=[common, listing], help="list kiosks: status, presence, config, alerts")
    p.set_defaults(func=_kiosks)
    p = sub.add_parser("kiosk", parents=[common, listing], help="one kiosk in full: desired/reported/delta")
    p.add_argument("kiosk_id")
    p.set_defaults(func=_kiosk_show)
    for decision, text in (("accept", "accept a pending kiosk"), ("reject", "reject a pending kiosk"),
                           ("revoke", "cut a kiosk off (at its next request)")):
        p = sub.add_parser(decision, parents=[common], help=text)
        p.add_argument("kiosk_id")
        p.set_defaults(func=_decide(decision))

    cfg = sub.add_parser("config", help="configuration layers")
    csub = cfg.add_subparsers(dest="config_command", metavar="ACTION")
    p = csub.add_parser("push", parents=[common], help="push a layer (a partial kiosk.json) to a target")
    p.add_argument("file")
    p.add_argument("--target", required=True, type=_target, help="fleet, site:NAME or kiosk:ID")
    p.set_defaults(func=_config_push)

    p = sub.add_parser("command", parents=[common], help="queue a command for a kiosk")
    p.add_argument("kiosk_id")
    p.add_argument("kind", help="restart, maintenance_on, maintenance_off, disable_service, enable_service, "
                   "upload_logs")
    p.add_argument("--arg", action="append", metavar="KEY=VALUE", help="e.g. service=topup")
    p.add_argument("--expires", type=_duration, default=dt.timedelta(hours=24), help="default 24h")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_command)
    p = sub.add_parser("commands", parents=[common, listing], help="a kiosk's commands and their feedback")
    p.add_argument("kiosk_id")
    p.set_defaults(func=_commands)

    ro = sub.add_parser("rollout", help="staged configuration rollouts")
    rsub = ro.add_subparsers(dest="rollout_command", metavar="ACTION")
    p = rsub.add_parser("create", parents=[common], help="roll a layer out in stages")
    p.add_argument("file")
    p.add_argument("--target", required=True, type=_target, help="fleet, site:NAME or kiosk:ID")
    p.add_argument("--stages", type=_stages, default=[10, 50, 100], help="cumulative %% (default 10,50,100)")
    p.add_argument("--timeout", type=_duration, default=dt.timedelta(minutes=30),
                   help="per kiosk: how long to wait for it to apply (default 30m); then it counts as failed")
    p.add_argument("--max-failures", type=int, default=10, help="halt above this %% of failed kiosks (default 10)")
    p.add_argument("--window", help="start stages only in HH:MM-HH:MM, Tehran time (e.g. 01:00-05:00)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_rollout_create)
    p = rsub.add_parser("status", parents=[common], help="rollouts, or one rollout's kiosks")
    p.add_argument("rollout_id", nargs="?", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_rollout_status)
    for verb, text in (("pause", "start no new stage"), ("resume", "continue (also after a halt)"),
                       ("abort", "take the layer back from the kiosks that got it")):
        p = rsub.add_parser(verb, parents=[common], help=text)
        p.add_argument("rollout_id", type=int)
        p.set_defaults(func=_rollout_control(verb))

    st = sub.add_parser("statement", help="the signed daily statement of the kiosks' journal heads")
    ssub = st.add_subparsers(dest="statement_command", metavar="ACTION")
    p = ssub.add_parser("issue", parents=[common], help="issue (once) and print the statement of a past day")
    p.add_argument("--date", required=True, type=_date, help="YYYY-MM-DD (Tehran)")
    p.add_argument("--out", help="write it to this file")
    p.set_defaults(func=_statement_issue)
    p = ssub.add_parser("verify", parents=[common], help="check a statement's signature")
    p.add_argument("file")
    p.add_argument("--key", help="the fleet's public key (default: this database's)")
    p.set_defaults(func=_statement_verify)

    p = ssub.add_parser("check-receipt", parents=[common], help="check a receipt's journal row against a "
                        "statement (the rows from this database, recomputed up to the signed head)")
    p.add_argument("file")
    p.add_argument("--kiosk", required=True)
    p.add_argument("--seq", required=True, type=int, help="the receipt's journal row")
    p.add_argument("--hash", required=True, help="the journal hash the receipt prints (16 hex digits or more)")
    p.add_argument("--key", help="the fleet's public key (default: this database's)")
    p.set_defaults(func=_statement_check_receipt)

    p = sub.add_parser("reconcile", parents=[common], help="reconcile a day's transactions with the back-office "
                       "(exit 1 when they differ)")
    p.add_argument("--date", required=True, type=_date, help="YYYY-MM-DD (Tehran)")
    p.add_argument("--kiosk", help="only this kiosk")
    p.add_argument("--backoffice", help="the back-office's URL (default $FLEET_BACKOFFICE_URL)")
    p.add_argument("--token", help="an integration token of the back-office (default $FLEET_BACKOFFICE_TOKEN)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_reconcile)

    p = sub.add_parser("audit", parents=[common], help="the audit log, newest first")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from backoffice.logs import configure

    configure(getattr(args, "log_level", "WARNING"))
    url = _db(args) if hasattr(args, "db") else ""
    try:
        if url:
            try:
                check_db_url(url)
            except CliError as exc:  # the back-office's words, said of this server
                raise CliError(str(exc).replace("the back-office", "the fleet server")
                               .replace("sqlite:///backoffice.sqlite3", DEFAULT_DB), exc.code) from None
        try:
            return int(args.func(args) or 0)
        except (SQLAlchemyError, CommandError) as exc:
            raise _db_failure(url, exc) from None
    except CliError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
