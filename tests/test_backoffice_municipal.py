"""The back-office's municipal services (issue 9) over real HTTP on loopback, against SQLite and
PostgreSQL: look-ups by fee type with the payer's name masked, the look-up limits (per kiosk,
per identifier, sliding, concurrent) and their HMAC-only audit, settlement certificates,
traffic-zone day permits and the camera check, migration 0005 and the seed's cases; then the
kiosk's client methods against the real server (and against a server that answers like a
proxy)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import hashlib
import hmac
import http.server
import json
import logging
import secrets
import socket
import threading
import time
import zoneinfo
from typing import Any, Iterator

import psycopg
import pytest
import requests
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import make_url

from backoffice import cli as backoffice_cli
from backoffice.db import alembic_config, current_revision, make_engine, upgrade
from backoffice.identity import canonical_plate, mask_name
from backoffice.models import ServiceRole
from backoffice.municipal import LookupLimits, parse_limit
from backoffice.seed import (
    BASKET_PLATE,
    BASKET_RENOVATION_CODE,
    DEMO_NATIONAL_CODE,
    DEMO_PLATE,
    DEMO_RENOVATION_CODE,
    PAID_BUSINESS_LICENSE,
    PAID_NATIONAL_CODE,
    PAID_PLATE,
    PAID_RENOVATION_CODE,
    UNPAID_BUSINESS_LICENSE,
    UNPAID_NATIONAL_CODE,
    seed_demo,
)
from backoffice.server import RunningServer, serve_in_thread
from kiosk.backoffice_client import (
    BackofficeClient,
    BackofficeUnavailable,
    Certificate,
    CertificateNotFound,
    IdentifierInvalid,
    LookupLimited,
    OutstandingSlips,
    OwnerNotFound,
    PermitAmountMismatch,
    PermitDateInvalid,
    PermitExists,
    PermitNotFound,
    PermitPost,
    PermitPostPending,
    PermitQuote,
    PermitRecord,
    PermitRefused,
    PlateInvalid,
)
from kiosk.errors import KioskError

TOKEN_A = "muni-a-Qm7Vx2Lp9Rt4Wz8Kc3Nd"
TOKEN_B = "muni-b-Hs5Jy1Fg6Ub0Ea7Mo2Pi"
CAMERA = "muni-cam-Zq8Wc4Rv1Tb6Yn3Mk9Lp"
KIOSKS = {"kiosk-a": TOKEN_A, "kiosk-b": TOKEN_B}
SERVICES = {"cam-1": (ServiceRole.CAMERA, CAMERA)}
DATA_TABLES = ("idempotency", "payments", "bills", "owners", "kiosks", "service_tokens", "lookup_audit",
               "certificates", "traffic_permits")
TEHRAN = zoneinfo.ZoneInfo("Asia/Tehran")
PLATE = "۳۳ ق ۴۱۲ ایران ۷۷"  # no owner: anyone may buy a permit for any plate
ROOMY = LookupLimits(per_kiosk=1000, kiosk_window_s=60, per_identifier=1000, identifier_window_s=600)


# --- databases and servers ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pg_database(pg_url: str) -> Iterator[str]:
    admin = make_url(pg_url).set(drivername="postgresql")
    name = f"kiosk_muni_{secrets.token_hex(6)}"
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
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
        upgrade(url)
        return url
    url = str(request.getfixturevalue("pg_database"))
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(DATA_TABLES)} RESTART IDENTITY CASCADE")
        conn.exec_driver_sql("UPDATE backoffice_settings SET value = '1200000' WHERE key = 'traffic_permit.price_rials'")
        conn.exec_driver_sql("UPDATE backoffice_settings SET value = '7' WHERE key = 'traffic_permit.horizon_days'")
    engine.dispose()
    return url


def serve(db_url: str, limits: LookupLimits = LookupLimits()) -> RunningServer:
    seed_demo(db_url, KIOSKS, SERVICES)
    return serve_in_thread(db_url, lookup_limits=limits)


@pytest.fixture
def server(db_url: str) -> Iterator[RunningServer]:
    with serve(db_url) as running:
        yield running


def api(server: RunningServer, method: str, path: str, token: str | None = TOKEN_A, **kw: Any) -> requests.Response:
    headers = dict(kw.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, server.url + path, headers=headers, timeout=30, **kw)


def lookup(server: RunningServer, fee_type: str, identifier: str, token: str = TOKEN_A) -> requests.Response:
    return api(server, "POST", "/api/v1/lookups", token=token, json={"fee_type": fee_type, "identifier": identifier})


def rows(db_url: str, sql: str, **params: Any) -> list[Any]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))
    finally:
        engine.dispose()


def execute(db_url: str, sql: str, **params: Any) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql), params)
    finally:
        engine.dispose()


def today() -> dt.date:
    return dt.datetime.now(TEHRAN).date()


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def permit_body(tx: str, *, plate: str = PLATE, day: dt.date | None = None, amount: int = 1_200_000,
                **changes: Any) -> dict[str, Any]:
    body = {"transaction_id": tx, "plate": plate, "date": (day or today()).isoformat(), "amount_rials": amount,
            "paid_at": now_iso(), "terminal": {"rrn": "512345678901", "stan": "004211",
                                               "poi_reference": "SIM-POI-1/77", "masked_pan": "603799******1234"}}
    body.update(changes)
    return body


def buy(server: RunningServer, body: dict[str, Any], token: str = TOKEN_A, key: str | None = None) -> requests.Response:
    return api(server, "POST", "/api/v1/traffic-permits", token=token, json=body,
               headers={"Idempotency-Key": key or body["transaction_id"]})


def certificate(server: RunningServer, fee_type: str, identifier: str, key: str,
                token: str = TOKEN_A) -> requests.Response:
    return api(server, "POST", "/api/v1/certificates", token=token, json={"fee_type": fee_type, "identifier": identifier},
               headers={"Idempotency-Key": key})


# --- look-ups -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fee_type,identifier,owner,kind", [
    ("renovation_tax", DEMO_RENOVATION_CODE, "ع*** ر***", "renovation_tax"),
    ("business_tax", UNPAID_BUSINESS_LICENSE, "ن*** س*** م*** ا***", "business_tax"),
    ("waste_charge", UNPAID_NATIONAL_CODE, "ز*** م***", "waste_charge"),
    ("vehicle_tax", DEMO_PLATE, "ع*** ر***", "vehicle_tax"),
])
def test_lookup_lists_one_fee_type_with_the_payer_masked(server: RunningServer, fee_type: str, identifier: str,
                                                        owner: str, kind: str) -> None:
    resp = lookup(server, fee_type, identifier)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"fee_type", "identifier_masked", "owner_name", "slips"}
    assert body["fee_type"] == fee_type and body["owner_name"] == owner
    assert {s["kind"] for s in body["slips"]} == {kind} and body["slips"]
    for slip in body["slips"]:
        assert set(slip) == {"slip_id", "kind", "bill_id", "payment_id", "amount_rials", "period", "due_date",
                             "description_fa", "status"}
    statuses = [s["status"] for s in body["slips"]]
    assert statuses == sorted(statuses, key=lambda s: s != "unpaid")  # unpaid first
    # nothing of the identifier but its masked form, and no full name anywhere in the answer
    digits = "".join(ch for ch in (canonical_plate(identifier) or identifier) if ch.isdigit())
    assert digits not in resp.text and "رضایی" not in resp.text


@pytest.mark.parametrize("fee_type,spelling", [
    ("renovation_tax", "۸-۷۷-۳۰۱-۲-۰-۰-۰"),
    ("renovation_tax", "8773012000"),
    ("vehicle_tax", "13س52766"),
    ("vehicle_tax", "13 س 527 IR 66"),
])
def test_lookup_takes_any_digit_script_and_spacing(server: RunningServer, fee_type: str, spelling: str) -> None:
    resp = lookup(server, fee_type, spelling)
    assert resp.status_code == 200, resp.text
    assert resp.json()["owner_name"] == mask_name("نرگس جعفری")


@pytest.mark.parametrize("fee_type,identifier", [
    ("waste_charge", "0084137259"),  # fails the national-code check digit
    ("vehicle_tax", "22 X 365 10"),
    ("vehicle_tax", "2 ب 365 10"),
    ("renovation_tax", "abc"),
])
def test_lookup_of_a_malformed_identifier_is_422(server: RunningServer, fee_type: str, identifier: str) -> None:
    resp = lookup(server, fee_type, identifier)
    assert resp.status_code == 422 and resp.json()["error"] == "lookup.identifier_invalid"


def test_lookup_body_is_strict(server: RunningServer) -> None:
    assert lookup(server, "water", "0084137258").status_code == 422
    resp = api(server, "POST", "/api/v1/lookups", json={"fee_type": "waste_charge", "identifier": 84137258})
    assert resp.status_code == 422 and resp.json()["error"] == "request.invalid"
    assert api(server, "POST", "/api/v1/lookups", token=None,
               json={"fee_type": "waste_charge", "identifier": DEMO_NATIONAL_CODE}).status_code == 401


def test_unknown_owner_is_404_and_audited(server: RunningServer, db_url: str) -> None:
    resp = lookup(server, "business_tax", "1400-7777777")
    assert resp.status_code == 404 and resp.json() == {"error": "owner.not_found"}
    assert rows(db_url, "SELECT result_count, refused FROM lookup_audit") == [(0, False)]


def test_audit_keeps_only_a_keyed_hash_of_the_identifier(server: RunningServer, db_url: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert lookup(server, "waste_charge", UNPAID_NATIONAL_CODE).status_code == 200
    assert lookup(server, "vehicle_tax", BASKET_PLATE, token=TOKEN_B).status_code == 200
    assert api(server, "GET", "/api/v1/fee-slips", params={"national_code": DEMO_NATIONAL_CODE}).status_code == 200
    secret = bytes.fromhex(rows(db_url, "SELECT value FROM backoffice_settings WHERE key = 'audit.hmac_secret'")[0][0])
    audit = rows(db_url, "SELECT kiosk_id, endpoint, fee_type, identifier_hmac, result_count, refused, created_at "
                         "FROM lookup_audit ORDER BY id")
    assert [(a[0], a[1], a[2], a[5]) for a in audit] == [
        ("kiosk-a", "lookup", "waste_charge", False), ("kiosk-b", "lookup", "vehicle_tax", False),
        ("kiosk-a", "fee-slips", "national", False)]
    assert audit[0][3] == hmac.new(secret, f"national:{UNPAID_NATIONAL_CODE}".encode(), hashlib.sha256).hexdigest()
    assert audit[1][3] == hmac.new(secret, f"plate:{canonical_plate(BASKET_PLATE)}".encode(),
                                   hashlib.sha256).hexdigest()
    # not a bare hash anyone could recompute from a guessed code
    assert audit[0][3] != hashlib.sha256(f"national:{UNPAID_NATIONAL_CODE}".encode()).hexdigest()
    assert audit[0][4] == 6 and all(a[6] is not None for a in audit)
    dump = json.dumps([[str(v) for v in a] for a in audit])
    # (the plate as a whole: its digits alone turn up in a random hex digest or a timestamp)
    assert UNPAID_NATIONAL_CODE not in dump and DEMO_NATIONAL_CODE not in dump
    assert canonical_plate(BASKET_PLATE) not in dump and "527 ایران" not in dump
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "lookup" in logged and "002****846" in logged  # masked forms are logged
    for full in (UNPAID_NATIONAL_CODE, DEMO_NATIONAL_CODE, canonical_plate(BASKET_PLATE) or "", "527"):
        assert full not in logged


def test_the_audit_secret_differs_per_database(db_url: str, tmp_path: Any) -> None:
    other = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    upgrade(other)
    query = "SELECT value FROM backoffice_settings WHERE key = 'audit.hmac_secret'"
    mine, theirs = rows(db_url, query)[0][0], rows(other, query)[0][0]
    assert len(mine) == 64 and mine != theirs


# --- limits ---------------------------------------------------------------------------------------
def test_per_identifier_limit_holds_across_kiosks_with_retry_after(db_url: str) -> None:
    limits = LookupLimits(per_kiosk=100, kiosk_window_s=60, per_identifier=3, identifier_window_s=600)
    with serve(db_url, limits) as server:
        codes = [lookup(server, "renovation_tax", BASKET_RENOVATION_CODE, t).status_code
                 for t in (TOKEN_A, TOKEN_B, TOKEN_A)]
        assert codes == [200, 200, 200]
        for token in (TOKEN_A, TOKEN_B):
            refused = lookup(server, "renovation_tax", "8773012000", token)  # the same code, spelled otherwise
            assert refused.status_code == 429
            body = refused.json()
            assert body["error"] == "lookup.rate_limited" and body["limit"] == "identifier"
            assert 590 <= body["retry_after_s"] <= 600 and refused.headers["Retry-After"] == str(body["retry_after_s"])
        # another identifier, and a certificate of this one, are counted on their own / the same
        assert lookup(server, "renovation_tax", DEMO_RENOVATION_CODE).status_code == 200
        assert certificate(server, "renovation_tax", BASKET_RENOVATION_CODE, "c-1").status_code == 429
    audit = rows(db_url, "SELECT endpoint, refused, refused_by FROM lookup_audit ORDER BY id")
    assert [a[1] for a in audit] == [False, False, False, True, True, False, True]
    assert {a[2] for a in audit if a[1]} == {"identifier"}


def test_per_kiosk_limit_counts_every_identifier_of_that_kiosk(db_url: str) -> None:
    limits = LookupLimits(per_kiosk=4, kiosk_window_s=60, per_identifier=100, identifier_window_s=600)
    with serve(db_url, limits) as server:
        codes = [lookup(server, "business_tax", f"1400-{i:07d}").status_code for i in range(4)]
        assert codes == [404] * 4  # unknown licences are look-ups too: enumeration is what is limited
        refused = lookup(server, "waste_charge", UNPAID_NATIONAL_CODE)
        assert refused.status_code == 429 and refused.json()["limit"] == "kiosk"
        assert 1 <= refused.json()["retry_after_s"] <= 60
        assert lookup(server, "waste_charge", UNPAID_NATIONAL_CODE, TOKEN_B).status_code == 200


def test_limit_window_slides(db_url: str) -> None:
    limits = LookupLimits(per_kiosk=100, kiosk_window_s=60, per_identifier=2, identifier_window_s=4)
    with serve(db_url, limits) as server:
        assert [lookup(server, "vehicle_tax", BASKET_PLATE).status_code for _ in range(3)] == [200, 200, 429]
        wait = lookup(server, "vehicle_tax", BASKET_PLATE).json()["retry_after_s"]
        assert 1 <= wait <= 4
        time.sleep(wait + 0.2)
        assert lookup(server, "vehicle_tax", BASKET_PLATE).status_code == 200


def test_concurrent_lookups_allow_exactly_the_limit(db_url: str) -> None:
    limits = LookupLimits(per_kiosk=7, kiosk_window_s=60, per_identifier=5, identifier_window_s=600)
    with serve(db_url, limits) as server:
        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            same = list(pool.map(lambda i: lookup(server, "vehicle_tax", BASKET_PLATE,
                                                  (TOKEN_A, TOKEN_B)[i % 2]).status_code, range(16)))
        assert sorted(same) == [200] * 5 + [429] * 11
        used = rows(db_url, "SELECT count(*) FROM lookup_audit WHERE kiosk_id = 'kiosk-a' AND refused = :f", f=False)[0][0]
        with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
            mine = list(pool.map(lambda i: lookup(server, "business_tax", f"1401-{i:07d}").status_code, range(16)))
        # only allowed look-ups count: kiosk-a has 7 - `used` left
        assert sorted(mine) == [404] * (7 - used) + [429] * (16 - 7 + used)


def test_legacy_fee_slips_are_audited_and_limited_when_configured(db_url: str) -> None:
    limits = LookupLimits(per_kiosk=100, kiosk_window_s=60, per_identifier=2, identifier_window_s=600, legacy=True)
    with serve(db_url, limits) as server:
        got = [api(server, "GET", "/api/v1/fee-slips", params={"plate": BASKET_PLATE}) for _ in range(3)]
        assert [r.status_code for r in got] == [200, 200, 429]
        assert got[0].json()["owner_name"] == "ن*** ج***"
        # the new look-up and the old query count against the same identifier
        assert lookup(server, "vehicle_tax", BASKET_PLATE).status_code == 429


def test_limits_from_the_environment_and_cli() -> None:
    assert LookupLimits.from_env({}) == LookupLimits(20, 60, 5, 600, True)  # the older query counts too
    env = {LookupLimits.ENV_KIOSK: "30/120", LookupLimits.ENV_IDENTIFIER: "3/900", LookupLimits.ENV_LEGACY: "0"}
    assert LookupLimits.from_env(env) == LookupLimits(30, 120, 3, 900, False)
    assert parse_limit(" 7/10 ") == (7, 10)
    for bad in ("7", "0/10", "x/y", "5/0"):
        with pytest.raises(ValueError):
            parse_limit(bad)


def test_serve_refuses_a_malformed_limit_in_one_line(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code = backoffice_cli.main(["serve", "--db", f"sqlite:///{tmp_path / 'x.sqlite3'}", "--port", "0",
                                "--lookup-limit-kiosk", "many"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "COUNT/SECONDS" in err


# --- certificates ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fee_type,identifier,slips", [
    ("renovation_tax", PAID_RENOVATION_CODE, 4),
    ("business_tax", PAID_BUSINESS_LICENSE, 3),
])
def test_certificate_is_issued_when_everything_is_paid(server: RunningServer, db_url: str, fee_type: str,
                                                       identifier: str, slips: int) -> None:
    resp = certificate(server, fee_type, identifier, "cert-1")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["fee_type"] == fee_type and body["slips_checked"] == slips and body["status"] == "valid"
    assert body["certificate_id"].startswith("MF") and "*" in body["identifier_masked"]
    assert body["owner_name_masked"].endswith("***") and identifier.replace("-", "") not in resp.text
    as_of = dt.datetime.fromisoformat(body["as_of"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.timezone.utc) - as_of).total_seconds()) < 60
    assert dt.date.fromisoformat(body["valid_until"]) == as_of.astimezone(TEHRAN).date() + dt.timedelta(days=30)
    # a retry of the same request is the same certificate, byte for byte
    again = certificate(server, fee_type, identifier, "cert-1")
    assert again.status_code == 201 and again.content == resp.content
    other = certificate(server, "renovation_tax", DEMO_RENOVATION_CODE, "cert-1")
    assert other.status_code == 409 and other.json() == {"error": "idempotency.conflict"}
    # any kiosk can check it
    check = api(server, "GET", f"/api/v1/certificates/{body['certificate_id']}", token=TOKEN_B)
    assert check.status_code == 200 and check.json() == body
    assert api(server, "GET", "/api/v1/certificates/MF000000000000").json() == {"error": "certificate.not_found"}
    assert rows(db_url, "SELECT count(*) FROM certificates")[0][0] == 1


def test_certificate_refused_lists_the_outstanding_slips_and_is_issued_once_paid(server: RunningServer) -> None:
    refused = certificate(server, "renovation_tax", BASKET_RENOVATION_CODE, "cert-b")
    assert refused.status_code == 409 and refused.json()["error"] == "certificate.outstanding"
    outstanding = refused.json()["slips"]
    listed = lookup(server, "renovation_tax", BASKET_RENOVATION_CODE).json()["slips"]
    assert outstanding == [s for s in listed if s["status"] == "unpaid"] and len(outstanding) == 3
    for i, slip in enumerate(outstanding):
        paid = api(server, "POST", "/api/v1/payments", headers={"Idempotency-Key": f"pay-{i}"}, json={
            "transaction_id": f"pay-{i}", "bill_id": slip["bill_id"], "payment_id": slip["payment_id"],
            "amount_rials": slip["amount_rials"], "paid_at": now_iso(), "terminal": {"masked_pan": "603799******1234"}})
        assert paid.status_code == 201, paid.text
    issued = certificate(server, "renovation_tax", BASKET_RENOVATION_CODE, "cert-b")  # the same key: not stored
    assert issued.status_code == 201 and issued.json()["slips_checked"] == 3


def test_certificate_refusals(server: RunningServer) -> None:
    no_key = api(server, "POST", "/api/v1/certificates",
                 json={"fee_type": "business_tax", "identifier": PAID_BUSINESS_LICENSE})
    assert no_key.status_code == 400 and no_key.json() == {"error": "idempotency.key_required"}
    assert certificate(server, "waste_charge", PAID_NATIONAL_CODE, "c-w").status_code == 422
    assert certificate(server, "business_tax", "1400-7777777", "c-u").json() == {"error": "owner.not_found"}
    assert certificate(server, "business_tax", PAID_BUSINESS_LICENSE, "c-x", token="nobody-at-all-token").status_code == 401


# --- traffic-zone permits -------------------------------------------------------------------------
def test_permit_quote_purchase_status_and_camera_check(server: RunningServer) -> None:
    quote = api(server, "GET", "/api/v1/traffic-permits/quote", params={"plate": "33ق41277", "date": today().isoformat()})
    assert quote.status_code == 200
    assert quote.json() == {"plate": "33 ق 412 ایران 77", "date": today().isoformat(), "price_rials": 1_200_000,
                            "available": True, "reason": "", "min_date": today().isoformat(),
                            "max_date": (today() + dt.timedelta(days=7)).isoformat()}
    body = permit_body("tp-1", journal_seq=5, journal_head="ab" * 32)
    first = buy(server, body)
    assert first.status_code == 201, first.text
    record = first.json()
    assert record["plate"] == "33 ق 412 ایران 77" and record["date"] == today().isoformat()
    assert record["status"] == "issued" and len(record["tracking_code"]) == 12 and record["permit_id"].startswith("TP")
    assert (record["journal_seq"], record["journal_head"]) == (5, "ab" * 32)
    assert buy(server, body).content == first.content  # a retry: the first answer, byte for byte
    conflict = buy(server, dict(body, plate="33 ق 412 ایران 78"))
    assert conflict.status_code == 409 and conflict.json() == {"error": "idempotency.conflict"}
    status = api(server, "GET", "/api/v1/traffic-permits/tp-1")
    assert status.status_code == 200 and status.json() == record
    assert api(server, "GET", "/api/v1/traffic-permits/tp-1", token=TOKEN_B).json() == {"error": "permit.not_found"}
    after = api(server, "GET", "/api/v1/traffic-permits/quote", params={"plate": PLATE, "date": today().isoformat()})
    assert (after.json()["available"], after.json()["reason"]) == (False, "exists")
    camera = {"Authorization": f"Bearer {CAMERA}"}
    check = requests.get(server.url + "/api/v1/traffic-permits/check", params={"plate": "۳۳ ق ۴۱۲ - ۷۷"},
                         headers=camera, timeout=10)
    assert check.json() == {"plate": "33 ق 412 ایران 77", "date": today().isoformat(), "valid": True}
    tomorrow = (today() + dt.timedelta(days=1)).isoformat()
    assert requests.get(server.url + "/api/v1/traffic-permits/check", params={"plate": PLATE, "date": tomorrow},
                        headers=camera, timeout=10).json()["valid"] is False
    # a kiosk cannot ask the camera's question, and a camera cannot buy or quote
    assert api(server, "GET", "/api/v1/traffic-permits/check", params={"plate": PLATE}).status_code == 401
    assert api(server, "GET", "/api/v1/traffic-permits/quote", token=CAMERA,
               params={"plate": PLATE, "date": tomorrow}).status_code == 401
    assert buy(server, permit_body("tp-c", day=today() + dt.timedelta(days=1)), token=CAMERA).status_code == 401


def test_permit_refusals(server: RunningServer, db_url: str) -> None:
    assert buy(server, permit_body("tp-1")).status_code == 201
    exists = buy(server, permit_body("tp-2", plate="33ق412 IR 77"), token=TOKEN_B)
    assert exists.status_code == 409 and exists.json()["error"] == "permit.exists"
    past = buy(server, permit_body("tp-3", day=today() - dt.timedelta(days=1)))
    assert past.status_code == 422 and past.json() == {
        "error": "permit.date_invalid", "min_date": today().isoformat(),
        "max_date": (today() + dt.timedelta(days=7)).isoformat()}
    assert buy(server, permit_body("tp-4", day=today() + dt.timedelta(days=8))).json()["error"] == "permit.date_invalid"
    cheap = buy(server, permit_body("tp-5", day=today() + dt.timedelta(days=1), amount=1_000_000))
    assert cheap.status_code == 409 and cheap.json() == {"error": "permit.amount_mismatch", "expected_rials": 1_200_000}
    bad_plate = buy(server, permit_body("tp-6", plate="12345"))
    assert bad_plate.status_code == 422 and bad_plate.json()["error"] == "plate.invalid"
    full_pan = buy(server, permit_body("tp-7", day=today() + dt.timedelta(days=2),
                                       terminal={"masked_pan": "6037991234567893"}))
    assert full_pan.status_code == 422 and full_pan.json() == {"error": "payment.unmasked_pan"}
    mismatch = buy(server, permit_body("tp-8", day=today() + dt.timedelta(days=2)), key="other-key")
    assert mismatch.status_code == 422 and mismatch.json() == {"error": "idempotency.key_mismatch"}
    assert api(server, "GET", "/api/v1/traffic-permits/quote",
               params={"plate": "x", "date": today().isoformat()}).json()["error"] == "plate.invalid"
    assert api(server, "GET", "/api/v1/traffic-permits/quote", params={"plate": PLATE}).json()["error"] == "query.invalid"
    assert rows(db_url, "SELECT count(*) FROM traffic_permits")[0][0] == 1


def test_permit_price_and_horizon_are_the_back_office_settings(server: RunningServer, db_url: str) -> None:
    execute(db_url, "UPDATE backoffice_settings SET value = '1500000' WHERE key = 'traffic_permit.price_rials'")
    execute(db_url, "UPDATE backoffice_settings SET value = '2' WHERE key = 'traffic_permit.horizon_days'")
    day3 = (today() + dt.timedelta(days=3)).isoformat()
    quote = api(server, "GET", "/api/v1/traffic-permits/quote", params={"plate": PLATE, "date": day3}).json()
    assert (quote["price_rials"], quote["available"], quote["reason"]) == (1_500_000, False, "date_invalid")
    assert buy(server, permit_body("tp-p", amount=1_200_000)).json()["expected_rials"] == 1_500_000
    assert buy(server, permit_body("tp-q", amount=1_500_000)).status_code == 201


def test_a_queued_permit_post_counts_days_from_when_it_was_paid(server: RunningServer) -> None:
    """Paid yesterday (Tehran) for yesterday, delivered today: the permit that was paid for."""
    yesterday = today() - dt.timedelta(days=1)
    paid = dt.datetime.combine(yesterday, dt.time(12, 0), TEHRAN).astimezone(dt.timezone.utc).isoformat()
    assert buy(server, permit_body("tp-late", day=yesterday, paid_at=paid)).status_code == 201


def test_concurrent_sales_of_one_plate_and_day_record_one_permit(server: RunningServer, db_url: str) -> None:
    day = today() + dt.timedelta(days=3)
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda i: buy(server, permit_body(f"race-{i}", day=day), (TOKEN_A, TOKEN_B)[i % 2]),
                                range(12)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * 11
    assert {r.json()["error"] for r in results if r.status_code == 409} == {"permit.exists"}
    assert rows(db_url, "SELECT count(*) FROM traffic_permits")[0][0] == 1


# --- schema and seed ------------------------------------------------------------------------------
def test_migration_0005_goes_down_and_up(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(db_url)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0004_transit")
        assert current_revision(db_url) == "0004_transit"
        assert "lookup_audit" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    upgrade(db_url)
    assert current_revision(db_url) == "0005_municipal"
    assert {r[0] for r in rows(db_url, "SELECT key FROM backoffice_settings")} == {
        "audit.hmac_secret", "traffic_permit.price_rials", "traffic_permit.horizon_days"}


def test_seed_has_a_paid_and_an_unpaid_case_for_every_fee_type(server: RunningServer) -> None:
    def unpaid(fee_type: str, identifier: str) -> int:
        resp = lookup(server, fee_type, identifier)
        assert resp.status_code == 200, (fee_type, identifier, resp.text)
        return sum(s["status"] == "unpaid" for s in resp.json()["slips"])

    assert unpaid("renovation_tax", PAID_RENOVATION_CODE) == 0
    assert unpaid("business_tax", PAID_BUSINESS_LICENSE) == 0
    assert unpaid("vehicle_tax", PAID_PLATE) == 0
    assert unpaid("waste_charge", PAID_NATIONAL_CODE) == 0
    assert unpaid("renovation_tax", BASKET_RENOVATION_CODE) == 3
    assert unpaid("vehicle_tax", BASKET_PLATE) == 2
    assert unpaid("business_tax", UNPAID_BUSINESS_LICENSE) == 4
    assert unpaid("waste_charge", UNPAID_NATIONAL_CODE) == 6


# --- the kiosk's client ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    url = f"sqlite:///{tmp_path_factory.mktemp('bo') / 'backoffice.sqlite3'}"
    seed_demo(url, KIOSKS, SERVICES)
    with serve_in_thread(url, lookup_limits=ROOMY) as running:
        yield running


@pytest.fixture
def client(client_server: RunningServer) -> Iterator[BackofficeClient]:
    with BackofficeClient(client_server.url, TOKEN_A, backoff=0.01) as c:
        yield c


def test_client_lookup_slips_maps_each_fee_type(client: BackofficeClient) -> None:
    for fee_type, identifier in (("renovation_tax", BASKET_RENOVATION_CODE), ("business_tax", UNPAID_BUSINESS_LICENSE),
                                 ("waste_charge", UNPAID_NATIONAL_CODE), ("vehicle_tax", BASKET_PLATE)):
        owner = client.lookup_slips(fee_type, identifier)
        assert owner.fee_type == fee_type and {s.kind for s in owner.slips} == {fee_type}
        assert owner.owner_name.endswith("***") and "*" in owner.identifier_masked and owner.unpaid
    assert len(client.lookup_slips("renovation_tax", BASKET_RENOVATION_CODE).unpaid) == 3
    with pytest.raises(ValueError):
        client.lookup_slips("water_bill", "123")
    with pytest.raises(OwnerNotFound):
        client.lookup_slips("business_tax", "1400-7777777")
    with pytest.raises(IdentifierInvalid) as err:
        client.lookup_slips("waste_charge", "0084137259")
    assert err.value.message("fa") and err.value.message("en")


def test_client_fee_slips_keep_working_with_the_name_masked(client: BackofficeClient) -> None:
    owner = client.fee_slips(national_code=DEMO_NATIONAL_CODE)
    assert owner.owner_name == "ع*** ر***" and len(owner.unpaid) >= 40


def test_client_certificate_and_outstanding_slips(client: BackofficeClient) -> None:
    cert = client.request_certificate("renovation_tax", PAID_RENOVATION_CODE, idempotency_key="cc-1")
    assert isinstance(cert, Certificate) and cert.slips_checked == 4 and cert.status == "valid"
    assert client.request_certificate("renovation_tax", PAID_RENOVATION_CODE, idempotency_key="cc-1") == cert
    assert client.certificate_status(cert.certificate_id) == cert
    assert Certificate.from_json(json.loads(json.dumps(cert.to_dict()))) == cert
    with pytest.raises(OutstandingSlips) as err:
        client.request_certificate("business_tax", UNPAID_BUSINESS_LICENSE, idempotency_key="cc-2")
    assert len(err.value.slips) == 4 and all(s.status == "unpaid" for s in err.value.slips)
    assert "4" in err.value.message("en") and isinstance(err.value, KioskError)
    with pytest.raises(CertificateNotFound):
        client.certificate_status("MF000000000000")


def test_client_permit_round_trip_and_refusals(client: BackofficeClient) -> None:
    day = today() + dt.timedelta(days=1)
    quote = client.permit_quote("۴۴ م ۹۱۸ ایران ۲۲", day)
    assert isinstance(quote, PermitQuote) and quote.available and quote.price_rials == 1_200_000
    assert quote.min_date == today() and quote.plate == "44 م 918 ایران 22"
    post = PermitPost(transaction_id="ctp-1", plate="44م91822", date=day, amount_rials=quote.price_rials,
                      paid_at=now_iso(), rrn="512345678901", masked_pan="603799******1234",
                      journal_seq=9, journal_head="cd" * 32)
    assert post.date == day.isoformat() and PermitPost.from_dict(json.loads(json.dumps(post.to_dict()))) == post
    record = client.post_permit(post, idempotency_key=post.transaction_id)
    assert isinstance(record, PermitRecord) and record.tracking_code and record.plate == quote.plate
    assert client.post_permit(post, idempotency_key=post.transaction_id) == record
    assert client.permit_status("ctp-1") == record
    assert PermitRecord.from_json(json.loads(json.dumps(record.to_dict()))) == record
    with pytest.raises(PermitNotFound):
        client.permit_status("ctp-none")
    with pytest.raises(PermitExists):
        client.post_permit(dataclasses.replace(post, transaction_id="ctp-2"), idempotency_key="ctp-2")
    with pytest.raises(PermitDateInvalid) as date_err:
        client.post_permit(dataclasses.replace(post, transaction_id="ctp-3", date=today() - dt.timedelta(days=2)),
                           idempotency_key="ctp-3")
    assert date_err.value.min_date == today() and date_err.value.max_date == today() + dt.timedelta(days=7)
    with pytest.raises(PermitAmountMismatch) as amount_err:
        client.post_permit(dataclasses.replace(post, transaction_id="ctp-4", date=today(), amount_rials=5),
                           idempotency_key="ctp-4")
    assert amount_err.value.expected_rials == 1_200_000
    with pytest.raises(PlateInvalid):
        client.permit_quote("ABC", day)
    for err in (PermitExists, PermitDateInvalid, PermitAmountMismatch, PlateInvalid):
        assert issubclass(err, PermitRefused) and err.fa and err.en
    assert client.permit_quote("44 م 918 ایران 22", day).reason == "exists"


def test_client_lookup_limited_says_when_to_try_again(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'bo.sqlite3'}"
    seed_demo(url, KIOSKS)
    limits = LookupLimits(per_kiosk=100, kiosk_window_s=60, per_identifier=1, identifier_window_s=300)
    with serve_in_thread(url, lookup_limits=limits) as server, BackofficeClient(server.url, TOKEN_A, retries=0) as c:
        c.lookup_slips("vehicle_tax", BASKET_PLATE)
        with pytest.raises(LookupLimited) as err:
            c.lookup_slips("vehicle_tax", BASKET_PLATE)
        assert 290 <= err.value.retry_after_s <= 300 and "5" in err.value.message("en")
        assert err.value.to_dict()["error"] == "lookup.rate_limited" and err.value.money == "none"
        assert c.lookup_slips("renovation_tax", BASKET_RENOVATION_CODE).unpaid
        with pytest.raises(LookupLimited):  # a certificate is a look-up of its identifier too
            c.request_certificate("renovation_tax", BASKET_RENOVATION_CODE, idempotency_key="k")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _ProxyLike(http.server.BaseHTTPRequestHandler):
    """Answers every request with a bare 404 page, as a misrouted proxy would."""

    def _answer(self) -> None:
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>not found</html>")

    do_GET = do_POST = _answer

    def log_message(self, *_args: Any) -> None:
        pass


def test_client_reads_no_refusal_from_an_answer_that_is_not_the_back_offices() -> None:
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ProxyLike)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    post = PermitPost(transaction_id="p-1", plate=PLATE, date=today(), amount_rials=1_200_000, paid_at=now_iso())
    try:
        with BackofficeClient(f"http://127.0.0.1:{proxy.server_port}", TOKEN_A, retries=0) as c:
            with pytest.raises(BackofficeUnavailable) as status_err:
                c.permit_status("p-1")
            assert not isinstance(status_err.value, PermitNotFound)
            with pytest.raises(PermitPostPending):  # paid: stays queued, never reversed on this
                c.post_permit(post, idempotency_key="p-1")
            with pytest.raises(BackofficeUnavailable):
                c.lookup_slips("vehicle_tax", PLATE)
    finally:
        proxy.shutdown()
        proxy.server_close()
    with BackofficeClient(f"http://127.0.0.1:{_free_port()}", TOKEN_A, retries=1, backoff=0.01) as c:
        with pytest.raises(PermitPostPending) as err:
            c.post_permit(post, idempotency_key="p-1")
        assert err.value.money == "charged_pending"


def test_client_debug_lines_hide_the_plate(client: BackofficeClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    client.permit_quote("44 م 918 ایران 22", today())
    lines = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"]
    assert any("plate=***" in line for line in lines), lines
    assert not any("918" in line for line in lines)


def test_permit_anchors_are_listed_with_the_payments_anchors(server: RunningServer) -> None:
    slip = lookup(server, "vehicle_tax", BASKET_PLATE).json()["slips"][0]
    paid = api(server, "POST", "/api/v1/payments", headers={"Idempotency-Key": "pay-anc"}, json={
        "transaction_id": "pay-anc", "bill_id": slip["bill_id"], "payment_id": slip["payment_id"],
        "amount_rials": slip["amount_rials"], "paid_at": now_iso(), "journal_seq": 4, "journal_head": "04" * 32})
    assert paid.status_code == 201
    for tx, seq, day in (("tp-a3", 3, 1), ("tp-a7", 7, 2)):
        assert buy(server, permit_body(tx, day=today() + dt.timedelta(days=day), journal_seq=seq,
                                       journal_head=f"{seq:02d}" * 32)).status_code == 201
    assert buy(server, permit_body("tp-none", day=today() + dt.timedelta(days=3))).status_code == 201
    got = api(server, "GET", "/api/v1/journal-anchors").json()["anchors"]
    assert [(a["transaction_id"], a["journal_seq"]) for a in got] == [("tp-a3", 3), ("pay-anc", 4), ("tp-a7", 7)]
    page = api(server, "GET", "/api/v1/journal-anchors", params={"after_seq": 3, "limit": 1}).json()["anchors"]
    assert [a["transaction_id"] for a in page] == ["pay-anc"]
    assert api(server, "GET", "/api/v1/journal-anchors", token=TOKEN_B).json()["anchors"] == []


def test_settings_cli_changes_the_price_a_running_server_quotes(db_url: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with serve(db_url) as server:
        assert backoffice_cli.main(["settings", "set", "traffic_permit.price_rials", "1750000", "--db", db_url]) == 0
        quote = api(server, "GET", "/api/v1/traffic-permits/quote", params={"plate": PLATE, "date": today().isoformat()})
        assert quote.json()["price_rials"] == 1_750_000
    assert backoffice_cli.main(["settings", "show", "--db", db_url]) == 0
    assert json.loads(capsys.readouterr().out) == {"traffic_permit.horizon_days": "7",
                                                   "traffic_permit.price_rials": "1750000"}
    for argv in (["audit.hmac_secret", "00"], ["traffic_permit.horizon_days", "-1"], ["traffic_permit.price_rials", "x"]):
        assert backoffice_cli.main(["settings", "set", *argv, "--db", db_url]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("backoffice: ")


def test_audit_prune_removes_only_old_rows(server: RunningServer, db_url: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert lookup(server, "vehicle_tax", BASKET_PLATE).status_code == 200
    assert lookup(server, "vehicle_tax", PAID_PLATE).status_code == 200
    old = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(days=100)
    execute(db_url, "UPDATE lookup_audit SET created_at = :old WHERE id = (SELECT min(id) FROM lookup_audit)", old=old)
    assert backoffice_cli.main(["audit", "prune", "--older-than-days", "90", "--db", db_url]) == 0
    assert json.loads(capsys.readouterr().out) == {"removed": 1}
    assert rows(db_url, "SELECT count(*) FROM lookup_audit")[0][0] == 1
    assert backoffice_cli.main(["audit", "prune", "--older-than-days", "0", "--db", db_url]) == 2
