"""Staged rollouts (issue 11, item 4) on SQLite and PostgreSQL, with kiosks on the real HTTP
API: stages in order, a silent kiosk timed out instead of stalling the rollout, auto-halt at
the failure threshold, pause/resume, maintenance windows, abort as a newer version, roles."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any


from provisioning.server import rollout
from provisioning.server import service as svc
from provisioning.server.app import Settings
from provisioning.server.db import make_engine, session_factory
from provisioning.server.models import Role
from provisioning.server.server import serve_in_thread
from test_fleet_support import Fleet, SignedKiosk, fleet, fleet_db, fleet_pg_database  # noqa: F401

LAYER = {"topup_max_rials": 3_000_000}


def _kiosks(f: Fleet, n: int, site: str = "north") -> dict[str, SignedKiosk]:
    token = f.enroll_token(site=site, max_uses=n)
    out = {}
    for i in range(n):
        k = SignedKiosk(f.url, f"{site}-{i:02d}")
        assert k.enroll(token).status_code == 201
        out[k.kiosk_id] = k
    return out


def _create(f: Fleet, **kw: Any) -> int:
    body = {"target": "site:north", "settings": LAYER, "stages": [10, 50, 100], "action_timeout_s": 60,
            "max_failure_pct": 20, **kw}
    r = f.api("POST", "/api/v1/rollouts", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _show(f: Fleet, rid: int) -> dict[str, Any]:
    return f.api("GET", f"/api/v1/rollouts/{rid}").json()


def _by_status(view: dict[str, Any], status: str) -> list[str]:
    return [k["kiosk_id"] for k in view["kiosks"] if k["status"] == status]


def _apply(k: SignedKiosk) -> None:
    """What an agent does: heartbeat, see a newer version, apply it, report it."""
    want = k.heartbeat().json()["desired_config_version"]
    doc = k.call("GET", "/api/v1/agent/config").json()
    assert doc["signed"]["version"] == want
    k.heartbeat(config_version=want, config_state="applied", config_values=doc["signed"]["settings"])


def _tick(f: Fleet, later_s: float = 0) -> None:
    with f.session() as s, s.begin():
        rollout.tick(s, svc.utcnow() + dt.timedelta(seconds=later_s))


def _settings_of(k: SignedKiosk) -> dict[str, Any]:
    r = k.call("GET", "/api/v1/agent/config")
    return {} if r.status_code == 204 else r.json()["signed"]["settings"]


def test_stages_run_in_order_and_the_layer_lands_when_all_are_done(fleet: Fleet) -> None:
    kiosks = _kiosks(fleet, 10)
    rid = _create(fleet)
    view = _show(fleet, rid)
    assert view["stage"] == 0 and view["actions"] == {"active": 1, "waiting": 9}
    first = _by_status(view, "active")
    assert _settings_of(kiosks[first[0]]) == LAYER
    assert all(_settings_of(k) == {} for kid, k in kiosks.items() if kid not in first)  # not yet theirs
    for stage, started in ((0, 1), (1, 5), (2, 10)):
        view = _show(fleet, rid)
        assert view["stage"] == stage and len([k for k in view["kiosks"] if k["status"] != "waiting"]) == started
        for kid in _by_status(view, "active"):
            _apply(kiosks[kid])
        assert _by_status(_show(fleet, rid), "active") == []
        _tick(fleet)
    view = _show(fleet, rid)
    assert view["status"] == "completed" and view["actions"] == {"done": 10}
    assert all(_settings_of(k) == LAYER for k in kiosks.values())  # now the site's own layer
    actions = [(a["action"], a["outcome"]) for a in fleet.audit() if a["actor"] == f"rollout:{rid}"]
    assert actions.count(("rollout.stage", "ok")) == 3 and ("rollout.complete", "ok") in actions
    assert any(a["action"] == "config.push" and a["actor"] == f"manager:rollout:{rid}" for a in fleet.audit())


def test_a_silent_kiosk_times_out_instead_of_stalling_the_rollout(fleet: Fleet) -> None:
    kiosks = _kiosks(fleet, 4)
    rid = _create(fleet, stages=[100], max_failure_pct=30)
    active = _by_status(_show(fleet, rid), "active")
    silent = active[0]
    for kid in active[1:]:
        _apply(kiosks[kid])
    _tick(fleet)
    assert _show(fleet, rid)["status"] == "running"  # waiting for the silent one, for now
    _tick(fleet, later_s=61)
    view = _show(fleet, rid)
    assert _by_status(view, "timed_out") == [silent] and view["status"] == "completed"
    assert [k["detail"] for k in view["kiosks"] if k["status"] == "timed_out"] == ["no answer within 60 s"]


def test_failures_above_the_threshold_halt_the_rollout_until_a_manager_resumes(fleet: Fleet) -> None:
    kiosks = _kiosks(fleet, 10)
    rid = _create(fleet, stages=[20, 100], max_failure_pct=10)
    bad, good = _by_status(_show(fleet, rid), "active")
    kiosks[bad].heartbeat(config_state="refused: config.invalid: 'topup_max_rials' too high")
    _apply(kiosks[good])
    _tick(fleet)
    view = _show(fleet, rid)
    assert view["status"] == "halted" and "1 of 2 kiosks failed" in view["reason"]
    assert view["actions"] == {"failed": 1, "done": 1, "waiting": 8}  # the next stage never started
    assert fleet.audit("rollout.halted")[0]["action"] == "rollout.halt"
    operator = fleet.manager_token("olga", Role.OPERATOR)
    r = fleet.api("POST", f"/api/v1/rollouts/{rid}/resume", operator)
    assert r.status_code == 200 and r.json()["status"] == "running" and r.json()["stage"] == 1


def test_pause_holds_the_next_stage_and_resume_starts_it(fleet: Fleet) -> None:
    kiosks = _kiosks(fleet, 4)
    rid = _create(fleet, stages=[25, 100])
    operator = fleet.manager_token("olga", Role.OPERATOR)
    assert fleet.api("POST", f"/api/v1/rollouts/{rid}/pause", operator).json()["status"] == "paused"
    _apply(kiosks[_by_status(_show(fleet, rid), "active")[0]])  # a started stage still finishes
    _tick(fleet)
    view = _show(fleet, rid)
    assert view["status"] == "paused" and view["actions"] == {"done": 1, "waiting": 3}
    r = fleet.api("POST", f"/api/v1/rollouts/{rid}/pause", operator)
    assert r.status_code == 409 and r.json()["error"] == "rollout.bad_state"
    assert fleet.api("POST", f"/api/v1/rollouts/{rid}/resume", operator).json()["actions"] == {"done": 1,
                                                                                                 "active": 3}


def test_stages_start_only_inside_the_maintenance_window(fleet: Fleet) -> None:
    _kiosks(fleet, 2)
    now = svc.utcnow().astimezone(rollout.TEHRAN)
    start = (now + dt.timedelta(hours=2)).strftime("%H:%M")
    end = (now + dt.timedelta(hours=3)).strftime("%H:%M")
    rid = _create(fleet, window=f"{start}-{end}")
    assert _show(fleet, rid)["stage"] == -1 and _show(fleet, rid)["actions"] == {"waiting": 2}
    _tick(fleet)
    assert _show(fleet, rid)["stage"] == -1
    _tick(fleet, later_s=2 * 3600 + 60)
    assert _show(fleet, rid)["stage"] == 0
    assert rollout.in_window("23:00-02:00", dt.datetime(2026, 1, 1, 21, 0, tzinfo=dt.timezone.utc))  # 00:30 Tehran
    assert not rollout.in_window("23:00-02:00", dt.datetime(2026, 1, 1, 0, 0, tzinfo=dt.timezone.utc))


def test_abort_takes_the_layer_back_as_a_newer_version(fleet: Fleet) -> None:
    kiosks = _kiosks(fleet, 2)
    rid = _create(fleet, stages=[50, 100])
    got = kiosks[_by_status(_show(fleet, rid), "active")[0]]
    _apply(got)
    before = got.heartbeat().json()["desired_config_version"]
    operator = fleet.manager_token("olga", Role.OPERATOR)
    r = fleet.api("POST", f"/api/v1/rollouts/{rid}/abort", operator)
    assert r.status_code == 403 and r.json()["error"] == "auth.forbidden"
    assert fleet.api("POST", f"/api/v1/rollouts/{rid}/abort").json()["status"] == "aborted"
    assert got.heartbeat().json()["desired_config_version"] > before
    assert _settings_of(got) == {}


def test_rollouts_are_refused_to_viewers_and_for_bad_input(fleet: Fleet) -> None:
    _kiosks(fleet, 1)
    viewer = fleet.manager_token("vera", Role.VIEWER)
    r = fleet.api("POST", "/api/v1/rollouts", viewer, json={"target": "site:north", "settings": LAYER})
    assert r.status_code == 403 and fleet.audit("auth.forbidden")[0]["action"] == "rollout.create"
    for body, code in (({"stages": [50, 40, 100]}, "rollout.bad_stages"), ({"stages": [10, 50]}, "rollout.bad_stages"),
                       ({"window": "25:00-02:00"}, "rollout.bad_window"), ({"target": "site:south"}, "rollout.no_kiosks"),
                       ({"settings": {"kiosk_id": "x"}}, "config.invalid")):
        r = fleet.api("POST", "/api/v1/rollouts", json={"target": "site:north", "settings": LAYER, **body})
        assert r.json()["error"] == code, (body, r.text)
        assert fleet.audit(code)


def test_the_servers_background_tick_moves_a_rollout_with_nobody_asking(fleet_db: str) -> None:
    server = serve_in_thread(fleet_db, settings=Settings(rollout_tick_s=0.2))
    engine = make_engine(fleet_db)
    sessions = session_factory(engine)
    try:
        with sessions() as s, s.begin():
            token = svc.create_enroll_token(s, svc.CLI, label="t", site="north", max_uses=2)
        kiosks = [SignedKiosk(server.url, f"north-{i}") for i in range(2)]
        for k in kiosks:
            assert k.enroll(token).status_code == 201
        with sessions() as s, s.begin():
            rid = rollout.create(s, svc.CLI, scope="site", target="north", settings=LAYER, stages=[50, 100]).id
        with sessions() as s:
            first = [a["kiosk_id"] for a in rollout.show(s, rid)["kiosks"] if a["status"] == "active"]
        _apply(next(k for k in kiosks if k.kiosk_id == first[0]))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with sessions() as s:
                if rollout.show(s, rid)["stage"] == 1:
                    break
            time.sleep(0.1)
        with sessions() as s:
            assert rollout.show(s, rid)["stage"] == 1
    finally:
        server.stop()
        engine.dispose()


def test_the_rollout_cli(fleet: Fleet, tmp_path: Any) -> None:
    from test_fleet_cli import fleet_cli, ok

    _kiosks(fleet, 3)
    layer = tmp_path / "layer.json"
    layer.write_text('{"lang": "en"}')
    out = ok(fleet_cli("rollout", "create", str(layer), "--target", "site:north", "--stages", "33,100",
                       "--timeout", "10m", "--max-failures", "50", db=fleet.db_url))
    assert "rollout 1 site:north: running, stage 1/2 (active 1, waiting 2)" in out
    out = fleet_cli("rollout", "create", str(layer), "--target", "site:north", "--stages", "50,10", db=fleet.db_url)
    assert out.returncode == 2 and "stages" in out.stderr
    assert "paused" in ok(fleet_cli("rollout", "pause", "1", db=fleet.db_url))
    status = ok(fleet_cli("rollout", "status", "1", db=fleet.db_url))
    assert status.count("north-") == 3 and "stage 1 active" in status
    assert "aborted" in ok(fleet_cli("rollout", "abort", "1", db=fleet.db_url))
    out = fleet_cli("rollout", "resume", "1", db=fleet.db_url)
    assert out.returncode == 1 and "aborted" in out.stderr
