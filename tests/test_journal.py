"""Tests for the transaction journal, its hash chain, its outbox and `kiosk journal`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.cli import main as kiosk_main
from kiosk.journal import (
    _SECRET_KEY,
    _UNMASKED_IDENTITY,
    ALLOWED,
    GENESIS_HASH,
    OPEN_STATES,
    IllegalTransition,
    InvalidJournalData,
    Journal,
    JournalEntry,
    OutboxItemClosed,
    OutboxStatus,
    SensitiveDataRejected,
    TransactionExists,
    TxState,
    UnknownTransaction,
    _sensitive,
    canonical_json,
    entry_hash,
    find_card_number,
    journal_path,
)

S = TxState
CARD = "6037991234567893"  # 16 digits, passes Luhn (a made-up Keshavarzi-shaped number)
assert sum((d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d
           for i, d in enumerate(int(c) for c in reversed(CARD))) % 10 == 0


def _path_to(target: TxState) -> list[TxState]:
    """Shortest legal path of states after CREATED that ends in `target`."""
    queue: deque[tuple[TxState, list[TxState]]] = deque([(S.CREATED, [])])
    seen = {S.CREATED}
    while queue:
        state, path = queue.popleft()
        if state is target:
            return path
        for nxt in sorted(ALLOWED[state]):
            if nxt not in seen:
                seen.add(nxt)
                queue.append((nxt, [*path, nxt]))
    raise AssertionError(f"{target} is unreachable")


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    j = Journal(tmp_path / "journal.sqlite3", kiosk_id="kiosk-t1")
    yield j
    j.close()


def _raw(journal: Journal) -> sqlite3.Connection:
    """A tamperer's own connection, with the append-only triggers dropped."""
    conn = sqlite3.connect(str(journal.path), isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS journal_no_update")
    conn.execute("DROP TRIGGER IF EXISTS journal_no_delete")
    return conn


def _three_transactions(journal: Journal) -> list[str]:
    """seq 1 A CREATED, 2 A PAYING, 3 B CREATED, 4 A PAID, 5 C CREATED, 6 A FULFILLING."""
    a = journal.begin("topup", 100_000, {"card": "603799******7893"}).tx_id
    journal.append(a, S.PAYING)
    b = journal.begin("fee", 17_000).tx_id
    journal.append(a, S.PAID, {"terminal_ref": "R1"})
    c = journal.begin("buy_card", 500_000).tx_id
    journal.append(a, S.FULFILLING)
    return [a, b, c]


def _kinds(report) -> set[tuple[int | None, str]]:
    return {(p.seq, p.kind) for p in report.problems}


# --- transitions --------------------------------------------------------------------------

ALL_PAIRS = [(a, b) for a in TxState for b in TxState]


@pytest.mark.parametrize(("current", "requested"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_transition_is_accepted_exactly_when_the_table_allows_it(
        journal: Journal, current: TxState, requested: TxState) -> None:
    tx = journal.begin("topup", 10_000).tx_id
    for state in _path_to(current):
        journal.append(tx, state)
    if requested in ALLOWED[current]:
        entry = journal.append(tx, requested)
        assert entry.state is requested
        assert journal.state_of(tx) is requested
    else:
        with pytest.raises(IllegalTransition) as info:
            journal.append(tx, requested)
        assert info.value.key == "journal.illegal_transition"
        assert str(current) in info.value.message("en") and str(requested) in info.value.message("fa")
        assert journal.state_of(tx) is current
    assert journal.verify().ok


def test_terminal_states_have_no_way_out_and_refund_pending_is_not_open() -> None:
    for terminal in (S.COMPLETED, S.DECLINED, S.CANCELLED, S.REVERSED):
        assert ALLOWED[terminal] == frozenset()
        assert terminal not in OPEN_STATES
    assert S.REFUND_PENDING not in OPEN_STATES
    assert OPEN_STATES == {S.CREATED, S.PAYING, S.PAID, S.FULFILLING, S.UNCERTAIN, S.FULFILLED,
                           S.POSTED, S.REVERSING}


def test_append_to_unknown_transaction_is_a_typed_error(journal: Journal) -> None:
    with pytest.raises(UnknownTransaction):
        journal.append("kiosk-t1-20250101-nope", S.PAYING)
    with pytest.raises(UnknownTransaction):
        journal.get("nope")


def test_unknown_state_name_is_refused_as_invalid_data(journal: Journal) -> None:
    tx = journal.begin("fee", 1000).tx_id
    with pytest.raises(InvalidJournalData):
        journal.append(tx, "TELEPORTED")
    assert journal.state_of(tx) is S.CREATED


def test_begin_refuses_an_existing_tx_id_and_bad_amounts(journal: Journal) -> None:
    journal.begin("fee", 1000, tx_id="kiosk-t1-x")
    with pytest.raises(TransactionExists):
        journal.begin("fee", 1000, tx_id="kiosk-t1-x")
    for bad in (-1, 1.5, True, "100"):
        with pytest.raises(InvalidJournalData):
            journal.begin("fee", bad)  # type: ignore[arg-type]
    assert len(journal.entries()) == 1


def test_new_tx_ids_are_unique_and_name_the_kiosk_and_day(journal: Journal) -> None:
    ids = {journal.new_tx_id() for _ in range(5000)}
    assert len(ids) == 5000
    kiosk, _, rest = next(iter(ids)).partition("-t1-")
    assert kiosk == "kiosk"
    day, suffix = rest.split("-")
    assert len(day) == 8 and day.isdigit() and len(suffix) == 14
    int(suffix, 16)
    first, second = journal.new_tx_id(), journal.new_tx_id()
    assert first[:-6] <= second[:-6]  # time-ordered up to the random tail


def test_append_many_is_all_or_nothing(journal: Journal) -> None:
    tx = journal.begin("topup", 5000).tx_id
    with pytest.raises(IllegalTransition):
        journal.append_many(tx, [(S.PAYING, None), (S.PAID, None), (S.COMPLETED, None)])
    assert journal.state_of(tx) is S.CREATED
    assert len(journal.entries()) == 1
    entries = journal.append_many(tx, [(S.PAYING, None), (S.PAID, {"ref": "T9"})])
    assert [e.seq for e in entries] == [2, 3]
    assert journal.state_of(tx) is S.PAID


def test_transaction_merges_data_with_later_keys_winning(journal: Journal) -> None:
    tx = journal.begin("topup", 20_000, {"step": "start", "card": "603799******7893"}).tx_id
    journal.append(tx, S.PAYING, {"step": "paying", "terminal": "T1"})
    got = journal.get(tx)
    assert got.data == {"step": "paying", "card": "603799******7893", "terminal": "T1"}
    assert got.state is S.PAYING and got.amount_rials == 20_000 and got.kind == "topup"
    assert got.created_at <= got.updated_at
    assert [e.state for e in got.entries] == [S.CREATED, S.PAYING]


def test_open_transactions_are_what_recover_must_resolve_oldest_first(journal: Journal) -> None:
    done = journal.begin("fee", 1).tx_id
    journal.append_many(done, [(S.PAYING, None), (S.DECLINED, None)])
    paid = journal.begin("fee", 2).tx_id
    journal.append_many(paid, [(S.PAYING, None), (S.PAID, None)])
    refund = journal.begin("fee", 3).tx_id
    journal.append_many(refund, [(S.PAYING, None), (S.PAID, None), (S.REVERSING, None),
                                 (S.REFUND_PENDING, None)])
    fresh = journal.begin("fee", 4).tx_id
    assert [t.tx_id for t in journal.open_transactions()] == [paid, fresh]
    assert [t.tx_id for t in journal.transactions()] == [fresh, refund, paid, done]
    assert [t.tx_id for t in journal.transactions(limit=2)] == [fresh, refund]


def test_entries_page_through_the_chain_in_order(journal: Journal) -> None:
    _three_transactions(journal)
    page = journal.entries(after_seq=2, limit=3)
    assert [e.seq for e in page] == [3, 4, 5]
    assert page[0].prev_hash == journal.entries(after_seq=1, limit=1)[0].hash
    assert journal.entries()[0].prev_hash == GENESIS_HASH
    assert all(e.compute_hash() == e.hash for e in journal.entries())


# --- durability and concurrency ----------------------------------------------------------


def test_durability_pragmas_are_really_set(journal: Journal) -> None:
    assert journal.durability() == {"journal_mode": "wal", "synchronous": "FULL"}
    other = sqlite3.connect(str(journal.path))
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent in the file
    other.close()


def test_journal_rows_cannot_be_updated_or_deleted_through_sqlite(journal: Journal) -> None:
    _three_transactions(journal)
    conn = sqlite3.connect(str(journal.path), isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE journal SET state = 'COMPLETED' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM journal WHERE seq = 1")
    conn.close()


def test_an_append_survives_the_process_dying_right_after_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    script = textwrap.dedent(f"""
        import os
        from kiosk.journal import Journal, TxState
        j = Journal({str(path)!r})
        tx = j.begin("topup", 9000, tx_id="kiosk-dev-crash")
        j.append(tx.tx_id, TxState.PAYING)
        os._exit(99)  # no close(), no cleanup: as a power cut would leave it
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=60)
    assert proc.returncode == 99
    with Journal(path) as j:
        assert j.state_of("kiosk-dev-crash") is S.PAYING
        assert j.verify().ok


def test_second_process_appending_concurrently_keeps_the_chain_valid(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    script = textwrap.dedent(f"""
        from kiosk.journal import Journal, TxState
        j = Journal({str(path)!r}, kiosk_id="kiosk-other")
        for i in range(80):
            tx = j.begin("fee", i).tx_id
            j.append(tx, TxState.PAYING)
            j.append(tx, TxState.DECLINED)
        j.close()
    """)
    with Journal(path, kiosk_id="kiosk-me") as mine:
        proc = subprocess.Popen([sys.executable, "-c", script])
        for i in range(80):
            tx = mine.begin("topup", i).tx_id
            mine.append_many(tx, [(S.PAYING, None), (S.PAID, None)])
        assert proc.wait(timeout=120) == 0
        report = mine.verify()
        assert report.ok, report.problems
        assert report.checked == 80 * 3 + 80 * 3
        seqs = [e.seq for e in mine.entries()]
        assert seqs == list(range(1, len(seqs) + 1))
        kiosks = {t.tx_id.split("-")[1] for t in mine.transactions()}
        assert kiosks == {"me", "other"}


def test_a_stale_cache_never_lets_an_illegal_transition_through(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with Journal(path) as app, Journal(path) as agent:
        tx = app.begin("topup", 1000).tx_id  # app caches: tx is CREATED
        agent.append(tx, S.PAYING)  # another writer moves it on behind app's back
        agent.append(tx, S.DECLINED)
        with pytest.raises(IllegalTransition):
            app.append(tx, S.PAYING)  # legal by app's stale view, not by the file
        assert app.state_of(tx) is S.DECLINED
        other = app.begin("fee", 5).tx_id  # app's tail is stale too; the chain stays whole
        agent.append(other, S.CANCELLED)
        app.begin("fee", 6)
        report = app.verify()
        assert report.ok and report.checked == 6


def test_threads_sharing_one_journal_keep_the_chain_valid(journal: Journal) -> None:
    def one(i: int) -> str:
        tx = journal.begin("fee", i).tx_id
        journal.append(tx, S.PAYING)
        journal.append(tx, S.PAID)
        return tx

    with ThreadPoolExecutor(max_workers=6) as pool:
        txs = list(pool.map(one, range(60)))
    assert all(journal.state_of(t) is S.PAID for t in txs)
    report = journal.verify()
    assert report.ok and report.checked == 180


# --- tamper detection --------------------------------------------------------------------


def test_verify_names_the_edited_row(journal: Journal) -> None:
    _three_transactions(journal)
    assert journal.verify().ok
    conn = _raw(journal)
    conn.execute("UPDATE journal SET amount_rials = 1 WHERE seq = 3")
    conn.close()
    report = journal.verify()
    assert not report.ok and report.checked == 6
    assert _kinds(report) == {(3, "edited")}


def test_verify_names_edited_data_even_when_the_json_still_parses(journal: Journal) -> None:
    _three_transactions(journal)
    conn = _raw(journal)
    conn.execute("""UPDATE journal SET data = '{"terminal_ref":"R2"}' WHERE seq = 4""")
    conn.close()
    assert _kinds(journal.verify()) == {(4, "edited")}


def test_verify_names_an_inserted_row(journal: Journal) -> None:
    _three_transactions(journal)
    conn = _raw(journal)
    # Make room after seq 2, then forge a self-consistent row that links to seq 2.
    conn.execute("UPDATE journal SET seq = -seq WHERE seq > 2")
    conn.execute("UPDATE journal SET seq = -seq + 1 WHERE seq < 0")
    prev = conn.execute("SELECT hash FROM journal WHERE seq = 2").fetchone()[0]
    forged = ("kiosk-t1-forged", "CREATED", 1_700_000_000.0, "fee", 1, "{}")
    conn.execute("INSERT INTO journal VALUES (3,?,?,?,?,?,?,?,?)",
                 (*forged, prev, entry_hash(prev, *forged)))
    conn.close()
    report = journal.verify()
    assert report.checked == 7
    assert _kinds(report) == {(3, "inserted")}


def test_verify_names_the_gap_left_by_a_deleted_row(journal: Journal) -> None:
    _three_transactions(journal)
    conn = _raw(journal)
    conn.execute("DELETE FROM journal WHERE seq = 3")  # B's only row
    conn.close()
    report = journal.verify()
    assert _kinds(report) == {(4, "deleted")}
    assert "row 3 missing" in report.problems[0].detail


def test_verify_names_the_broken_link_when_a_deleted_row_is_renumbered_away(
        journal: Journal) -> None:
    _three_transactions(journal)
    conn = _raw(journal)
    conn.execute("DELETE FROM journal WHERE seq = 3")
    conn.execute("UPDATE journal SET seq = seq - 1 WHERE seq > 3")
    conn.close()
    assert _kinds(journal.verify()) == {(3, "broken_link")}


def test_verify_names_an_illegal_transition_written_around_the_api(journal: Journal) -> None:
    a, _, _ = _three_transactions(journal)
    conn = _raw(journal)
    prev = conn.execute("SELECT hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()[0]
    row = (a, "COMPLETED", 1_700_000_000.0, "topup", 100_000, "{}")
    conn.execute("INSERT INTO journal VALUES (7,?,?,?,?,?,?,?,?)",
                 (*row, prev, entry_hash(prev, *row)))
    conn.close()
    report = journal.verify()
    assert _kinds(report) == {(7, "illegal_transition")}
    assert "FULFILLING → COMPLETED" in report.problems[0].detail


# --- sensitive data ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    CARD,
    f"card {CARD} approved",
    "6037 9912 3456 7893",
    "6037-9912-3456-7893",
    CARD.translate(str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")),  # Persian digits
])
def test_append_refuses_a_full_card_number_anywhere_in_data(journal: Journal, value: str) -> None:
    tx = journal.begin("topup", 1000).tx_id
    with pytest.raises(ValueError) as info:
        journal.append(tx, S.PAYING, {"nested": {"list": ["ok", value]}})
    assert isinstance(info.value, SensitiveDataRejected)
    assert journal.state_of(tx) is S.CREATED
    with pytest.raises(SensitiveDataRejected):
        journal.begin("topup", 1000, {"pan": value})
    journal.close()
    stored = b"".join(f.read_bytes() for f in journal.path.parent.glob("journal.sqlite3*"))
    assert len(stored) > 0 and CARD.encode() not in stored


@pytest.mark.parametrize("value", [
    "603799******7893",
    "6037991234567898",  # fails Luhn: not a card number
    "00000077483178000000001770160",  # a bill barcode-ish long run, not a PAN length
    "77483178001420000001770160",  # 26-digit bill barcode
])
def test_masked_or_non_card_digit_runs_are_accepted(journal: Journal, value: str) -> None:
    tx = journal.begin("fee", 17_000, {"ref": value}).tx_id
    assert journal.get(tx).data == {"ref": value}


def test_pin_and_full_national_code_are_refused_but_masked_code_is_kept(journal: Journal) -> None:
    with pytest.raises(SensitiveDataRejected):
        journal.begin("fee", 1, {"PIN": "1234"})
    with pytest.raises(SensitiveDataRejected):
        journal.begin("fee", 1, {"citizen": {"national_code": "0012345679"}})
    tx = journal.begin("fee", 1, {"national_code": "001***5679"}).tx_id
    assert journal.get(tx).data["national_code"] == "001***5679"


def test_data_that_is_not_plain_json_is_refused(journal: Journal) -> None:
    with pytest.raises(InvalidJournalData):
        journal.begin("fee", 1, {"when": object()})
    with pytest.raises(InvalidJournalData):
        journal.begin("fee", 1, {"x": float("nan")})
    assert journal.entries() == []


# --- outbox ------------------------------------------------------------------------------


def _paid(journal: Journal) -> str:
    tx = journal.begin("fee", 17_000).tx_id
    journal.append_many(tx, [(S.PAYING, None), (S.PAID, None), (S.FULFILLING, None)])
    return tx


def test_enqueue_with_state_commits_both_together(journal: Journal) -> None:
    tx = _paid(journal)
    item_id = journal.outbox_enqueue(tx, "settle", {"amount": 17_000}, f"{tx}:settle",
                                     with_state=(S.FULFILLED, {"outbox": "settle"}))
    item = journal.outbox_item(item_id)
    assert item.status is OutboxStatus.PENDING and item.attempts == 0
    assert item.payload == {"amount": 17_000} and item.tx_id == tx
    assert journal.state_of(tx) is S.FULFILLED
    assert [i.id for i in journal.outbox_pending()] == [item_id]


def test_a_failure_inside_enqueue_leaves_neither_row_nor_state(journal: Journal) -> None:
    tx = _paid(journal)
    before = len(journal.entries())
    with pytest.raises(IllegalTransition):  # the outbox INSERT ran first, then this failed
        journal.outbox_enqueue(tx, "settle", {"a": 1}, "k-1", with_state=(S.COMPLETED, None))
    with pytest.raises(SensitiveDataRejected):
        journal.outbox_enqueue(tx, "settle", {"a": 1}, "k-1",
                               with_state=(S.FULFILLED, {"card": CARD}))
    with pytest.raises(UnknownTransaction):
        journal.outbox_enqueue("no-such-tx", "settle", {"a": 1}, "k-2")
    assert journal.outbox_for(tx) == [] and journal.outbox_pending() == []
    assert journal.state_of(tx) is S.FULFILLING and len(journal.entries()) == before
    assert journal.outbox_enqueue(tx, "settle", {"a": 1}, "k-1") == 1  # the key is still free


def test_enqueueing_the_same_idempotency_key_twice_returns_the_first_row(journal: Journal) -> None:
    tx = _paid(journal)
    first = journal.outbox_enqueue(tx, "settle", {"a": 1}, "same-key",
                                   with_state=(S.FULFILLED, None))
    again = journal.outbox_enqueue(tx, "settle", {"a": 1}, "same-key",
                                   with_state=(S.FULFILLED, None))
    assert again == first
    assert len(journal.outbox_for(tx)) == 1
    assert [e.state for e in journal.get(tx).entries].count(S.FULFILLED) == 1


def test_retry_schedule_hides_an_item_until_it_is_due(journal: Journal) -> None:
    tx = _paid(journal)
    item_id = journal.outbox_enqueue(tx, "settle", {"a": 1}, "k")
    journal.outbox_record_attempt(item_id, f"connection refused for {CARD}", 5_000_000_000.0)
    item = journal.outbox_item(item_id)
    assert item.attempts == 1 and item.next_attempt_at == 5_000_000_000.0
    assert CARD not in (item.last_error or "") and "connection refused" in (item.last_error or "")
    assert journal.outbox_pending() == []
    assert [i.id for i in journal.outbox_pending(now=5_000_000_000.0)] == [item_id]


def test_ack_marks_acked_and_journals_states_in_one_commit(journal: Journal) -> None:
    tx = _paid(journal)
    item_id = journal.outbox_enqueue(tx, "settle", {"a": 1}, "k", with_state=(S.FULFILLED, None))
    with pytest.raises(IllegalTransition):
        journal.outbox_ack(item_id, {"ok": True}, with_state=[(S.POSTED, None), (S.PAID, None)])
    assert journal.outbox_item(item_id).status is OutboxStatus.PENDING
    assert journal.state_of(tx) is S.FULFILLED
    journal.outbox_ack(item_id, {"ok": True, "receipt": "B-1"},
                       with_state=[(S.POSTED, {"backoffice_ref": "B-1"}), (S.COMPLETED, None)])
    item = journal.outbox_item(item_id)
    assert item.status is OutboxStatus.ACKED and item.response == {"ok": True, "receipt": "B-1"}
    assert journal.state_of(tx) is S.COMPLETED and journal.outbox_pending() == []
    with pytest.raises(OutboxItemClosed):
        journal.outbox_ack(item_id, {"ok": True})
    assert journal.verify().ok


def test_fail_marks_failed_and_journals_the_reversal(journal: Journal) -> None:
    tx = _paid(journal)
    item_id = journal.outbox_enqueue(tx, "settle", {"a": 1}, "k")
    journal.outbox_fail(item_id, {"error": "bill already paid"},
                        with_state=[(S.REVERSING, {"why": "rejected"})])
    assert journal.outbox_item(item_id).status is OutboxStatus.FAILED
    assert journal.state_of(tx) is S.REVERSING
    with pytest.raises(OutboxItemClosed):
        journal.outbox_record_attempt(item_id, "late", 0.0)


# --- the fast append path stores, hashes and refuses exactly what the slow one did ---------


def _documented_hash(prev: str, tx_id: str, state: str, at: float, kind: str, amount: int,
                     data_json: str) -> str:
    """docs/journal.md's formula written out again, not via entry_hash: the fleet's view."""
    content = "\x1f".join([prev, tx_id, state, repr(at), kind, str(amount), data_json])
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def test_rows_from_both_write_paths_hash_as_the_documented_formula(journal: Journal) -> None:
    # first write: tail unknown, BEGIN IMMEDIATE path; then the cached-tail fast path
    a = journal.begin("topup", 50_000, {"card": "603799******7893", "terminal": "T1"}).tx_id
    returned = [journal.get(a).entries[0], journal.append(a, S.PAYING, {"ref": "R1"})]
    returned += journal.append_many(a, [(S.PAID, {"n": 1.5}),
                                        (S.FULFILLING, {"nested": {"k": [1, "دو"]}})])
    other = Journal(journal.path)  # another writer moves the tail under our cache
    other.begin("fee", 17_000)
    other.close()
    returned.append(journal.append(a, S.FULFILLED, {"واحد": "ریال", "at": None}))
    conn = sqlite3.connect(str(journal.path))
    rows = conn.execute("SELECT seq, tx_id, state, at, kind, amount_rials, data, prev_hash, hash "
                        "FROM journal ORDER BY seq").fetchall()
    conn.close()
    prev = GENESIS_HASH
    for seq, tx_id, state, at, kind, amount, data, stored_prev, digest in rows:
        assert stored_prev == prev
        assert data == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False)
        assert digest == _documented_hash(prev, tx_id, state, at, kind, amount, data)
        assert len(repr(at).partition(".")[2]) <= 6  # `at` keeps 6 decimals at most
        prev = digest
    by_seq = {r[0]: r for r in rows}
    for entry in returned:  # what the API handed back is what the file holds
        _, tx_id, state, at, kind, amount, data, stored_prev, digest = by_seq[entry.seq]
        assert (entry.tx_id, entry.state, entry.at, entry.kind, entry.amount_rials,
                entry.prev_hash, entry.hash) == (tx_id, state, at, kind, amount, stored_prev, digest)
        assert entry.data == json.loads(data) and entry.compute_hash() == digest
    assert [e.seq for e in returned] == [1, 2, 3, 4, 6] and journal.verify().ok


def test_an_entry_keeps_its_own_copy_of_data_equal_to_what_was_stored(journal: Journal) -> None:
    data = {"ref": "R1", "n": 3, "ok": True, "none": None, "x": 0.1}
    tx = journal.begin("fee", 1, data)
    data["ref"] = "changed"
    flat = {"a": "b", "from": S.PAID}  # a StrEnum value is stored, and handed back, as text
    paying = journal.append(tx.tx_id, S.PAYING, flat)
    flat["a"] = "z"
    nested = {"items": ("a", "b"), "inner": {"k": 1}}
    paid = journal.append(tx.tx_id, S.PAID, nested)
    nested["inner"]["k"] = 2  # type: ignore[index]
    numbered = journal.append(tx.tx_id, S.FULFILLING, {7: "seven", 8: 8})
    stored = {e.seq: e for e in journal.entries()}
    for got in (tx.entries[0], paying, paid, numbered):
        assert got == stored[got.seq]
    assert tx.data["ref"] == "R1" and tx.entries[0].data["ref"] == "R1"
    assert paying.data == {"a": "b", "from": "PAID"} and type(paying.data["from"]) is str
    assert paid.data == {"items": ["a", "b"], "inner": {"k": 1}}
    assert numbered.data == {"7": "seven", "8": 8}  # JSON object keys are text


def test_entries_and_transactions_from_the_write_path_are_frozen_values(journal: Journal) -> None:
    tx = journal.begin("fee", 1, {"ref": "R1"})
    assert tx == journal.get(tx.tx_id) and tx.is_open
    entry = journal.append(tx.tx_id, S.PAYING)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.state = S.PAID  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        tx.state = S.PAID  # type: ignore[misc]
    assert entry == JournalEntry(**{f.name: getattr(entry, f.name)
                                    for f in dataclasses.fields(entry)})
    assert repr(entry).startswith("JournalEntry(seq=2, tx_id=")
    assert entry.state is S.PAYING and entry.compute_hash() == entry.hash


def test_circular_or_unencodable_text_data_is_refused_and_nothing_is_written(
        journal: Journal) -> None:
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(InvalidJournalData):
        journal.begin("fee", 1, loop)
    with pytest.raises(InvalidJournalData):
        journal.begin("fee", 1, {"x": "\ud800"})  # a lone surrogate is not UTF-8 text
    tx = journal.begin("fee", 1).tx_id
    with pytest.raises(InvalidJournalData):
        journal.append(tx, ["PAYING"])  # type: ignore[arg-type]
    with pytest.raises(InvalidJournalData):
        journal.append(tx, "paying")
    assert [e.state for e in journal.entries()] == [S.CREATED]


def test_tx_id_time_part_is_the_local_day_and_millisecond(journal: Journal) -> None:
    def ms_of_day(t: float) -> int:
        lt = time.localtime(t)
        return ((lt.tm_hour * 60 + lt.tm_min) * 60 + lt.tm_sec) * 1000 + int((t % 1) * 1000)

    checked = 0
    for _ in range(5):  # across at least one second boundary: the cached part is redone
        before = time.time()
        tx_id = journal.new_tx_id()
        after = time.time()
        day, stamp = tx_id.split("-")[-2:]
        if time.strftime("%Y%m%d", time.localtime(before)) != \
                time.strftime("%Y%m%d", time.localtime(after)):
            continue  # midnight between the two readings
        assert day == time.strftime("%Y%m%d", time.localtime(before))
        assert ms_of_day(before) <= int(stamp[:8], 16) <= ms_of_day(after)
        checked += 1
        time.sleep(0.3)
    assert checked >= 4


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)


@settings(max_examples=2000, deadline=None)
@given(_JSON)
def test_canonical_json_is_exactly_the_documented_json_dumps(value: object) -> None:
    assert canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"),
                                               ensure_ascii=False, allow_nan=False)


# Text shaped like canonical JSON with the pieces the net looks for: digits (ASCII and
# Persian), card separators, quotes, colons, key letters in both cases, Unicode case folds.
_NET_ALPHABET = "0123456789۰۱۲۳۴۵۶۷۸۹ -\":,{}pinPIN_blockasswordPASSWORDcvCV2nationalcoderdmſKİı"
_NET_KEYS = ["pin", "PIN", "Pin_Block", "password", "cvv", "CVV2", "national_code",
             "National_ID", "card_number", "pan", "ref", "card"]


@st.composite
def _net_texts(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.text(alphabet=_NET_ALPHABET, max_size=40))
    pieces = draw(st.lists(st.one_of(
        st.sampled_from(_NET_KEYS).map(lambda k: f'"{k}":'),
        st.sampled_from(_NET_KEYS).map(lambda k: f'"{k}":"'),
        st.sampled_from([CARD, "6037 9912 3456 7893", "6037-9912-3456-7893", "0012345679",
                         "603799******7893", "001***5679", "6037991234567898"]),
        st.text(alphabet="0123456789 -\"", min_size=1, max_size=24),
        st.text(alphabet=_NET_ALPHABET, max_size=6)), max_size=6))
    return "".join(pieces)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_net_texts())
def test_sensitive_precheck_never_lets_through_what_the_full_scan_refuses(text: str) -> None:
    full_scan = bool(_SECRET_KEY.search(text) or _UNMASKED_IDENTITY.search(text)
                     or find_card_number(text))
    assert (_sensitive(text) is not None) == full_scan


# --- property: random transitions --------------------------------------------------------


@pytest.fixture(scope="module")
def shared_journal(tmp_path_factory: pytest.TempPathFactory) -> Journal:
    j = Journal(tmp_path_factory.mktemp("prop") / "journal.sqlite3")
    yield j
    j.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(list(TxState)), max_size=12))
def test_random_transition_sequences_keep_the_chain_valid_and_the_last_legal_state(
        shared_journal: Journal, attempts: list[TxState]) -> None:
    tx = shared_journal.begin("topup", 1000).tx_id
    model = S.CREATED
    for requested in attempts:
        if requested in ALLOWED[model]:
            shared_journal.append(tx, requested)
            model = requested
        else:
            with pytest.raises(IllegalTransition):
                shared_journal.append(tx, requested)
    assert shared_journal.state_of(tx) is model
    assert shared_journal.verify().ok


# --- CLI ---------------------------------------------------------------------------------


def test_cli_verify_exits_0_on_a_clean_journal_and_1_naming_the_bad_seq(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Journal(journal_path(tmp_path)) as j:
        _three_transactions(j)
    assert kiosk_main(["journal", "verify", "--data-dir", str(tmp_path)]) == 0
    assert "6 entries" in capsys.readouterr().out
    conn = sqlite3.connect(str(journal_path(tmp_path)), isolation_level=None)
    conn.execute("DROP TRIGGER journal_no_update")
    conn.execute("UPDATE journal SET state = 'PAID' WHERE seq = 2")
    conn.close()
    assert kiosk_main(["journal", "verify", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "seq 2: edited" in out and "seq 2: illegal_transition" in out
    assert kiosk_main(["journal", "verify", "--json", "--data-dir", str(tmp_path)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and {"seq": 2, "kind": "edited"}.items() <= report["problems"][0].items()


def test_cli_verify_without_a_journal_exits_1(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert kiosk_main(["journal", "verify", "--data-dir", str(tmp_path)]) == 1
    assert "no journal" in capsys.readouterr().err
    assert not journal_path(tmp_path).exists()


def test_cli_show_lists_transactions_and_open_ones(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with Journal(journal_path(tmp_path)) as j:
        a, b, c = _three_transactions(j)
        j.append(b, S.CANCELLED)
    assert kiosk_main(["journal", "show", "--json", "--data-dir", str(tmp_path)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["tx_id"] for t in listed] == [b, a, c]
    assert listed[0]["state"] == "CANCELLED" and listed[1]["amount_rials"] == 100_000
    assert kiosk_main(["journal", "show", "--open", "--json", "--data-dir", str(tmp_path)]) == 0
    assert [t["tx_id"] for t in json.loads(capsys.readouterr().out)] == [a, c]
    assert kiosk_main(["journal", "show", "--limit", "1", "--data-dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["id", "kind"] and len(table) == 2
    assert b in table[1] and "CANCELLED" in table[1]


def test_cli_journal_runs_as_a_real_process(tmp_path: Path) -> None:
    with Journal(journal_path(tmp_path)) as j:
        j.begin("fee", 17_000)
    env = {**os.environ, "KIOSK_DATA_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "kiosk.cli", "journal", "show", "--json"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["amount_rials"] == 17_000
    bare = subprocess.run([sys.executable, "-m", "kiosk.cli", "journal"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert bare.returncode == 2


def test_transaction_ids_and_dates_with_dashes_are_never_taken_for_card_numbers(tmp_path: Path) -> None:
    # A settlement payload once tripped the net one time in ten: the digits of
    # "…-01-20261128-0349794…" joined across dashes pass Luhn. Every such id must be stored.
    journal = Journal(tmp_path / "j.sqlite3", kiosk_id="kiosk-demo-01")
    for n in range(300):
        tx_id = f"kiosk-demo-01-20261128-{n:07d}{n % 10}b1daf46"
        journal.begin("fee_payment", 1000, {"ref": tx_id, "paid_at": "2026-11-28T15:17:11Z"}, tx_id=tx_id)
    assert len(journal.transactions()) == 300
    with pytest.raises(SensitiveDataRejected):
        journal.begin("fee_payment", 1000, {"note": "card 4111-1111-1111-1111"})
