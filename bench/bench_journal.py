"""Benchmark: durable Journal.append rate vs a plain SQLite INSERT with the same pragmas.

Both write one commit per row with WAL + synchronous=FULL, into the same on-disk directory,
interleaved block by block (100 ops) within each of 41 rounds so machine noise hits both
alike; the result is the median of the per-round ratios. Prints one JSON object.
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

from kiosk.journal import Journal, TxState

TARGET_RATIO = 0.7
ROUNDS = 41
OPS_PER_ROUND = 1000  # per side
BLOCK = 100  # ops per timed block; the two sides alternate block by block within a round
# A full happy path: begin (CREATED) + 6 appends, each its own durable commit.
PATH = [TxState.PAYING, TxState.PAID, TxState.FULFILLING, TxState.FULFILLED, TxState.POSTED,
        TxState.COMPLETED]
CREATED_DATA = {"card": "603799******7893", "terminal": "T1"}
# What the journal stores for CREATED_DATA, so the baseline rows are the same size.
CREATED_JSON = json.dumps(CREATED_DATA, sort_keys=True, separators=(",", ":"))


def _fs_type(path: Path) -> str:
    """The filesystem the bench writes to: tmpfs would make fsync free and the bench a lie."""
    best, fstype = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
            best, fstype = parts[1], parts[2]
    return fstype


class JournalSide:
    """The journal's workload, continued block after block: op k of the cycle is a begin
    (k % 7 == 0) or the next append of the happy path, each one durable commit."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.k = 0
        self.tx = ""

    def block(self, n: int) -> float:
        """Seconds taken by the next n ops."""
        journal, tx, first = self.journal, self.tx, self.k
        start = time.perf_counter()
        for k in range(first, first + n):
            step = k % 7
            if step == 0:
                tx = journal.begin("topup", 50_000, CREATED_DATA).tx_id
            else:
                journal.append(tx, PATH[step - 1], {"ref": f"R{k}"})
        elapsed = time.perf_counter() - start
        self.k, self.tx = first + n, tx
        return elapsed


class PlainSide:
    """The baseline: the same row shape, indexes and pragmas, the same data text and tx_id
    length, one autocommit INSERT (one commit, one fsync) per op."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.k = 0

    def block(self, n: int) -> float:
        conn, first = self.conn, self.k
        start = time.perf_counter()
        for k in range(first, first + n):
            step = k % 7
            conn.execute("INSERT INTO plain (tx_id, state, at, kind, amount_rials, data, "
                         "prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)",
                         (f"kiosk-dev-20250101-{k // 7:014x}", "CREATED" if step == 0 else "PAID",
                          time.time(), "topup", 50_000,
                          CREATED_JSON if step == 0 else f'{{"ref":"R{k}"}}', "0" * 64, "f" * 64))
        elapsed = time.perf_counter() - start
        self.k = first + n
        return elapsed


def run_round(journal: JournalSide, plain: PlainSide, ops: int, journal_first: bool
              ) -> tuple[float, float]:
    """(journal ops/s, plain ops/s) over one round: blocks alternate J,P,P,J,J,P… (or the
    mirror) so a slow moment of the machine lands on both sides alike."""
    j_time = p_time = 0.0
    order = journal_first
    for _ in range(ops // BLOCK):
        if order:
            j_time += journal.block(BLOCK)
            p_time += plain.block(BLOCK)
        else:
            p_time += plain.block(BLOCK)
            j_time += journal.block(BLOCK)
        order = not order
    done = (ops // BLOCK) * BLOCK
    return done / j_time, done / p_time


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
        jside, pside = JournalSide(journal), PlainSide(plain)
        run_round(jside, pside, 7 * BLOCK, True)  # warm-up: page cache, WAL file, caches
        journal_rates, plain_rates, ratios = [], [], []
        for r in range(ROUNDS):
            j, p = run_round(jside, pside, OPS_PER_ROUND, journal_first=r % 2 == 1)
            journal_rates.append(j)
            plain_rates.append(p)
            ratios.append(j / p)
        verify_start = time.perf_counter()
        report = journal.verify()
        verify_s = time.perf_counter() - verify_start
        journal.close()
        plain.close()
        ratio = statistics.median(ratios)
        quartiles = statistics.quantiles(ratios, n=4)
        print(json.dumps({
            "bench": "journal",
            "what": "Journal.append (one durable commit each) vs plain INSERT, same pragmas",
            "journal_appends_per_s": round(statistics.median(journal_rates), 1),
            "plain_inserts_per_s": round(statistics.median(plain_rates), 1),
            "ratio": round(ratio, 3),
            "ratio_p25_p75": [round(quartiles[0], 3), round(quartiles[2], 3)],
            "ratio_per_round": [round(x, 3) for x in ratios],
            "target_ratio": TARGET_RATIO,
            "meets_target": ratio >= TARGET_RATIO,
            "rounds": ROUNDS,
            "ops_per_round": OPS_PER_ROUND,
            "block": BLOCK,
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
