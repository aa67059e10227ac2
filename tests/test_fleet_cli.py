"""The `fleet` command as a manager types it (SQLite and PostgreSQL), and two `fleet serve`
processes on one PostgreSQL database serving kiosks from either."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from provisioning.common import signing
from provisioning.server import service as svc
from test_fleet_support import SignedKiosk, fleet, fleet_db, fleet_pg_database, start_fleet  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def fleet_cli(*args: str, db: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "provisioning.server.cli", *args]
    if db is not None:
        argv += ["--db", db]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)


def ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_manager_runs_the_fleet_from_the_command_line(fleet_db: str, tmp_path: Path) -> None:
    server, engine, sessions = start_fleet(fleet_db)
    try:
        admin = ok(fleet_cli("token", "create", "alice", "--role", "admin", db=fleet_db)).strip()
        viewer = ok(fleet_cli("token", "create", "vera", "--role", "viewer", db=fleet_db)).strip()
        assert requests.get(server.url + "/api/v1/audit", headers={"Authorization": f"Bearer {admin}"},
                            timeout=10).status_code == 200
        token = ok(fleet_cli("enrollment", "create", "--label", "north batch", "--site", "north", "--uses", "2",
                             "--approval", "--expires", "2h", db=fleet_db)).strip()
        k = SignedKiosk(server.url, "kiosk-n-01")
        assert k.enroll(token).json()["status"] == "pending"
        rows = json.loads(ok(fleet_cli("kiosks", "--json", db=fleet_db)))
        assert [(r["kiosk_id"], r["status"], r["site"]) for r in rows] == [("kiosk-n-01", "pending", "north")]
        assert "enrollment pending approval" in rows[0]["alerts"]
        assert "kiosk-n-01: accepted" in ok(fleet_cli("accept", "kiosk-n-01", db=fleet_db))
        out = fleet_cli("reject", "kiosk-n-01", db=fleet_db)
        assert out.returncode == 1 and "not pending" in out.stderr and "Traceback" not in out.stderr
        layer = tmp_path / "north.json"
        layer.write_text(json.dumps({"lang": "en", "topup_max_rials": 3_000_000}))
        assert "site:north: revision" in ok(fleet_cli("config", "push", str(layer), "--target", "site:north",
                                                      db=fleet_db))
        version = k.heartbeat().json()["desired_config_version"]
        assert version == 1
        shown = json.loads(ok(fleet_cli("kiosk", "kiosk-n-01", db=fleet_db)))
        assert shown["config"]["delta"] == {"lang": "en", "topup_max_rials": 3_000_000}
        table = ok(fleet_cli("kiosks", db=fleet_db))
        assert re.search(r"kiosk-n-01\s+accepted\s+north\s+online\s+0/1", table), table
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"lang": "en", "backoffice_token": "x" * 30}))
        out = fleet_cli("config", "push", str(bad), "--target", "fleet", db=fleet_db)
        assert out.returncode == 1 and "backoffice_token" in out.stderr and "config.invalid" in out.stderr
        out = fleet_cli("config", "push", str(layer), "--target", "planet:mars", db=fleet_db)
        assert out.returncode == 2 and "--target" in out.stderr
        cmd = json.loads(ok(fleet_cli("command", "kiosk-n-01", "disable_service", "--arg", "service=topup",
                                      "--json", db=fleet_db)))
        assert cmd["status"] == "queued" and cmd["args"] == {"service": "topup"}
        assert [c["id"] for c in k.heartbeat().json()["commands"]] == [cmd["id"]]
        listed = json.loads(ok(fleet_cli("commands", "kiosk-n-01", "--json", db=fleet_db)))
        assert [c["kind"] for c in listed] == ["disable_service"]
        assert "kiosk-n-01: revoked" in ok(fleet_cli("revoke", "kiosk-n-01", db=fleet_db))
        assert k.heartbeat().status_code == 403
        audit = json.loads(ok(fleet_cli("audit", "--json", "--limit", "100", db=fleet_db)))
        actions = [(a["action"], a["outcome"]) for a in audit if a["actor"].startswith("manager:cli:")]
        for expected in (("manager_token.create", "ok"), ("enroll_token.create", "ok"), ("kiosk.accept", "ok"),
                         ("kiosk.reject", "kiosk.not_pending"), ("config.push", "ok"),
                         ("config.push", "config.invalid"), ("command.disable_service", "ok"), ("kiosk.revoke", "ok")):
            assert expected in actions, expected
        assert admin not in json.dumps(audit) and token not in json.dumps(audit)
        viewer_refused = requests.post(server.url + "/api/v1/kiosks/kiosk-n-01/revoke", timeout=10,
                                       headers={"Authorization": f"Bearer {viewer}"})
        assert viewer_refused.status_code == 403
    finally:
        server.stop()
        engine.dispose()


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    out = fleet_cli("kiosks", db="nosuchdb://x")
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stderr.count("\n") == 1
    db = f"sqlite:///{tmp_path / 'f.sqlite3'}"
    out = fleet_cli("accept", "nobody", db=db)
    assert out.returncode == 1 and "no kiosk 'nobody'" in out.stderr
    out = fleet_cli("token", "create", "bad name!", "--role", "admin", db=db)
    assert out.returncode == 1 and "manager name" in out.stderr
    out = fleet_cli("config", "push", str(tmp_path / "missing.json"), "--target", "fleet", db=db)
    assert out.returncode == 1 and "missing.json" in out.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        out = fleet_cli("serve", "--port", str(busy.getsockname()[1]), db=db)
    assert out.returncode == 1 and "port is in use" in out.stderr


# --- two server processes, one PostgreSQL -------------------------------------------------------
class ServeProcess:
    def __init__(self, db: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "provisioning.server.cli", "serve", "--port", "0",
                                      "--db", db], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"serving (http://\S+);", line)
        if not m:
            self.stop()
            raise AssertionError(f"no URL from fleet serve: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}")
        self.url = m.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def two_servers(fleet_pg_database: str) -> Iterator[tuple[ServeProcess, ServeProcess, str]]:
    db = fleet_pg_database
    from test_fleet_support import FLEET_TABLES

    from provisioning.server.db import make_engine

    engine = make_engine(db)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(FLEET_TABLES)} RESTART IDENTITY CASCADE")
    engine.dispose()
    a = ServeProcess(db)
    try:
        b = ServeProcess(db)
    except BaseException:
        a.stop()
        raise
    try:
        yield a, b, db
    finally:
        a.stop()
        b.stop()


@pytest.mark.postgres
def test_two_server_processes_on_one_postgresql_serve_kiosks_from_either(
        two_servers: tuple[ServeProcess, ServeProcess, str], tmp_path: Path) -> None:
    a, b, db = two_servers
    token = ok(fleet_cli("enrollment", "create", "--label", "two", "--uses", "10", db=db)).strip()
    admin = ok(fleet_cli("token", "create", "alice", "--role", "admin", db=db)).strip()
    # both processes answer enrollments at once: one fleet key, made once, shared
    kiosks = [SignedKiosk(a.url if i % 2 else b.url, f"kiosk-{i:02d}") for i in range(6)]
    answers = [k.enroll(token).json() for k in kiosks]
    assert len({ans["fleet_public_key"] for ans in answers}) == 1
    fleet_key = answers[0]["fleet_public_key"]
    auth = {"Authorization": f"Bearer {admin}"}
    assert requests.post(a.url + "/api/v1/config/fleet", json={"lang": "en"}, headers=auth, timeout=10).ok
    k = kiosks[0]
    for server in (a, b):  # the same kiosk talks to either process
        k.base_url = server.url
        assert k.heartbeat().json()["desired_config_version"] == 1
        doc = k.call("GET", "/api/v1/agent/config").json()
        assert signing.verify_document(doc, fleet_key, doc_type="kiosk-config", now=svc.utcnow()).version == 1
    # a request replayed to the other process is refused: the nonces are in the shared database
    headers, data = k.signed("POST", "/api/v1/agent/heartbeat", {"app_version": "1"})
    assert requests.post(a.url + "/api/v1/agent/heartbeat", headers=headers, data=data, timeout=10).ok
    replay = requests.post(b.url + "/api/v1/agent/heartbeat", headers=headers, data=data, timeout=10)
    assert replay.status_code == 401 and replay.json()["error"] == "auth.replay"
    # revoked through one, cut off at the other
    assert requests.post(a.url + "/api/v1/kiosks/kiosk-00/revoke", headers=auth, timeout=10).ok
    k.base_url = b.url
    cut = k.heartbeat()
    assert cut.status_code == 403 and cut.json()["error"] == "kiosk.revoked", cut.text
    # many kiosks against both processes at once: every heartbeat lands, the versions agree
    import concurrent.futures

    def beat(i_k: tuple[int, SignedKiosk]) -> int:
        i, kk = i_k
        kk.base_url = (a.url, b.url)[i % 2]
        return int(kk.heartbeat().json()["desired_config_version"])

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        versions = list(pool.map(beat, list(enumerate(kiosks[1:] * 4))))
    assert set(versions) == {1}
    rows = requests.get(b.url + "/api/v1/kiosks", headers=auth, timeout=10).json()
    assert [r["presence"] for r in rows if r["status"] == "accepted"] == ["online"] * 5
