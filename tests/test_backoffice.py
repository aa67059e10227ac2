"""The reference back-office over real HTTP on loopback, against SQLite and PostgreSQL:
auth, bill lookup, fee slips, idempotent atomic payment posts, migrations and the seed."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import logging
import re
import secrets
import threading
from typing import Any, Iterator

import psycopg
import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from backoffice import cli as backoffice_cli
from alembic import command

from backoffice.db import alembic_config, current_revision, make_engine, upgrade
from backoffice.models import TABLE_NAMES
from backoffice.seed import (
    DEMO_BUSINESS_LICENSE,
    DEMO_NATIONAL_CODE,
    DEMO_PLATE,
    DEMO_RENOVATION_CODE,
    DEMO_MIN_UNPAID,
    DEMO_WATER_BILL,
    OWNERS,
    seed_demo,
)
from backoffice.schemas import MAX_AMOUNT_RIALS
from backoffice.server import RunningServer, serve_in_thread
from kiosk.bills import InvalidBill, make_bill_id, make_payment_id, parse_bill
from kiosk.sensitive import national_code_ok

TOKEN_A = "token-a-Qm7Vx2Lp9Rt4Wz8Kc3Nd"
TOKEN_B = "token-b-Hs5Jy1Fg6Ub0Ea7Mo2Pi"
KIOSKS = {"kiosk-a": TOKEN_A, "kiosk-b": TOKEN_B}
HEAD_REVISION = "0005_municipal"
DATA_TABLES = ("idempotency", "payments", "bills", "owners", "kiosks", "transit_accounts")


# --- databases ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_database(pg_url: str) -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session, migrated, dropped at the end."""
    admin = make_url(pg_url).set(drivername="postgresql")
    name = f"kiosk_test_{secrets.token_hex(6)}"
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """An empty, migrated database of each kind (PostgreSQL: the session DB, emptied)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
        upgrade(url)
        return url
    url = str(request.getfixturevalue("pg_database"))
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE")
    engine.dispose()
    return url


@pytest.fixture
def server(db_url: str) -> Iterator[RunningServer]:
    seed_demo(db_url, KIOSKS)
    with serve_in_thread(db_url) as running:
        yield running


def api(server: RunningServer, method: str, path: str, token: str | None = TOKEN_A, **kw: Any) -> requests.Response:
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, server.url + path, headers=headers, timeout=15, **kw)


def count(db_url: str, sql: str, **params: Any) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql), params).scalar_one())
    finally:
        engine.dispose()


def demo_slips(server: RunningServer) -> list[dict[str, Any]]:
    resp = api(server, "GET", "/api/v1/fee-slips", params={"national_code": DEMO_NATIONAL_CODE})
    assert resp.status_code == 200
    return [s for s in resp.json()["slips"] if s["status"] == "unpaid"]


def payment_body(slip: dict[str, Any], tx: str, **changes: Any) -> dict[str, Any]:
    body = {"transaction_id": tx, "bill_id": slip["bill_id"], "payment_id": slip["payment_id"],
            "amount_rials": slip["amount_rials"], "paid_at": "2025-11-28T09:15:00Z",
            "terminal": {"rrn": "512345678901", "stan": "004211", "poi_reference": "SIM-POI-1/77",
                         "masked_pan": "603799******1234"}}
    body.update(changes)
    return body


def post(server: RunningServer, body: dict[str, Any], key: str, token: str = TOKEN_A) -> requests.Response:
    return api(server, "POST", "/api/v1/payments", token=token, json=body, headers={"Idempotency-Key": key})


# --- auth ---------------------------------------------------------------------------------------
def test_healthz_answers_without_a_token(server: RunningServer) -> None:
    resp = requests.get(server.url + "/healthz", timeout=5)
    assert resp.status_code == 200 and resp.json() == {"ok": True}


@pytest.mark.parametrize("token", [None, "", "not-a-kiosk-token"])
@pytest.mark.parametrize("method,path", [
    ("GET", f"/api/v1/bills/{DEMO_WATER_BILL[0]}/{DEMO_WATER_BILL[1]}"),
    ("GET", f"/api/v1/fee-slips?national_code={DEMO_NATIONAL_CODE}"),
    ("POST", "/api/v1/payments"),
    ("GET", "/api/v1/payments/tx-1"),
])
def test_api_refuses_missing_or_unknown_token_with_401(server: RunningServer, method: str, path: str,
                                                      token: str | None) -> None:
    resp = api(server, method, path, token=token, json={} if method == "POST" else None)
    assert resp.status_code == 401
    assert resp.json() == {"error": "auth.unauthorized"}


def test_disabled_kiosk_is_refused(server: RunningServer, db_url: str) -> None:
    assert backoffice_cli.main(["kiosk", "disable", "kiosk-b", "--db", db_url]) == 0
    path = f"/api/v1/bills/{DEMO_WATER_BILL[0]}/{DEMO_WATER_BILL[1]}"
    assert api(server, "GET", path, token=TOKEN_B).status_code == 401
    assert api(server, "GET", path, token=TOKEN_A).status_code == 200


def test_kiosk_add_prints_a_token_that_authenticates(server: RunningServer, db_url: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert backoffice_cli.main(["kiosk", "add", "kiosk-new", "--db", db_url]) == 0
    token = capsys.readouterr().out.strip()
    assert len(token) >= 32
    assert api(server, "GET", "/api/v1/payments/none", token=token).status_code == 404
    assert count(db_url, "SELECT count(*) FROM kiosks WHERE token_sha256 = :t", t=token) == 0  # hash only


# --- bills --------------------------------------------------------------------------------------
def test_bill_lookup_returns_the_seeded_bill(server: RunningServer) -> None:
    resp = api(server, "GET", f"/api/v1/bills/{DEMO_WATER_BILL[0]}/{DEMO_WATER_BILL[1]}")
    assert resp.status_code == 200
    body = resp.json()
    assert body["bill_id"] == "2050327604613" and body["payment_id"] == "1070189"
    assert body["service_type"] == 1 and body["amount_rials"] == 10_000
    assert body["year"] == 7 and body["period"] in ("01", "1") and body["status"] == "unpaid"
    assert body["due_date"].count("-") == 2
    # anyone holding (or guessing) a slip's ids sees the payer's name masked, never in full
    assert body["payer_name"] == "ف*** ص***"  # فاطمه صادقی


@pytest.mark.parametrize("bill_id,payment_id,check", [
    ("2050327604614", "1070189", "bill_check_digit"),
    ("2050327604613", "1070180", "payment_c2"),
    ("20503x7604613", "1070189", "bill_id_format"),
])
def test_malformed_bill_ids_are_422_naming_the_failed_check(server: RunningServer, bill_id: str,
                                                             payment_id: str, check: str) -> None:
    with pytest.raises(InvalidBill) as err:  # the server names the check the kiosk module names
        parse_bill(bill_id, payment_id)
    expected = err.value.check
    resp = api(server, "GET", f"/api/v1/bills/{bill_id}/{payment_id}")
    assert resp.status_code == 422
    assert resp.json() == {"error": "bill.invalid", "check": expected}


def test_valid_but_unknown_bill_is_404(server: RunningServer) -> None:
    bill_id = make_bill_id("9876543", "777", 2)
    payment_id = make_payment_id(bill_id, 250_000, 4, 7)
    resp = api(server, "GET", f"/api/v1/bills/{bill_id}/{payment_id}")
    assert resp.status_code == 404 and resp.json() == {"error": "bill.not_found"}


# --- fee slips ----------------------------------------------------------------------------------
def test_fee_slips_by_national_code_list_every_kind_with_40_unpaid(server: RunningServer) -> None:
    resp = api(server, "GET", "/api/v1/fee-slips", params={"national_code": DEMO_NATIONAL_CODE})
    assert resp.status_code == 200
    body = resp.json()
    assert body["owner_name"] == "ع*** ر***"  # masked (issue 9): what the slip holder sees
    unpaid = [s for s in body["slips"] if s["status"] == "unpaid"]
    assert len(unpaid) >= 40
    assert {s["kind"] for s in unpaid} == {"renovation_tax", "business_tax", "waste_charge", "vehicle_tax"}
    for slip in body["slips"]:
        bill = parse_bill(slip["bill_id"], slip["payment_id"])
        assert bill.amount_rials == slip["amount_rials"]


def test_fee_slips_by_national_and_renovation_code_are_the_property_slips(server: RunningServer) -> None:
    resp = api(server, "GET", "/api/v1/fee-slips",
               params={"national_code": DEMO_NATIONAL_CODE, "renovation_code": DEMO_RENOVATION_CODE})
    assert resp.status_code == 200
    assert {s["kind"] for s in resp.json()["slips"]} == {"renovation_tax", "waste_charge"}


@pytest.mark.parametrize("plate", [DEMO_PLATE, "22 ب 365 ایران 10", "۲۲  ب ۳۶۵ ایران ۱۰ "])
def test_fee_slips_by_plate_find_vehicle_tax_in_any_digit_script(server: RunningServer, plate: str) -> None:
    resp = api(server, "GET", "/api/v1/fee-slips", params={"plate": plate})
    assert resp.status_code == 200
    slips = resp.json()["slips"]
    assert slips and {s["kind"] for s in slips} == {"vehicle_tax"}


def test_fee_slips_by_business_license_find_business_tax(server: RunningServer) -> None:
    resp = api(server, "GET", "/api/v1/fee-slips", params={"business_license": DEMO_BUSINESS_LICENSE})
    assert resp.status_code == 200
    assert {s["kind"] for s in resp.json()["slips"]} == {"business_tax"}


def test_fee_slips_of_an_unknown_owner_are_404(server: RunningServer) -> None:
    for params in ({"national_code": "0582764191"}, {"plate": "۱۱ د ۱۱۱ ایران ۱۱"},
                   {"business_license": "1400-0000001"},
                   {"national_code": DEMO_NATIONAL_CODE, "renovation_code": "9-9-9"}):
        resp = api(server, "GET", "/api/v1/fee-slips", params=params)
        assert resp.status_code == 404, params
        assert resp.json() == {"error": "owner.not_found"}


@pytest.mark.parametrize("params", [
    {},
    {"national_code": "0084137259"},  # wrong check digit
    {"national_code": "1111111111"},  # repeated digit
    {"renovation_code": DEMO_RENOVATION_CODE},  # a property needs its owner's national code
    {"national_code": DEMO_NATIONAL_CODE, "plate": DEMO_PLATE},
    {"plate": "x" * 100},
])
def test_fee_slips_with_bad_parameters_are_422(server: RunningServer, params: dict[str, str]) -> None:
    resp = api(server, "GET", "/api/v1/fee-slips", params=params)
    assert resp.status_code == 422
    assert resp.json()["error"] == "query.invalid"


# --- payments -----------------------------------------------------------------------------------
def test_payment_post_settles_the_bill_and_is_readable_for_reconciliation(server: RunningServer,
                                                                         db_url: str) -> None:
    slip = demo_slips(server)[0]
    resp = post(server, payment_body(slip, "tx-1"), "tx-1")
    assert resp.status_code == 201
    body = resp.json()
    assert body["status"] == "settled" and body["transaction_id"] == "tx-1"
    assert body["amount_rials"] == slip["amount_rials"] and body["tracking_code"].isdigit()
    assert body["settled_at"].endswith("Z")
    assert api(server, "GET", "/api/v1/payments/tx-1").json() == body
    after = api(server, "GET", f"/api/v1/bills/{slip['bill_id']}/{slip['payment_id']}").json()
    assert after["status"] == "paid"
    assert count(db_url, "SELECT count(*) FROM payments WHERE masked_pan = '603799******1234'") == 1


def test_unknown_payment_status_is_404(server: RunningServer) -> None:
    resp = api(server, "GET", "/api/v1/payments/never-posted")
    assert resp.status_code == 404 and resp.json() == {"error": "payment.not_found"}


def test_same_key_and_body_replays_the_identical_first_response(server: RunningServer, db_url: str) -> None:
    slip = demo_slips(server)[0]
    first = post(server, payment_body(slip, "tx-r"), "tx-r")
    again = post(server, payment_body(slip, "tx-r"), "tx-r")
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    assert count(db_url, "SELECT count(*) FROM payments") == 1


def test_same_key_with_a_different_body_is_409_conflict(server: RunningServer, db_url: str) -> None:
    slips = demo_slips(server)
    assert post(server, payment_body(slips[0], "tx-c"), "tx-c").status_code == 201
    resp = post(server, payment_body(slips[1], "tx-c"), "tx-c")
    assert resp.status_code == 409 and resp.json() == {"error": "idempotency.conflict"}
    assert count(db_url, "SELECT count(*) FROM payments") == 1


def test_idempotency_keys_belong_to_one_kiosk(server: RunningServer) -> None:
    slips = demo_slips(server)
    assert post(server, payment_body(slips[0], "a-1"), "shared-key", token=TOKEN_A).status_code == 201
    resp = post(server, payment_body(slips[1], "b-1"), "shared-key", token=TOKEN_B)
    assert resp.status_code == 201 and resp.json()["transaction_id"] == "b-1"


def test_bill_paid_under_another_key_is_409_already_paid(server: RunningServer, db_url: str) -> None:
    slip = demo_slips(server)[0]
    assert post(server, payment_body(slip, "tx-1"), "tx-1").status_code == 201
    resp = post(server, payment_body(slip, "tx-2"), "tx-2")
    assert resp.status_code == 409 and resp.json() == {"error": "bill.already_paid"}
    assert count(db_url, "SELECT count(*) FROM payments") == 1


def test_amount_other_than_the_bill_is_422_with_the_expected_amount(server: RunningServer, db_url: str) -> None:
    slip = demo_slips(server)[0]
    resp = post(server, payment_body(slip, "tx-m", amount_rials=slip["amount_rials"] - 1000), "tx-m")
    assert resp.status_code == 422
    assert resp.json() == {"error": "payment.amount_mismatch", "expected_rials": slip["amount_rials"]}
    assert count(db_url, "SELECT count(*) FROM payments") == 0


def test_payment_for_an_unknown_bill_is_404(server: RunningServer) -> None:
    bill_id = make_bill_id("5550001", "777", 6)
    fake = {"bill_id": bill_id, "payment_id": make_payment_id(bill_id, 90_000, 4, 3), "amount_rials": 90_000}
    resp = post(server, payment_body(fake, "tx-u"), "tx-u")
    assert resp.status_code == 404 and resp.json() == {"error": "bill.not_found"}


@pytest.mark.parametrize("pan", ["6037991234561234", "6037 9912 3456 1234", "۶۰۳۷۹۹۱۲۳۴۵۶۱۲۳۴"])
def test_full_card_number_in_masked_pan_is_refused_and_not_stored(server: RunningServer, db_url: str,
                                                                  pan: str) -> None:
    slip = demo_slips(server)[0]
    body = payment_body(slip, "tx-p")
    body["terminal"]["masked_pan"] = pan
    resp = post(server, body, "tx-p")
    assert resp.status_code == 422 and resp.json() == {"error": "payment.unmasked_pan"}
    assert count(db_url, "SELECT count(*) FROM payments") == 0
    assert count(db_url, "SELECT count(*) FROM idempotency") == 0


def test_malformed_payment_body_is_422_without_echoing_input(server: RunningServer) -> None:
    resp = post(server, {"transaction_id": "t", "amount_rials": "lots", "card": "6037991234561234"}, "k")
    assert resp.status_code == 422
    assert resp.json()["error"] == "request.invalid"
    assert "6037991234561234" not in resp.text


def test_concurrent_duplicate_posts_make_one_payment(server: RunningServer, db_url: str) -> None:
    slip = demo_slips(server)[0]
    body = payment_body(slip, "tx-race")
    barrier = threading.Barrier(8)

    def send(_: int) -> requests.Response:
        barrier.wait()
        return post(server, body, "tx-race")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(8)))
    assert {r.status_code for r in results} == {201}
    assert len({r.content for r in results}) == 1
    assert count(db_url, "SELECT count(*) FROM payments") == 1
    assert count(db_url, "SELECT count(*) FROM idempotency") == 1


def test_concurrent_posts_for_one_bill_under_different_keys_settle_it_once(server: RunningServer,
                                                                          db_url: str) -> None:
    slip = demo_slips(server)[0]
    barrier = threading.Barrier(6)

    def send(i: int) -> requests.Response:
        barrier.wait()
        return post(server, payment_body(slip, f"tx-{i}"), f"tx-{i}")

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(send, range(6)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 5
    assert {r.json()["error"] for r in results if r.status_code == 409} == {"bill.already_paid"}
    assert count(db_url, "SELECT count(*) FROM payments") == 1


# --- schema and seed ----------------------------------------------------------------------------
def test_migrations_create_every_table(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert set(TABLE_NAMES) | {"alembic_version"} <= tables
    assert current_revision(db_url) == HEAD_REVISION


def test_seed_bills_pass_the_kiosk_checks_and_reseeding_adds_nothing(db_url: str) -> None:
    first = seed_demo(db_url, KIOSKS)
    assert first.owners_added == len(OWNERS) >= 3 and first.bills_added > 60
    assert first.demo_unpaid_slips >= 40
    again = seed_demo(db_url, KIOSKS)
    assert (again.kiosks_changed, again.owners_added, again.bills_added) == (0, 0, 0)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT bill_id, payment_id, amount_rials, service_type FROM bills")).all()
    finally:
        engine.dispose()
    assert len(rows) == first.bills_added
    for bill_id, payment_id, amount, service in rows:
        bill = parse_bill(bill_id, payment_id)
        assert (bill.amount_rials, int(bill.service_type)) == (amount, service)


def _field_notes_national_check(code: str) -> bool:
    """FIELD-NOTES' rule, written out here as an independent oracle."""
    if len(code) != 10 or not code.isdigit() or len(set(code)) == 1:
        return False
    r = sum(int(code[i]) * (10 - i) for i in range(9)) % 11
    return int(code[9]) == (r if r < 2 else 11 - r)


def test_demo_national_codes_pass_the_national_code_check() -> None:
    codes = [o.national_code for o in OWNERS if o.national_code]
    assert DEMO_NATIONAL_CODE in codes
    assert all(_field_notes_national_check(code) for code in codes)
    assert all(national_code_ok(code) for code in codes)
    assert not national_code_ok("0084137259") and not national_code_ok("۰۰۰۰۰۰۰۰۰۰")
    assert national_code_ok("۰۰۸۴۱۳۷۲۵۸")  # Persian digits are the same code


def test_seed_cli_adds_kiosks_and_prints_a_summary(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert backoffice_cli.main(["seed", "--demo", "--db", db_url, "--kiosk", "k9:tok-k9-Ab3De5Gh7Jk9Mn2Pq4"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kiosks_changed"] == 1 and summary["demo_unpaid_slips"] >= 40
    assert backoffice_cli.main(["seed", "--demo", "--db", db_url, "--kiosk", "no-colon"]) == 2


# --- issue 6: one kiosk's payments are its own ---------------------------------------------------
def test_transaction_ids_are_per_kiosk_so_reuse_reveals_nothing(server: RunningServer, db_url: str) -> None:
    slips = demo_slips(server)
    assert post(server, payment_body(slips[0], "tx-same"), "k-a", token=TOKEN_A).status_code == 201
    # kiosk B picking the same id settles its own payment: no "duplicate" that would reveal A's
    theirs = post(server, payment_body(slips[1], "tx-same"), "k-b", token=TOKEN_B)
    assert theirs.status_code == 201 and theirs.json()["bill_id"] == slips[1]["bill_id"]
    assert api(server, "GET", "/api/v1/payments/tx-same", token=TOKEN_A).json()["bill_id"] == slips[0]["bill_id"]
    assert api(server, "GET", "/api/v1/payments/tx-same", token=TOKEN_B).json()["bill_id"] == slips[1]["bill_id"]
    # within one kiosk an id is still used once
    again = post(server, payment_body(slips[2], "tx-same"), "k-a2", token=TOKEN_A)
    assert again.status_code == 409 and again.json() == {"error": "payment.duplicate_transaction"}
    assert count(db_url, "SELECT count(*) FROM payments") == 2


def test_another_kiosks_payment_reads_exactly_like_an_unknown_one(server: RunningServer) -> None:
    slip = demo_slips(server)[0]
    assert post(server, payment_body(slip, "tx-own"), "tx-own", token=TOKEN_A).status_code == 201
    assert api(server, "GET", "/api/v1/payments/tx-own", token=TOKEN_A).status_code == 200
    theirs = api(server, "GET", "/api/v1/payments/tx-own", token=TOKEN_B)
    unknown = api(server, "GET", "/api/v1/payments/tx-nobody-made", token=TOKEN_B)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.content == unknown.content == b'{"error":"payment.not_found"}'
    assert slip["bill_id"] not in theirs.text


# --- issue 6: strict request bodies --------------------------------------------------------------
def _no_payment_stored(db_url: str) -> None:
    assert count(db_url, "SELECT count(*) FROM payments") == 0
    assert count(db_url, "SELECT count(*) FROM idempotency") == 0


# Each of these tests walks its cases against one server: a server per case costs ~0.6 s.
BAD_AMOUNTS: tuple[Any, ...] = ("as-string", "as-float", True, 0, -1000, MAX_AMOUNT_RIALS + 1000, 2**70)


def test_amount_must_be_a_json_integer_in_range(server: RunningServer, db_url: str) -> None:
    slip = demo_slips(server)[0]
    for amount in BAD_AMOUNTS:  # "420000", 1150000.0 and true used to settle
        value = {"as-string": str(slip["amount_rials"]), "as-float": float(slip["amount_rials"])}.get(amount, amount)
        resp = post(server, payment_body(slip, "tx-s", amount_rials=value), "tx-s")
        assert resp.status_code == 422, (amount, resp.text)
        assert resp.json()["error"] == "request.invalid"
        assert [d["loc"][-1] for d in resp.json()["detail"]] == ["amount_rials"]
        _no_payment_stored(db_url)
    # the same body with the amount as a JSON integer settles
    assert post(server, payment_body(slip, "tx-s"), "tx-s").status_code == 201


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat()


BAD_PAID_AT: tuple[Any, ...] = (
    "0001-01-01T00:00:00Z",  # year 1
    "2019-12-31T23:59:59Z",  # before the window
    "in-ten-days",  # too far in the future
    "2025-11-28T09:15:00",  # no zone
    "2025-11-28",  # a date, not a date-time
    1764321300,  # Unix seconds, not an ISO string
    "yesterday",
)


def test_paid_at_must_be_a_zoned_iso_time_in_the_window(server: RunningServer, db_url: str) -> None:
    slip = demo_slips(server)[0]
    for paid_at in BAD_PAID_AT:
        if paid_at == "in-ten-days":
            paid_at = _iso(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=10))
        resp = post(server, payment_body(slip, "tx-t", paid_at=paid_at), "tx-t")
        assert resp.status_code == 422, (paid_at, resp.text)
        assert [d["loc"][-1] for d in resp.json()["detail"]] == ["paid_at"]
        _no_payment_stored(db_url)


def test_paid_at_with_a_tehran_offset_is_stored_as_that_instant(server: RunningServer, db_url: str) -> None:
    slip = demo_slips(server)[0]
    tehran = dt.timezone(dt.timedelta(hours=3, minutes=30))
    moment = (dt.datetime.now(tehran) - dt.timedelta(hours=2)).replace(microsecond=0)
    assert post(server, payment_body(slip, "tx-z", paid_at=_iso(moment)), "tx-z").status_code == 201
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT paid_at FROM payments")).scalar_one()
    finally:
        engine.dispose()
    if isinstance(stored, str):  # SQLite returns text
        stored = dt.datetime.fromisoformat(stored)
    assert stored.replace(tzinfo=dt.timezone.utc) == moment.astimezone(dt.timezone.utc)


BAD_FIELDS: tuple[tuple[str, Any], ...] = (
    ("transaction_id", 12345), ("transaction_id", "tx with spaces"), ("transaction_id", "x" * 65),
    ("bill_id", 2050327604613), ("terminal", {"rrn": 512345678901}), ("extra_field", 1),
)


def test_other_fields_have_strict_types_too(server: RunningServer, db_url: str) -> None:
    slip = demo_slips(server)[0]
    for field, value in BAD_FIELDS:
        resp = post(server, payment_body(slip, "tx-f", **{field: value}), "tx-f")
        assert resp.status_code == 422 and resp.json()["error"] == "request.invalid", field
        _no_payment_stored(db_url)


FULL_PAN = "6037991234567893"  # passes Luhn


UNMASKED_PANS = ("6037.9912.3456.7893", "6037-9912-3456-7893", "6037 9912 3456 7893", FULL_PAN,
                 "603799123456****", "60379912****7893", "۶۰۳۷.۹۹۱۲.۳۴۵۶.۷۸۹۳", "not a card")


def test_anything_but_a_masked_pan_is_refused_never_stored_never_logged(
        server: RunningServer, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    slip = demo_slips(server)[0]
    for pan in UNMASKED_PANS:
        body = payment_body(slip, "tx-p")
        body["terminal"]["masked_pan"] = pan
        resp = post(server, body, "tx-p")
        assert resp.status_code == 422 and resp.json() == {"error": "payment.unmasked_pan"}, pan
        assert pan not in resp.text
        _no_payment_stored(db_url)
    for pan in UNMASKED_PANS:
        digits = "".join(ch for ch in pan if ch.isdigit())
        assert pan not in caplog.text and (len(digits) < 8 or digits not in caplog.text)


def test_a_card_number_in_another_terminal_field_is_refused(server: RunningServer, db_url: str) -> None:
    slip = demo_slips(server)[0]
    body = payment_body(slip, "tx-q")
    body["terminal"]["poi_reference"] = f"POI/{FULL_PAN}"
    assert post(server, body, "tx-q").json() == {"error": "payment.unmasked_pan"}
    _no_payment_stored(db_url)


def test_masked_pans_in_any_grouping_are_accepted(server: RunningServer, db_url: str) -> None:
    pans = ("6037 99** **** 7893", "603799******7893", "6037.99XX.XXXX.7893", "")
    for slip, pan in zip(demo_slips(server), pans):
        body = payment_body(slip, f"tx-ok-{len(pan)}-{pan[:7]}".replace(" ", "_").replace("*", "x"))
        body["terminal"]["masked_pan"] = pan
        assert post(server, body, body["transaction_id"]).status_code == 201, pan
    assert count(db_url, "SELECT count(*) FROM payments") == len(pans)


# --- issue 6: journal anchors --------------------------------------------------------------------
def _head(n: int) -> str:
    return f"{n:064x}"


def test_journal_anchors_are_stored_and_listed_per_kiosk_in_seq_order(server: RunningServer) -> None:
    slips = demo_slips(server)
    for i, seq in enumerate((12, 5, 9)):
        body = payment_body(slips[i], f"a-{seq}", journal_seq=seq, journal_head=_head(seq))
        assert post(server, body, f"a-{seq}").status_code == 201
    assert post(server, payment_body(slips[3], "a-none"), "a-none").status_code == 201  # no anchor
    body = payment_body(slips[4], "b-7", journal_seq=7, journal_head=_head(7))
    assert post(server, body, "b-7", token=TOKEN_B).status_code == 201

    resp = api(server, "GET", "/api/v1/journal-anchors")
    assert resp.status_code == 200
    anchors = resp.json()["anchors"]
    assert [(a["transaction_id"], a["journal_seq"], a["journal_head"]) for a in anchors] == [
        ("a-5", 5, _head(5)), ("a-9", 9, _head(9)), ("a-12", 12, _head(12))]
    assert all(a["received_at"].endswith("Z") for a in anchors)
    later = api(server, "GET", "/api/v1/journal-anchors", params={"after_seq": 5}).json()["anchors"]
    assert [a["journal_seq"] for a in later] == [9, 12]
    page = api(server, "GET", "/api/v1/journal-anchors", params={"after_seq": 5, "limit": 1}).json()["anchors"]
    assert [a["journal_seq"] for a in page] == [9]
    theirs = api(server, "GET", "/api/v1/journal-anchors", token=TOKEN_B).json()["anchors"]
    assert [a["transaction_id"] for a in theirs] == ["b-7"]
    assert api(server, "GET", "/api/v1/journal-anchors", token=None).status_code == 401
    bad = api(server, "GET", "/api/v1/journal-anchors", params={"after_seq": -1})
    assert bad.status_code == 422 and bad.json()["error"] == "query.invalid"


BAD_ANCHORS: tuple[dict[str, Any], ...] = (
    {"journal_seq": 0, "journal_head": "a" * 64},
    {"journal_seq": "5", "journal_head": "a" * 64},
    {"journal_seq": 5.0, "journal_head": "a" * 64},
    {"journal_seq": 5, "journal_head": "A" * 64},
    {"journal_seq": 5, "journal_head": "a" * 63},
    {"journal_seq": 5},
    {"journal_head": "a" * 64},
)


def test_malformed_anchors_are_refused(server: RunningServer, db_url: str) -> None:
    slip = demo_slips(server)[0]
    for anchor in BAD_ANCHORS:
        resp = post(server, payment_body(slip, "tx-a", **anchor), "tx-a")
        assert resp.status_code == 422 and resp.json()["error"] == "request.invalid", anchor
        _no_payment_stored(db_url)


def test_a_replay_with_the_same_anchor_is_identical_and_another_anchor_conflicts(server: RunningServer) -> None:
    slip = demo_slips(server)[0]
    body = payment_body(slip, "tx-ra", journal_seq=3, journal_head=_head(3))
    first = post(server, body, "tx-ra")
    assert first.status_code == 201 and post(server, body, "tx-ra").content == first.content
    other = post(server, dict(body, journal_seq=4, journal_head=_head(4)), "tx-ra")
    assert other.status_code == 409 and other.json() == {"error": "idempotency.conflict"}


def test_migrations_from_0001_keep_existing_payments(db_url: str) -> None:
    """Down to 0001 and up again (0002 anchors, 0003 per-kiosk transaction ids) with a row."""
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(db_url)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001_initial")
        assert current_revision(db_url) == "0001_initial"
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO kiosks VALUES ('k-old', :d, true, '2025-01-01 00:00:00')"),
                         {"d": "0" * 64})
            conn.execute(sa.text(
                "INSERT INTO payments (transaction_id, kiosk_id, bill_id, payment_id, amount_rials, paid_at, rrn,"
                " stan, poi_reference, masked_pan, tracking_code, created_at) VALUES ('old-1', 'k-old', '1', '2',"
                " 1000, '2025-01-01 00:00:00', '', '', '', '', '000000000001', '2025-01-01 00:00:00')"))
    finally:
        engine.dispose()
        upgrade(db_url)
    assert current_revision(db_url) == HEAD_REVISION
    assert count(db_url, "SELECT count(*) FROM payments WHERE transaction_id = 'old-1' "
                         "AND journal_seq IS NULL AND journal_head IS NULL") == 1
    engine = make_engine(db_url)
    try:
        inspector = sa.inspect(engine)
        uniques = {tuple(uc["column_names"]) for uc in inspector.get_unique_constraints("payments")}
        indexes = {ix["name"] for ix in inspector.get_indexes("payments")}
    finally:
        engine.dispose()
    assert ("kiosk_id", "transaction_id") in uniques and ("transaction_id",) not in uniques
    assert {("bill_id", "payment_id"), ("tracking_code",)} <= uniques
    assert {"ix_payments_kiosk_id", "ix_payments_kiosk_journal_seq"} <= indexes


# --- issue 6: demo slips do not run out ----------------------------------------------------------
def _pay_all_demo_slips(server: RunningServer) -> int:
    slips = demo_slips(server)
    for i, slip in enumerate(slips):
        tx = f"drain-{secrets.token_hex(4)}-{i}"
        assert post(server, payment_body(slip, tx), tx).status_code == 201
    assert demo_slips(server) == []
    return len(slips)


def test_seeding_tops_the_demo_owner_up_when_every_slip_is_paid(server: RunningServer, db_url: str) -> None:
    assert _pay_all_demo_slips(server) >= 40
    summary = seed_demo(db_url, KIOSKS)
    assert summary.bills_added == summary.demo_unpaid_slips == DEMO_MIN_UNPAID
    fresh = demo_slips(server)
    assert len(fresh) == DEMO_MIN_UNPAID
    for slip in fresh:
        assert parse_bill(slip["bill_id"], slip["payment_id"]).amount_rials == slip["amount_rials"]
    assert seed_demo(db_url, KIOSKS).bills_added == 0  # enough unpaid: nothing more
    # and again after those are paid too: new ids, never one already paid
    paid = {(s["bill_id"], s["payment_id"]) for s in fresh}
    _pay_all_demo_slips(server)
    assert seed_demo(db_url, KIOSKS).demo_unpaid_slips == DEMO_MIN_UNPAID
    assert not paid & {(s["bill_id"], s["payment_id"]) for s in demo_slips(server)}


def test_concurrent_seeders_top_up_once_and_add_no_duplicate_owners(server: RunningServer, db_url: str) -> None:
    _pay_all_demo_slips(server)
    barrier = threading.Barrier(6)

    def seed(_: int) -> int:
        barrier.wait()
        return seed_demo(db_url, KIOSKS).bills_added

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        added = list(pool.map(seed, range(6)))
    assert sorted(added) == [0] * 5 + [DEMO_MIN_UNPAID]
    assert len(demo_slips(server)) == DEMO_MIN_UNPAID
    assert count(db_url, "SELECT count(*) FROM owners") == len(OWNERS)


def test_concurrent_first_seeds_of_an_empty_database_make_one_data_set(db_url: str) -> None:
    barrier = threading.Barrier(4)

    def seed(_: int) -> int:
        barrier.wait()
        return seed_demo(db_url, KIOSKS).owners_added

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        added = list(pool.map(seed, range(4)))
    assert sorted(added) == [0, 0, 0, len(OWNERS)]
    assert count(db_url, "SELECT count(*) FROM owners") == len(OWNERS)


# --- issue 6: /docs without the internet ---------------------------------------------------------
def test_docs_page_loads_every_asset_from_the_app_itself(server: RunningServer) -> None:
    resp = requests.get(server.url + "/docs", timeout=10)
    assert resp.status_code == 200 and "swagger-ui" in resp.text
    refs = re.findall(r'(?:src|href)="([^"]+)"', resp.text) + re.findall(r"url: '([^']+)'", resp.text)
    assert len(refs) >= 4  # css, favicon, bundle js, the OpenAPI document
    assert "http://" not in resp.text and "https://" not in resp.text
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
        asset = requests.get(server.url + ref, timeout=10)
        assert asset.status_code == 200, ref
        assert len(asset.content) > 500, ref
    assert requests.get(server.url + "/redoc", timeout=10).status_code == 404  # its page would use a CDN


# --- issue 6: the CLI answers a person's mistakes in one line ------------------------------------
def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_kiosk_add_refuses_a_weak_token_in_one_line(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    for token in ("x", "short-token-123", "a" * 30, "abababababababababababab",
                  "has spaces in it 0123456789abc", "ümlaut-token-0123456789abcdef"):
        assert backoffice_cli.main(["kiosk", "add", "k-weak", "--db", db_url, "--token", token]) == 2, token
        assert "token" in _one_line_error(capsys)
        assert count(db_url, "SELECT count(*) FROM kiosks WHERE kiosk_id = 'k-weak'") == 0


def test_kiosk_add_refuses_a_token_another_kiosk_holds(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed_demo(db_url, KIOSKS)
    assert backoffice_cli.main(["kiosk", "add", "k-copy", "--db", db_url, "--token", TOKEN_A]) == 1
    err = _one_line_error(capsys)
    assert "in use" in err and TOKEN_A not in err
    assert count(db_url, "SELECT count(*) FROM kiosks WHERE kiosk_id = 'k-copy'") == 0
    # the holder itself may be given its own token again (a no-op), and a strong new one works
    assert backoffice_cli.main(["kiosk", "add", "kiosk-a", "--db", db_url, "--token", TOKEN_A]) == 0
    assert backoffice_cli.main(["kiosk", "add", "k-copy", "--db", db_url]) == 0


def test_seed_refuses_a_weak_kiosk_token_in_one_line(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert backoffice_cli.main(["seed", "--demo", "--db", db_url, "--kiosk", "k1:weak"]) == 2
    assert "token" in _one_line_error(capsys)


@pytest.mark.postgres
@pytest.mark.timeout(60)  # without the lock the migrations deadlock rather than fail
def test_concurrent_migrations_of_a_fresh_postgres_database_all_succeed(pg_url: str) -> None:
    """Two processes starting on a new database (a demo and a test) both run `upgrade`; the
    advisory lock makes the second wait and find the schema at head."""
    admin = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"kiosk_test_mig_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    try:
        barrier = threading.Barrier(4)

        def migrate(_: int) -> None:
            barrier.wait()
            upgrade(url)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(migrate, range(4)))  # re-raises any failure
        assert current_revision(url) == HEAD_REVISION
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
