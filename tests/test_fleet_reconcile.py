"""Daily reconciliation (issue 11, item 7) on SQLite and PostgreSQL: the back-office lists a
day's records one by one (GET /api/v1/reconciliation, authenticated like its other endpoints);
the fleet compares them with the journal rows its kiosks uploaded and lists every difference
with its transaction (`fleet reconcile`, the API), stores the result, and an auditor checks a
receipt's journal row against the signed daily statement of chain heads."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import psycopg
import pytest
import requests
from sqlalchemy.engine import make_url

from backoffice.models import ServiceRole
from backoffice.seed import DEMO_NATIONAL_CODE, seed_demo
from backoffice.server import RunningServer, serve_in_thread
from kiosk.journal import GENESIS_HASH, entry_hash
from provisioning.common import signing
from provisioning.server import reconcile
from provisioning.server import service as svc
from provisioning.server.db import make_engine
from test_fleet_cli import fleet_cli, ok
from test_fleet_support import Fleet, SignedKiosk, fleet, fleet_db, fleet_pg_database  # noqa: F401

TEHRAN = ZoneInfo("Asia/Tehran")
K1, K2 = "kiosk-r1", "kiosk-r2"
TOKENS = {K1: "recon-k1-Qm7Vx2Lp9Rt4Wz8Kc3Nd", K2: "recon-k2-Hs5Jy1Fg6Ub0Ea7Mo2Pi"}
INTEGRATION = "recon-i-Zq8Wc4Rv1Tb6Yn3Mk9Lp"
SERVICES = {"fleet-recon": (ServiceRole.INTEGRATION, INTEGRATION)}


# --- a back-office of the same database kind as the fleet's ------------------------------------------
@dataclass
class Backoffice:
    url: str
    db_url: str
    server: RunningServer

    def api(self, method: str, path: str, token: str | None, **kw: Any) -> requests.Response:
        headers = {**kw.pop("headers", {}), **({"Authorization": f"Bearer {token}"} if token else {})}
        return requests.request(method, self.url + path, headers=headers, timeout=20, **kw)


@pytest.fixture
def backoffice(fleet_db: str, tmp_path: Path) -> Iterator[Backoffice]:
    admin = None
    if fleet_db.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'backoffice.sqlite3'}"
    else:
        admin = make_url(fleet_db).set(drivername="postgresql", database="postgres").render_as_string(
            hide_password=False)
        name = f"recon_bo_{secrets.token_hex(5)}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = make_url(fleet_db).set(database=name).render_as_string(hide_password=False)
    try:
        seed_demo(url, TOKENS, SERVICES)
        with serve_in_thread(url) as running:
            yield Backoffice(running.url, url, running)
    finally:
        if admin is not None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _no_old_results(fleet_db: str) -> None:
    """The PostgreSQL fleet database is shared by the session: start without other tests' results."""
    engine = make_engine(fleet_db)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM fleet_reconciliations")
    engine.dispose()


def unpaid_slips(bo: Backoffice, n: int) -> list[dict[str, Any]]:
    resp = bo.api("GET", "/api/v1/fee-slips", TOKENS[K1], params={"national_code": DEMO_NATIONAL_CODE})
    assert resp.status_code == 200, resp.text
    slips = [s for s in resp.json()["slips"] if s["status"] == "unpaid"]
    assert len(slips) >= n
    return slips[:n]


def pay(bo: Backoffice, kiosk: str, tx: str, slip: dict[str, Any]) -> None:
    body = {"transaction_id": tx, "bill_id": slip["bill_id"], "payment_id": slip["payment_id"],
            "amount_rials": slip["amount_rials"], "paid_at": "2026-11-28T09:15:00Z",
            "terminal": {"rrn": "512345678901", "stan": "004211", "poi_reference": "SIM-POI-1/77",
                         "masked_pan": "603799******1234"}}
    resp = bo.api("POST", "/api/v1/payments", TOKENS[kiosk], json=body, headers={"Idempotency-Key": tx})
    assert resp.status_code == 201, resp.text


def load(bo: Backoffice, kiosk: str, tx: str, amount: int) -> str:
    serial = f"{3_100_000_000 + secrets.randbelow(10**8):010d}"
    body = {"transaction_id": tx, "card_serial": serial, "card_uid": "04A1B2C3", "counter_before": 0,
            "counter_after": 1, "amount_rials": amount, "balance_after": amount - 20_000, "kind": "card_sale"}
    resp = bo.api("POST", "/api/v1/transit/loads", TOKENS[kiosk], json=body, headers={"Idempotency-Key": tx})
    assert resp.status_code == 201, resp.text
    return serial


def today() -> dt.date:
    return dt.datetime.now(TEHRAN).date()


def away_from_midnight() -> None:
    """A test that posts now and reconciles today waits out the last two minutes of a Tehran day."""
    now = dt.datetime.now(TEHRAN)
    left = (dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), TEHRAN) - now).total_seconds()
    if left < 120:
        time.sleep(left + 1)


def tx_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- the back-office's endpoint -------------------------------------------------------------------
def test_the_backoffice_lists_a_days_records_one_by_one_to_whoever_may_see_them(backoffice: Backoffice) -> None:
    bo = backoffice
    away_from_midnight()
    slip_a, slip_b = unpaid_slips(bo, 2)
    pay_a, pay_b, sale = tx_id("k1"), tx_id("k2"), tx_id("k1")
    pay(bo, K1, pay_a, slip_a)
    pay(bo, K2, pay_b, slip_b)
    serial = load(bo, K1, sale, 120_000)
    day = today()
    # a kiosk sees its own only, whatever it asks for
    own = bo.api("GET", "/api/v1/reconciliation", TOKENS[K1], params={"date": day.isoformat(), "kiosk_id": K2})
    assert own.status_code == 200, own.text
    records = own.json()["records"]
    assert {r["transaction_id"] for r in records} == {pay_a, sale} and own.json()["kiosk_id"] == K1
    fee = next(r for r in records if r["transaction_id"] == pay_a)
    assert (fee["kind"], fee["bill_id"], fee["payment_id"], fee["amount_rials"]) == (
        "fee_payment", slip_a["bill_id"], slip_a["payment_id"], slip_a["amount_rials"])
    card = next(r for r in records if r["transaction_id"] == sale)
    assert (card["kind"], card["load_kind"], card["card_serial"], card["amount_rials"]) == (
        "transit_load", "card_sale", serial, 120_000)
    assert "masked_pan" not in fee and "rrn" not in fee
    # an integration sees every kiosk's, or one kiosk's
    every = bo.api("GET", "/api/v1/reconciliation", INTEGRATION, params={"date": day.isoformat()}).json()
    assert {(r["kiosk_id"], r["transaction_id"]) for r in every["records"]} == {(K1, pay_a), (K1, sale), (K2, pay_b)}
    one = bo.api("GET", "/api/v1/reconciliation", INTEGRATION, params={"date": day.isoformat(), "kiosk_id": K2})
    assert [r["transaction_id"] for r in one.json()["records"]] == [pay_b]
    yesterday = bo.api("GET", "/api/v1/reconciliation", INTEGRATION,
                       params={"date": (day - dt.timedelta(days=1)).isoformat()})
    assert yesterday.json()["records"] == []
    assert bo.api("GET", "/api/v1/reconciliation", None, params={"date": day.isoformat()}).status_code == 401
    assert bo.api("GET", "/api/v1/reconciliation", "not-a-token", params={"date": day.isoformat()}).status_code == 401
    bad = bo.api("GET", "/api/v1/reconciliation", INTEGRATION, params={"date": "30-11-2026"})
    assert bad.status_code == 422 and bad.json()["error"] == "query.invalid"


# --- the kiosk's journal, as its agent uploads it -----------------------------------------------------
class Chain:
    """A kiosk's journal rows, hashed with the kiosk's own rules, sent to the fleet signed."""

    def __init__(self, kiosk: SignedKiosk) -> None:
        self.kiosk, self.rows, self.prev = kiosk, [], GENESIS_HASH

    def add(self, tx: str, kind: str, amount: int, states: list[str | tuple[str, dict[str, Any]]], *,
            data: dict[str, Any] | None = None, at: float | None = None) -> None:
        at = time.time() if at is None else at
        for i, step in enumerate(states):
            state, extra = (step, {}) if isinstance(step, str) else step
            text = json.dumps(data if i == 0 and data else extra, sort_keys=True, separators=(",", ":"))
            digest = entry_hash(self.prev, tx, state, at + i / 1000, kind, amount, text)
            self.rows.append([len(self.rows) + 1, tx, state, at + i / 1000, kind, amount, text, self.prev, digest])
            self.prev = digest

    def upload(self) -> None:
        resp = self.kiosk.call("POST", "/api/v1/agent/journal", {"rows": self.rows})
        assert resp.status_code == 200, resp.text


SETTLED = ["CREATED", "PAYING", "PAID", "FULFILLING", "FULFILLED", "POSTED", "COMPLETED"]
CARD_POSTED = ["CREATED", "PAYING", "PAID", "FULFILLING", "FULFILLED", "POSTED"]


def test_fleet_reconcile_lists_every_difference_with_its_transaction(fleet: Fleet, backoffice: Backoffice) -> None:
    bo = backoffice
    away_from_midnight()
    token = fleet.enroll_token(max_uses=2)
    k1, k2 = SignedKiosk(fleet.url, K1), SignedKiosk(fleet.url, K2)
    for k in (k1, k2):
        assert k.enroll(token).status_code == 201
    s_ok, s_missing, s_amount, s_reversed, s_stray, s_b0, s_b1, s_k2 = unpaid_slips(bo, 8)

    def fee(slip: dict[str, Any]) -> dict[str, Any]:
        return {"bill_id": slip["bill_id"], "payment_id": slip["payment_id"], "service_type": 6}

    c1 = Chain(k1)
    t_ok, t_missing, t_amount, t_reversed, t_open, t_sale, t_basket, t_declined = (tx_id("k1") for _ in range(8))
    c1.add(t_ok, "fee_payment", s_ok["amount_rials"], SETTLED, data=fee(s_ok))
    pay(bo, K1, t_ok, s_ok)
    c1.add(t_missing, "fee_payment", s_missing["amount_rials"], SETTLED, data=fee(s_missing))  # never posted
    c1.add(t_amount, "fee_payment", s_amount["amount_rials"] + 5_000, SETTLED, data=fee(s_amount))
    pay(bo, K1, t_amount, s_amount)  # the back-office took the bill's amount
    c1.add(t_reversed, "fee_payment", s_reversed["amount_rials"],
           ["CREATED", "PAYING", "PAID", "REVERSING", "REVERSED"], data=fee(s_reversed))
    pay(bo, K1, t_reversed, s_reversed)  # ... but the back-office settled it
    c1.add(t_open, "fee_payment", 70_000, ["CREATED", "PAYING", "PAID"], data={"bill_id": "1", "payment_id": "2"})
    c1.add(t_sale, "card_sale", 120_000, CARD_POSTED, data={})
    load(bo, K1, t_sale, 120_000)
    items = [{"bill_id": s["bill_id"], "payment_id": s["payment_id"], "amount_rials": s["amount_rials"]}
             for s in (s_b0, s_b1)]
    c1.add(t_basket, "fee_basket", s_b0["amount_rials"] + s_b1["amount_rials"],
           ["CREATED", "PAYING", "PAID", ("FULFILLING", {"bill": 0, "step": "queued"}),
            ("FULFILLING", {"bill": 1, "step": "queued"}), ("FULFILLING", {"bill": 0, "step": "settled"}),
            ("FULFILLING", {"bill": 1, "step": "refused"}), ("FULFILLING", {"bill": 1, "step": "refunded"}),
            "FULFILLED", "POSTED"], data={"items": items, "kiosk_id": K1})
    pay(bo, K1, f"{t_basket}.0", s_b0)
    c1.add(t_declined, "fee_payment", 9_000, ["CREATED", "PAYING", "DECLINED"], data={})  # no money, nothing due
    c1.upload()
    t_stray = tx_id("k1")
    pay(bo, K1, t_stray, s_stray)  # at the back-office, never on the kiosk
    c2 = Chain(k2)
    t_k2 = tx_id("k2")
    c2.add(t_k2, "fee_payment", s_k2["amount_rials"], SETTLED, data=fee(s_k2))
    pay(bo, K2, t_k2, s_k2)
    c2.upload()
    day = today()

    out = fleet_cli("reconcile", "--date", day.isoformat(), "--backoffice", bo.url, "--token", INTEGRATION,
                    "--json", db=fleet.db_url)
    assert out.returncode == 1, out.stderr  # differences exist
    view = json.loads(out.stdout)
    kiosks = {k["kiosk_id"]: k for k in view["kiosks"]}
    assert set(kiosks) == {K1, K2}
    assert kiosks[K2]["differences"] == [] and kiosks[K2]["kiosk"] == {"count": 1, "rials": s_k2["amount_rials"]}
    found = {(d["kind"], d["tx_id"]) for d in kiosks[K1]["differences"]}
    assert found == {("missing_at_backoffice", t_missing), ("amount_differs", t_amount),
                     ("reversed_but_recorded", t_reversed), ("open_on_kiosk", t_open),
                     ("missing_on_kiosk", t_stray)}, found
    amount = next(d for d in kiosks[K1]["differences"] if d["kind"] == "amount_differs")
    assert amount["kiosk"]["amount_rials"] == s_amount["amount_rials"] + 5_000
    assert amount["backoffice"]["amount_rials"] == s_amount["amount_rials"]
    assert view["fleet"]["differences"] == 5 and view["fleet"]["kiosks_with_differences"] == 1
    # the result is stored: the API shows it; the text report names each transaction
    shown = fleet.api("GET", f"/api/v1/reconciliations/{day}").json()
    assert shown["fleet"]["differences"] == 5
    assert fleet.api("GET", "/api/v1/reconciliations").json()[0] == {
        "date": day.isoformat(), "kiosks": 2, "differences": 5, "run_at": shown["kiosks"][0]["run_at"]}
    text = fleet_cli("reconcile", "--date", day.isoformat(), "--backoffice", bo.url, "--token", INTEGRATION,
                     db=fleet.db_url)
    assert text.returncode == 1 and t_missing in text.stdout and "missing_at_backoffice" in text.stdout
    # one kiosk at a time: the clean one exits 0
    assert "kiosk-r2: ok" in ok(fleet_cli("reconcile", "--date", day.isoformat(), "--kiosk", K2, "--backoffice",
                                          bo.url, "--token", INTEGRATION, db=fleet.db_url))
    # the back-office settles the missing one late (the kiosk's outbox caught up): it reconciles
    pay(bo, K1, t_missing, s_missing)
    again = json.loads(fleet_cli("reconcile", "--date", day.isoformat(), "--kiosk", K1, "--backoffice", bo.url,
                                 "--token", INTEGRATION, "--json", db=fleet.db_url).stdout)
    assert ("missing_at_backoffice", t_missing) not in {(d["kind"], d["tx_id"]) for d in again["kiosks"][0]["differences"]}
    assert any(a["action"] == "reconcile.run" for a in fleet.audit())
    # a wrong token, and no back-office at all, are one line and exit 1 / 2
    bad = fleet_cli("reconcile", "--date", day.isoformat(), "--backoffice", bo.url, "--token", "nope", db=fleet.db_url)
    assert bad.returncode == 1 and "refused the token" in bad.stderr
    none = fleet_cli("reconcile", "--date", day.isoformat(), db=fleet.db_url)
    assert none.returncode == 2 and "--backoffice" in none.stderr


def test_reconciliation_over_http_needs_an_operator_and_a_configured_backoffice(fleet: Fleet) -> None:
    viewer = fleet.manager_token("vera", svc.Role.VIEWER)
    day = today().isoformat()
    r = fleet.api("POST", f"/api/v1/reconciliations/{day}", viewer)
    assert r.status_code == 403 and r.json()["error"] == "auth.forbidden"
    r = fleet.api("POST", f"/api/v1/reconciliations/{day}")
    assert r.status_code == 409 and r.json()["error"] == "reconcile.not_configured"
    assert fleet.api("GET", f"/api/v1/reconciliations/{day}", viewer).json()["kiosks"] == []
    future = (today() + dt.timedelta(days=2)).isoformat()
    with fleet.session() as s, s.begin(), pytest.raises(svc.FleetError) as exc:
        reconcile.reconcile(s, svc.CLI, dt.date.fromisoformat(future), {})
    assert exc.value.code == "reconcile.future"


def test_a_transaction_paid_before_midnight_and_posted_after_it_is_no_difference(fleet: Fleet) -> None:
    """Matched across the neighbouring days, with the back-office's records as fetched."""
    k = SignedKiosk(fleet.url, K1)
    assert k.enroll(fleet.enroll_token()).status_code == 201
    day = dt.date(2026, 11, 20)
    late = dt.datetime.combine(day, dt.time(23, 59, 30), TEHRAN).timestamp()
    c = Chain(k)
    c.add("late-1", "fee_payment", 50_000, SETTLED, data={"bill_id": "11", "payment_id": "22"}, at=late)
    c.add("early-2", "fee_payment", 60_000, SETTLED, data={"bill_id": "33", "payment_id": "44"}, at=late + 60)
    c.upload()
    posted_next_day = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 0, 40), TEHRAN)

    def record(tx: str, amount: int, bill: str, payment: str) -> dict[str, Any]:
        return {"kind": "fee_payment", "kiosk_id": K1, "transaction_id": tx, "amount_rials": amount,
                "recorded_at": posted_next_day.isoformat(), "tracking_code": "T", "bill_id": bill, "payment_id": payment}

    window = {day - dt.timedelta(days=1): [], day: [],
              day + dt.timedelta(days=1): [record("late-1", 50_000, "11", "22"), record("early-2", 60_000, "33", "44")]}
    with fleet.session() as s, s.begin():
        view = reconcile.reconcile(s, svc.CLI, day, window)
        after = reconcile.reconcile(s, svc.CLI, day + dt.timedelta(days=1), {
            day: [], day + dt.timedelta(days=1): window[day + dt.timedelta(days=1)], day + dt.timedelta(days=2): []})
    assert view["kiosks"][0]["differences"] == [] and view["kiosks"][0]["kiosk"]["count"] == 1
    # the next day: early-2 is its own; late-1 is recorded that day but belongs to the day before
    assert after["kiosks"][0]["differences"] == [] and after["kiosks"][0]["kiosk"]["count"] == 1


# --- the signed statement and a receipt -----------------------------------------------------------
def test_an_auditor_checks_a_receipts_journal_hash_against_the_signed_statement(fleet: Fleet, tmp_path: Path) -> None:
    from provisioning.server import journal as fleet_journal

    k = SignedKiosk(fleet.url, K1)
    assert k.enroll(fleet.enroll_token()).status_code == 201
    day = dt.date(2026, 11, 21)
    noon = dt.datetime.combine(day, dt.time(12), TEHRAN).timestamp()
    c = Chain(k)
    c.add("rcpt-1", "fee_payment", 50_000, SETTLED, data={"bill_id": "1", "payment_id": "2"}, at=noon)
    c.add("rcpt-2", "fee_payment", 60_000, SETTLED, data={"bill_id": "3", "payment_id": "4"}, at=noon + 60)
    c.add("rcpt-3", "fee_payment", 70_000, SETTLED, data={"bill_id": "5", "payment_id": "6"}, at=noon + 86_400)
    c.upload()
    with fleet.session() as s, s.begin():
        doc = fleet_journal.statement(s, svc.CLI, day, now=svc.utcnow() + dt.timedelta(days=30))
    key = fleet.api("GET", "/api/v1/fleet-key").json()["public_key"]
    paid = c.rows[2]  # rcpt-1's PAID row: what its receipt prints
    assert paid[2] == "PAID"
    head = doc["signed"]["heads"][K1]["seq"]
    assert head == 14  # the day's last row; rcpt-3 is the next day
    rows = fleet.api("GET", f"/api/v1/kiosks/{K1}/journal", params={"from_seq": paid[0], "to_seq": head}).json()["rows"]
    assert len(rows) == head - paid[0] + 1
    said = reconcile.check_receipt(doc, key, kiosk_id=K1, seq=paid[0], hash_prefix=paid[8][:16], rows=rows)
    assert "is in the chain the statement of 2026-11-21 signed" in said
    with pytest.raises(reconcile.ReceiptMismatch, match="the receipt says"):
        reconcile.check_receipt(doc, key, kiosk_id=K1, seq=paid[0], hash_prefix="0" * 16, rows=rows)
    forged = [list(r) for r in rows]
    forged[1][5] = 1  # an amount changed in a row after the receipt's
    with pytest.raises(reconcile.ReceiptMismatch, match="does not match its hash"):
        reconcile.check_receipt(doc, key, kiosk_id=K1, seq=paid[0], hash_prefix=paid[8][:16], rows=forged)
    with pytest.raises(reconcile.ReceiptMismatch, match="after the statement's head"):
        reconcile.check_receipt(doc, key, kiosk_id=K1, seq=16, hash_prefix=c.rows[15][8], rows=rows)
    with pytest.raises(signing.SignatureError):
        reconcile.check_receipt(doc, signing.public_b64(signing.new_private_key()), kiosk_id=K1, seq=paid[0],
                                hash_prefix=paid[8][:16], rows=rows)
    # the same from the command line, with the rows this fleet holds
    path = tmp_path / "statement.json"
    path.write_text(json.dumps(doc))
    assert "is in the chain" in ok(fleet_cli("statement", "check-receipt", str(path), "--kiosk", K1, "--seq",
                                             str(paid[0]), "--hash", paid[8][:16], db=fleet.db_url))
    bad = fleet_cli("statement", "check-receipt", str(path), "--kiosk", K1, "--seq", str(paid[0]), "--hash",
                    "f" * 16, db=fleet.db_url)
    assert bad.returncode == 1 and "NOT confirmed" in bad.stderr
    viewer = fleet.manager_token("vera", svc.Role.VIEWER)
    assert fleet.api("GET", f"/api/v1/kiosks/{K1}/journal", viewer).status_code == 200
    assert fleet.api("GET", f"/api/v1/kiosks/{K1}/journal", "").status_code == 401


def test_a_server_started_with_a_backoffice_reconciles_over_its_api(fleet_db: str, backoffice: Backoffice) -> None:
    from provisioning.server.app import Settings
    from provisioning.server.db import session_factory
    from provisioning.server.server import serve_in_thread

    away_from_midnight()
    server = serve_in_thread(fleet_db, settings=Settings(backoffice_url=backoffice.url, backoffice_token=INTEGRATION))
    engine = make_engine(fleet_db)
    try:
        with session_factory(engine)() as s, s.begin():
            admin = svc.create_manager_token(s, svc.CLI, "root", svc.Role.ADMIN)
            enroll = svc.create_enroll_token(s, svc.CLI, label="t")
        k = SignedKiosk(server.url, K1)
        assert k.enroll(enroll).status_code == 201
        # the kiosk says its journal reaches row 3; the fleet holds none of it yet
        assert k.heartbeat(journal_head=[3, "a" * 64]).status_code == 200
        stray = tx_id("k1")
        pay(backoffice, K1, stray, unpaid_slips(backoffice, 1)[0])
        r = requests.post(f"{server.url}/api/v1/reconciliations/{today()}", params={"kiosk_id": K1},
                          headers={"Authorization": f"Bearer {admin}"}, timeout=30)
        assert r.status_code == 200, r.text
        (kiosk,) = r.json()["kiosks"]
        assert [(d["kind"], d["tx_id"]) for d in kiosk["differences"]] == [("missing_on_kiosk", stray)]
        assert "journal upload behind" in kiosk["note"] and "reports 3" in kiosk["note"]
    finally:
        server.stop()
        engine.dispose()
