"""Database plumbing: engines for SQLite (default) and PostgreSQL, sessions, and
`upgrade(url)` — Alembic's `upgrade head` with a Config built in code, so it works from an
installed package without an alembic.ini."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("backoffice.db")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# PostgreSQL advisory lock keys (any fixed 64-bit numbers, the same in every process)
_MIGRATE_LOCK = 0x6B696F736B01  # "kiosk" 01
_SEED_LOCK = 0x6B696F736B02


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned for concurrent use by the API's worker threads.

    SQLite: WAL, foreign keys, a 30 s busy timeout and `BEGIN IMMEDIATE` for every
    transaction. Immediate begins take the write lock up front; with pysqlite's deferred
    begins two concurrent payment posts would both read, then one would fail to upgrade its
    lock with SQLITE_BUSY without waiting (SQLite's deadlock avoidance).
    """
    if is_sqlite(url):
        if url in ("sqlite://", "sqlite:///:memory:"):
            raise ValueError("the back-office needs a file SQLite database (sqlite:///path), "
                             "an in-memory one is private to each connection")
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # an unreachable server fails in seconds instead of hanging on the OS's TCP timeout
    kwargs.setdefault("connect_args", {"connect_timeout": 10})
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def _pg_xact_lock(conn: Connection | Session, key: int) -> None:
    """Serialise with other processes until this transaction ends (PostgreSQL only; SQLite's
    BEGIN IMMEDIATE already lets one writer in at a time)."""
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    if bind.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def lock_for_seeding(session: Session) -> None:
    """Hold the seeding lock for the rest of `session`'s transaction."""
    _pg_xact_lock(session, _SEED_LOCK)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # configparser treats % as interpolation; URLs may carry %-escaped passwords
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (default: the newest migration)."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            # two processes migrating a fresh database at once: the second waits, then finds
            # it at head (without the lock both would CREATE TABLE and one would fail)
            _pg_xact_lock(conn, _MIGRATE_LOCK)
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()
    log.info("database upgraded to %s", revision)


def current_revision(url: str) -> str | None:
    """The Alembic revision the database is at (None when never migrated)."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
