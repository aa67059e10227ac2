"""bench/bench_fleet_heartbeat.py runs end to end at a small size: real `fleet serve` process,
signed heartbeats from every identity, pings as the baseline, one JSON object."""

from __future__ import annotations

import http.client
import importlib.util
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from test_fleet_support import fleet_db, fleet_pg_database  # noqa: F401

from provisioning.server.db import make_engine

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_fleet_heartbeat.py"


def test_the_heartbeat_bench_measures_both_endpoints() -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--kiosks", "60", "--processes", "1", "--threads", "2"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["kiosks"] == 60 and result["db"] == "sqlite"
    for part in ("ping", "heartbeat"):
        assert result[part]["requests"] == 60 and result[part]["per_s"] > 0
        assert 0 < result[part]["p50_ms"] <= result[part]["p99_ms"]
    assert result["ratio"] == round(result["heartbeat"]["per_s"] / result["ping"]["per_s"], 3)


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_fleet_heartbeat", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _send(base: str, request: tuple[str, str, bytes, dict[str, str]]) -> tuple[int, dict[str, Any]]:
    """One request on a new connection (the kernel hands each to either worker)."""
    split = urlsplit(base)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=30)
    try:
        method, path, body, headers = request
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_fleet_serve_workers_share_the_port_and_the_nonces(fleet_db: str) -> None:
    """fleet serve --workers 2: two processes answer on one port; a heartbeat replayed to
    either is refused (the nonce is in the database), a forged one stores nothing, and both
    workers stop with the server."""
    bench = _bench()
    keys = bench.seed(fleet_db, 3)
    proc = subprocess.Popen([sys.executable, "-m", "provisioning.server.cli", "serve", "--port", "0", "--db", fleet_db,
                             "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=BENCH.parents[1])
    try:
        assert proc.stdout is not None
        m = re.search(r"serving (http://\S+);", proc.stdout.readline())
        assert m, proc.stderr.read() if proc.poll() is not None else "no announcement"
        base = m.group(1)
        workers = [pid for pid in bench._tree(proc.pid)
                   if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 2
        requests = bench._requests("heartbeat", list(enumerate(keys)))
        for request in requests:
            status, answer = _send(base, request)
            assert status == 200, answer
            assert answer == {"interval_s": 60, "desired_config_version": 0, "journal_head_seq": 0, "commands": []}
        for _ in range(4):  # new connections, so both workers see a replay sooner or later
            status, answer = _send(base, requests[0])
            assert (status, answer["error"]) == (401, "auth.replay")
        method, path, body, headers = bench._requests("heartbeat", [(1, keys[1])])[0]
        status, answer = _send(base, (method, path, body.replace(b'"ok"', b'"off"'), headers))
        assert (status, answer["error"]) == (401, "auth.bad_signature")
        engine = make_engine(fleet_db)
        try:
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT count(*) FROM fleet_nonces").scalar() == 3
                assert conn.exec_driver_sql("SELECT count(*) FROM fleet_kiosks WHERE last_seen_at IS NOT NULL"
                                            ).scalar() == 3
        finally:
            engine.dispose()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()
                and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]]
