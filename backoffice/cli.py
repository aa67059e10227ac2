"""`backoffice` command line: migrate, seed, serve, and manage kiosk, integration and gate
credentials.

Exit codes: 0 ok, 1 failed, 2 usage error. A person's mistake (a bad --db URL, a weak or
reused token, a port in use) is one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
from dataclasses import asdict

DEFAULT_DB = "sqlite:///backoffice.sqlite3"


class CliError(Exception):
    """A failure to report as one line; `code` is the exit code (1 failed, 2 usage)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _db(args: argparse.Namespace) -> str:
    return str(args.db or os.environ.get("BACKOFFICE_DB_URL") or DEFAULT_DB)


def _shown(url: str) -> str:
    """The URL for messages: the password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: show only its scheme, if it has one
        scheme, sep, _ = url.partition("://")
        return f"{scheme}://…" if sep else "…"


def check_db_url(url: str) -> None:
    """Refuse (CliError, usage) a URL SQLAlchemy cannot parse or has no dialect/driver for."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CliError(f"--db {_shown(url)!r} is not a database URL "
                       "(e.g. sqlite:///backoffice.sqlite3 or postgresql+psycopg://user@host/db)", 2) from None
    try:
        parsed.get_dialect()
    except ArgumentError:  # NoSuchModuleError: an unknown database kind
        raise CliError(f"--db: unknown database kind {parsed.drivername!r} "
                       "(use sqlite:///PATH or postgresql+psycopg://…)", 2) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise CliError("--db: the back-office needs a file SQLite database (sqlite:///PATH)", 2)
    try:
        parsed.get_dialect().import_dbapi()
    except ImportError:
        raise CliError(f"--db: the driver for {parsed.drivername!r} is not installed "
                       "(for PostgreSQL use postgresql+psycopg://…)", 2) from None


def _db_failure(url: str, exc: BaseException) -> CliError:
    """A database that cannot be reached or used, as one line."""
    reason = getattr(exc, "orig", None) or exc
    first = (str(reason).strip().splitlines() or [type(reason).__name__])[0]
    return CliError(f"database {_shown(url)}: {first[:300]}", 1)


def _migrate(args: argparse.Namespace) -> int:
    from backoffice.db import current_revision, upgrade

    upgrade(_db(args))
    print(current_revision(_db(args)))
    return 0


def _seed(args: argparse.Namespace) -> int:
    from backoffice.seed import seed_demo

    if not args.demo:
        raise CliError("nothing to seed: pass --demo", 2)
    from backoffice.models import ServiceRole

    kiosks = dict(_pair(item, "--kiosk") for item in args.kiosk or [])
    services = {name: (ServiceRole.INTEGRATION, token) for name, token in
                (_pair(item, "--integration") for item in args.integration or [])}
    services.update({name: (ServiceRole.GATE, token) for name, token in
                     (_pair(item, "--gate") for item in args.gate or [])})
    services.update({name: (ServiceRole.CAMERA, token) for name, token in
                     (_pair(item, "--camera") for item in args.camera or [])})
    summary = seed_demo(_db(args), kiosks, services)
    print(json.dumps(asdict(summary)))
    return 0


def _pair(item: str, option: str) -> tuple[str, str]:
    name, sep, token = item.partition(":")
    if not sep or not name or not token:
        raise CliError(f"{option} wants ID:TOKEN", 2)  # not echoed: it holds a secret
    return name, token


def _bind(host: str, port: int) -> socket.socket:
    from backoffice.server import bind_socket

    try:
        return bind_socket(host, port)
    except socket.gaierror:
        raise CliError(f"--host {host!r}: no such host or address", 2) from None
    except OSError as exc:
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise CliError(f"cannot listen on {where}: the port is in use (pick another with --port)") from None
        if exc.errno == errno.EACCES:
            raise CliError(f"cannot listen on {where}: not allowed (ports below 1024 need privileges)") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise CliError(f"cannot listen on {where}: this machine has no such address", 2) from None
        raise CliError(f"cannot listen on {where}: {exc.strerror or exc}") from None


def _serve(args: argparse.Namespace) -> int:
    from backoffice.server import serve_foreground, url_of

    url = _db(args)
    sock = _bind(args.host, args.port)
    base = url_of(args.host, sock.getsockname()[1])

    def announce() -> None:
        print(f"backoffice: serving {base} (API docs: {base}/docs); Ctrl-C stops", flush=True)

    from backoffice.municipal import LookupLimits, parse_limit

    try:
        limits = LookupLimits.from_env()
        if args.lookup_limit_kiosk:
            n, window = parse_limit(args.lookup_limit_kiosk)
            limits = LookupLimits(n, window, limits.per_identifier, limits.identifier_window_s, limits.legacy)
        if args.lookup_limit_identifier:
            n, window = parse_limit(args.lookup_limit_identifier)
            limits = LookupLimits(limits.per_kiosk, limits.kiosk_window_s, n, window, limits.legacy)
    except ValueError as exc:
        sock.close()
        raise CliError(str(exc), 2) from None
    if args.no_lookup_limit_legacy:
        limits = LookupLimits(limits.per_kiosk, limits.kiosk_window_s, limits.per_identifier,
                              limits.identifier_window_s, False)
    try:
        serve_foreground(url, sock, log_level=args.log_level.lower(), on_started=announce, lookup_limits=limits)
    finally:
        sock.close()
    return 0


def _kiosk_add(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import Session

    from backoffice.auth import CredentialError, TokenInUse, new_token, put_kiosk
    from backoffice.db import make_engine, upgrade

    url = _db(args)
    upgrade(url)
    token = args.token or new_token()
    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            put_kiosk(session, args.kiosk_id, token)
    except TokenInUse as exc:
        raise CliError(str(exc), 1) from None
    except CredentialError as exc:
        raise CliError(str(exc), 2) from None
    except IntegrityError:  # another kiosk took the token between our check and our write
        raise CliError(str(TokenInUse("this token is already in use by another kiosk; use a new one")), 1) from None
    finally:
        engine.dispose()
    print(token)
    return 0


def _token_add(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import Session

    from backoffice.auth import CredentialError, TokenInUse, new_token, put_service_token
    from backoffice.db import make_engine, upgrade
    from backoffice.models import ServiceRole

    url = _db(args)
    upgrade(url)
    token = args.token or new_token()
    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            put_service_token(session, args.name, ServiceRole(args.role), token)
    except TokenInUse as exc:
        raise CliError(str(exc), 1) from None
    except CredentialError as exc:
        raise CliError(str(exc), 2) from None
    except IntegrityError:
        raise CliError(str(TokenInUse("this token is already in use; use a new one")), 1) from None
    finally:
        engine.dispose()
    print(token)
    return 0


def _token_disable(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import Session

    from backoffice.db import make_engine
    from backoffice.models import ServiceToken

    engine = make_engine(_db(args))
    try:
        with Session(engine) as session, session.begin():
            row = session.get(ServiceToken, args.name)
            if row is None:
                raise CliError(f"no integration or gate credential {args.name!r}", 1)
            row.enabled = False
    finally:
        engine.dispose()
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
                raise CliError(f"no kiosk {args.kiosk_id!r}", 1)
            kiosk.enabled = False
    finally:
        engine.dispose()
    return 0


# settings a person may change with `backoffice settings set` (the audit secret is not one:
# changing it would unlink every earlier audit row from later look-ups)
SETTABLE = {"traffic_permit.price_rials": (1, 10**11), "traffic_permit.horizon_days": (0, 366)}


def _settings_show(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import Session

    from backoffice.db import make_engine, upgrade
    from backoffice.models import Setting

    url = _db(args)
    upgrade(url)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            values = {row.key: row.value for row in session.query(Setting).order_by(Setting.key)
                      if row.key in SETTABLE}
    finally:
        engine.dispose()
    print(json.dumps(values))
    return 0


def _settings_set(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import Session

    from backoffice.db import make_engine, upgrade
    from backoffice.models import Setting

    if args.key not in SETTABLE:
        raise CliError(f"unknown setting {args.key!r} (one of {', '.join(SETTABLE)})", 2)
    low, high = SETTABLE[args.key]
    try:
        value = int(args.value)
    except ValueError:
        raise CliError(f"{args.key} is a whole number (got {args.value!r})", 2) from None
    if not low <= value <= high:
        raise CliError(f"{args.key} must be {low}..{high} (got {value})", 2)
    url = _db(args)
    upgrade(url)
    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            row = session.get(Setting, args.key)
            if row is None:
                session.add(Setting(key=args.key, value=str(value)))
            else:
                row.value = str(value)
    finally:
        engine.dispose()
    return 0


def _audit_prune(args: argparse.Namespace) -> int:
    """Delete look-up audit rows older than --older-than-days (at least 1: the look-up limits
    count the rows of their windows, which are far shorter)."""
    import datetime as dt

    from sqlalchemy import delete
    from sqlalchemy.orm import Session

    from backoffice.db import make_engine, upgrade
    from backoffice.models import LookupAudit, utcnow

    if args.older_than_days < 1:
        raise CliError("--older-than-days must be at least 1", 2)
    url = _db(args)
    upgrade(url)
    engine = make_engine(url)
    try:
        with Session(engine) as session, session.begin():
            cutoff = utcnow() - dt.timedelta(days=args.older_than_days)
            removed = session.execute(delete(LookupAudit).where(LookupAudit.created_at < cutoff)).rowcount
    finally:
        engine.dispose()
    print(json.dumps({"removed": removed}))
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535 (0: any free port), got {port}")
    return port


def _level(text: str) -> str:
    level = text.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise argparse.ArgumentTypeError(f"not a log level: {text!r} (DEBUG, INFO, WARNING, ERROR)")
    return level


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help=f"database URL (default $BACKOFFICE_DB_URL or {DEFAULT_DB}); "
                        "PostgreSQL: postgresql+psycopg://user:pass@host/dbname")
    common.add_argument("--log-level", default="WARNING", type=_level, help="DEBUG, INFO, WARNING, ERROR")
    parser = argparse.ArgumentParser(prog="backoffice", description="City Kiosk reference municipal back-office")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("migrate", parents=[common], help="run database migrations (alembic upgrade head)")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("seed", parents=[common], help="add demo owners, fee slips, bills and kiosks")
    p.add_argument("--demo", action="store_true", help="seed the demo data set (tops the demo owner up "
                   "to a few unpaid slips when demos have paid the rest)")
    p.add_argument("--kiosk", action="append", metavar="ID:TOKEN", help="a kiosk credential (repeatable)")
    p.add_argument("--integration", action="append", metavar="NAME:TOKEN",
                   help="an integration credential: may create transit pending loads (repeatable)")
    p.add_argument("--gate", action="append", metavar="NAME:TOKEN",
                   help="a gate credential: may redeem QR tickets (repeatable)")
    p.add_argument("--camera", action="append", metavar="NAME:TOKEN",
                   help="an enforcement camera credential: may check traffic-zone permits (repeatable)")
    p.set_defaults(func=_seed)

    p = sub.add_parser("serve", parents=[common], help="migrate, then serve the HTTP API (prints its URL)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8700, help="TCP port (default 8700; 0 = any free port)")
    p.add_argument("--lookup-limit-kiosk", metavar="N/SECONDS",
                   help="slip look-ups allowed per kiosk (default $BACKOFFICE_LOOKUP_LIMIT_KIOSK or 20/60)")
    p.add_argument("--lookup-limit-identifier", metavar="N/SECONDS",
                   help="look-ups allowed per identifier across all kiosks "
                   "(default $BACKOFFICE_LOOKUP_LIMIT_IDENTIFIER or 5/600)")
    p.add_argument("--no-lookup-limit-legacy", action="store_true",
                   help="do not count the older GET /api/v1/fee-slips against the look-up limits (it is audited "
                   "either way; counted by default, else it would be a way around them)")
    p.set_defaults(func=_serve)

    kiosk = sub.add_parser("kiosk", help="kiosk credentials")
    ksub = kiosk.add_subparsers(dest="kiosk_command", metavar="ACTION")
    p = ksub.add_parser("add", parents=[common], help="create a kiosk (or rotate its token); prints the token")
    p.add_argument("kiosk_id")
    p.add_argument("--token", help="use this token instead of a random one (at least 24 characters of "
                   "A-Z a-z 0-9 - _, 10 of them different; one per kiosk)")
    p.set_defaults(func=_kiosk_add)
    p = ksub.add_parser("disable", parents=[common], help="revoke a kiosk's access")
    p.add_argument("kiosk_id")
    p.set_defaults(func=_kiosk_disable)

    tok = sub.add_parser("token", help="integration and gate credentials (transit)")
    tsub = tok.add_subparsers(dest="token_command", metavar="ACTION")
    p = tsub.add_parser("add", parents=[common], help="create an integration or gate credential (or rotate "
                        "its token); prints the token")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=("integration", "gate", "camera"),
                   help="integration: create pending loads, read every kiosk's daily totals; gate: redeem tickets; "
                   "camera: check traffic-zone permits")
    p.add_argument("--token", help="use this token instead of a random one (same rules as kiosk tokens)")
    p.set_defaults(func=_token_add)
    p = tsub.add_parser("disable", parents=[common], help="revoke an integration's or gate's access")
    p.add_argument("name")
    p.set_defaults(func=_token_disable)

    settings = sub.add_parser("settings", help="traffic-zone permit price and booking horizon")
    ssub = settings.add_subparsers(dest="settings_command", metavar="ACTION")
    p = ssub.add_parser("show", parents=[common], help="print the settings as JSON")
    p.set_defaults(func=_settings_show)
    p = ssub.add_parser("set", parents=[common], help="change a setting (every replica reads it at once)")
    p.add_argument("key", help=", ".join(SETTABLE))
    p.add_argument("value")
    p.set_defaults(func=_settings_set)

    audit = sub.add_parser("audit", help="the look-up audit (identifiers kept as HMAC only)")
    asub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    p = asub.add_parser("prune", parents=[common], help="delete look-up audit rows older than N days")
    p.add_argument("--older-than-days", type=int, required=True, metavar="N")
    p.set_defaults(func=_audit_prune)
    return parser


def _run(args: argparse.Namespace) -> int:
    """Run the command, turning the errors a person can cause into CliError."""
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from backoffice.auth import CredentialError

    url = _db(args) if hasattr(args, "db") else ""
    if url:
        check_db_url(url)
    try:
        return int(args.func(args) or 0)
    except CredentialError as exc:  # a weak token given to `seed --kiosk`
        raise CliError(str(exc), 2) from None
    except (SQLAlchemyError, CommandError) as exc:  # unreachable, refused, not a database, …
        raise _db_failure(url, exc) from None


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # databases and logs readable by their owner only, from creation
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
        return _run(args)
    except CliError as exc:
        print(f"backoffice: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
