"""Two real back-office server processes (`backoffice serve`, uvicorn) on one PostgreSQL
database, as stateless replicas behind a load balancer would run: a bill settled from both at
once is settled exactly once, and the look-up limits hold exactly across both (their state is
in the database, not in either process)."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import re
import secrets
import subprocess
import sys
import threading
from typing import Any, Iterator

import psycopg
import pytest
import requests
from sqlalchemy.engine import make_url

from backoffice.db import make_engine
from backoffice.seed import BASKET_PLATE, DEMO_NATIONAL_CODE, seed_demo

pytestmark = pytest.mark.postgres

TOKENS = {"rep-a": "replica-a-Qm7Vx2Lp9Rt4Wz8Kc3Nd", "rep-b": "replica-b-Hs5Jy1Fg6Ub0Ea7Mo2Pi",
          "rep-c": "replica-c-Zq8Wc4Rv1Tb6Yn3Mk9Lp"}
PER_KIOSK = 10
PER_IDENTIFIER = 5


class Replica:
    """`backoffice serve --port 0` in its own process, with the URL it announced."""

    def __init__(self, db_url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backoffice.cli", "serve", "--db", db_url, "--port", "0",
             "--lookup-limit-kiosk", f"{PER_KIOSK}/60", "--lookup-limit-identifier", f"{PER_IDENTIFIER}/600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(90)
        match = re.search(r"serving (http://127\.0\.0\.1:\d+)", line[0] if line else "")
        if match is None:
            self.stop()
            raise AssertionError(f"replica announced no URL: {line!r}")
        self.url = match.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def database(pg_url: str) -> Iterator[str]:
    admin = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"kiosk_replicas_{secrets.token_hex(6)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    try:
        seed_demo(url, TOKENS)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def replicas(database: str) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    try:
        for _ in range(2):
            started.append(Replica(database))
        yield started
    finally:
        for replica in started:
            replica.stop()


def call(replica: Replica, method: str, path: str, kiosk: str, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {TOKENS[kiosk]}", **kw.pop("headers", {})}
    return requests.request(method, replica.url + path, headers=headers, timeout=60, **kw)


def scalar(db_url: str, sql: str) -> int:
    import sqlalchemy as sa

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())
    finally:
        engine.dispose()


def test_two_replicas_settle_one_bill_exactly_once(replicas: list[Replica], database: str) -> None:
    listed = call(replicas[0], "GET", "/api/v1/fee-slips", "rep-a", params={"national_code": DEMO_NATIONAL_CODE})
    slip = next(s for s in listed.json()["slips"] if s["status"] == "unpaid")
    paid_at = dt.datetime.now(dt.timezone.utc).isoformat()

    def settle(i: int) -> requests.Response:
        tx = f"rep-tx-{i}"
        body = {"transaction_id": tx, "bill_id": slip["bill_id"], "payment_id": slip["payment_id"],
                "amount_rials": slip["amount_rials"], "paid_at": paid_at,
                "terminal": {"rrn": f"5123456789{i:02d}", "masked_pan": "603799******1234"}}
        return call(replicas[i % 2], "POST", "/api/v1/payments", ("rep-a", "rep-b")[i // 2 % 2], json=body,
                    headers={"Idempotency-Key": f"rep-key-{i}"})

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(settle, range(20)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 19, [r.text for r in results]
    assert {r.json()["error"] for r in results if r.status_code == 409} == {"bill.already_paid"}
    assert scalar(database, f"SELECT count(*) FROM payments WHERE bill_id = '{slip['bill_id']}'") == 1
    assert scalar(database, f"SELECT count(*) FROM bills WHERE bill_id = '{slip['bill_id']}' AND status = 'paid'") == 1


def test_lookup_limits_hold_exactly_across_replicas(replicas: list[Replica], database: str) -> None:
    def same_identifier(i: int) -> int:
        return call(replicas[i % 2], "POST", "/api/v1/lookups", ("rep-a", "rep-b")[i // 2 % 2],
                    json={"fee_type": "vehicle_tax", "identifier": BASKET_PLATE}).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(same_identifier, range(24)))
    assert sorted(codes) == [200] * PER_IDENTIFIER + [429] * (24 - PER_IDENTIFIER)

    def one_kiosk(i: int) -> int:  # every identifier new: only the kiosk's own limit applies
        return call(replicas[i % 2], "POST", "/api/v1/lookups", "rep-c",
                    json={"fee_type": "business_tax", "identifier": f"1402-{i:07d}"}).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(one_kiosk, range(30)))
    assert sorted(codes) == [404] * PER_KIOSK + [429] * (30 - PER_KIOSK)
    assert scalar(database, "SELECT count(*) FROM lookup_audit WHERE kiosk_id = 'rep-c' AND NOT refused") == PER_KIOSK
    assert scalar(database, "SELECT count(*) FROM lookup_audit WHERE kiosk_id = 'rep-c' AND refused") == 30 - PER_KIOSK
