"""The fleet server over real HTTP on loopback, on SQLite and PostgreSQL: enrollment, signed
requests, manager roles, audit, configuration layers with desired/reported/delta, heartbeats
and presence, commands — and every attack refused with a clear error and an audit entry."""

from __future__ import annotations

import concurrent.futures
import json
import datetime as dt
import time
from typing import Any

import pytest
from sqlalchemy import select, update

from provisioning.common import signing
from provisioning.server import service as svc
from provisioning.server.models import Command, EnrollToken, Kiosk, Role
from test_fleet_support import Fleet, SignedKiosk, fleet, fleet_db, fleet_pg_database, start_fleet  # noqa: F401


def _kiosks(f: Fleet) -> list[str]:
    with f.session() as s:
        return sorted(s.scalars(select(Kiosk.kiosk_id)))


def _refused(resp: Any, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] == code and body["message"], body


def _audited(f: Fleet, outcome: str) -> dict[str, Any]:
    rows = f.audit(outcome)
    assert rows, f"no audit entry with outcome {outcome}"
    return rows[0]


def _enrolled(f: Fleet, serial: str = "kiosk-001", **token_kw: Any) -> SignedKiosk:
    k = SignedKiosk(f.url, serial)
    r = k.enroll(f.enroll_token(**token_kw))
    assert r.status_code == 201, r.text
    return k


# --- enrollment ---------------------------------------------------------------------------------
def test_enrollment_with_a_valid_token_is_accepted_and_audited(fleet: Fleet) -> None:
    k = SignedKiosk(fleet.url, "kiosk-001")
    r = k.enroll(fleet.enroll_token(site="north"))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kiosk_id"] == "kiosk-001" and body["status"] == "accepted" and body["site"] == "north"
    assert len(signing.b64d(body["fleet_public_key"])) == 32
    assert k.heartbeat().status_code == 200
    entry = _audited(fleet, "ok")
    assert any(a["action"] == "enroll" and a["target"] == "kiosk-001" for a in fleet.audit("ok"))
    assert entry


def test_a_retried_enrollment_with_the_same_key_does_not_use_the_token_again(fleet: Fleet) -> None:
    token = fleet.enroll_token(max_uses=1)
    k = SignedKiosk(fleet.url, "kiosk-001")
    assert k.enroll(token).status_code == 201
    assert k.enroll(token).status_code == 201  # the answer to the first was lost
    _refused(SignedKiosk(fleet.url, "kiosk-002").enroll(token), 401, "enroll.token_used_up")
    assert _kiosks(fleet) == ["kiosk-001"]


def test_pending_until_a_manager_accepts(fleet: Fleet) -> None:
    k = _enrolled(fleet, needs_approval=True)
    assert k.call("GET", "/api/v1/agent/status").json()["status"] == "pending"
    _refused(k.heartbeat(), 403, "kiosk.pending")
    operator = fleet.manager_token("olga", Role.OPERATOR)
    r = fleet.api("POST", "/api/v1/kiosks/kiosk-001/accept", operator)
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert k.heartbeat().status_code == 200
    _refused(fleet.api("POST", "/api/v1/kiosks/kiosk-001/accept", operator), 409, "kiosk.not_pending")


def test_a_rejected_kiosk_is_refused(fleet: Fleet) -> None:
    k = _enrolled(fleet, needs_approval=True)
    assert fleet.api("POST", "/api/v1/kiosks/kiosk-001/reject").status_code == 200
    _refused(k.heartbeat(), 403, "kiosk.rejected")
    assert k.call("GET", "/api/v1/agent/status").json()["status"] == "rejected"


@pytest.mark.parametrize("case", ["reused", "expired", "revoked", "none", "wrong"])
def test_enrollment_without_a_valid_token_stores_nothing(fleet: Fleet, case: str) -> None:
    token = fleet.enroll_token(max_uses=1)
    if case == "reused":
        assert SignedKiosk(fleet.url, "kiosk-000").enroll(token).status_code == 201
    with fleet.session() as s, s.begin():
        if case == "expired":
            s.execute(update(EnrollToken).values(expires_at=svc.utcnow() - dt.timedelta(seconds=1)))
        if case == "revoked":
            s.execute(update(EnrollToken).values(revoked=True))
    before = _kiosks(fleet)
    given = {"none": "", "wrong": svc.new_secret()}.get(case, token)
    code = {"reused": "enroll.token_used_up", "expired": "enroll.token_expired", "revoked": "enroll.token_revoked",
            "none": "enroll.token_invalid", "wrong": "enroll.token_invalid"}[case]
    _refused(SignedKiosk(fleet.url, "kiosk-001").enroll(given), 401, code)
    assert _kiosks(fleet) == before  # nothing stored, no pending entry to flood the list
    assert _audited(fleet, code)["action"] == "enroll"


def test_an_enrollment_not_signed_by_the_key_it_carries_is_refused(fleet: Fleet) -> None:
    k = SignedKiosk(fleet.url, "kiosk-001")
    r = k.enroll(fleet.enroll_token(), key=signing.new_private_key())
    _refused(r, 401, "auth.bad_signature")
    assert _kiosks(fleet) == []
    _audited(fleet, "auth.bad_signature")


def test_a_serial_enrolled_with_another_key_needs_revocation_first(fleet: Fleet) -> None:
    _enrolled(fleet)
    impostor = SignedKiosk(fleet.url, "kiosk-001")
    _refused(impostor.enroll(fleet.enroll_token()), 409, "enroll.serial_taken")
    assert fleet.api("POST", "/api/v1/kiosks/kiosk-001/revoke").status_code == 200
    assert impostor.enroll(fleet.enroll_token()).status_code == 201  # re-imaged kiosk after revocation
    assert impostor.heartbeat().status_code == 200


def test_concurrent_enrollments_never_exceed_the_tokens_uses(fleet: Fleet) -> None:
    token = fleet.enroll_token(max_uses=3)
    kiosks = [SignedKiosk(fleet.url, f"kiosk-{i:03d}") for i in range(10)]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda k: k.enroll(token).status_code, kiosks))
    assert sorted(codes) == [201] * 3 + [401] * 7
    assert len(_kiosks(fleet)) == 3


# --- signed requests ----------------------------------------------------------------------------
def test_a_forged_signature_is_refused_and_audited(fleet: Fleet) -> None:
    k = _enrolled(fleet)
    _refused(k.heartbeat.__self__.call("POST", "/api/v1/agent/heartbeat", {}, key=signing.new_private_key()),
             401, "auth.bad_signature")
    assert _audited(fleet, "auth.bad_signature")["target"] == "kiosk-001"


def test_a_replayed_request_is_refused(fleet: Fleet) -> None:
    k = _enrolled(fleet)
    headers, data = k.signed("POST", "/api/v1/agent/heartbeat", {"app_version": "1"})
    assert k.send("POST", "/api/v1/agent/heartbeat", headers, data).status_code == 200
    _refused(k.send("POST", "/api/v1/agent/heartbeat", headers, data), 401, "auth.replay")
    _audited(fleet, "auth.replay")


def test_a_body_changed_in_flight_is_refused(fleet: Fleet) -> None:
    k = _enrolled(fleet)
    headers, _ = k.signed("POST", "/api/v1/agent/heartbeat", {"open_transactions": 0})
    _refused(k.send("POST", "/api/v1/agent/heartbeat", headers, b'{"open_transactions": 9}'), 401,
             "auth.bad_signature")


@pytest.mark.parametrize("offset", [-400, 400])
def test_a_skewed_timestamp_is_refused(fleet: Fleet, offset: int) -> None:
    k = _enrolled(fleet)
    _refused(k.call("POST", "/api/v1/agent/heartbeat", {}, now=time.time() + offset), 401, "auth.skew")
    _audited(fleet, "auth.skew")


def test_unsigned_and_unknown_kiosks_are_refused(fleet: Fleet) -> None:
    k = SignedKiosk(fleet.url, "kiosk-ghost")
    _refused(k.send("POST", "/api/v1/agent/heartbeat", {}, b"{}"), 401, "auth.unsigned")
    _refused(k.heartbeat(), 401, "auth.unknown_kiosk")
    _audited(fleet, "auth.unknown_kiosk")


def test_revocation_cuts_a_kiosk_off_at_its_next_request(fleet: Fleet) -> None:
    k = _enrolled(fleet)
    assert k.heartbeat().status_code == 200
    assert fleet.api("POST", "/api/v1/kiosks/kiosk-001/revoke").status_code == 200
    _refused(k.heartbeat(), 403, "kiosk.revoked")
    _refused(k.call("GET", "/api/v1/agent/config"), 403, "kiosk.revoked")
    _audited(fleet, "kiosk.revoked")


# --- managers -----------------------------------------------------------------------------------
def test_roles_are_enforced_and_every_refusal_audited(fleet: Fleet) -> None:
    _enrolled(fleet, needs_approval=True)
    viewer = fleet.manager_token("vera", Role.VIEWER)
    operator = fleet.manager_token("olga", Role.OPERATOR)
    assert fleet.api("GET", "/api/v1/kiosks", viewer).status_code == 200
    _refused(fleet.api("POST", "/api/v1/enroll-tokens", viewer, json={"label": "x"}), 403, "auth.forbidden")
    _refused(fleet.api("POST", "/api/v1/config/fleet", viewer, json={"lang": "en"}), 403, "auth.forbidden")
    _refused(fleet.api("POST", "/api/v1/kiosks/kiosk-001/accept", viewer), 403, "auth.forbidden")
    _refused(fleet.api("POST", "/api/v1/kiosks/kiosk-001/revoke", operator), 403, "auth.forbidden")
    _refused(fleet.api("POST", "/api/v1/manager-tokens", operator, json={"name": "x", "role": "admin"}), 403,
             "auth.forbidden")
    _refused(fleet.api("GET", "/api/v1/audit", operator), 403, "auth.forbidden")
    _refused(fleet.api("GET", "/api/v1/kiosks", ""), 401, "auth.unauthorized")
    _refused(fleet.api("GET", "/api/v1/kiosks", "not-a-token-at-all-xxxxxxxxxxxx"), 401, "auth.unauthorized")
    forbidden = fleet.audit("auth.forbidden")
    assert {a["actor"] for a in forbidden} == {"manager:vera", "manager:olga"}
    assert {a["action"] for a in forbidden} >= {"enroll_token.create", "config.push", "kiosk.accept",
                                                 "kiosk.revoke", "manager_token.create", "audit.read"}
    assert fleet.api("POST", "/api/v1/kiosks/kiosk-001/accept", operator).status_code == 200
    r = fleet.api("GET", "/api/v1/audit")
    assert r.status_code == 200 and any(a["action"] == "kiosk.accept" and a["actor"] == "manager:olga"
                                        for a in r.json())


def test_a_disabled_manager_token_is_refused(fleet: Fleet) -> None:
    viewer = fleet.manager_token("vera", Role.VIEWER)
    with fleet.session() as s, s.begin():
        svc.disable_manager_token(s, svc.CLI, "vera")
    _refused(fleet.api("GET", "/api/v1/kiosks", viewer), 401, "auth.unauthorized")


def test_manager_tokens_and_enrollment_tokens_are_stored_hashed(fleet: Fleet) -> None:
    token = fleet.enroll_token()
    admin = fleet.admin
    with fleet.session() as s:
        stored = " ".join(str(v) for row in s.execute(select(EnrollToken.token_sha256)) for v in row)
    assert token not in stored and svc.sha256(token) in stored
    assert admin not in str(fleet.audit())


# --- configuration ------------------------------------------------------------------------------
def test_layers_merge_and_the_server_shows_desired_reported_and_delta(fleet: Fleet) -> None:
    k = _enrolled(fleet, site="north")
    for path, layer in (("/api/v1/config/fleet", {"lang": "fa", "pay_timeout_s": 90, "extra": {"brand": "tehran"}}),
                        ("/api/v1/config/site/north", {"lang": "en", "extra": {"languages": ["fa", "en"]}}),
                        ("/api/v1/config/kiosk/kiosk-001", {"topup_max_rials": 3_000_000})):
        r = fleet.api("POST", path, json=layer)
        assert r.status_code == 200, r.text
    answer = k.heartbeat().json()
    version = answer["desired_config_version"]
    doc = k.call("GET", "/api/v1/agent/config").json()
    fleet_key = fleet.api("GET", "/api/v1/fleet-key").json()["public_key"]
    verified = signing.verify_document(doc, fleet_key, doc_type="kiosk-config", now=svc.utcnow())
    assert verified.version == version
    assert verified.signed["settings"] == {"lang": "en", "pay_timeout_s": 90, "topup_max_rials": 3_000_000,
                                           "extra": {"brand": "tehran", "languages": ["fa", "en"]}}
    k.heartbeat(config_version=version - 1, config_values={"lang": "fa", "pay_timeout_s": 90})
    view = fleet.api("GET", "/api/v1/kiosks/kiosk-001").json()
    assert view["config"]["desired_version"] == version and view["config"]["reported_version"] == version - 1
    assert view["config"]["delta"] == {"lang": "en", "topup_max_rials": 3_000_000,
                                       "extra": {"brand": "tehran", "languages": ["fa", "en"]}}
    assert not view["config"]["in_sync"]
    k.heartbeat(config_version=version, config_values=verified.signed["settings"])
    view = fleet.api("GET", "/api/v1/kiosks/kiosk-001").json()
    assert view["config"]["delta"] == {} and view["config"]["in_sync"]
    # the version only grows, and only when this kiosk's settings change
    assert fleet.api("POST", "/api/v1/config/site/south", json={"lang": "fa"}).status_code == 200
    assert k.heartbeat().json()["desired_config_version"] == version
    assert fleet.api("POST", "/api/v1/config/kiosk/kiosk-001", json={"topup_max_rials": 4_000_000}).status_code == 200
    assert k.heartbeat().json()["desired_config_version"] > version


@pytest.mark.parametrize("layer,why", [
    ({"kiosk_id": "other"}, "kiosk's own"),
    ({"backoffice_token": "x" * 30}, "kiosk's own"),
    ({"pay_timeot_s": 5}, "unknown key"),
    ({"pay_timeout_s": "soon"}, "must be a number"),
    ({"pay_timeout_s": -1}, "more than 0"),
    ({"devices": [{"name": "p"}]}, "type"),
])
def test_a_malformed_configuration_is_refused_by_the_kiosks_own_schema(fleet: Fleet, layer: dict[str, Any],
                                                                     why: str) -> None:
    r = fleet.api("POST", "/api/v1/config/fleet", json=layer)
    _refused(r, 422, "config.invalid")
    assert why in r.json()["message"]
    assert _audited(fleet, "config.invalid")["action"] == "config.push"


def test_config_for_an_unknown_kiosk_or_bad_target_is_refused(fleet: Fleet) -> None:
    _refused(fleet.api("POST", "/api/v1/config/kiosk/nobody", json={"lang": "en"}), 404, "kiosk.unknown")
    _refused(fleet.api("POST", "/api/v1/config/planet/mars", json={"lang": "en"}), 422, "config.bad_target")


# --- heartbeats ---------------------------------------------------------------------------------
def test_heartbeats_report_status_and_two_missed_intervals_mean_offline(fleet_db: str) -> None:
    server, engine, sessions = start_fleet(fleet_db, interval_s=1)
    try:
        with sessions() as s, s.begin():
            token = svc.create_enroll_token(s, svc.CLI, label="t")
        k = SignedKiosk(server.url, "kiosk-001")
        assert k.enroll(token).json()["interval_s"] == 1
        answer = k.heartbeat(devices={"printer": "ok", "terminal": "fault: no paper"}, open_transactions=1,
                             refunds_pending=2, last_tx_at="2026-11-30T10:00:00Z").json()
        assert answer["interval_s"] == 1
        with sessions() as s, s.begin():
            view = svc.get_kiosk(s, "kiosk-001", 1)
        assert view["presence"] == "online"
        assert view["heartbeat"]["devices"] == {"printer": "ok", "terminal": "fault: no paper"}
        assert view["heartbeat"]["open_transactions"] == 1
        assert "device terminal: fault: no paper" in view["alerts"]
        assert "2 refund(s) pending for an operator" in view["alerts"]
        assert "offline" not in view["alerts"]
        time.sleep(2.3)
        with sessions() as s, s.begin():
            view = svc.get_kiosk(s, "kiosk-001", 1)
        assert view["presence"] == "offline" and "offline" in view["alerts"]
        k.heartbeat()
        with sessions() as s, s.begin():
            assert svc.get_kiosk(s, "kiosk-001", 1)["presence"] == "online"
    finally:
        server.stop()
        engine.dispose()


# --- commands -----------------------------------------------------------------------------------
def test_commands_are_queued_delivered_and_report_feedback(fleet: Fleet) -> None:
    k = _enrolled(fleet)
    operator = fleet.manager_token("olga", Role.OPERATOR)
    r = fleet.api("POST", "/api/v1/kiosks/kiosk-001/commands", operator,
                  json={"kind": "disable_service", "args": {"service": "topup"}})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    delivered = k.heartbeat().json()["commands"]
    assert [(c["id"], c["kind"], c["args"], c["status"]) for c in delivered] == \
        [(cid, "disable_service", {"service": "topup"}, "queued")]
    path = f"/api/v1/agent/commands/{cid}/feedback"
    assert k.call("POST", path, {"status": "received"}).json()["status"] == "received"
    assert k.heartbeat().json()["commands"][0]["status"] == "received"  # still delivered until done
    assert k.call("POST", path, {"status": "done", "result": "ok"}).json()["status"] == "done"
    assert k.call("POST", path, {"status": "done", "result": "ok"}).status_code == 200  # repeated report
    _refused(k.call("POST", path, {"status": "failed"}), 409, "command.bad_transition")
    assert k.heartbeat().json()["commands"] == []
    listed = fleet.api("GET", "/api/v1/kiosks/kiosk-001/commands", operator).json()
    assert [(c["status"], c["result"]) for c in listed] == [("done", "ok")]


def test_a_command_expires_when_the_kiosk_stays_away(fleet: Fleet) -> None:
    k = _enrolled(fleet)
    r = fleet.api("POST", "/api/v1/kiosks/kiosk-001/commands", json={"kind": "restart", "ttl_s": 10})
    cid = r.json()["id"]
    with fleet.session() as s, s.begin():
        s.execute(update(Command).values(expires_at=svc.utcnow() - dt.timedelta(seconds=1)))
    assert k.heartbeat().json()["commands"] == []
    _refused(k.call("POST", f"/api/v1/agent/commands/{cid}/feedback", {"status": "done"}), 409, "command.expired")
    assert fleet.api("GET", "/api/v1/kiosks/kiosk-001/commands").json()[0]["status"] == "expired"


def test_a_kiosk_cannot_answer_another_kiosks_command(fleet: Fleet) -> None:
    a = _enrolled(fleet, "kiosk-a")
    b = _enrolled(fleet, "kiosk-b")
    cid = fleet.api("POST", "/api/v1/kiosks/kiosk-a/commands", json={"kind": "upload_logs"}).json()["id"]
    assert b.heartbeat().json()["commands"] == []
    _refused(b.call("POST", f"/api/v1/agent/commands/{cid}/feedback", {"status": "done", "result": "fake"}),
             404, "command.unknown")
    assert _audited(fleet, "command.unknown")["actor"] == "kiosk:kiosk-b"
    assert a.heartbeat().json()["commands"][0]["status"] == "queued"


@pytest.mark.parametrize("body,code", [({"kind": "self_destruct"}, "command.unknown"),
                                       ({"kind": "disable_service"}, "command.bad_args"),
                                       ({"kind": "restart", "args": {"x": "y"}}, "command.bad_args")])
def test_unknown_commands_and_bad_arguments_are_refused(fleet: Fleet, body: dict[str, Any], code: str) -> None:
    _enrolled(fleet)
    _refused(fleet.api("POST", "/api/v1/kiosks/kiosk-001/commands", json=body), 422, code)
    _audited(fleet, code)


def test_anonymous_refusals_cannot_flood_the_audit_log(fleet: Fleet) -> None:
    for _ in range(25):
        _refused(SignedKiosk(fleet.url, "kiosk-x").enroll("fleete_guessed-token-xxxxxxxxxxxxxxxxxxxx"), 401,
                 "enroll.token_invalid")
    rows = fleet.audit("enroll.token_invalid")
    assert len(rows) == 1 and rows[0]["detail"]["repeated"] == 25
    assert _kiosks(fleet) == []
    # a captured request replayed over and over: one entry, counted
    k = _enrolled(fleet)
    headers, data = k.signed("POST", "/api/v1/agent/heartbeat", {})
    k.send("POST", "/api/v1/agent/heartbeat", headers, data)
    for _ in range(3):
        k.send("POST", "/api/v1/agent/heartbeat", headers, data)
    assert [r["detail"]["repeated"] for r in fleet.audit("auth.replay")] == [3]
    # a manager's refusals (who is known) are kept one by one
    viewer = fleet.manager_token("vera", Role.VIEWER)
    for _ in range(3):
        fleet.api("POST", "/api/v1/enroll-tokens", viewer, json={"label": "x"})
    assert len(fleet.audit("auth.forbidden")) == 3


def test_the_maintenance_pin_hash_travels_in_the_configuration_but_is_not_shown(fleet: Fleet) -> None:
    k = _enrolled(fleet)
    pin_hash = "scrypt$16384$8$1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
    layer = {"lang": "en", "extra": {"maintenance_pin_hash": pin_hash, "brand": "tehran"}}
    assert fleet.api("POST", "/api/v1/config/fleet", json=layer).status_code == 200
    k.heartbeat()
    doc = k.call("GET", "/api/v1/agent/config").json()
    assert doc["signed"]["settings"]["extra"]["maintenance_pin_hash"] == pin_hash  # the kiosk gets it, signed
    view = fleet.api("GET", "/api/v1/kiosks/kiosk-001").json()
    assert view["config"]["desired"]["extra"] == {"maintenance_pin_hash": "(hidden)", "brand": "tehran"}
    assert pin_hash not in json.dumps(view) and pin_hash not in json.dumps(fleet.audit())
