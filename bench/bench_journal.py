"""Benchmark: durable Journal.append rate vs a plain SQLite INSERT with the same pragmas.

Both write one commit per row with WAL + synchronous=FULL, into the same on-disk directory,
interleaved in rounds so machine noise hits both alike. Prints one JSON object.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kiosk.journal import Journal, TxState  # noqa: E402

TARGET_RATIO = 0.7
ROUNDS = 21
OPS_PER_ROUND = 1000
# A full happy path: begin (CREATED) + 6 appends, each its own durable commit.
PATH = [TxState.PAYING, TxState.PAID, TxState.FULFILLING, TxState.FULFILLED, TxState.POSTED,
        TxState.COMPLETED]


def _fs_type(path: Path) -> str:
    """The filesystem the bench writes to: tmpfs would make fsync free and the bench a lie."""
    best, fstype = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
            best, fstype = parts[1], parts[2]
    return fstype


def journal_round(journal: Journal, n: int) -> float:
    """Appends per second over n appends (begin counts: it appends CREATED)."""
    done = 0
    start = time.perf_counter()
    while done < n:
        tx = journal.begin("topup", 50_000, {"card": "603799******7893", "terminal": "T1"}).tx_id
        done += 1
        for state in PATH:
            if done >= n:
                break
            journal.append(tx, state, {"ref": f"R{done}"})
            done += 1
    return n / (time.perf_counter() - start)


def plain_round(conn: sqlite3.Connection, n: int, base: int) -> float:
    """Inserts per second of a similar row, autocommit (one commit per insert)."""
    start = time.perf_counter()
    for i in range(n):
        conn.execute("INSERT INTO plain (tx_id, state, at, kind, amount_rials, data, prev_hash, "
                     "hash) VALUES (?,?,?,?,?,?,?,?)",
                     (f"kiosk-dev-20250101-{(base + i) // 7:012x}", "CREATED" if (base + i) % 7 == 0 else "PAID", time.time(), "topup",
                      50_000, '{"ref":"R1"}', "0" * 64, "f" * 64))
    return n / (time.perf_counter() - start)


def main() -> int:
    project = Path(__file__).resolve().parent.parent
    work = Path(tempfile.mkdtemp(prefix=".bench-journal-", dir=project))
    try:
        journal = Journal(work / "journal.sqlite3")
        plain = sqlite3.connect(str(work / "plain.sqlite3"), isolation_level=None)
        plain.execute("PRAGMA journal_mode = WAL")
        plain.execute("PRAGMA synchronous = FULL")
        plain.execute("CREATE TABLE plain (seq INTEGER PRIMARY KEY, tx_id TEXT NOT NULL, "
                      "state TEXT NOT NULL, at REAL NOT NULL, kind TEXT NOT NULL, "
                      "amount_rials INTEGER NOT NULL, data TEXT NOT NULL, "
                      "prev_hash TEXT NOT NULL, hash TEXT NOT NULL)")
        # the journal's own indexes, so the baseline differs only by the journal's work
        plain.execute("CREATE INDEX plain_by_tx ON plain (tx_id, seq)")
        plain.execute("CREATE UNIQUE INDEX plain_one_begin ON plain (tx_id) "
                      "WHERE state = 'CREATED'")
        durability = journal.durability()
        plain_sync = plain.execute("PRAGMA synchronous").fetchone()[0]
        journal_round(journal, 70)  # warm-up: page cache, WAL file creation
        plain_round(plain, 70, 0)
        journal_rates, plain_rates, ratios = [], [], []
        for r in range(ROUNDS):
            # alternate which goes first so a slow moment does not always hit the same side
            if r % 2:
                j = journal_round(journal, OPS_PER_ROUND)
                p = plain_round(plain, OPS_PER_ROUND, (r + 1) * OPS_PER_ROUND)
            else:
                p = plain_round(plain, OPS_PER_ROUND, (r + 1) * OPS_PER_ROUND)
                j = journal_round(journal, OPS_PER_ROUND)
            journal_rates.append(j)
            plain_rates.append(p)
            ratios.append(j / p)
        verify_start = time.perf_counter()
        report = journal.verify()
        verify_s = time.perf_counter() - verify_start
        journal.close()
        plain.close()
        ratio = statistics.median(ratios)
        print(json.dumps({
            "bench": "journal",
            "what": "Journal.append (one durable commit each) vs plain INSERT, same pragmas",
            "journal_appends_per_s": round(statistics.median(journal_rates), 1),
            "plain_inserts_per_s": round(statistics.median(plain_rates), 1),
            "ratio": round(ratio, 3),
            "ratio_per_round": [round(x, 3) for x in ratios],
            "target_ratio": TARGET_RATIO,
            "meets_target": ratio >= TARGET_RATIO,
            "rounds": ROUNDS,
            "ops_per_round": OPS_PER_ROUND,
            "journal_pragmas": durability,
            "plain_synchronous": {2: "FULL"}.get(plain_sync, str(plain_sync)),
            "filesystem": _fs_type(work),
            "verify_entries": report.checked,
            "verify_ok": report.ok,
            "verify_s": round(verify_s, 3),
        }))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
