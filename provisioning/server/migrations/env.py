"""Alembic environment of the fleet server (its own version table: fleet_alembic_version)."""

from __future__ import annotations

from alembic import context

from provisioning.server.db import VERSION_TABLE, is_sqlite, make_engine
from provisioning.server.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: object) -> None:
    url = str(connection.engine.url)  # type: ignore[attr-defined]
    context.configure(connection=connection, target_metadata=target_metadata,  # type: ignore[arg-type]
                      render_as_batch=is_sqlite(url), compare_type=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(str(config.get_main_option("sqlalchemy.url")))
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


run_migrations_online()
