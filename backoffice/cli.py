"""`backoffice` command line: migrate, seed, serve, and manage kiosk credentials.

Exit codes: 0 ok, 1 failed, 2 usage error."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

DEFAULT_DB = "sqlite:///backoffice.sqlite3"


def _db(args: argparse.Namespace) -> str:
    return str(args.db or os.environ.get("BACKOFFICE_DB_URL") or DEFAULT_DB)


def _migrate(args: argparse.Namespace) -> int:
    from backoffice.db import current_revision, upgrade

    upgrade(_db(args))
    print(current_revision(_db(args)))
    return 0


def _seed(args: argparse.Namespace) -> int:
    from backoffice.seed import seed_demo

    if not args.demo:
        print("nothing to seed: pass --demo", file=sys.stderr)
        return 2
    kiosks: dict[str, str] = {}
    for item in args.kiosk or []:
        kiosk_id, sep, token = item.partition(":")
        if not sep or not kiosk_id or not token:
            print(f"--kiosk wants ID:TOKEN, got {item!r}", file=sys.stderr)
            return 2
        kiosks[kiosk_id] = token
    summary = seed_demo(_db(args), kiosks)
    print(json.dumps(asdict(summary)))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from backoffice.app import create_app

    app = create_app(_db(args), migrate=True)
    # no access log: fee-slip queries carry national codes in the URL
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower(), access_log=False)
    return 0


def _kiosk_add(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import Session

    from backoffice.auth import new_token, put_kiosk
    from backoffice.db import make_engine, upgrade

    url = _db(args)
    upgrade(url)
    token = args.token or new_token()
    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            put_kiosk(session, args.kiosk_id, token)
    finally:
        engine.dispose()
    print(token)
    return 0


def _kiosk_disable(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import Session

    from backoffice.db import make_engine
    from backoffice.models import Kiosk

    engine = make_engine(_db(args))
    try:
        with Session(engine) as session, session.begin():
            kiosk = session.get(Kiosk, args.kiosk_id)
            if kiosk is None:
                print(f"no kiosk {args.kiosk_id!r}", file=sys.stderr)
                return 1
            kiosk.enabled = False
    finally:
        engine.dispose()
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help=f"database URL (default $BACKOFFICE_DB_URL or {DEFAULT_DB}); "
                        "PostgreSQL: postgresql+psycopg://user:pass@host/dbname")
    common.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING, ERROR")
    parser = argparse.ArgumentParser(prog="backoffice", description="City Kiosk reference municipal back-office")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("migrate", parents=[common], help="run database migrations (alembic upgrade head)")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("seed", parents=[common], help="add demo owners, fee slips, bills and kiosks")
    p.add_argument("--demo", action="store_true", help="seed the demo data set")
    p.add_argument("--kiosk", action="append", metavar="ID:TOKEN", help="a kiosk credential (repeatable)")
    p.set_defaults(func=_seed)

    p = sub.add_parser("serve", parents=[common], help="migrate, then serve the HTTP API")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8700)
    p.set_defaults(func=_serve)

    kiosk = sub.add_parser("kiosk", help="kiosk credentials")
    ksub = kiosk.add_subparsers(dest="kiosk_command", metavar="ACTION")
    p = ksub.add_parser("add", parents=[common], help="create a kiosk (or rotate its token); prints the token")
    p.add_argument("kiosk_id")
    p.add_argument("--token", help="use this token instead of a random one")
    p.set_defaults(func=_kiosk_add)
    p = ksub.add_parser("disable", parents=[common], help="revoke a kiosk's access")
    p.add_argument("kiosk_id")
    p.set_defaults(func=_kiosk_disable)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from backoffice.logs import configure

    configure(getattr(args, "log_level", "WARNING"))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
