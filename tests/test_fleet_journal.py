"""Journal upload (issue 11, item 7) on SQLite and PostgreSQL: the agent sends a real kiosk
journal in batches keyed by (kiosk, seq); the server checks the chain across batches with the
kiosk's own chain rules, stores each row once, and refuses — storing nothing, recording the
problem, auditing it and raising an alert — a batch that is edited, has rows missing, is
reordered, forks, rewrites rows it already holds, or makes a move the kiosk never makes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from kiosk.journal import Journal, TxState, canonical_json, entry_hash, journal_path
from provisioning.agent.runner import Agent, enroll
from provisioning.server.models import JournalRow
from test_fleet_support import Fleet, SignedKiosk, fleet, fleet_db, fleet_pg_database  # noqa: F401

KIOSK = "kiosk-j-01"


def _journal(data: Path) -> Journal:
    return Journal(journal_path(data), kiosk_id=KIOSK)


def _sales(journal: Journal, n: int, *, finish: bool = True) -> list[str]:
    ids = []
    for i in range(n):
        tx = journal.begin("fee", 10_000 + i)
        journal.append(tx.tx_id, TxState.PAYING)
        if finish:
            journal.append(tx.tx_id, TxState.DECLINED)
        ids.append(tx.tx_id)
    return ids


def _rows(journal: Journal, after: int = 0, limit: int | None = None) -> list[list[Any]]:
    return [[e.seq, e.tx_id, str(e.state), e.at, e.kind, e.amount_rials, canonical_json(e.data), e.prev_hash,
             e.hash] for e in journal.entries(after, limit)]


def _held(f: Fleet, kiosk_id: str = KIOSK) -> int:
    with f.session() as s:
        return int(s.scalar(select(func.count()).select_from(JournalRow).where(JournalRow.kiosk_id == kiosk_id)))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "kiosk"
    d.mkdir(mode=0o700)
    (d / "kiosk.json").write_text(json.dumps({"kiosk_id": KIOSK}))
    return d


def test_the_agent_uploads_the_journal_in_batches_once(fleet: Fleet, data: Path) -> None:
    journal = _journal(data)
    _sales(journal, 200)
    open_ids = _sales(journal, 2, finish=False)  # begun before the upload, finished after it
    enroll(data, fleet.url, fleet.enroll_token(), serial=KIOSK)
    agent = Agent(data)
    assert agent.run_once().journal == "604 row(s) sent"  # two batches of 500 and 104
    assert _held(fleet) == 604
    assert agent.run_once().journal == "0 row(s) sent"
    for tx_id in open_ids:
        journal.append(tx_id, TxState.DECLINED)
    _sales(journal, 1)
    assert agent.run_once().journal == "5 row(s) sent"
    view = fleet.api("GET", f"/api/v1/kiosks/{KIOSK}").json()
    assert view["journal"]["head_seq"] == 609 and view["journal"]["head_hash"] == journal.head()[1]
    assert view["journal"]["problems"] == [] and not any("journal" in a for a in view["alerts"])
    journal.close()


def test_a_batch_sent_again_is_stored_once(fleet: Fleet, data: Path) -> None:
    journal = _journal(data)
    _sales(journal, 3)
    k = SignedKiosk(fleet.url, KIOSK)
    assert k.enroll(fleet.enroll_token()).status_code == 201
    rows = _rows(journal)
    first = k.call("POST", "/api/v1/agent/journal", {"rows": rows[:5]}).json()
    assert (first["stored"], first["duplicates"], first["head_seq"]) == (5, 0, 5)
    again = k.call("POST", "/api/v1/agent/journal", {"rows": rows}).json()  # overlaps the first
    assert (again["stored"], again["duplicates"], again["head_seq"]) == (4, 5, 9)
    assert _held(fleet) == 9
    journal.close()


def _attack(fleet: Fleet, data: Path, rows_of: Any, code: str) -> None:
    journal = _journal(data)
    _sales(journal, 3)
    k = SignedKiosk(fleet.url, KIOSK)
    assert k.enroll(fleet.enroll_token()).status_code == 201
    rows = _rows(journal)
    assert k.call("POST", "/api/v1/agent/journal", {"rows": rows[:3]}).status_code == 200
    r = k.call("POST", "/api/v1/agent/journal", {"rows": rows_of(rows, data)})
    assert r.status_code == 409, r.text
    assert r.json()["error"] == code and r.json()["message"]
    assert _held(fleet) == 3  # nothing of the refused batch
    view = fleet.api("GET", f"/api/v1/kiosks/{KIOSK}").json()
    assert view["journal"]["problems"][0]["kind"] == code.split(".", 1)[1]
    assert "journal: 1 problem(s) found in uploads" in view["alerts"]
    entry = fleet.audit(code)[0]
    assert entry["action"] == "journal.upload" and entry["actor"] == f"kiosk:{KIOSK}"
    journal.close()


def _edited(rows: list[list[Any]], _data: Path) -> list[list[Any]]:
    batch = [list(r) for r in rows[3:]]
    batch[1][5] = 1  # the amount of row 5
    return batch


def _other_chain(rows: list[list[Any]], data: Path) -> list[list[Any]]:
    other = Journal(data / "other.sqlite3", kiosk_id=KIOSK)
    _sales(other, 2)
    forked = _rows(other, 3)
    other.close()
    return forked


def _illegal(rows: list[list[Any]], _data: Path) -> list[list[Any]]:
    seq, tx_id, _, at, kind, amount, data_json, _, _ = rows[3]
    prev = rows[2][8]
    state = "COMPLETED"  # CREATED → COMPLETED: a sale that never paid, recorded as done
    return [[seq, tx_id, state, at, kind, amount, data_json, prev,
             entry_hash(prev, tx_id, state, at, kind, amount, data_json)]]


@pytest.mark.parametrize("rows_of,code", [
    (_edited, "journal.edited"),
    (lambda rows, _d: rows[4:], "journal.gap"),  # row 4 missing
    (lambda rows, _d: [rows[4], rows[3], *rows[5:]], "journal.gap"),  # reordered: 5 before 4
    (lambda rows, _d: [rows[3], rows[5], rows[4]], "journal.gap"),
    (lambda rows, _d: [rows[3], rows[4], rows[3]], "journal.reorder"),
    (_other_chain, "journal.fork"),
    (lambda rows, _d: [[*rows[1][:5], 999, *rows[1][6:]]], "journal.rewrite"),
    (_illegal, "journal.illegal_transition"),
    (lambda rows, _d: [[4, "x"]], "journal.bad_row"),
], ids=["edited", "missing", "reordered", "skipped", "repeated", "fork", "rewrite", "illegal", "bad_row"])
def test_a_tampered_batch_is_refused_recorded_and_audited(fleet: Fleet, data: Path, rows_of: Any,
                                                          code: str) -> None:
    _attack(fleet, data, rows_of, code)


def test_a_kiosk_whose_journal_was_cut_back_is_flagged_at_its_heartbeat(fleet: Fleet, data: Path) -> None:
    journal = _journal(data)
    _sales(journal, 2)
    k = SignedKiosk(fleet.url, KIOSK)
    assert k.enroll(fleet.enroll_token()).status_code == 201
    rows = _rows(journal)
    k.call("POST", "/api/v1/agent/journal", {"rows": rows})
    assert k.heartbeat(journal_head=[6, rows[5][8]]).status_code == 200
    assert fleet.audit("journal.rewind") == []
    assert k.heartbeat(journal_head=[4, rows[3][8]]).status_code == 200  # the kiosk lost rows 5 and 6
    k.heartbeat(journal_head=[4, rows[3][8]])
    view = fleet.api("GET", f"/api/v1/kiosks/{KIOSK}").json()
    assert [p["kind"] for p in view["journal"]["problems"]] == ["rewind"]  # recorded once
    assert len(fleet.audit("journal.rewind")) == 1
    assert k.heartbeat(journal_head=[6, "0" * 64]).status_code == 200  # another row 6
    assert len(fleet.audit("journal.rewind")) == 2
    journal.close()


def test_the_agent_reports_a_refused_upload_and_carries_on(fleet: Fleet, data: Path) -> None:
    journal = _journal(data)
    _sales(journal, 1)
    enroll(data, fleet.url, fleet.enroll_token(), serial=KIOSK)
    agent = Agent(data)
    assert agent.run_once().journal == "3 row(s) sent"
    journal.close()
    # the journal is replaced by another one that grows past the server's head: a fork
    for suffix in ("", "-wal", "-shm"):
        Path(f"{journal_path(data)}{suffix}").unlink(missing_ok=True)
    other = _journal(data)
    _sales(other, 2)
    report = agent.run_once()
    assert report.heartbeat and report.journal == "refused: journal.fork"
    assert fleet.audit("journal.fork")
    other.close()


# --- the signed daily statement of chain heads ---------------------------------------------------
def _chain(kiosk_id: str, times: list[float]) -> list[list[Any]]:
    """A valid chain of cancelled sales at the given times (the kiosk's clock)."""
    from kiosk.journal import GENESIS_HASH

    rows, prev = [], GENESIS_HASH
    for i, at in enumerate(times):
        tx, seq = f"{kiosk_id}-tx{i // 2}", i + 1
        state = "CREATED" if i % 2 == 0 else "CANCELLED"
        digest = entry_hash(prev, tx, state, at, "fee", 5000, "{}")
        rows.append([seq, tx, state, at, "fee", 5000, "{}", prev, digest])
        prev = digest
    return rows


def test_the_daily_statement_signs_each_kiosks_head_at_the_end_of_the_day(fleet: Fleet, tmp_path: Path) -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    from provisioning.common import signing
    from provisioning.server import journal as fleet_journal
    from provisioning.server import service as svc
    from test_fleet_cli import fleet_cli, ok

    tehran = ZoneInfo("Asia/Tehran")
    day = dt.date(2026, 11, 20)
    noon = dt.datetime.combine(day, dt.time(12), tehran).timestamp()
    late = dt.datetime.combine(day, dt.time(23, 59), tehran).timestamp()
    next_day = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 1), tehran).timestamp()
    a, b = SignedKiosk(fleet.url, "kiosk-a"), SignedKiosk(fleet.url, "kiosk-b")
    token = fleet.enroll_token(max_uses=2)
    for k in (a, b):
        assert k.enroll(token).status_code == 201
    rows_a = _chain("kiosk-a", [noon, noon + 1, late, next_day])
    assert a.call("POST", "/api/v1/agent/journal", {"rows": rows_a}).status_code == 200
    rows_b = _chain("kiosk-b", [next_day, next_day + 1])
    assert b.call("POST", "/api/v1/agent/journal", {"rows": rows_b}).status_code == 200
    out = tmp_path / "statement.json"
    assert "1 kiosk(s)" in ok(fleet_cli("statement", "issue", "--date", day.isoformat(), "--out", str(out),
                                        db=fleet.db_url))
    doc = json.loads(out.read_text())
    key = fleet.api("GET", "/api/v1/fleet-key").json()["public_key"]
    signed = signing.verify_document(doc, key, doc_type="journal-heads", now=svc.utcnow()).signed
    assert signed["date"] == "2026-11-20" and signed["heads"] == {
        "kiosk-a": {"seq": 3, "hash": rows_a[2][8], "at": late}}  # kiosk-b's first row is the next day
    # issued once: asked again (HTTP or CLI), the same document
    assert fleet.api("POST", f"/api/v1/statements/{day}").json() == doc
    assert fleet.api("GET", f"/api/v1/statements/{day}").json() == doc
    assert "valid statement of 2026-11-20" in ok(fleet_cli("statement", "verify", str(out), db=fleet.db_url))
    doc["signed"]["heads"]["kiosk-a"]["seq"] = 2
    out.write_text(json.dumps(doc))
    bad = fleet_cli("statement", "verify", str(out), "--key", key, db=fleet.db_url)
    assert bad.returncode == 1 and "NOT a valid statement" in bad.stderr
    # a day not over yet, and a viewer, are refused
    today = dt.datetime.now(tehran).date()
    r = fleet.api("POST", f"/api/v1/statements/{today}")
    assert r.status_code == 409 and r.json()["error"] == "statement.day_open"
    viewer = fleet.manager_token("vera", svc.Role.VIEWER)
    assert fleet.api("POST", f"/api/v1/statements/{day - dt.timedelta(days=1)}", viewer).status_code == 403
    assert fleet.api("GET", f"/api/v1/statements/{day - dt.timedelta(days=1)}", viewer).status_code == 404
    with fleet.session() as s, s.begin():
        later = fleet_journal.statement(s, svc.CLI, day + dt.timedelta(days=1),
                                        now=svc.utcnow() + dt.timedelta(days=30))
    assert set(later["signed"]["heads"]) == {"kiosk-a", "kiosk-b"}
