"""Fleet server: journal batch verification in entries/s (issue 11: >= 50,000/s), next to
baselines measured in the same run on the same rows. Prints one JSON object.

Rows are made with the kiosk's own chain module (kiosk.journal.chain: canonical_json,
entry_hash, the states' moves): realistic sales — fee payments through to COMPLETED,
declined cards, cancellations, value-only card loads — with the data the kiosk journals
(masked card, terminal reference, bill ids). They go, in batches of 500 as the agent sends
them, through `provisioning.server.journal.upload` — the very function `POST
/api/v1/agent/journal` runs: the shape of every row, its hash, the links, gaps, duplicates,
the state moves (with each transaction's last state held) — in a database transaction per
batch. `entries_per_s` times its verification (`journal.verify_batch`, with its reads of the
held head and transactions); `stored_per_s` the whole upload: verification, insert, commit. Baselines: `sha256_per_s`, plain sha256
over the same bytes entry_hash hashes (the floor: a verifier must hash every row), and
`kiosk_verify_per_s`, the kiosk's own kiosk.journal.chain.verify_rows over the same rows.

`--db postgresql+psycopg://…` for PostgreSQL (default: a temporary SQLite file).
`--http` also uploads the rows signed, through a real `fleet serve`, end to end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TARGET = 50_000.0
BATCH = 500

# (kind, the states a transaction goes through) with how often each happens
_FLOWS = (
    ("fee", ("CREATED", "PAYING", "PAID", "FULFILLING", "FULFILLED", "POSTED", "COMPLETED"), 6),
    ("fee", ("CREATED", "PAYING", "DECLINED"), 2),
    ("bill", ("CREATED", "CANCELLED"), 1),
    ("pending_load", ("CREATED", "FULFILLING", "FULFILLED", "POSTED", "COMPLETED"), 1),
)


def make_rows(n: int, kiosk_id: str = "bench-j-000001", seed: int = 11) -> list[list[Any]]:
    """n journal rows as the kiosk stores and the agent sends them (seq, tx_id, state, at, kind,
    amount_rials, data JSON, prev_hash, hash), hashed with the kiosk's own chain rules."""
    import random

    from kiosk.journal.chain import GENESIS_HASH, canonical_json, entry_hash

    rnd = random.Random(seed)
    flows = [f for f in _FLOWS for _ in range(f[2])]
    rows: list[list[Any]] = []
    prev, at, tx_no = GENESIS_HASH, 1_764_000_000.0, 0
    while len(rows) < n:
        kind, states, _ = rnd.choice(flows)
        tx_no += 1
        tx_id = f"{kiosk_id}-{tx_no:08d}-{rnd.getrandbits(32):08x}"
        amount = rnd.randrange(5, 500) * 10_000
        for state in states:
            if len(rows) >= n:
                break
            at += rnd.uniform(0.05, 20.0)
            data: dict[str, Any] = {}
            if state == "CREATED":
                data = {"service": kind, "bills": [{"bill_id": f"{rnd.getrandbits(40):013d}",
                                                    "payment_id": f"{rnd.getrandbits(30):010d}"}],
                        "lang": rnd.choice(("fa", "en")), "screen": "confirm"}
            elif state in ("PAID", "DECLINED"):
                data = {"pan": f"603799******{rnd.randrange(10_000):04d}", "rrn": f"{rnd.getrandbits(40):012d}",
                        "stan": rnd.randrange(1_000_000), "terminal": "T-0042",
                        "response": "00" if state == "PAID" else "51"}
            elif state == "FULFILLING":
                data = {"step": "post", "message_ref": secrets.token_hex(8)}
            elif state == "POSTED":
                data = {"backoffice_id": rnd.getrandbits(48), "receipt": f"R{rnd.getrandbits(32):010d}"}
            digest = entry_hash(prev, tx_id, state, at, kind, amount, canonical_json(data))
            rows.append([len(rows) + 1, tx_id, state, at, kind, amount, canonical_json(data), prev, digest])
            prev = digest
    return rows


def _sha256_baseline(rows: list[list[Any]]) -> float:
    """seconds for plain sha256 over the bytes entry_hash hashes, compared with the stored hash."""
    from kiosk.journal.chain import SEP

    sha = hashlib.sha256
    t0 = time.perf_counter()
    for seq, tx_id, state, at, kind, amount, data, prev, digest in rows:
        if sha(SEP.join((prev, tx_id, state, repr(at), kind, str(amount), data)).encode()).hexdigest() != digest:
            raise AssertionError(f"row {seq}")
    return time.perf_counter() - t0


def _kiosk_verify(rows: list[list[Any]]) -> float:
    from kiosk.journal.chain import verify_rows

    t0 = time.perf_counter()
    report = verify_rows(rows)
    took = time.perf_counter() - t0
    if not report.ok or report.checked != len(rows):
        raise AssertionError(report.problems[:3])
    return took


def _best(fn: Any, rows: list[list[Any]], repeat: int) -> float:
    return min(fn(rows) for _ in range(repeat))


def upload_all(db_url: str, kiosk_id: str, rows: list[list[Any]]) -> tuple[float, float]:
    """Every batch as journal.upload takes it, one transaction each: (seconds in verify_batch,
    seconds with the store and commit). The kiosk's rows are removed first, so a run starts from an empty chain."""
    from sqlalchemy import delete

    from provisioning.server import journal
    from provisioning.server.db import make_engine, session_factory
    from provisioning.server.models import JournalRow

    engine = make_engine(db_url)
    sessions = session_factory(engine)
    try:
        with sessions() as s, s.begin():
            s.execute(delete(JournalRow).where(JournalRow.kiosk_id == kiosk_id))
        in_upload = total = 0.0
        for start in range(0, len(rows), BATCH):
            batch = rows[start:start + BATCH]
            t0 = time.perf_counter()
            with sessions() as s, s.begin():  # what upload() does, its verification timed apart
                s.connection()  # the endpoint's transaction has begun already (the signature's nonce)
                t1 = time.perf_counter()
                new, duplicates, head_seq, _ = journal.verify_batch(s, kiosk_id, batch)
                in_upload += time.perf_counter() - t1
                journal.store(s, kiosk_id, new)
            total += time.perf_counter() - t0
            if len(new) != len(batch) or duplicates or head_seq != batch[-1][0]:
                raise AssertionError((len(new), duplicates, head_seq))
    finally:
        engine.dispose()
    return in_upload, total


def refuses_tampered(db_url: str, kiosk_id: str, rows: list[list[Any]]) -> dict[str, str]:
    """What upload() says, once the first batch is held, to the next batch edited, with two rows
    swapped, with a row missing, forked, with a held row rewritten, and with an illegal move
    (each must be refused; nothing stored)."""
    from kiosk.journal.chain import entry_hash
    from provisioning.server import journal
    from provisioning.server.db import make_engine, session_factory

    engine = make_engine(db_url)
    sessions = session_factory(engine)
    out: dict[str, str] = {}
    nxt = [list(r) for r in rows[BATCH:2 * BATCH]]
    edited = [list(r) for r in nxt]
    edited[7][5] += 10_000
    reorder = [list(r) for r in nxt]
    reorder[3], reorder[4] = reorder[4], reorder[3]
    illegal = [list(r) for r in nxt[:1]]  # re-hashed as the kiosk would, but a move never made
    illegal[0][2] = "COMPLETED" if illegal[0][2] == "CREATED" else "CREATED"
    illegal[0][8] = entry_hash(*illegal[0][7:8], *illegal[0][1:7])
    fork = [list(r) for r in nxt[:1]]  # another chain: re-hashed, linking elsewhere
    fork[0][7] = hashlib.sha256(b"another chain").hexdigest()
    fork[0][8] = entry_hash(*fork[0][7:8], *fork[0][1:7])
    rewrite = [list(r) for r in rows[:3]]
    rewrite[1][6] = '{"x":1}'
    cases = {"edited": edited, "swapped": reorder, "gap": nxt[1:], "fork": fork, "rewrite": rewrite,
             "illegal_transition": illegal}
    try:
        with sessions() as s, s.begin():
            from sqlalchemy import delete

            from provisioning.server.models import JournalRow

            s.execute(delete(JournalRow).where(JournalRow.kiosk_id == kiosk_id))
            journal.upload(s, kiosk_id, rows[:BATCH])
        for name, batch in cases.items():
            try:
                with sessions() as s, s.begin():
                    journal.upload(s, kiosk_id, batch)
                out[name] = "accepted"
            except journal.JournalRefused as exc:
                out[name] = exc.kind
    finally:
        engine.dispose()
    return out


def http_upload(db_url: str, rows: list[list[Any]]) -> dict[str, Any]:
    """The rows uploaded signed, in batches of 500, to a real `fleet serve` process on db_url,
    by one enrolled kiosk (seeded like the heartbeat bench); entries/s of the whole round trip."""
    import http.client
    from urllib.parse import urlsplit

    from bench_fleet_heartbeat import seed, start_server

    from provisioning.common import signing

    from sqlalchemy import delete

    from provisioning.server.db import make_engine
    from provisioning.server.models import JournalRow

    key = signing.private_from_raw(seed(db_url, 1)[0])
    kiosk_id = "bench-000000"
    engine = make_engine(db_url)
    with engine.begin() as conn:  # a fresh chain for it
        conn.execute(delete(JournalRow).where(JournalRow.kiosk_id == kiosk_id))
    engine.dispose()
    with_own = [list(r) for r in rows]  # same rows: the chain does not name the kiosk
    bodies = [json.dumps({"rows": with_own[i:i + BATCH]}).encode() for i in range(0, len(rows), BATCH)]
    proc, base = start_server(db_url)
    try:
        split = urlsplit(base)
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=60)
        t0 = time.perf_counter()
        for body in bodies:
            headers = signing.sign_request(key, kiosk_id, "POST", "/api/v1/agent/journal", body, now=time.time(),
                                           nonce=secrets.token_urlsafe(18))
            headers["Content-Type"] = "application/json"
            conn.request("POST", "/api/v1/agent/journal", body=body, headers=headers)
            resp = conn.getresponse()
            answer = json.loads(resp.read())
            if resp.status != 200:
                raise RuntimeError(f"journal upload: HTTP {resp.status} {answer}")
        took = time.perf_counter() - t0
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    return {"entries": len(rows), "batches": len(bodies), "entries_per_s": round(len(rows) / took),
            "head_seq": answer["head_seq"]}


def _forget(db_url: str, kiosk_id: str) -> None:
    """The bench's rows out of the database again (it may be a shared one)."""
    from sqlalchemy import delete

    from provisioning.server.db import make_engine
    from provisioning.server.models import JournalRow

    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(delete(JournalRow).where(JournalRow.kiosk_id.in_((kiosk_id, "bench-000000"))))
    engine.dispose()


def run(db_url: str | None, entries: int, repeat: int = 3, http: bool = False) -> dict[str, Any]:
    rows = make_rows(entries)
    with tempfile.TemporaryDirectory() as tmp:
        url = db_url or f"sqlite:///{Path(tmp) / 'fleet.sqlite3'}"
        from provisioning.server.db import upgrade

        upgrade(url)
        kiosk_id = f"bench-j-{secrets.token_hex(4)}"
        runs = [upload_all(url, kiosk_id, rows) for _ in range(repeat)]
        in_upload = min(r[0] for r in runs)
        with_commit = min(r[1] for r in runs)
        sha = _best(_sha256_baseline, rows, repeat)
        kiosk = _best(_kiosk_verify, rows, repeat)
        refused = refuses_tampered(url, kiosk_id, rows) if entries >= 2 * BATCH else {}
        through_http = http_upload(url, rows) if http else None
        is_pg = url.startswith("postgresql")
        _forget(url, kiosk_id)
    per_s = entries / in_upload
    result: dict[str, Any] = {
        "bench": "fleet_journal", "db": "postgresql" if is_pg else "sqlite", "entries": entries, "batch": BATCH,
        "repeat": repeat, "entries_per_s": round(per_s), "stored_per_s": round(entries / with_commit),
        "baseline": {"sha256_per_s": round(entries / sha), "kiosk_verify_per_s": round(entries / kiosk)},
        "ratio": round(per_s / (entries / sha), 3), "ratio_kiosk_verify": round(per_s / (entries / kiosk), 3),
        "target": TARGET, "ok": per_s >= TARGET, "refused": refused}
    if through_http is not None:
        if through_http["head_seq"] != entries:
            raise AssertionError(through_http)
        result["http"] = through_http
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="fleet database URL (default: a temporary SQLite file)")
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--http", action="store_true", help="also upload through a real fleet serve, signed")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.db, args.entries, args.repeat, args.http)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
