"""Database plumbing for the fleet server: the back-office's engine rules (SQLite WAL with
BEGIN IMMEDIATE, PostgreSQL pool) and Alembic migrations run from code, with the fleet's own
version table so one database can hold both schemas."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

from backoffice.db import is_sqlite, make_engine

__all__ = ["is_sqlite", "make_engine", "upgrade", "current_revision", "session_factory", "VERSION_TABLE"]

log = logging.getLogger("fleet.db")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "fleet_alembic_version"
_MIGRATE_LOCK = 0x666C65657401  # "fleet" 01
_SIGNING_KEY_LOCK = 0x666C65657402


def pg_xact_lock(conn: Connection | Session, key: int) -> None:
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    if bind.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def lock_signing_key(session: Session) -> None:
    pg_xact_lock(session, _SIGNING_KEY_LOCK)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            pg_xact_lock(conn, _MIGRATE_LOCK)
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()
    log.info("fleet database upgraded to %s", revision)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    finally:
        engine.dispose()
