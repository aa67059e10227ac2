"""The kiosk-side fleet agent against a real fleet server on loopback (SQLite and PostgreSQL):
`kiosk agent enroll` and `kiosk agent run --once` as a technician types them, configuration
applied to kiosk.json only when signed, newer and unexpired and valid for the kiosk's own
schema, never while a transaction is open or the kiosk holds its data dir, commands with
feedback, back-off with jitter, and the refusals reported to the server's audit log."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kiosk.data_lock import DataLock
from kiosk.journal import Journal, TxState, journal_path
from provisioning.agent import apply as applying
from provisioning.agent.errors import ConfigRefused, FleetRefused, FleetUnavailable
from provisioning.agent.runner import Agent, enroll, run_forever
from provisioning.common import signing
from provisioning.server import service as svc
from provisioning.server.models import Role
from test_fleet_support import Fleet, fleet, fleet_db, fleet_pg_database  # noqa: F401

KIOSK = "kiosk-n-01"
LOCAL = {"kiosk_id": KIOSK, "backoffice_url": "http://127.0.0.1:8700",
         "backoffice_token": "secret-token-Qm7Vx2Lp9Rt4Wz8Kc3Nd", "lang": "fa", "pay_timeout_s": 90}


def _kiosk(args: list[str], data: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KIOSK_DATA_DIR": str(data)}
    return subprocess.run([sys.executable, "-m", "kiosk.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=Path(__file__).resolve().parents[1])


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "kiosk"
    d.mkdir(mode=0o700)
    (d / "kiosk.json").write_text(json.dumps(LOCAL))
    return d


def _enroll(f: Fleet, data: Path, **kw: Any) -> Agent:
    enroll(data, f.url, f.enroll_token(**kw), serial=KIOSK)
    return Agent(data)


def _push(f: Fleet, target: str, layer: dict[str, Any]) -> None:
    r = f.api("POST", f"/api/v1/config/{target}", json=layer)
    assert r.status_code == 200, r.text


def _doc(f: Fleet, version: int, settings: dict[str, Any], *, expires_in: dt.timedelta = dt.timedelta(days=1),
         key: Any = None, kiosk_id: str = KIOSK) -> dict[str, Any]:
    """A document as the server makes them, signed with the server's own key (or `key`)."""
    with f.session() as s, s.begin():
        fleet_key = svc.signing_key(s)
    now = svc.utcnow()
    return signing.sign_document(key or fleet_key, {
        "_type": "kiosk-config", "spec": 1, "kiosk_id": kiosk_id, "version": version, "issued_at": signing.iso(now),
        "expires": signing.iso(now + expires_in), "layers": {}, "settings": settings})


def _local(data: Path) -> dict[str, Any]:
    return json.loads((data / "kiosk.json").read_text())


# --- the commands a technician types ------------------------------------------------------------
def test_enroll_and_run_once_from_the_command_line(fleet: Fleet, data: Path) -> None:
    _push(fleet, "fleet", {"lang": "en", "pay_timeout_s": 45, "extra": {"brand": "tehran"}})
    out = _kiosk(["agent", "enroll", "--server", fleet.url, "--token", fleet.enroll_token(site="north"),
                  "--json"], data)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "accepted"
    key_file = data / "fleet" / "agent.key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(key_file.read_bytes()) == 32
    out = _kiosk(["agent", "run", "--once", "--json"], data)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["heartbeat"] and report["config"] == "applied"
    local = _local(data)
    assert local["lang"] == "en" and local["pay_timeout_s"] == 45 and local["extra"] == {"brand": "tehran"}
    assert local["backoffice_token"] == LOCAL["backoffice_token"]  # the kiosk's own keys are kept
    assert json.loads((data / "fleet" / "kiosk.json.bak").read_text()) == LOCAL  # the backup
    view = fleet.api("GET", f"/api/v1/kiosks/{KIOSK}").json()
    assert view["config"]["in_sync"] and view["config"]["reported_version"] == view["config"]["desired_version"]
    assert view["config"]["state"] == "applied"
    out = _kiosk(["agent", "status", "--json"], data)
    assert json.loads(out.stdout)["config_version"] == view["config"]["desired_version"]


def test_a_revoked_kiosk_is_cut_off_with_one_line(fleet: Fleet, data: Path) -> None:
    _enroll(fleet, data)
    assert fleet.api("POST", f"/api/v1/kiosks/{KIOSK}/revoke").status_code == 200
    out = _kiosk(["agent", "run", "--once"], data)
    assert out.returncode == 1 and "kiosk.revoked" in out.stderr and "Traceback" not in out.stderr


def test_a_pending_kiosk_waits_then_runs_once_accepted(fleet: Fleet, data: Path) -> None:
    agent = _enroll(fleet, data, needs_approval=True)
    assert agent.run_once().status == "pending"
    assert fleet.api("POST", f"/api/v1/kiosks/{KIOSK}/accept").status_code == 200
    report = agent.run_once()
    assert report.status == "accepted" and report.heartbeat


def test_enroll_refuses_a_server_whose_fleet_key_is_not_the_pinned_one(fleet: Fleet, data: Path) -> None:
    other = signing.public_b64(signing.new_private_key())
    out = _kiosk(["agent", "enroll", "--server", fleet.url, "--token", fleet.enroll_token(), f"--fleet-key={other}"],
                 data)
    assert out.returncode == 1 and "fleet key" in out.stderr
    assert not (data / "fleet" / "agent.json").exists()


def test_enroll_with_a_bad_token_says_so(fleet: Fleet, data: Path) -> None:
    out = _kiosk(["agent", "enroll", "--server", fleet.url, "--token", "nope"], data)
    assert out.returncode == 1 and "enroll.token_invalid" in out.stderr and "Traceback" not in out.stderr


# --- configuration: only signed, newer, unexpired, valid ----------------------------------------
def test_a_configuration_signed_by_another_key_is_refused_and_audited(fleet: Fleet, data: Path) -> None:
    agent = _enroll(fleet, data)
    with pytest.raises(ConfigRefused) as err:
        applying.apply_document(data, _doc(fleet, 5, {"lang": "en"}, key=signing.new_private_key()),
                                fleet_public_key=agent.state.fleet_public_key, kiosk_id=KIOSK)
    assert err.value.code == "config.bad_signature"
    assert _local(data) == LOCAL
    # the same through the server: a man in the middle swaps the document
    _push(fleet, "fleet", {"lang": "en"})
    agent.state.fleet_public_key = signing.public_b64(signing.new_private_key())  # pinned key ≠ signer
    report = agent.run_once()
    assert report.config.startswith("refused: config.bad_signature")
    assert _local(data) == LOCAL
    entry = fleet.audit("config.bad_signature")[0]
    assert entry["action"] == "config.refused_by_kiosk" and entry["actor"] == f"kiosk:{KIOSK}"
    assert "config.bad_signature" in fleet.api("GET", f"/api/v1/kiosks/{KIOSK}").json()["alerts"][0]


def test_older_equal_expired_malformed_and_foreign_documents_are_refused(fleet: Fleet, data: Path) -> None:
    agent = _enroll(fleet, data)
    pub = agent.state.fleet_public_key

    def apply(doc: dict[str, Any]) -> Any:
        return applying.apply_document(data, doc, fleet_public_key=pub, kiosk_id=KIOSK)

    assert apply(_doc(fleet, 7, {"lang": "en"})).version == 7
    assert apply(_doc(fleet, 7, {"lang": "fa"})) is None  # the same version: already runs
    for doc, code in ((_doc(fleet, 6, {"lang": "fa"}), "config.rollback"),
                      (_doc(fleet, 9, {"lang": "fa"}, expires_in=dt.timedelta(seconds=-1)), "config.expired"),
                      (_doc(fleet, 9, {"pay_timeout_s": "soon"}), "config.invalid"),
                      (_doc(fleet, 9, {"lnag": "fa"}), "config.invalid"),
                      (_doc(fleet, 9, {"backoffice_token": "stolen-token-aaaaaaaaaaaaaaa"}), "config.invalid"),
                      (_doc(fleet, 9, {"lang": "fa"}, kiosk_id="kiosk-other"), "config.other_kiosk"),
                      ({"signed": {"version": 9}}, "config.bad_signature")):
        with pytest.raises(ConfigRefused) as err:
            apply(doc)
        assert err.value.code == code, (code, err.value)
        assert _local(data)["lang"] == "en" and applying.applied(data).version == 7
    tampered = _doc(fleet, 9, {"lang": "fa"})
    tampered["signed"]["settings"]["lang"] = "en"
    with pytest.raises(ConfigRefused, match="does not verify"):
        apply(tampered)


def test_configuration_waits_for_an_open_transaction_and_runs_from_the_kiosks_next_start(fleet: Fleet,
                                                                                         data: Path) -> None:
    agent = _enroll(fleet, data)
    _push(fleet, "fleet", {"lang": "en"})
    journal = Journal(journal_path(data), kiosk_id=KIOSK)
    tx = journal.begin("fee", 150_000)
    journal.close()
    assert agent.run_once().config == "pending: 1 transaction(s) open"
    assert _local(data) == LOCAL
    view = fleet.api("GET", f"/api/v1/kiosks/{KIOSK}").json()
    assert view["config"]["state"].startswith("pending") and view["config"]["delta"] == {"lang": "en"}
    assert view["heartbeat"]["open_transactions"] == 1
    journal = Journal(journal_path(data), kiosk_id=KIOSK)
    journal.append(tx.tx_id, TxState.CANCELLED)
    journal.close()
    with DataLock(data):  # this process plays the running kiosk: it started before the write
        assert agent.run_once().config == "staged: runs from the kiosk's next start"
        assert _local(data)["lang"] == "en"  # written, for its next start
        view = fleet.api("GET", f"/api/v1/kiosks/{KIOSK}").json()
        assert view["config"]["reported_version"] is None and view["config"]["delta"] == {"lang": "en"}
        assert view["config"]["state"].startswith("staged") and not view["config"]["in_sync"]
        assert view["heartbeat"]["data_lock"] == f"pid {os.getpid()}"
    # the kiosk starts again: a new process holds the data dir, started after the write
    kiosk = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom kiosk.data_lock import DataLock\n"
                              "lock = DataLock(sys.argv[1]).acquire()\nprint('up', flush=True)\ntime.sleep(60)",
                              str(data)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert kiosk.stdout is not None and kiosk.stdout.readline().strip() == "up"
        agent.run_once()
        view = fleet.api("GET", f"/api/v1/kiosks/{KIOSK}").json()
        assert view["config"]["in_sync"] and view["config"]["state"] == "applied", (view["config"], view["heartbeat"])
        assert view["heartbeat"]["data_lock"] == f"pid {kiosk.pid}"
    finally:
        kiosk.kill()
        kiosk.wait()


def test_restart_waits_for_an_open_transaction(fleet: Fleet, data: Path, tmp_path: Path) -> None:
    agent = _enroll(fleet, data)
    marker = tmp_path / "restarted"
    agent.state.restart_command = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    journal = Journal(journal_path(data), kiosk_id=KIOSK)
    tx = journal.begin("fee", 150_000)
    fleet.api("POST", f"/api/v1/kiosks/{KIOSK}/commands", json={"kind": "restart"})
    assert [c["status"] for c in agent.run_once().commands] == ["received"] and not marker.exists()
    journal.append(tx.tx_id, TxState.CANCELLED)
    journal.close()
    assert [c["status"] for c in agent.run_once().commands] == ["done"] and marker.exists()


def test_a_local_edit_shows_as_drift_and_in_the_delta(fleet: Fleet, data: Path) -> None:
    agent = _enroll(fleet, data)
    _push(fleet, "fleet", {"lang": "en"})
    agent.run_once()
    local = _local(data)
    local["lang"] = "fa"
    (data / "kiosk.json").write_text(json.dumps(local))
    agent.run_once()
    view = fleet.api("GET", f"/api/v1/kiosks/{KIOSK}").json()
    assert view["config"]["state"].startswith("drift") and view["config"]["delta"] == {"lang": "en"}
    assert not view["config"]["in_sync"]


# --- commands -----------------------------------------------------------------------------------
def test_commands_run_and_report_done_or_failed(fleet: Fleet, data: Path, tmp_path: Path) -> None:
    from kiosk.maintenance import Audit, MaintenanceState, disabled_services
    from kiosk.status import SERVICE_NEEDS

    agent = _enroll(fleet, data)
    _push(fleet, "fleet", {"extra": {"brand": "tehran"}})
    MaintenanceState(data).save({"disabled_services": ["qr_ticket"]})  # a technician took one out
    operator = fleet.manager_token("olga", Role.OPERATOR)
    for body in ({"kind": "disable_service", "args": {"service": "card_topup"}}, {"kind": "maintenance_on"},
                 {"kind": "upload_logs"}, {"kind": "restart"}, {"kind": "disable_service", "args": {"service": "nope"}}):
        assert fleet.api("POST", f"/api/v1/kiosks/{KIOSK}/commands", operator, json=body).status_code == 201
    report = agent.run_once()
    assert [(c["kind"], c["status"]) for c in report.commands] == [
        ("disable_service", "done"), ("maintenance_on", "done"), ("upload_logs", "done"), ("restart", "failed"),
        ("disable_service", "failed")]
    # where the kiosk's own maintenance menu keeps them: the running kiosk sees them between sessions
    assert disabled_services(data) == tuple(sorted(SERVICE_NEEDS))
    assert [(e["event"], e.get("service")) for e in Audit(data).lines()][-2:] == [
        ("service_out", "card_topup"), ("fleet_maintenance_on", None)]
    listed = fleet.api("GET", f"/api/v1/kiosks/{KIOSK}/commands", operator).json()
    assert [c["status"] for c in listed] == ["done", "done", "done", "failed", "failed"]
    logs = json.loads(listed[2]["result"])
    assert "enrolled as kiosk-n-01" in logs["agent_log"] and logs["journal"]["open_transactions"] == 0
    assert "restart hook" in listed[3]["result"] and "unknown service 'nope'" in listed[4]["result"]
    # with a restart hook; maintenance off puts back what it took out, not the technician's
    marker = tmp_path / "restarted"
    agent.state.restart_command = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    for body in ({"kind": "restart"}, {"kind": "maintenance_off"},
                 {"kind": "enable_service", "args": {"service": "qr_ticket"}}):
        fleet.api("POST", f"/api/v1/kiosks/{KIOSK}/commands", json=body)
    assert [c["status"] for c in agent.run_once().commands] == ["done", "done", "done"]
    assert marker.exists() and disabled_services(data) == ("card_topup",)
    assert agent.run_once().commands == []
    assert _local(data)["extra"] == {"brand": "tehran"}  # kiosk.json untouched by commands
    view = fleet.api("GET", f"/api/v1/kiosks/{KIOSK}").json()
    assert view["config"]["state"] == "applied" and view["config"]["in_sync"], view["config"]


def test_a_service_is_switched_while_the_kiosk_runs(fleet: Fleet, data: Path) -> None:
    from kiosk.maintenance import disabled_services

    agent = _enroll(fleet, data)
    fleet.api("POST", f"/api/v1/kiosks/{KIOSK}/commands", json={"kind": "disable_service",
                                                                 "args": {"service": "card_sale"}})
    with DataLock(data):  # the running kiosk re-reads the state between citizens: no lock needed
        assert [c["status"] for c in agent.run_once().commands] == ["done"]
    assert disabled_services(data) == ("card_sale",)


def test_feedback_is_kept_in_the_outbox_while_the_server_is_away(fleet: Fleet, data: Path) -> None:
    agent = _enroll(fleet, data)
    cid = fleet.api("POST", f"/api/v1/kiosks/{KIOSK}/commands", json={"kind": "upload_logs"}).json()["id"]
    cmd = fleet.api("GET", f"/api/v1/kiosks/{KIOSK}/commands").json()[0]
    real = agent.client.base_url
    agent.client.base_url = "http://127.0.0.1:9"  # nothing listens there
    agent.run_command(cmd)
    outbox = json.loads((data / "fleet" / "outbox.json").read_text())
    assert [(i["id"], i["status"]) for i in outbox] == [(cid, "received"), (cid, "done")]
    agent.client.base_url = real
    agent.run_once()
    assert json.loads((data / "fleet" / "outbox.json").read_text()) == []
    assert fleet.api("GET", f"/api/v1/kiosks/{KIOSK}/commands").json()[0]["status"] == "done"


# --- back-off -----------------------------------------------------------------------------------
def test_an_unreachable_server_is_retried_with_growing_jittered_delays(fleet: Fleet, data: Path) -> None:
    agent = _enroll(fleet, data)
    agent.client.base_url = "http://127.0.0.1:9"
    agent.state.interval_s = 10
    delays: list[float] = []
    run_forever(agent, stop=lambda: len(delays) >= 8, sleep=delays.append)
    assert 5 <= delays[0] <= 30  # interval × 2 × jitter 0.5–1.5
    assert all(d <= 900 * 1.5 for d in delays)
    assert delays[5] > delays[0] and len({round(d, 6) for d in delays}) == len(delays)
    with pytest.raises(FleetUnavailable):
        agent.run_once()


def test_run_forever_stops_on_revocation(fleet: Fleet, data: Path) -> None:
    agent = _enroll(fleet, data)
    fleet.api("POST", f"/api/v1/kiosks/{KIOSK}/revoke")
    with pytest.raises(FleetRefused) as err:
        run_forever(agent, sleep=lambda _s: None)
    assert err.value.code == "kiosk.revoked" and agent.state.status == "revoked"


def test_a_key_the_fleet_stops_setting_goes_back_to_the_kiosks_own_value(fleet: Fleet, data: Path) -> None:
    agent = _enroll(fleet, data)
    _push(fleet, "fleet", {"lang": "en", "pay_timeout_s": 45, "extra": {"brand": "tehran"}})
    agent.run_once()
    assert (_local(data)["pay_timeout_s"], _local(data)["extra"]) == (45, {"brand": "tehran"})
    _push(fleet, "fleet", {"lang": "en"})
    assert agent.run_once().config == "applied"
    local = _local(data)
    assert local["lang"] == "en" and local["pay_timeout_s"] == LOCAL["pay_timeout_s"]  # its own 90 again
    assert local["extra"] == {}  # the kiosk had no brand: the fleet's is gone
    assert fleet.api("GET", f"/api/v1/kiosks/{KIOSK}").json()["config"]["in_sync"]


def test_an_expired_document_from_the_server_is_refused_and_audited(fleet_db: str, data: Path) -> None:
    from provisioning.server.app import Settings
    from provisioning.server.db import make_engine, session_factory
    from provisioning.server.server import serve_in_thread

    # a server (or someone replaying its old answers) handing out documents already expired
    server = serve_in_thread(fleet_db, settings=Settings(config_ttl=dt.timedelta(seconds=-1)))
    engine = make_engine(fleet_db)
    sessions = session_factory(engine)
    try:
        with sessions() as s, s.begin():
            token = svc.create_enroll_token(s, svc.CLI, label="t")
            svc.push_layer(s, svc.CLI, "fleet", "", {"lang": "en"})
        enroll(data, server.url, token, serial=KIOSK)
        agent = Agent(data)
        assert agent.run_once().config.startswith("refused: config.expired")
        assert _local(data) == LOCAL
        with sessions() as s:
            entry = svc.audit_entries(s, 10, outcome="config.expired")[0]
        assert entry["action"] == "config.refused_by_kiosk" and entry["actor"] == f"kiosk:{KIOSK}"
    finally:
        server.stop()
        engine.dispose()


def test_device_and_service_status_come_from_the_kiosks_status_coordinator(fleet: Fleet, data: Path) -> None:
    from devices.base import DeviceState
    from kiosk.status import StatusCoordinator

    local = {**LOCAL, "devices": [{"name": "printer", "type": "escpos"}, {"name": "terminal", "type": "nexo-http"},
                                  {"name": "reader", "type": "pn532-uart"}]}
    (data / "kiosk.json").write_text(json.dumps(local))
    status = StatusCoordinator()
    status.publish("printer", device_class="ReceiptPrinter", state=DeviceState.ONLINE, consumables={"paper": "out"})
    status.publish("terminal", device_class="PaymentTerminal", state=DeviceState.ONLINE)
    (data / "device-status.json").write_text(json.dumps(status.to_dict()))  # what the kiosk would write
    agent = _enroll(fleet, data)
    body = agent.heartbeat_body()
    assert body["devices"] == {"printer": "online: status.paper_out", "terminal": "ok", "reader": "unknown"}
    assert body["services"]["qr_ticket"] == "available"
    assert body["services"]["card_balance"] not in ("available", "")  # no card reader published: why not
    agent.run_once()
    view = fleet.api("GET", f"/api/v1/kiosks/{KIOSK}").json()
    assert "device printer: online: status.paper_out" in view["alerts"]
    assert not any("terminal" in a or "reader" in a for a in view["alerts"])


def test_restart_to_apply_restarts_a_running_kiosk_once_per_staged_version(fleet: Fleet, data: Path,
                                                                           tmp_path: Path) -> None:
    marker = tmp_path / "restarts"
    hook = f"import sys; open({str(marker)!r}, 'a').write('x')"
    out = _kiosk(["agent", "enroll", "--server", fleet.url, "--token", fleet.enroll_token(), "--restart-command",
                  f"{sys.executable} -c \"{hook}\"", "--restart-to-apply"], data)
    assert out.returncode == 0, out.stderr
    agent = Agent(data)
    _push(fleet, "fleet", {"lang": "en"})
    with DataLock(data):  # the running kiosk (this process does not really restart)
        report = agent.run_once()
        assert report.config.startswith("staged") and report.restarted and marker.read_text() == "x"
        assert not agent.run_once().restarted and marker.read_text() == "x"  # once per version
        _push(fleet, "fleet", {"lang": "en", "pay_timeout_s": 45})
        assert agent.run_once().restarted and marker.read_text() == "xx"


def test_a_kiosk_json_changed_while_the_configuration_is_prepared_is_not_overwritten(fleet: Fleet,
                                                                                    data: Path) -> None:
    agent = _enroll(fleet, data)
    pub = agent.state.fleet_public_key
    real_merge = applying.merge

    def merge_then_technician_edits(layers: Any) -> Any:
        out = real_merge(layers)
        (data / "kiosk.json").write_text(json.dumps({**LOCAL, "lang": "fa", "scan_timeout_s": 30}))
        return out

    applying.merge = merge_then_technician_edits  # the edit lands between the read and the write
    try:
        with pytest.raises(applying.ConfigDeferred, match="changed"):
            applying.apply_document(data, _doc(fleet, 3, {"lang": "en"}), fleet_public_key=pub, kiosk_id=KIOSK)
    finally:
        applying.merge = real_merge
    assert _local(data)["scan_timeout_s"] == 30 and applying.applied(data) is None  # the edit kept
    assert applying.apply_document(data, _doc(fleet, 3, {"lang": "en"}), fleet_public_key=pub,
                                   kiosk_id=KIOSK).version == 3
    assert _local(data)["scan_timeout_s"] == 30 and _local(data)["lang"] == "en"
