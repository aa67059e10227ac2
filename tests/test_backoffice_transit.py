"""The back-office's transit side (issue 8) over real HTTP on loopback, against SQLite and
PostgreSQL: the load ledger and its refusals, pending loads applied exactly once, pending
actions settled exactly once, QR tickets redeemed per trip, daily totals, the demo seed,
migration 0004 on an existing 0003 database, the credentials CLI, and the kiosk's client
methods against the real server (and against a fake that answers like a proxy)."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import http.server
import itertools
import json
import secrets
import threading
import uuid
import zoneinfo
from dataclasses import dataclass
from typing import Any, Iterator

import psycopg
import pytest
import requests
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import make_url

from backoffice import cli as backoffice_cli
from backoffice.db import alembic_config, current_revision, make_engine, upgrade
from backoffice.models import ServiceRole
from backoffice.seed import DEMO_CARD_SERIAL, DEMO_PENDING_LOAD_RIALS, seed_demo
from backoffice.server import RunningServer, serve_in_thread
from backoffice.transit_schemas import MAX_TRANSIT_AMOUNT_RIALS
from kiosk.backoffice_client import (
    BackofficeClient,
    BackofficeRejected,
    BackofficeUnavailable,
    BalanceMismatch,
    CardAccount,
    CardAlreadySold,
    CardMismatch,
    LoadNotFound,
    LoadPost,
    LoadRecord,
    LoadReplayRefused,
    PendingActionAlreadySettled,
    PendingActionOpen,
    PendingActionPost,
    PendingLoadAlreadyApplied,
    PendingLoadAmountMismatch,
    PendingLoadNotFound,
    TicketDuplicate,
    TicketNotFound,
    TicketPost,
    TicketRecord,
    TransitPostPending,
    TransitRefused,
)

KIOSK_A = "transit-a-Qm7Vx2Lp9Rt4Wz8Kc3Nd"
KIOSK_B = "transit-b-Hs5Jy1Fg6Ub0Ea7Mo2Pi"
INTEGRATION = "transit-i-Zq8Wc4Rv1Tb6Yn3Mk9Lp"
GATE = "transit-g-Xe2Rf7Tg5Yh1Uj6Ik3Ol8"
GATE_2 = "transit-h-Pa9Sd4Fg2Hj7Kl5Zx1Cv"
KIOSKS = {"kiosk-a": KIOSK_A, "kiosk-b": KIOSK_B}
SERVICES = {"ussd-gw": (ServiceRole.INTEGRATION, INTEGRATION), "gate-1": (ServiceRole.GATE, GATE),
            "gate-2": (ServiceRole.GATE, GATE_2)}
UID = "04A1B2C3"
UID7 = "04A1B2C3D4E580"
TEHRAN = zoneinfo.ZoneInfo("Asia/Tehran")
CARD_PRICE = 20_000
FUTURE = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)).replace(microsecond=0)

_serials = itertools.count(3_000_000_000 + secrets.randbelow(10**6) * 1000)


def new_serial() -> str:
    return f"{next(_serials):010d}"


def new_tx(prefix: str = "kiosk-a") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


# --- the servers ------------------------------------------------------------------------------------
@dataclass
class Env:
    url: str
    server: RunningServer


def _fresh_pg_database(pg_url: str) -> tuple[str, str]:
    admin = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"kiosk_test_transit_{secrets.token_hex(5)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(pg_url).set(database=name).render_as_string(hide_password=False), admin


def _drop_pg_database(url: str, admin: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A seeded back-office on loopback per database kind, shared by the module's tests (each
    test uses card serials and transaction ids of its own)."""
    admin = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('transit') / 'backoffice.sqlite3'}"
    else:
        url, admin = _fresh_pg_database(str(request.getfixturevalue("pg_url")))
    try:
        seed_demo(url, KIOSKS, SERVICES)
        with serve_in_thread(url) as running:
            yield Env(url, running)
    finally:
        if admin is not None:
            _drop_pg_database(url, admin)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """An empty database of each kind, not migrated."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    url, admin = _fresh_pg_database(str(request.getfixturevalue("pg_url")))
    try:
        yield url
    finally:
        _drop_pg_database(url, admin)


def api(env: Env, method: str, path: str, token: str | None = KIOSK_A, **kw: Any) -> requests.Response:
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, env.server.url + path, headers=headers, timeout=20, **kw)


def count(url: str, sql: str, **params: Any) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql), params).scalar_one())
    finally:
        engine.dispose()


def load_body(serial: str, tx: str, before: int, after: int, amount: int, balance: int, *,
              kind: str = "topup", uid: str = UID, pending: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"transaction_id": tx, "card_serial": serial, "card_uid": uid,
                            "counter_before": before, "counter_after": after, "amount_rials": amount,
                            "balance_after": balance, "kind": kind}
    if pending is not None:
        body["pending_load_id"] = pending
    return body


def post_load(env: Env, body: dict[str, Any], token: str = KIOSK_A, key: str | None = "same") -> requests.Response:
    headers = {} if key is None else {"Idempotency-Key": body.get("transaction_id", "") if key == "same" else key}
    return api(env, "POST", "/api/v1/transit/loads", token=token, json=body, headers=headers)


def sold_card(env: Env, balance: int = 100_000, uid: str = UID) -> str:
    """A new serial with one recorded card sale (the card's price plus `balance` rials on it):
    counter 1, `balance` rials."""
    serial = new_serial()
    resp = post_load(env, load_body(serial, new_tx(), 0, 1, CARD_PRICE + balance, balance, kind="card_sale", uid=uid))
    assert resp.status_code == 201, resp.text
    return serial


def pending_load(env: Env, serial: str, amount: int = 50_000, ref: str | None = None,
                 source: str = "ussd") -> dict[str, Any]:
    resp = api(env, "POST", "/api/v1/transit/pending-loads", token=INTEGRATION,
               json={"card_serial": serial, "amount_rials": amount, "source": source,
                     "external_ref": ref or uuid.uuid4().hex})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def account(env: Env, serial: str, token: str = KIOSK_A) -> dict[str, Any]:
    resp = api(env, "GET", f"/api/v1/transit/cards/{serial}", token=token)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def loads_of(env: Env, serial: str) -> int:
    return count(env.url, "SELECT count(*) FROM transit_loads WHERE card_serial = :s", s=serial)


def action_body(serial: str, tx: str, before: int, intended: int, amount: int, **extra: Any) -> dict[str, Any]:
    return {"transaction_id": tx, "card_serial": serial, "card_uid": UID, "counter_before": before,
            "intended_balance": intended, "amount_rials": amount, **extra}


def post_action(env: Env, body: dict[str, Any], token: str = KIOSK_A) -> requests.Response:
    return api(env, "POST", "/api/v1/transit/pending-actions", token=token, json=body,
               headers={"Idempotency-Key": body["transaction_id"]})


def settle(env: Env, tx: str, serial: str, outcome: str, seen: int, by: str, token: str = KIOSK_B) -> requests.Response:
    return api(env, "POST", f"/api/v1/transit/pending-actions/{tx}/settle", token=token,
               json={"card_serial": serial, "outcome": outcome, "counter_seen": seen,
                     "settled_by_transaction_id": by})


def ticket_body(tx: str, ticket_id: str, kind: str = "single", amount: int = 30_000,
                valid_until: dt.datetime = FUTURE) -> dict[str, Any]:
    return {"ticket_id": ticket_id, "transaction_id": tx, "kind": kind, "trips": 1 if kind == "single" else 2,
            "valid_until": valid_until.isoformat(), "amount_rials": amount}


def post_ticket(env: Env, body: dict[str, Any], token: str = KIOSK_A) -> requests.Response:
    return api(env, "POST", "/api/v1/tickets", token=token, json=body, headers={"Idempotency-Key": body["transaction_id"]})


def redeem(env: Env, ticket_id: str, gate_id: str = "gate-A1", token: str = GATE, key: str | None = None
           ) -> requests.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return api(env, "POST", f"/api/v1/tickets/{ticket_id}/redeem", token=token, json={"gate_id": gate_id},
               headers=headers)


def run_together(n: int, fn: Any) -> list[requests.Response]:
    """Call fn(i) for i < n from n threads released at once."""
    barrier = threading.Barrier(n)

    def go(i: int) -> requests.Response:
        barrier.wait()
        return fn(i)  # type: ignore[no-any-return]

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


# --- loads --------------------------------------------------------------------------------------------
def test_a_load_is_recorded_and_read_back_only_by_its_kiosk(env: Env) -> None:
    serial, tx = new_serial(), new_tx()
    resp = post_load(env, load_body(serial, tx, 4, 5, 200_000, 230_000, uid=UID.lower()))
    assert resp.status_code == 201, resp.text
    rec = resp.json()
    assert (rec["status"], rec["card_uid"], rec["counter_after"], rec["kind"]) == ("recorded", UID, 5, "topup")
    assert rec["tracking_code"].isdigit() and rec["recorded_at"].endswith("Z")
    assert api(env, "GET", f"/api/v1/transit/loads/{tx}").json() == rec
    theirs = api(env, "GET", f"/api/v1/transit/loads/{tx}", token=KIOSK_B)
    unknown = api(env, "GET", "/api/v1/transit/loads/kiosk-b-never", token=KIOSK_B)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.content == unknown.content == b'{"error":"transit.load_not_found"}'
    acc = account(env, serial, token=KIOSK_B)  # any kiosk reads the card's account
    assert (acc["known"], acc["last_counter"], acc["last_balance"], acc["card_uid"]) == (True, 5, 230_000, UID)
    assert [(x["transaction_id"], x["amount_rials"]) for x in acc["loads"]] == [(tx, 200_000)]


def test_an_unknown_serial_is_an_empty_account_and_a_malformed_one_is_refused(env: Env) -> None:
    acc = account(env, new_serial())
    assert (acc["known"], acc["last_counter"], acc["loads"], acc["pending_loads"], acc["pending_actions"]) == (
        False, None, [], [], [])
    for bad in ("123456789", "12345678901", "10000000a7", "۱۰۰۰۰۰۰۰۱۷"):
        assert api(env, "GET", f"/api/v1/transit/cards/{bad}").status_code == 422, bad
    assert api(env, "GET", f"/api/v1/transit/cards/{new_serial()}", token=None).status_code == 401
    assert api(env, "GET", f"/api/v1/transit/cards/{new_serial()}", token=GATE).status_code == 401


def test_the_same_transaction_and_body_replays_the_identical_first_answer(env: Env) -> None:
    serial = sold_card(env)
    body = load_body(serial, new_tx(), 1, 2, 50_000, 150_000)
    first, again = post_load(env, body), post_load(env, body)
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    assert loads_of(env, serial) == 2  # the sale and this one


def test_the_same_transaction_with_another_body_is_a_conflict(env: Env) -> None:
    serial = sold_card(env)
    body = load_body(serial, new_tx(), 1, 2, 50_000, 150_000)
    assert post_load(env, body).status_code == 201
    other = post_load(env, dict(body, amount_rials=60_000, balance_after=160_000))
    assert other.status_code == 409 and other.json() == {"error": "idempotency.conflict"}
    assert loads_of(env, serial) == 2


def test_the_idempotency_key_is_required_and_is_the_transaction_id(env: Env) -> None:
    body = load_body(new_serial(), new_tx(), 0, 1, 10_000, 10_000)
    missing = post_load(env, body, key=None)
    assert missing.status_code == 400 and missing.json() == {"error": "idempotency.key_required"}
    other = post_load(env, body, key="another-key")
    assert other.status_code == 422 and other.json() == {"error": "idempotency.key_mismatch"}
    assert loads_of(env, body["card_serial"]) == 0


def test_a_replayed_or_forged_counter_is_refused_and_nothing_is_stored(env: Env) -> None:
    serial = sold_card(env)  # counter 1
    assert post_load(env, load_body(serial, new_tx(), 1, 2, 10_000, 110_000)).status_code == 201
    # a counter already recorded (a replay), or a step no card write makes (a forgery)
    for before, after in ((1, 2), (0, 1), (1, 3), (0, 5)):
        resp = post_load(env, load_body(serial, new_tx(), before, after, 10_000, 120_000))
        assert resp.status_code == 409, (before, after, resp.text)
        assert resp.json() == {"error": "transit.counter_replay", "last_counter": 2}
    assert loads_of(env, serial) == 2
    # a card that rode since (counter moved on at gates) loads fine
    assert post_load(env, load_body(serial, new_tx(), 6, 7, 10_000, 40_000)).status_code == 201


def test_a_load_posted_late_is_recorded_when_its_counter_is_free(env: Env) -> None:
    """Store-and-forward delivers out of counter order: a kiosk whose link was down posts its
    top-up (counter 2 -> 3) after another kiosk posted a later one (3 -> 4). The late load holds
    a counter no load holds, so it is recorded, and the account keeps the highest counter."""
    serial = sold_card(env, balance=100_000)  # counter 1
    assert post_load(env, load_body(serial, new_tx(), 1, 2, 10_000, 110_000)).status_code == 201
    assert post_load(env, load_body(serial, new_tx(), 3, 4, 30_000, 160_000)).status_code == 201
    late = post_load(env, load_body(serial, new_tx(), 2, 3, 20_000, 130_000))
    assert late.status_code == 201, late.text
    assert loads_of(env, serial) == 4
    acct = account(env, serial)
    assert (acct["last_counter"], acct["last_balance"]) == (4, 160_000)
    # still no second load on a counter, and the balance must follow the load before it
    again = post_load(env, load_body(serial, new_tx(), 2, 3, 20_000, 130_000))
    assert again.status_code == 409 and again.json()["error"] == "transit.counter_replay"


def test_a_balance_that_does_not_follow_from_the_last_load_is_refused(env: Env) -> None:
    serial = sold_card(env, balance=100_000)
    resp = post_load(env, load_body(serial, new_tx(), 1, 2, 50_000, 250_000))
    assert resp.status_code == 409
    assert resp.json() == {"error": "transit.balance_mismatch", "expected_balance": 150_000}
    assert post_load(env, load_body(serial, new_tx(), 1, 2, 50_000, 150_000)).status_code == 201


def test_another_chip_under_the_same_serial_is_refused(env: Env) -> None:
    serial = sold_card(env, uid=UID7)
    resp = post_load(env, load_body(serial, new_tx(), 1, 2, 10_000, 110_000, uid=UID))
    assert resp.status_code == 409 and resp.json() == {"error": "transit.card_mismatch"}
    assert loads_of(env, serial) == 1


def test_a_card_is_sold_once(env: Env) -> None:
    serial = sold_card(env)
    resp = post_load(env, load_body(serial, new_tx(), 5, 6, 100_000, 100_000, kind="card_sale"))
    assert resp.status_code == 409 and resp.json() == {"error": "transit.card_already_sold"}


BAD_LOAD_FIELDS: tuple[tuple[str, Any], ...] = (
    ("amount_rials", 0), ("amount_rials", -1000), ("amount_rials", MAX_TRANSIT_AMOUNT_RIALS + 1),
    ("amount_rials", "50000"), ("amount_rials", 50000.0), ("amount_rials", True),
    ("counter_before", -1), ("counter_after", 2**32), ("counter_after", "2"), ("balance_after", 2**31),
    ("card_serial", "123456789"), ("card_serial", 1000000017), ("card_serial", "10000000x7"),
    ("card_uid", "04A1B2C3D4"), ("card_uid", "04A1B2CZ"), ("kind", "refund"), ("pending_load_id", 7),
    ("extra", 1), ("transaction_id", "tx with space"),
)


def test_load_bodies_are_strict_and_amounts_bounded(env: Env) -> None:
    serial = new_serial()
    good = load_body(serial, "kiosk-a-strict-1", 1, 2, 50_000, 80_000)
    for field, value in BAD_LOAD_FIELDS:
        body = dict(good, **{field: value})
        resp = post_load(env, body, key="kiosk-a-strict-1")
        assert resp.status_code == 422 and resp.json()["error"] == "request.invalid", (field, value, resp.text)
    for changes in ({"counter_after": 1}, {"counter_after": 0}, {"kind": "pending_load"},
                    {"balance_after": 40_000}):
        resp = post_load(env, dict(good, **changes), key="kiosk-a-strict-1")
        assert resp.status_code == 422 and resp.json()["error"] == "request.invalid", changes
    assert loads_of(env, serial) == 0
    assert post_load(env, good).status_code == 201  # and the good body is recorded


def test_concurrent_posts_of_one_load_make_one_row(env: Env) -> None:
    serial = sold_card(env)
    body = load_body(serial, new_tx(), 1, 2, 20_000, 120_000)
    results = run_together(8, lambda _i: post_load(env, body))
    assert {r.status_code for r in results} == {201}
    assert len({r.content for r in results}) == 1
    assert loads_of(env, serial) == 2


def test_concurrent_loads_on_one_counter_record_one(env: Env) -> None:
    serial = sold_card(env)
    results = run_together(6, lambda _i: post_load(env, load_body(serial, new_tx(), 1, 2, 20_000, 120_000)))
    assert sorted(r.status_code for r in results) == [201] + [409] * 5
    assert {r.json()["error"] for r in results if r.status_code == 409} == {"transit.counter_replay"}
    assert loads_of(env, serial) == 2


# --- pending loads -------------------------------------------------------------------------------------
def test_a_pending_load_is_listed_applied_once_and_names_who_applied_it(env: Env) -> None:
    serial = sold_card(env, balance=10_000)
    pending = pending_load(env, serial, 50_000)
    listed = account(env, serial)["pending_loads"]
    assert [(p["pending_load_id"], p["amount_rials"], p["status"]) for p in listed] == [
        (pending["pending_load_id"], 50_000, "pending")]
    first_tx = new_tx()
    first = post_load(env, load_body(serial, first_tx, 1, 2, 50_000, 60_000, kind="pending_load",
                                     pending=pending["pending_load_id"]))
    assert first.status_code == 201 and first.json()["pending_load_id"] == pending["pending_load_id"]
    assert account(env, serial)["pending_loads"] == []
    again = post_load(env, load_body(serial, new_tx("kiosk-b"), 2, 3, 50_000, 110_000, kind="pending_load",
                                     pending=pending["pending_load_id"]), token=KIOSK_B)
    assert again.status_code == 409
    assert again.json() == {"error": "transit.pending_load_applied", "pending_load_id": pending["pending_load_id"],
                            "applied_by_transaction_id": first_tx}
    assert count(env.url, "SELECT count(*) FROM transit_loads WHERE pending_load_id = :p",
                 p=pending["pending_load_id"]) == 1


def test_a_pending_load_of_another_card_or_amount_or_unknown_is_refused(env: Env) -> None:
    serial, other = sold_card(env), new_serial()
    theirs = pending_load(env, other, 40_000)
    mine = pending_load(env, serial, 40_000)
    for pid, amount, code in ((theirs["pending_load_id"], 40_000, "transit.pending_load_not_found"),
                              (2**31 - 1, 40_000, "transit.pending_load_not_found"),
                              (mine["pending_load_id"], 30_000, "transit.amount_mismatch")):
        resp = post_load(env, load_body(serial, new_tx(), 1, 2, amount, 100_000 + amount, kind="pending_load",
                                        pending=pid))
        assert resp.json()["error"] == code, resp.text
        assert resp.status_code == (422 if code == "transit.amount_mismatch" else 404)
    assert post_load(env, load_body(serial, new_tx(), 1, 2, 30_000, 130_000, kind="pending_load",
                                    pending=mine["pending_load_id"])).json()["expected_rials"] == 40_000
    assert loads_of(env, serial) == 1


def test_concurrent_applications_of_one_pending_load_apply_it_once(env: Env) -> None:
    serial = sold_card(env, balance=0)
    pid = pending_load(env, serial, 70_000)["pending_load_id"]
    txs = [new_tx() for _ in range(6)]
    results = run_together(6, lambda i: post_load(env, load_body(serial, txs[i], 1, 2, 70_000, 70_000,
                                                                  kind="pending_load", pending=pid)))
    assert sorted(r.status_code for r in results) == [201] + [409] * 5
    winner = next(r.json()["transaction_id"] for r in results if r.status_code == 201)
    assert {(r.json()["error"], r.json()["applied_by_transaction_id"]) for r in results if r.status_code == 409} == {
        ("transit.pending_load_applied", winner)}
    assert count(env.url, "SELECT count(*) FROM transit_loads WHERE pending_load_id = :p", p=pid) == 1
    assert count(env.url, "SELECT count(*) FROM transit_pending_loads WHERE id = :p AND applied_transaction_id = :t",
                 p=pid, t=winner) == 1


def test_pending_loads_take_an_integration_token_and_are_idempotent_by_external_ref(env: Env) -> None:
    serial, ref = new_serial(), f"ussd-{uuid.uuid4().hex}"
    body = {"card_serial": serial, "amount_rials": 25_000, "source": "ussd", "external_ref": ref}
    for token in (KIOSK_A, GATE, None, "not-a-token"):
        resp = api(env, "POST", "/api/v1/transit/pending-loads", token=token, json=body)
        assert resp.status_code == 401 and resp.json() == {"error": "auth.unauthorized"}, token
    first = api(env, "POST", "/api/v1/transit/pending-loads", token=INTEGRATION, json=body)
    again = api(env, "POST", "/api/v1/transit/pending-loads", token=INTEGRATION, json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json() and first.json()["status"] == "pending"
    other = api(env, "POST", "/api/v1/transit/pending-loads", token=INTEGRATION, json=dict(body, amount_rials=26_000))
    assert other.status_code == 409 and other.json() == {"error": "idempotency.conflict"}
    for field, value in (("amount_rials", 0), ("amount_rials", MAX_TRANSIT_AMOUNT_RIALS + 1),
                         ("amount_rials", "25000"), ("source", "USSD!"), ("card_serial", "12"), ("x", 1)):
        resp = api(env, "POST", "/api/v1/transit/pending-loads", token=INTEGRATION,
                   json=dict(body, external_ref=uuid.uuid4().hex, **{field: value}))
        assert resp.status_code == 422 and resp.json()["error"] == "request.invalid", field
    assert count(env.url, "SELECT count(*) FROM transit_pending_loads WHERE card_serial = :s", s=serial) == 1


# --- pending actions -------------------------------------------------------------------------------------
def test_a_pending_action_is_listed_blocks_writes_and_settles_applied_into_the_ledger(env: Env) -> None:
    serial = sold_card(env, balance=20_000)
    tx = new_tx()
    created = post_action(env, action_body(serial, tx, 1, 70_000, 50_000, tracking_code="TRK-12345"))
    assert created.status_code == 201 and created.json()["status"] == "open"
    assert post_action(env, action_body(serial, tx, 1, 70_000, 50_000, tracking_code="TRK-12345")).content == \
        created.content
    listed = account(env, serial, token=KIOSK_B)["pending_actions"]
    assert [(a["transaction_id"], a["tracking_code"], a["counter_before"]) for a in listed] == [(tx, "TRK-12345", 1)]
    blocked = post_load(env, load_body(serial, new_tx(), 1, 2, 10_000, 30_000))
    assert blocked.status_code == 409
    assert blocked.json() == {"error": "transit.pending_action_open", "transaction_id": tx, "counter_before": 1}
    second = post_action(env, action_body(serial, new_tx(), 1, 30_000, 10_000))
    assert second.status_code == 409 and second.json()["error"] == "transit.pending_action_open"

    by = new_tx("kiosk-b")
    done = settle(env, tx, serial, "applied", 2, by)
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["settled_by_transaction_id"], done.json()["counter_seen"]) == (
        "applied", by, 2)
    acc = account(env, serial)
    assert acc["pending_actions"] == [] and (acc["last_counter"], acc["last_balance"]) == (2, 70_000)
    # the ledger holds the top-up under the original kiosk and transaction, with the receipt's code
    rec = api(env, "GET", f"/api/v1/transit/loads/{tx}").json()
    assert (rec["kind"], rec["amount_rials"], rec["counter_after"], rec["tracking_code"]) == (
        "topup", 50_000, 2, "TRK-12345")
    # the original kiosk posting that load after all gets the same record, not a second load
    late = post_load(env, load_body(serial, tx, 1, 2, 50_000, 70_000))
    assert late.status_code == 201 and late.json() == rec
    assert loads_of(env, serial) == 2

    assert settle(env, tx, serial, "applied", 2, by).json() == done.json()  # the same settlement again
    other = settle(env, tx, serial, "rolled_back", 2, new_tx("kiosk-b"))
    assert other.status_code == 409
    assert other.json() == {"error": "transit.pending_action_settled", "outcome": "applied",
                            "settled_by_transaction_id": by}
    assert loads_of(env, serial) == 2


def test_a_rolled_back_action_records_no_load_and_frees_its_pending_load(env: Env) -> None:
    serial = sold_card(env, balance=5_000)
    pid = pending_load(env, serial, 45_000)["pending_load_id"]
    tx = new_tx()
    assert post_action(env, action_body(serial, tx, 1, 50_000, 45_000, pending_load_id=pid)).status_code == 201
    assert [p["status"] for p in account(env, serial)["pending_loads"]] == ["reserved"]
    assert settle(env, tx, serial, "rolled_back", 1, new_tx("kiosk-b")).json()["status"] == "rolled_back"
    acc = account(env, serial)
    assert acc["pending_actions"] == [] and [p["status"] for p in acc["pending_loads"]] == ["pending"]
    assert loads_of(env, serial) == 1 and acc["last_counter"] == 1
    assert api(env, "GET", f"/api/v1/transit/loads/{tx}").status_code == 404
    # the card is writable again and the pending load still applies, once
    ok = post_load(env, load_body(serial, new_tx(), 1, 2, 45_000, 50_000, kind="pending_load", pending=pid))
    assert ok.status_code == 201, ok.text


def test_an_applied_action_applies_its_pending_load(env: Env) -> None:
    serial = sold_card(env, balance=0)
    pid = pending_load(env, serial, 30_000)["pending_load_id"]
    tx = new_tx()
    assert post_action(env, action_body(serial, tx, 1, 30_000, 30_000, pending_load_id=pid)).status_code == 201
    assert settle(env, tx, serial, "applied", 4, new_tx("kiosk-b")).status_code == 200
    assert account(env, serial)["pending_loads"] == []
    again = post_load(env, load_body(serial, new_tx(), 4, 5, 30_000, 60_000, kind="pending_load", pending=pid))
    assert again.status_code == 409 and again.json()["applied_by_transaction_id"] == tx


def test_settling_refuses_unknown_actions_other_cards_and_counters_behind(env: Env) -> None:
    serial = sold_card(env)
    tx = new_tx()
    assert post_action(env, action_body(serial, tx, 1, 150_000, 50_000)).status_code == 201
    for t, s in (("kiosk-a-nothing", serial), (tx, new_serial())):
        resp = settle(env, t, s, "applied", 2, new_tx("kiosk-b"))
        assert resp.status_code == 404 and resp.json() == {"error": "transit.pending_action_not_found"}
    behind = settle(env, tx, serial, "applied", 1, new_tx("kiosk-b"))  # applied means the counter moved
    assert behind.status_code == 409 and behind.json() == {"error": "transit.counter_replay", "last_counter": 2}
    bad = api(env, "POST", f"/api/v1/transit/pending-actions/{tx}/settle", token=KIOSK_B,
              json={"card_serial": serial, "outcome": "maybe", "counter_seen": 2, "settled_by_transaction_id": "x"})
    assert bad.status_code == 422
    assert account(env, serial)["pending_actions"][0]["status"] == "open"


def test_a_pending_action_is_refused_for_a_recorded_load_or_a_stale_counter(env: Env) -> None:
    serial = sold_card(env)
    tx = new_tx()
    assert post_load(env, load_body(serial, tx, 1, 2, 10_000, 110_000)).status_code == 201
    recorded = post_action(env, action_body(serial, tx, 1, 110_000, 10_000))
    assert recorded.status_code == 409 and recorded.json() == {"error": "transit.load_recorded"}
    stale = post_action(env, action_body(serial, new_tx(), 1, 120_000, 10_000))
    assert stale.status_code == 409 and stale.json() == {"error": "transit.counter_replay", "last_counter": 2}
    assert account(env, serial)["pending_actions"] == []


def test_concurrent_settlements_of_one_action_settle_it_once(env: Env) -> None:
    serial = sold_card(env, balance=0)
    tx = new_tx()
    assert post_action(env, action_body(serial, tx, 1, 40_000, 40_000)).status_code == 201
    bys = [new_tx("kiosk-b") for _ in range(6)]
    outcomes = ["applied", "rolled_back"] * 3
    results = run_together(6, lambda i: settle(env, tx, serial, outcomes[i], 2, bys[i]))
    assert sorted(r.status_code for r in results) == [200] + [409] * 5
    won = next(r.json() for r in results if r.status_code == 200)
    assert {r.json()["settled_by_transaction_id"] for r in results if r.status_code == 409} == {
        won["settled_by_transaction_id"]}
    assert loads_of(env, serial) == (2 if won["status"] == "applied" else 1)


# --- tickets --------------------------------------------------------------------------------------------
def test_a_ticket_is_recorded_idempotently_and_read_by_its_kiosk_only(env: Env) -> None:
    tx, tid = new_tx(), f"T-{uuid.uuid4().hex}"
    first = post_ticket(env, ticket_body(tx, tid, "return", 60_000))
    assert first.status_code == 201, first.text
    rec = first.json()
    assert (rec["trips"], rec["trips_used"], rec["status"]) == (2, 0, "issued") and rec["tracking_code"].isdigit()
    assert post_ticket(env, ticket_body(tx, tid, "return", 60_000)).content == first.content
    conflict = post_ticket(env, ticket_body(tx, tid, "return", 70_000))
    assert conflict.status_code == 409 and conflict.json() == {"error": "idempotency.conflict"}
    dup = post_ticket(env, ticket_body(new_tx("kiosk-b"), tid), token=KIOSK_B)
    assert dup.status_code == 409 and dup.json() == {"error": "ticket.duplicate_id"}
    assert api(env, "GET", f"/api/v1/tickets/{tid}").json() == rec
    theirs = api(env, "GET", f"/api/v1/tickets/{tid}", token=KIOSK_B)
    assert theirs.status_code == 404 and theirs.json() == {"error": "ticket.not_found"}


def test_ticket_bodies_are_strict(env: Env) -> None:
    tx, tid = new_tx(), f"T-{uuid.uuid4().hex}"
    good = ticket_body(tx, tid)
    far = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=400)).isoformat()
    for field, value in (("trips", 2), ("kind", "week"), ("valid_until", "2026-12-30T10:00:00"),
                         ("valid_until", far), ("valid_until", 1800000000), ("amount_rials", 0),
                         ("amount_rials", "30000"), ("ticket_id", "has space"), ("gate", 1)):
        resp = post_ticket(env, dict(good, **{field: value}))
        assert resp.status_code == 422 and resp.json()["error"] == "request.invalid", (field, resp.text)
    assert count(env.url, "SELECT count(*) FROM tickets WHERE ticket_id = :t", t=tid) == 0
    assert post_ticket(env, good).status_code == 201


def test_a_single_ticket_opens_one_gate_and_a_return_ticket_two(env: Env) -> None:
    single, ret = f"S-{uuid.uuid4().hex}", f"R-{uuid.uuid4().hex}"
    assert post_ticket(env, ticket_body(new_tx(), single)).status_code == 201
    assert post_ticket(env, ticket_body(new_tx(), ret, "return")).status_code == 201
    used = redeem(env, single)
    assert used.status_code == 201 and (used.json()["trip_no"], used.json()["trips_left"]) == (1, 0)
    again = redeem(env, single, token=GATE_2)
    assert again.status_code == 409 and again.json() == {"error": "ticket.used", "trips": 1}
    assert [redeem(env, ret).json()["trips_left"] for _ in range(2)] == [1, 0]
    assert redeem(env, ret).json() == {"error": "ticket.used", "trips": 2}
    assert count(env.url, "SELECT count(*) FROM ticket_redemptions WHERE ticket_id IN (:a, :b)", a=single, b=ret) == 3
    assert api(env, "GET", f"/api/v1/tickets/{ret}").json()["trips_used"] == 2


def test_unknown_expired_and_kiosk_redemptions_are_refused(env: Env) -> None:
    assert redeem(env, "T-never-sold").json() == {"error": "ticket.not_found"}
    old = f"O-{uuid.uuid4().hex}"
    expired_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    assert post_ticket(env, ticket_body(new_tx(), old, valid_until=expired_at)).status_code == 201
    resp = redeem(env, old)
    assert resp.status_code == 409 and resp.json()["error"] == "ticket.expired"
    fresh = f"F-{uuid.uuid4().hex}"
    assert post_ticket(env, ticket_body(new_tx(), fresh)).status_code == 201
    for token in (KIOSK_A, INTEGRATION, None):
        assert redeem(env, fresh, token=token).status_code == 401  # only a gate redeems
    assert count(env.url, "SELECT count(*) FROM ticket_redemptions WHERE ticket_id IN (:a, :b)", a=old, b=fresh) == 0


def test_a_gates_retry_under_its_key_uses_no_second_trip(env: Env) -> None:
    tid = f"K-{uuid.uuid4().hex}"
    assert post_ticket(env, ticket_body(new_tx(), tid, "return")).status_code == 201
    first = redeem(env, tid, key="scan-1")
    retry = redeem(env, tid, key="scan-1")
    assert (first.status_code, retry.status_code) == (201, 200) and first.json() == retry.json()
    assert api(env, "GET", f"/api/v1/tickets/{tid}").json()["trips_used"] == 1
    misuse = redeem(env, tid, gate_id="gate-Z9", key="scan-1")
    assert misuse.status_code == 409 and misuse.json() == {"error": "idempotency.conflict"}


def test_concurrent_gates_use_a_return_ticket_exactly_twice(env: Env) -> None:
    tid = f"C-{uuid.uuid4().hex}"
    assert post_ticket(env, ticket_body(new_tx(), tid, "return")).status_code == 201
    results = run_together(6, lambda i: redeem(env, tid, gate_id=f"gate-{i}", token=(GATE, GATE_2)[i % 2]))
    assert sorted(r.status_code for r in results) == [201, 201] + [409] * 4
    assert sorted(r.json()["trip_no"] for r in results if r.status_code == 201) == [1, 2]
    assert count(env.url, "SELECT count(*) FROM ticket_redemptions WHERE ticket_id = :t", t=tid) == 2


# --- daily totals -----------------------------------------------------------------------------------------
def _tehran_day(iso: str) -> str:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(TEHRAN).date().isoformat()


def test_daily_totals_per_kiosk(env: Env) -> None:
    kid, token = f"k-{uuid.uuid4().hex[:8]}", f"tot-{secrets.token_urlsafe(24)}"
    seed_demo(env.url, {kid: token})
    serial = new_serial()
    sale = post_load(env, load_body(serial, new_tx(kid), 0, 1, 120_000, 100_000, kind="card_sale"), token=token)
    assert sale.status_code == 201
    assert post_load(env, load_body(serial, new_tx(kid), 1, 2, 30_000, 130_000), token=token).status_code == 201
    pid = pending_load(env, serial, 15_000)["pending_load_id"]
    assert post_load(env, load_body(serial, new_tx(kid), 2, 3, 15_000, 145_000, kind="pending_load", pending=pid),
                     token=token).status_code == 201
    for amount in (30_000, 60_000):
        assert post_ticket(env, ticket_body(new_tx(kid), f"D-{uuid.uuid4().hex}", amount=amount),
                           token=token).status_code == 201
    day = _tehran_day(sale.json()["recorded_at"])
    own = api(env, "GET", "/api/v1/transit/daily-totals", token=token, params={"date": day})
    assert own.status_code == 200, own.text
    body = own.json()
    assert body["timezone"] == "Asia/Tehran" and body["date"] == day
    assert body["kiosks"] == [{
        "kiosk_id": kid, "loads_count": 3, "loads_rials": 165_000,
        "loads_by_kind": {"card_sale": {"count": 1, "rials": 120_000}, "topup": {"count": 1, "rials": 30_000},
                          "pending_load": {"count": 1, "rials": 15_000}},
        "tickets_count": 2, "tickets_rials": 90_000}]
    everyone = api(env, "GET", "/api/v1/transit/daily-totals", token=INTEGRATION, params={"date": day}).json()
    by_kiosk = {k["kiosk_id"]: k for k in everyone["kiosks"]}
    assert by_kiosk[kid] == body["kiosks"][0] and "kiosk-a" in by_kiosk
    other_day = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
    assert api(env, "GET", "/api/v1/transit/daily-totals", token=token, params={"date": other_day}).json()["kiosks"] == [
        {"kiosk_id": kid, "loads_count": 0, "loads_rials": 0, "loads_by_kind": {}, "tickets_count": 0,
         "tickets_rials": 0}]
    for params in ({}, {"date": "30-11-2026"}, {"date": "2026-13-01"}):
        bad = api(env, "GET", "/api/v1/transit/daily-totals", token=token, params=params)
        assert bad.status_code == 422 and bad.json()["error"] == "query.invalid", params
    assert api(env, "GET", "/api/v1/transit/daily-totals", token=GATE, params={"date": day}).status_code == 401


def test_a_tehran_day_starts_at_half_past_eight_pm_utc() -> None:
    from backoffice.transit import day_bounds

    start, end = day_bounds(dt.date(2026, 12, 1))
    assert start == dt.datetime(2026, 11, 30, 20, 30, tzinfo=dt.timezone.utc)
    assert end - start == dt.timedelta(days=1)


# --- the demo seed ------------------------------------------------------------------------------------------
def test_the_seed_holds_one_pending_load_for_the_demo_card_and_renews_it_once_collected(env: Env) -> None:
    def demo_pending() -> list[dict[str, Any]]:
        return [p for p in account(env, DEMO_CARD_SERIAL)["pending_loads"] if p["source"] == "demo"]

    listed = demo_pending()
    assert [(p["amount_rials"], p["status"]) for p in listed] == [(DEMO_PENDING_LOAD_RIALS, "pending")]
    assert DEMO_PENDING_LOAD_RIALS == 50_000
    assert seed_demo(env.url, KIOSKS, SERVICES).pending_loads_added == 0
    assert demo_pending() == listed
    acc = account(env, DEMO_CARD_SERIAL)
    before = acc["last_counter"] if acc["known"] else 0
    balance = (acc["last_balance"] or 0) + DEMO_PENDING_LOAD_RIALS
    collected = post_load(env, load_body(DEMO_CARD_SERIAL, new_tx(), before, before + 1, DEMO_PENDING_LOAD_RIALS,
                                         balance, kind="pending_load", pending=listed[0]["pending_load_id"]))
    assert collected.status_code == 201, collected.text
    assert demo_pending() == []
    results = run_together(3, lambda _i: seed_demo(env.url, KIOSKS, SERVICES).pending_loads_added)
    assert sorted(results) == [0, 0, 1]  # type: ignore[type-var]
    renewed = demo_pending()
    assert len(renewed) == 1 and renewed[0]["pending_load_id"] != listed[0]["pending_load_id"]


# --- migration 0004 and credentials ------------------------------------------------------------------------
def test_migration_0004_applies_on_an_existing_0003_database_and_back(fresh_url: str) -> None:
    upgrade(fresh_url, "0003_payment_tx_per_kiosk")
    engine = make_engine(fresh_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO kiosks VALUES ('k-old', :d, true, '2025-01-01 00:00:00')"),
                         {"d": "1" * 64})
            conn.execute(sa.text(
                "INSERT INTO payments (transaction_id, kiosk_id, bill_id, payment_id, amount_rials, paid_at, rrn,"
                " stan, poi_reference, masked_pan, tracking_code, created_at) VALUES ('old-1', 'k-old', '1', '2',"
                " 1000, '2025-01-01 00:00:00', '', '', '', '', '000000000001', '2025-01-01 00:00:00')"))
            conn.execute(sa.text("INSERT INTO transit_accounts VALUES ('04A1B2C3', 5000, 0, 'active', 'none',"
                                 " '2025-01-01 00:00:00')"))
        upgrade(fresh_url)
        assert current_revision(fresh_url) == "0005_municipal"
        tables = set(sa.inspect(engine).get_table_names())
        assert {"transit_loads", "transit_pending_loads", "transit_pending_actions", "tickets",
                "ticket_redemptions", "service_tokens", "transit_accounts_0003"} <= tables
        assert count(fresh_url, "SELECT count(*) FROM payments WHERE transaction_id = 'old-1'") == 1
        assert count(fresh_url, "SELECT balance_rials FROM transit_accounts_0003") == 5000  # kept, not lost
        cols = {c["name"] for c in sa.inspect(engine).get_columns("transit_accounts")}
        assert {"card_serial", "last_counter", "last_balance_rials"} <= cols
        # and the new schema works: seed and serve on it
        seed_demo(fresh_url, {"k-new": KIOSK_A})
        assert count(fresh_url, "SELECT count(*) FROM transit_pending_loads WHERE card_serial = :s",
                     s=DEMO_CARD_SERIAL) == 1
        with engine.begin() as conn:
            cfg = alembic_config(fresh_url)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003_payment_tx_per_kiosk")
        assert count(fresh_url, "SELECT count(*) FROM transit_accounts WHERE card_uid = '04A1B2C3'") == 1
        assert "transit_loads" not in set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migration_0004_drops_an_empty_placeholder(fresh_url: str) -> None:
    upgrade(fresh_url, "0003_payment_tx_per_kiosk")
    upgrade(fresh_url)
    engine = make_engine(fresh_url)
    try:
        assert "transit_accounts_0003" not in set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_token_cli_makes_integration_and_gate_credentials(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    name = f"app-{uuid.uuid4().hex[:8]}"
    assert backoffice_cli.main(["token", "add", name, "--role", "integration", "--db", env.url]) == 0
    token = capsys.readouterr().out.strip()
    body = {"card_serial": new_serial(), "amount_rials": 10_000, "source": "app", "external_ref": uuid.uuid4().hex}
    assert api(env, "POST", "/api/v1/transit/pending-loads", token=token, json=body).status_code == 201
    assert api(env, "GET", f"/api/v1/transit/cards/{new_serial()}", token=token).status_code == 401  # not a kiosk
    assert backoffice_cli.main(["token", "disable", name, "--db", env.url]) == 0
    assert api(env, "POST", "/api/v1/transit/pending-loads", token=token, json=body).status_code == 401
    assert backoffice_cli.main(["token", "add", "g-weak", "--role", "gate", "--token", "short", "--db", env.url]) == 2
    assert backoffice_cli.main(["token", "add", "g-copy", "--role", "gate", "--token", KIOSK_A, "--db", env.url]) == 1
    assert backoffice_cli.main(["kiosk", "add", "k-copy", "--token", GATE, "--db", env.url]) == 1
    assert backoffice_cli.main(["token", "disable", "nobody", "--db", env.url]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and KIOSK_A not in err and GATE not in err


# --- the kiosk's client against the real server --------------------------------------------------------------
@pytest.fixture
def client(env: Env) -> Iterator[BackofficeClient]:
    with BackofficeClient(env.server.url, KIOSK_A, backoff=0.01) as c:
        yield c


def test_client_posts_and_reads_loads(env: Env, client: BackofficeClient) -> None:
    serial = new_serial()
    sale = LoadPost(new_tx(), serial, UID7.lower(), 0, 1, 150_000, 100_000, "card_sale")
    rec = client.post_load(sale, idempotency_key=sale.transaction_id)
    assert isinstance(rec, LoadRecord) and rec.card_uid == UID7 and rec.tracking_code.isdigit()
    assert client.post_load(sale, idempotency_key=sale.transaction_id) == rec
    assert client.load_status(sale.transaction_id) == rec
    assert LoadPost.from_dict(sale.to_dict()) == sale and "pending_load_id" not in sale.to_dict()
    with pytest.raises(LoadNotFound) as missing:
        client.load_status("kiosk-a-never")
    assert missing.value.message("fa") and missing.value.message("en")
    with pytest.raises(BackofficeRejected) as mismatch:  # the key is the transaction id
        client.post_load(LoadPost(new_tx(), serial, UID7, 1, 2, 10_000, 110_000, "topup"), idempotency_key="x")
    assert mismatch.value.error_code == "idempotency.key_mismatch"
    tx = new_tx()
    with pytest.raises(LoadReplayRefused) as replay:
        client.post_load(LoadPost(tx, serial, UID7, 0, 1, 10_000, 110_000, "topup"), idempotency_key=tx)
    assert replay.value.last_counter == 1 and isinstance(replay.value, TransitRefused)
    with pytest.raises(BalanceMismatch) as balance:
        client.post_load(LoadPost(tx, serial, UID7, 1, 2, 10_000, 999_000, "topup"), idempotency_key=tx)
    assert balance.value.expected_balance == 110_000 and "110000" in balance.value.message("en")
    with pytest.raises(CardMismatch):
        client.post_load(LoadPost(tx, serial, UID, 1, 2, 10_000, 110_000, "topup"), idempotency_key=tx)
    with pytest.raises(CardAlreadySold):
        client.post_load(LoadPost(tx, serial, UID7, 1, 2, 10_000, 110_000, "card_sale"), idempotency_key=tx)


def test_client_reads_a_card_account_and_collects_a_pending_load_once(env: Env, client: BackofficeClient) -> None:
    serial = new_serial()
    pid = pending_load(env, serial, 50_000)["pending_load_id"]
    acc = client.card_account(serial)
    assert isinstance(acc, CardAccount) and not acc.known and acc.last_counter is None
    assert [(p.pending_load_id, p.amount_rials) for p in acc.collectable] == [(pid, 50_000)]
    tx = new_tx()
    with pytest.raises(PendingLoadAmountMismatch) as amount:
        client.post_load(LoadPost(tx, serial, UID, 3, 4, 40_000, 90_000, "pending_load", pid), idempotency_key=tx)
    assert amount.value.expected_rials == 50_000
    rec = client.post_load(LoadPost(tx, serial, UID, 3, 4, 50_000, 90_000, "pending_load", pid), idempotency_key=tx)
    assert rec.pending_load_id == pid
    acc = client.card_account(serial)
    assert acc.known and (acc.last_counter, acc.last_balance) == (4, 90_000) and acc.collectable == ()
    assert [ld.transaction_id for ld in acc.loads] == [tx]
    tx2 = new_tx()
    with pytest.raises(PendingLoadAlreadyApplied) as applied:
        client.post_load(LoadPost(tx2, serial, UID, 4, 5, 50_000, 140_000, "pending_load", pid), idempotency_key=tx2)
    assert (applied.value.applied_by_transaction_id, applied.value.pending_load_id) == (tx, pid)
    assert tx in applied.value.message("en") and tx in applied.value.message("fa")
    with pytest.raises(PendingLoadNotFound):
        client.post_load(LoadPost(tx2, serial, UID, 4, 5, 50_000, 140_000, "pending_load", 2**31 - 1),
                         idempotency_key=tx2)


def test_client_posts_and_settles_a_pending_action(env: Env, client: BackofficeClient) -> None:
    serial = sold_card(env, balance=10_000)
    tx = new_tx()
    post = PendingActionPost(tx, serial, UID, 1, 60_000, 50_000)
    action = client.post_pending_action(post, idempotency_key=tx)
    assert action.status == "open" and action.tracking_code.isdigit()
    assert client.post_pending_action(post, idempotency_key=tx) == action
    assert PendingActionPost.from_dict(post.to_dict()) == post
    assert client.card_account(serial).pending_actions == (action,)
    with pytest.raises(PendingActionOpen) as open_:
        t = new_tx()
        client.post_load(LoadPost(t, serial, UID, 1, 2, 5_000, 15_000, "topup"), idempotency_key=t)
    assert open_.value.transaction_id == tx and open_.value.counter_before == 1
    with BackofficeClient(env.server.url, KIOSK_B, backoff=0.01) as other:
        by = new_tx("kiosk-b")
        settled = other.settle_pending_action(tx, card_serial=serial, outcome="applied", counter_seen=2,
                                              settled_by_transaction_id=by)
        assert (settled.status, settled.settled_by_transaction_id, settled.counter_seen) == ("applied", by, 2)
        assert other.settle_pending_action(tx, card_serial=serial, outcome="applied", counter_seen=2,
                                           settled_by_transaction_id=by) == settled
        with pytest.raises(PendingActionAlreadySettled) as twice:
            other.settle_pending_action(tx, card_serial=serial, outcome="rolled_back", counter_seen=2,
                                        settled_by_transaction_id=new_tx("kiosk-b"))
        assert (twice.value.outcome, twice.value.settled_by_transaction_id) == ("applied", by)
    assert client.load_status(tx).tracking_code == action.tracking_code


def test_client_posts_tickets(env: Env, client: BackofficeClient) -> None:
    tx, tid = new_tx(), f"CT-{uuid.uuid4().hex}"
    post = TicketPost(tid, tx, "return", 2, FUTURE.isoformat(), 60_000)
    rec = client.post_ticket(post, idempotency_key=tx)
    assert isinstance(rec, TicketRecord) and (rec.trips, rec.trips_used) == (2, 0)
    assert client.post_ticket(post, idempotency_key=tx) == rec and TicketPost.from_dict(post.to_dict()) == post
    assert redeem(env, tid).status_code == 201
    assert client.ticket_status(tid).trips_used == 1
    with pytest.raises(TicketNotFound):
        client.ticket_status("CT-never")
    tx2 = new_tx()
    with pytest.raises(TicketDuplicate):
        client.post_ticket(TicketPost(tid, tx2, "single", 1, FUTURE.isoformat(), 30_000), idempotency_key=tx2)


# --- the client against answers that are not the back-office's ------------------------------------------------
class FakeServer:
    """A real HTTP server on loopback answering every request with one (status, body); a str
    body is sent as an HTML page, as a proxy would. Counts requests."""

    def __init__(self, status: int, body: Any) -> None:
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.hits += 1
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


PROXY_404 = "<html><body><h1>404 Not Found</h1><hr>nginx</body></html>"
LOAD = LoadPost("t1", "1000000017", UID, 1, 2, 10_000, 60_000, "topup")
TICKET = TicketPost("T1", "t1", "single", 1, "2026-12-31T00:00:00Z", 30_000)


@pytest.mark.parametrize("status,body", [(404, PROXY_404), (404, {"detail": "Not Found"}), (403, PROXY_404),
                                         (200, PROXY_404), (201, {"unexpected": True}), (503, {})])
def test_an_answer_not_ours_is_never_a_refusal_or_a_not_found(status: int, body: Any) -> None:
    with FakeServer(status, body) as fake:
        with BackofficeClient(fake.url, KIOSK_A, retries=1, backoff=0.01) as c:
            for post_call in (lambda: c.post_load(LOAD, idempotency_key="t1"),
                              lambda: c.post_ticket(TICKET, idempotency_key="t1"),
                              lambda: c.post_pending_action(PendingActionPost("t1", "1000000017", UID, 1, 60_000,
                                                                              10_000), idempotency_key="t1"),
                              lambda: c.settle_pending_action("t1", card_serial="1000000017", outcome="applied",
                                                              counter_seen=2, settled_by_transaction_id="t2")):
                with pytest.raises(TransitPostPending) as err:
                    post_call()
                assert err.value.money == "charged_pending" and not isinstance(err.value, TransitRefused)
            for read_call in (lambda: c.load_status("t1"), lambda: c.card_account("1000000017"),
                              lambda: c.ticket_status("T1")):
                with pytest.raises(BackofficeUnavailable) as unavailable:
                    read_call()
                assert not isinstance(unavailable.value, (LoadNotFound, TicketNotFound, TransitRefused))


def test_a_coded_refusal_is_not_retried_and_one_missing_its_values_is_not_ours() -> None:
    with FakeServer(409, {"error": "transit.counter_replay", "last_counter": 9}) as fake:
        with BackofficeClient(fake.url, KIOSK_A, retries=3, backoff=0.01) as c:
            with pytest.raises(LoadReplayRefused) as err:
                c.post_load(LOAD, idempotency_key="t1")
        assert err.value.last_counter == 9 and fake.hits == 1
    for body in ({"error": "transit.counter_replay"}, {"error": "transit.counter_replay", "last_counter": "9"},
                 {"error": "transit.pending_load_applied", "pending_load_id": 3}):
        with FakeServer(409, body) as fake:
            with BackofficeClient(fake.url, KIOSK_A, retries=0) as c:
                with pytest.raises(TransitPostPending):
                    c.post_load(LOAD, idempotency_key="t1")
    with FakeServer(404, {"error": "transit.load_not_found"}) as fake:
        with BackofficeClient(fake.url, KIOSK_A, retries=3, backoff=0.01) as c:
            with pytest.raises(LoadNotFound):
                c.load_status("t1")
        assert fake.hits == 1
