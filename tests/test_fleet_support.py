"""Fixtures and helpers for the fleet tests (no tests here): a migrated fleet database of each
kind (SQLite file; PostgreSQL over a real connection from tests/conftest.py's pg_url), a real
fleet server on loopback, manager tokens, and a kiosk that signs with its own key."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Iterator

import psycopg
import pytest
import requests
from sqlalchemy.engine import make_url

from provisioning.common import signing
from provisioning.server import service as svc
from provisioning.server.app import Settings
from provisioning.server.db import make_engine, session_factory, upgrade
from provisioning.server.models import Role
from provisioning.server.server import RunningServer, serve_in_thread

FLEET_TABLES = ("fleet_kiosks", "fleet_enroll_tokens", "fleet_manager_tokens", "fleet_config_layers",
                "fleet_commands", "fleet_nonces", "fleet_audit", "fleet_signing_keys", "fleet_journal",
                "fleet_journal_problems", "fleet_rollouts", "fleet_rollout_actions", "fleet_statements",
                "fleet_reconciliations")


@pytest.fixture(scope="session")
def fleet_pg_database(pg_url: str) -> Iterator[str]:
    admin = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"fleet_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fleet_db(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """An empty, migrated fleet database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fleet.sqlite3'}"
        upgrade(url)
        return url
    url = str(request.getfixturevalue("fleet_pg_database"))
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(FLEET_TABLES)} RESTART IDENTITY CASCADE")
        conn.exec_driver_sql("UPDATE fleet_counters SET value = 0")
    engine.dispose()
    return url


@dataclass
class Fleet:
    """A running fleet server and direct access to its database."""

    url: str
    db_url: str
    server: RunningServer
    sessions: Any
    admin: str  # an admin manager token

    def session(self) -> Any:
        return self.sessions()

    def manager_token(self, name: str, role: Role) -> str:
        with self.sessions() as s, s.begin():
            return svc.create_manager_token(s, svc.CLI, name, role)

    def enroll_token(self, **kw: Any) -> str:
        kw.setdefault("label", "test")
        with self.sessions() as s, s.begin():
            return svc.create_enroll_token(s, svc.CLI, **kw)

    def api(self, method: str, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.admin}"} if token != "" else {}
        return requests.request(method, self.url + path, headers=headers, timeout=15, **kw)

    def audit(self, outcome: str | None = None) -> list[dict[str, Any]]:
        with self.sessions() as s:
            return svc.audit_entries(s, 1000, outcome=outcome)


def start_fleet(db_url: str, interval_s: int = 60) -> tuple[RunningServer, Any, Any]:
    server = serve_in_thread(db_url, settings=Settings(interval_s=interval_s))
    engine = make_engine(db_url)
    return server, engine, session_factory(engine)


@pytest.fixture
def fleet(fleet_db: str) -> Iterator[Fleet]:
    server, engine, sessions = start_fleet(fleet_db)
    with sessions() as s, s.begin():
        admin = svc.create_manager_token(s, svc.CLI, "root", Role.ADMIN)
    try:
        yield Fleet(server.url, fleet_db, server, sessions, admin)
    finally:
        server.stop()
        engine.dispose()


class SignedKiosk:
    """A kiosk on the wire: its own Ed25519 key, signing every request as the agent does."""

    def __init__(self, base_url: str, serial: str, key: Any = None) -> None:
        self.base_url, self.serial = base_url, serial
        self.key = key or signing.new_private_key()
        self.kiosk_id = serial

    @property
    def public(self) -> str:
        return signing.public_b64(self.key)

    def signed(self, method: str, path: str, body: Any = None, *, kiosk_id: str | None = None,
               key: Any = None, now: float | None = None, nonce: str | None = None) -> tuple[dict[str, str], bytes]:
        import json

        data = b"" if body is None else json.dumps(body).encode()
        headers = signing.sign_request(key or self.key, kiosk_id or self.kiosk_id, method, path, data,
                                       now=time.time() if now is None else now,
                                       nonce=nonce or secrets.token_urlsafe(18))
        headers["Content-Type"] = "application/json"
        return headers, data

    def send(self, method: str, path: str, headers: dict[str, str], data: bytes) -> requests.Response:
        return requests.request(method, self.base_url + path, headers=headers, data=data, timeout=15)

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
        headers, data = self.signed(method, path, body, **kw)
        return self.send(method, path, headers, data)

    def enroll(self, token: str, **kw: Any) -> requests.Response:
        body = {"token": token, "serial": self.serial, "model": "test-model", "app_version": "1.2.3",
                "public_key": self.public}
        return self.call("POST", "/api/v1/enroll", body, kiosk_id=signing.ENROLL_ID, **kw)

    def heartbeat(self, **fields: Any) -> requests.Response:
        body = {"app_version": "1.2.3", "config_version": None, "devices": {}, "open_transactions": 0,
                "refunds_pending": 0, "last_tx_at": None, **fields}
        return self.call("POST", "/api/v1/agent/heartbeat", body)
