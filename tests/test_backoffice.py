"""The reference back-office over real HTTP on loopback, against SQLite and PostgreSQL:
auth, bill lookup, fee slips, idempotent atomic payment posts, migrations and the seed."""

from __future__ import annotations

import concurrent.futures
import json
import secrets
import threading
from typing import Any, Iterator

import psycopg
import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from backoffice import cli as backoffice_cli
from backoffice.db import current_revision, make_engine, upgrade
from backoffice.models import TABLE_NAMES
from backoffice.seed import (
    DEMO_BUSINESS_LICENSE,
    DEMO_NATIONAL_CODE,
    DEMO_PLATE,
    DEMO_RENOVATION_CODE,
    DEMO_WATER_BILL,
    OWNERS,
    seed_demo,
)
from backoffice.server import RunningServer, serve_in_thread
from kiosk.bills import InvalidBill, make_bill_id, make_payment_id, parse_bill
from kiosk.sensitive import national_code_ok

TOKEN_A = "token-a-Qm7Vx2Lp9Rt4Wz8Kc3Nd"
TOKEN_B = "token-b-Hs5Jy1Fg6Ub0Ea7Mo2Pi"
KIOSKS = {"kiosk-a": TOKEN_A, "kiosk-b": TOKEN_B}
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
    assert body["payer_name"] and body["due_date"].count("-") == 2


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
    assert body["owner_name"] == "علی رضایی"
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
    assert current_revision(db_url) == "0002_journal_anchors"


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
