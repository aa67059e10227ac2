"""Fleet server: how long a configuration rollout takes to reach every kiosk of a fleet, in
poll intervals (issue 11: 10,000 simulated kiosks within two). Prints one JSON object.

N kiosk identities (default 10,000, each with its own Ed25519 key, written as accepted
kiosks as bench_fleet_heartbeat does) and a real `fleet serve` process (`--interval I`).
Client processes simulate the agents: each kiosk heartbeats every I seconds at its own phase
(spread evenly over the interval, as a fleet's kiosks are), signed with its key; when the
answer's desired version is above the one it runs, it GETs the signed configuration, checks
it as the agent does (provisioning.agent.apply.verify: the fleet key's signature, this kiosk,
not expired; then a version above its own), and reports the new version, "applied" and the
values in its next heartbeat, which settles its rollout action `done`. After one interval of
steady heartbeats a manager creates a rollout of one layer to the whole fleet in one stage
(`--stages 100`; or e.g. `--stages 1,100`: canary then everyone) over the API.

Measured from the rollout's creation: `reached_all_s`, until the last kiosk has verified the
new configuration; `done_all_s`, until the server holds every action `done` (polled in its
database); `intervals` = reached_all_s / I, against the target 2.0. I must be one this machine
carries: N / I heartbeats/s (10,000 at 20 s = 500/s; the measured rate is printed).
`--db postgresql+psycopg://…` for PostgreSQL (default: a temporary SQLite file).
"""

from __future__ import annotations

import argparse
import heapq
import http.client
import json
import multiprocessing
import random
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TARGET_INTERVALS = 2.0
LAYER_KEY = "topup_max_rials"  # each run rolls out a value of its own: a reused database's old layers differ
HEARTBEAT = "/api/v1/agent/heartbeat"
CONFIG = "/api/v1/agent/config"


def start_server(db_url: str, interval_s: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "provisioning.server.cli", "serve", "--port", "0", "--db", db_url,
                             "--interval", str(max(1, round(interval_s)))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"serving (http://\S+);", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"fleet serve did not start: {line!r}")
    return proc, m.group(1)


def _agents(args: tuple[str, list[tuple[int, bytes]], float, float, str, Any, Any, int, dict[str, Any]]) -> None:
    """One client process: its kiosks' agents, each heartbeating every `interval` from
    `start_at` + its phase, over `threads` keep-alive connections, until `stop` is set; puts
    (applied_at per kiosk, heartbeats sent, configurations fetched, errors) on `out`."""
    base, items, interval, start_at, fleet_key, stop, out, threads, layer = args
    from provisioning.agent.apply import ConfigRefused, verify
    from provisioning.common import signing

    n = len(items)
    keys = {i: signing.private_from_raw(raw) for i, raw in items}
    version = {i: 0 for i, _ in items}
    values: dict[int, Any] = {}
    applied_at: dict[int, float] = {}
    counts = {"heartbeats": 0, "configs": 0, "errors": 0}
    rnd = random.Random(items[0][0] if items else 0)
    # phases spread evenly over the interval, in a shuffled kiosk order
    order = [i for i, _ in items]
    rnd.shuffle(order)
    due = [(start_at + interval * k / max(1, n), i) for k, i in enumerate(order)]
    heapq.heapify(due)
    lock = threading.Lock()
    split = urlsplit(base)

    def signed(conn: http.client.HTTPConnection, i: int, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        kid = f"bench-{i:06d}"
        headers = signing.sign_request(keys[i], kid, method, path, body, now=time.time(),
                                       nonce=secrets.token_urlsafe(18))
        headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()

    def one(conn: http.client.HTTPConnection, i: int) -> None:
        v = version[i]
        body = json.dumps({"app_version": "1", "config_version": v or None,
                           "config_state": "applied" if v else None, "config_values": values.get(i),
                           "devices": {"printer": "ok"}, "open_transactions": 0, "refunds_pending": 0,
                           "last_tx_at": None}).encode()
        status, raw = signed(conn, i, "POST", HEARTBEAT, body)
        counts["heartbeats"] += 1
        if status != 200:
            counts["errors"] += 1
            return
        if json.loads(raw)["desired_config_version"] <= v:
            return
        status, raw = signed(conn, i, "GET", CONFIG, b"")
        counts["configs"] += 1
        if status != 200:
            counts["errors"] += 1
            return
        try:
            doc = verify(json.loads(raw), fleet_public_key=fleet_key, kiosk_id=f"bench-{i:06d}")
        except ConfigRefused:
            counts["errors"] += 1
            return
        if doc.version > v:  # the agent's config.rollback check
            version[i], values[i] = doc.version, doc.signed["settings"]
            if all(doc.signed["settings"].get(k) == v for k, v in layer.items()):  # the rollout's
                applied_at.setdefault(i, time.time())

    def worker() -> None:
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=60)
        while not stop.is_set():
            with lock:
                if not due:  # more connections than kiosks: the others hold them all
                    when = -1.0
                else:
                    when, i = heapq.heappop(due)
            if when < 0:
                time.sleep(0.05)
                continue
            time.sleep(max(0.0, when - time.time()))
            if stop.is_set():
                break
            try:
                one(conn, i)
            except (OSError, http.client.HTTPException):
                counts["errors"] += 1
                conn.close()
                conn = http.client.HTTPConnection(split.hostname, split.port, timeout=60)
            with lock:
                heapq.heappush(due, (when + interval, i))
        conn.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((applied_at, counts))


def _count(db_url: str, rollout_id: int) -> tuple[int, str]:
    from sqlalchemy import text

    from provisioning.server.db import make_engine

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            done = conn.execute(text("SELECT count(*) FROM fleet_rollout_actions WHERE rollout_id = :r "
                                     "AND status = 'done'"), {"r": rollout_id}).scalar()
            status = conn.execute(text("SELECT status FROM fleet_rollouts WHERE id = :r"), {"r": rollout_id}).scalar()
    finally:
        engine.dispose()
    return int(done or 0), str(status)


def _api(base: str, token: str, method: str, path: str, body: Any = None) -> Any:
    split = urlsplit(base)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=120)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body).encode(),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status} {answer}")
        return answer
    finally:
        conn.close()


def run(db_url: str | None, kiosks: int, interval_s: float, processes: int = 2, threads: int = 8,
        stages: list[int] | None = None, warmup_intervals: float = 1.0, limit_intervals: float = 6.0) -> dict[str, Any]:
    from bench_fleet_heartbeat import seed

    from provisioning.server import service as svc
    from provisioning.server.db import make_engine, session_factory
    from provisioning.server.models import Role

    stages = stages or [100]
    layer = {LAYER_KEY: random.randrange(100, 10_000) * 10_000}
    with tempfile.TemporaryDirectory() as tmp:
        url = db_url or f"sqlite:///{Path(tmp) / 'fleet.sqlite3'}"
        keys = seed(url, kiosks)
        engine = make_engine(url)
        with session_factory(engine)() as s, s.begin():
            s.execute(svc.Kiosk.__table__.update().values(desired_version=0))
            token = svc.create_manager_token(s, svc.CLI, f"bench-{secrets.token_hex(3)}", Role.ADMIN)
        engine.dispose()
        proc, base = start_server(url, interval_s)
        ctx = multiprocessing.get_context("spawn")
        stop, out = ctx.Event(), ctx.Queue()
        clients = []
        try:
            fleet_key = _api(base, token, "GET", "/api/v1/fleet-key")["public_key"]
            items = list(enumerate(keys))
            start_at = time.time() + 2.0 + kiosks * 0.0001
            for p in range(processes):
                c = ctx.Process(target=_agents, args=((base, items[p::processes], interval_s, start_at, fleet_key,
                                                       stop, out, threads, layer),))
                c.start()
                clients.append(c)
            # steady heartbeats first: every kiosk has been heard once before the rollout
            time.sleep(max(0.0, start_at + warmup_intervals * interval_s - time.time()))
            created_at = time.time()
            rollout = _api(base, token, "POST", "/api/v1/rollouts",
                           {"target": "fleet", "settings": layer, "stages": stages,
                            "action_timeout_s": max(10, int(limit_intervals * interval_s) + 60),
                            "max_failure_pct": 0})
            create_s = time.time() - created_at
            done_at = completed_at = None
            done = 0
            while time.time() < created_at + limit_intervals * interval_s:
                done, status = _count(url, rollout["id"])
                now = time.time()
                if done >= kiosks and done_at is None:
                    done_at = now
                if status == "completed" and completed_at is None:
                    completed_at = now
                if done_at is not None and completed_at is not None:
                    break
                time.sleep(0.25)
            stop.set()
            parts = [out.get(timeout=120) for _ in clients]
            for c in clients:
                c.join(timeout=30)
        finally:
            stop.set()
            for c in clients:
                if c.is_alive():
                    c.terminate()
            proc.terminate()
            proc.wait(timeout=15)
        is_pg = url.startswith("postgresql")
    applied = [t for part in parts for t in part[0].values()]
    counts = {k: sum(part[1][k] for part in parts) for k in ("heartbeats", "configs", "errors")}
    elapsed = time.time() - start_at
    reached = max(applied) - created_at if len(applied) == kiosks else None
    result = {
        "bench": "fleet_rollout", "db": "postgresql" if is_pg else "sqlite", "kiosks": kiosks,
        "interval_s": interval_s, "heartbeats_per_s_planned": round(kiosks / interval_s, 1),
        "heartbeats_per_s": round(counts["heartbeats"] / elapsed, 1), "stages": stages,
        "client_processes": processes, "threads_each": threads, "rollout_id": rollout["id"],
        "create_s": round(create_s, 3), "kiosks_reached": len(applied),
        "reached_all_s": None if reached is None else round(reached, 2),
        "intervals": None if reached is None else round(reached / interval_s, 3),
        "done_all_s": None if done_at is None else round(done_at - created_at, 2),
        "done_intervals": None if done_at is None else round((done_at - created_at) / interval_s, 3),
        "actions_done": done, "completed_s": None if completed_at is None else round(completed_at - created_at, 2),
        **counts, "target": TARGET_INTERVALS,
        "ok": reached is not None and reached / interval_s <= TARGET_INTERVALS}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="fleet database URL (default: a temporary SQLite file)")
    parser.add_argument("--kiosks", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=20.0, help="poll (heartbeat) interval, s")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=8, help="connections per client process")
    parser.add_argument("--stages", default="100", help="cumulative percentages, e.g. 1,100 (default 100)")
    args = parser.parse_args(argv)
    stages = [int(x) for x in args.stages.split(",")]
    print(json.dumps(run(args.db, args.kiosks, args.interval, args.processes, args.threads, stages)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
