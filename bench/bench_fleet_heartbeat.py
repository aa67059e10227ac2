"""Fleet server: signed heartbeats per second and their p99, against a trivial unauthenticated
endpoint (`GET /api/v1/ping`) measured in the same run on the same server. Prints one JSON
object.

N kiosk identities (default 10,000), each with its own Ed25519 key, are written to the fleet
database as accepted kiosks; a `fleet serve` process (its own process, as in production)
answers; client processes with keep-alive connections send every kiosk's signed heartbeat
(signature, timestamp, nonce, body hash: the full check, nonce stored, kiosk row updated,
desired configuration and commands looked up), then the same number of pings.

Targets (issue 11): heartbeats/s >= 0.5 x pings/s; on PostgreSQL >= 1,000 heartbeats/s on 2
cores. `--db postgresql+psycopg://…` for PostgreSQL (default: a temporary SQLite file).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import secrets
import statistics
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

TARGET_RATIO = 0.5
TARGET_PG_RPS = 1000.0


def seed(db_url: str, n: int) -> list[bytes]:
    """n accepted kiosks with fresh keys; their private keys (raw), in kiosk order."""
    from sqlalchemy import delete, insert

    from provisioning.common import signing
    from provisioning.server.db import make_engine, upgrade
    from provisioning.server.models import Kiosk, utcnow

    upgrade(db_url)
    keys = [signing.new_private_key() for _ in range(n)]
    now = utcnow()
    rows = [{"kiosk_id": f"bench-{i:06d}", "serial": f"bench-{i:06d}", "model": "bench", "app_version": "1",
             "public_key": signing.public_b64(k), "status": "accepted", "site": f"site-{i % 20}",
             "enrolled_at": now, "desired_version": 0} for i, k in enumerate(keys)]
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(delete(Kiosk).where(Kiosk.kiosk_id.like("bench-%")))
            for start in range(0, n, 1000):
                conn.execute(insert(Kiosk), rows[start:start + 1000])
    finally:
        engine.dispose()
    return [signing.private_raw(k) for k in keys]


def _requests(mode: str, items: list[tuple[int, bytes]]) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """Every request of a client, made before the clock starts: the load generator shares the
    2 cores with the server it measures, so its own signing must not be counted as the
    server's time. Each is signed with its kiosk's key, a fresh nonce and the current time (the
    server checks all of it; a run is far shorter than the 300 s clock window)."""
    from provisioning.common import signing

    if mode == "ping":
        return [("GET", "/api/v1/ping", b"", {}) for _ in items]
    out = []
    body = json.dumps({"app_version": "1", "config_version": None, "devices": {"printer": "ok"},
                       "open_transactions": 0, "refunds_pending": 0, "last_tx_at": None}).encode()
    for i, raw in items:
        method, path = "POST", "/api/v1/agent/heartbeat"
        headers = signing.sign_request(signing.private_from_raw(raw), f"bench-{i:06d}", method, path, body,
                                       now=time.time(), nonce=secrets.token_urlsafe(18))
        headers["Content-Type"] = "application/json"
        out.append((method, path, body, headers))
    return out


def _client(args: tuple[list[str], str, list[tuple[int, bytes]], int, float]) -> tuple[float, float, list[float]]:
    """One client process: `threads` keep-alive connections (spread over the servers) share its
    slice of kiosks, from `start_at` (wall clock) on; (started, ended, latencies)."""
    bases, mode, items, threads, start_at = args
    todo = _requests(mode, items)
    latencies: list[float] = []
    lock = threading.Lock()
    cursor = iter(todo)
    turn = iter(range(threads))
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()

    def worker() -> None:
        with lock:
            split = urlsplit(bases[next(turn) % len(bases)])
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=30)
        mine: list[float] = []
        while True:
            with lock:
                item = next(cursor, None)
            if item is None:
                break
            method, path, body, headers = item
            t0 = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            mine.append(time.perf_counter() - t0)
            if resp.status != 200:
                raise RuntimeError(f"{mode}: HTTP {resp.status}")
        conn.close()
        with lock:
            latencies.extend(mine)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return started, time.time(), latencies


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their reaped children (Linux /proc)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def _tree(pid: int) -> list[int]:
    """pid and its descendants (a server's workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def measure(bases: list[str], mode: str, keys: list[bytes], processes: int, threads: int,
            servers: list[int] | None = None) -> dict[str, Any]:
    items = list(enumerate(keys))
    # every client starts at the same moment, once its requests are ready (about 0.1 ms a
    # signature, plus starting the process)
    start_at = time.time() + 1.5 + len(keys) / processes * 0.0002
    slices = [(bases[p % len(bases):] + bases[:p % len(bases)], mode, items[p::processes], threads, start_at)
              for p in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pids = [pid for server in servers or [] for pid in _tree(server)]
        result = pool.map_async(_client, slices)
        time.sleep(max(0.0, start_at - time.time()))
        cpu0 = _cpu_s(pids)
        parts = result.get()
        cpu1 = _cpu_s(pids)
    wall = max(p[1] for p in parts) - min(p[0] for p in parts)
    lat = sorted(x for part in parts for x in part[2])
    out = {"requests": len(lat), "per_s": round(len(lat) / wall, 1),
           "p50_ms": round(statistics.median(lat) * 1000, 2),
           "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2)}
    if pids:  # the server processes' own CPU, which the machine's other load does not inflate much
        out["server_cpu_us"] = round((cpu1 - cpu0) / len(lat) * 1e6)
    return out


def start_server(db_url: str, workers: int = 1) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "provisioning.server.cli", "serve", "--port", "0", "--db", db_url,
                             "--workers", str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"serving (http://\S+);", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"fleet serve did not start: {line!r}")
    return proc, m.group(1)


def _http_impl() -> str:
    """What uvicorn serves with here: httptools + uvloop when installed, else h11 + asyncio."""
    import importlib.util

    return "+".join(name if importlib.util.find_spec(name) else fallback
                    for name, fallback in (("httptools", "h11"), ("uvloop", "asyncio")))


def run(db_url: str | None, kiosks: int, processes: int, threads: int, servers: int = 1,
        workers: int = 1) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = db_url or f"sqlite:///{Path(tmp) / 'fleet.sqlite3'}"
        t0 = time.perf_counter()
        keys = seed(url, kiosks)
        seeded_s = time.perf_counter() - t0
        procs: list[subprocess.Popen[str]] = []
        try:
            bases = []
            for _ in range(servers):  # stateless: any number of processes on one database
                proc, base = start_server(url, workers)
                procs.append(proc)
                bases.append(base)
            pids = [proc.pid for proc in procs]
            measure(bases, "ping", keys[: min(200, kiosks)], processes, threads)  # warm up
            ping = measure(bases, "ping", keys, processes, threads, pids)
            heartbeat = measure(bases, "heartbeat", keys, processes, threads, pids)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=15)
    ratio = heartbeat["per_s"] / ping["per_s"]
    is_pg = url.startswith("postgresql")
    result = {"bench": "fleet_heartbeat", "db": "postgresql" if is_pg else "sqlite", "kiosks": kiosks,
              "servers": servers, "workers_each": workers, "http": _http_impl(),
              "client_processes": processes, "threads_each": threads, "seed_s": round(seeded_s, 2),
              "ping": ping, "heartbeat": heartbeat, "ratio": round(ratio, 3), "target_ratio": TARGET_RATIO,
              "ratio_ok": ratio >= TARGET_RATIO}
    if is_pg:
        result.update(target_pg_per_s=TARGET_PG_RPS, pg_ok=heartbeat["per_s"] >= TARGET_PG_RPS)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="fleet database URL (default: a temporary SQLite file)")
    parser.add_argument("--kiosks", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=4, help="connections per client process")
    parser.add_argument("--servers", type=int, default=1, help="fleet serve processes on the one database")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of each (fleet serve --workers)")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.db, args.kiosks, args.processes, args.threads, args.servers, args.workers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
