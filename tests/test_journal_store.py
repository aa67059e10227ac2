"""The journal's store under storage faults, read-only opens, file modes, damaged rows, the
new head/entry_at/anchor API, AsyncJournal, and the anchors comparison."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kiosk.journal import (
    GENESIS_HASH,
    AnchorVerdict,
    AsyncJournal,
    Journal,
    JournalError,
    JournalStorageError,
    JournalUnreadable,
    TxState,
    canonical_json,
    compare_anchors,
    entry_hash,
    journal_path,
)
from kiosk.journal import chain as chain_module

S = TxState
NOBODY = 65534


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    j = Journal(journal_path(tmp_path), kiosk_id="kiosk-t1")
    yield j
    j.close()


def _raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS journal_no_update")
    conn.execute("DROP TRIGGER IF EXISTS journal_no_delete")
    return conn


def as_other_user(fn: Callable[[], Any]) -> Any:
    """fn() run by a user who cannot write our files. We run tests as root, for whom chmod
    stops nothing, so fn runs in a forked child that has become `nobody`; as any other user
    chmod works and fn runs here. Modules fn needs must already be imported (the child
    cannot read root's Python install)."""
    if os.geteuid() != 0:
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result: Any = ("ok", fn())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            result = ("raised", f"{type(exc).__name__}: {exc}")
        data = pickle.dumps(result)
        with os.fdopen(w, "wb") as out:
            out.write(data)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "raised":
        raise AssertionError(f"in the other user's process: {value}")
    return value


def _world_dir() -> Path:
    """A fresh directory another user can reach (pytest's tmp_path is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="kiosk-journal-test-"))
    d.chmod(0o755)
    return d


def _snapshot_files(d: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(d.iterdir())}


# --- storage faults ----------------------------------------------------------------------


def test_a_full_disk_is_a_typed_error_reads_keep_working_and_writes_resume(journal: Journal) -> None:
    tx = journal.begin("fee", 17_000).tx_id
    before = journal.head()
    pages = journal._conn.execute("PRAGMA page_count").fetchone()[0]
    journal._conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite now reports SQLITE_FULL
    with pytest.raises(JournalStorageError) as info:
        for _ in range(50):  # each row is larger than the free space left in the pages
            journal.begin("fee", 1, {"pad": "x" * 3000})
    assert isinstance(info.value, JournalError)
    assert "SQLITE_FULL" in str(info.value)
    assert "out of service" in info.value.message("en") and "کسر" in info.value.message("fa")
    with pytest.raises(JournalStorageError):  # the slow path (BEGIN IMMEDIATE) too
        journal.append_many(tx, [(S.PAYING, {"pad": "y" * 5000}), (S.PAID, None)])
    assert journal.state_of(tx) is S.CREATED and journal.verify().ok
    assert journal.get(tx).amount_rials == 17_000
    journal._conn.execute("PRAGMA max_page_count = 1073741823")  # space is back
    journal.append(tx, S.PAYING, {"pad": "z" * 5000})
    assert journal.state_of(tx) is S.PAYING and journal.verify().ok
    assert journal.head()[0] > before[0]


def test_a_write_sqlite_refuses_as_read_only_is_a_typed_error(journal: Journal) -> None:
    tx = journal.begin("fee", 1).tx_id
    journal._conn.execute("PRAGMA query_only = 1")  # SQLite answers SQLITE_READONLY
    with pytest.raises(JournalStorageError, match="SQLITE_READONLY"):
        journal.append(tx, S.PAYING)
    with pytest.raises(JournalStorageError):
        journal.outbox_enqueue(tx, "x", {}, "k1")
    assert journal.state_of(tx) is S.CREATED
    journal._conn.execute("PRAGMA query_only = 0")
    journal.append(tx, S.PAYING)
    assert journal.verify().ok


def test_a_journal_file_another_user_owns_reads_and_refuses_writes_typed() -> None:
    d = _world_dir()
    try:
        path = d / "journal.sqlite3"
        with Journal(path) as j:
            tx = j.begin("fee", 1).tx_id
        d.chmod(0o777)  # the WAL's -shm may be made, the journal itself is not theirs
        path.chmod(0o644)

        def other() -> tuple[str, str]:
            with Journal(path) as j:
                state = str(j.state_of(tx))
                try:
                    j.append(tx, S.PAYING)
                except JournalStorageError as exc:
                    return state, type(exc).__name__
                return state, "written"

        assert as_other_user(other) == ("CREATED", "JournalStorageError")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --- read-only opens ---------------------------------------------------------------------


def test_readonly_open_of_a_closed_journal_is_immutable_and_touches_nothing(tmp_path: Path) -> None:
    path = journal_path(tmp_path)
    with Journal(path) as j:
        tx = j.begin("fee", 1).tx_id
    before = _snapshot_files(tmp_path)
    assert list(before) == ["journal.sqlite3"]
    with Journal.open_readonly(path) as ro:
        assert ro.open_mode == "immutable"
        assert ro.state_of(tx) is S.CREATED and ro.verify().ok
        with pytest.raises(JournalStorageError):
            ro.append(tx, S.PAYING)
        with pytest.raises(JournalStorageError):
            ro.begin("fee", 1)
    assert _snapshot_files(tmp_path) == before  # no -wal, no -shm, not a byte changed


def test_readonly_open_of_a_copy_with_its_wal_reads_every_row_without_writing(tmp_path: Path) -> None:
    live = tmp_path / "live"
    copy = tmp_path / "copy"
    copy.mkdir()
    j = Journal(journal_path(live))
    j._conn.execute("PRAGMA wal_autocheckpoint = 0")  # keep the rows in the WAL
    txs = [j.begin("fee", n).tx_id for n in range(5)]
    shutil.copyfile(journal_path(live), journal_path(copy))
    shutil.copyfile(f"{journal_path(live)}-wal", f"{journal_path(copy)}-wal")
    before = _snapshot_files(copy)
    # the live kiosk: -wal and -shm present, read in place
    with Journal.open_readonly(journal_path(live)) as ro:
        assert ro.open_mode == "ro" and len(ro.transactions()) == 5
    j.close()
    # the auditor's copy: a WAL without its -shm; immutable=1 alone would see no rows
    with Journal.open_readonly(journal_path(copy)) as ro:
        assert ro.open_mode == "snapshot"
        assert sorted(t.tx_id for t in ro.transactions()) == sorted(txs)
        assert ro.verify().ok and ro.verify().checked == 5
    assert _snapshot_files(copy) == before


def test_verify_and_show_read_a_copy_on_read_only_media(tmp_path: Path) -> None:
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    from kiosk.cli import main as kiosk_main

    src = tmp_path / "src"
    j = Journal(journal_path(src))
    j._conn.execute("PRAGMA wal_autocheckpoint = 0")
    tx = j.begin("fee", 17_000).tx_id
    j.append(tx, S.PAYING)
    media = {"with_wal": _world_dir(), "checkpointed": _world_dir()}
    shutil.copyfile(journal_path(src), journal_path(media["with_wal"]))
    shutil.copyfile(f"{journal_path(src)}-wal", f"{journal_path(media['with_wal'])}-wal")
    j.close()  # checkpoints: the file alone now holds every row
    shutil.copyfile(journal_path(src), journal_path(media["checkpointed"]))
    assert kiosk_main(["journal", "verify", "--data-dir", str(src)]) == 0  # import all first
    try:
        for d in media.values():
            for f in d.iterdir():
                f.chmod(0o444)
            d.chmod(0o555)
            before = _snapshot_files(d)

            def audit(d: Path = d) -> list[tuple[int, str]]:
                runs = []
                for argv in (["journal", "verify"], ["journal", "show", "--json"]):
                    out, err = StringIO(), StringIO()
                    with redirect_stdout(out), redirect_stderr(err):
                        rc = kiosk_main([*argv, "--data-dir", str(d)])
                    runs.append((rc, out.getvalue() + err.getvalue()))
                return runs

            (v_rc, v_out), (s_rc, s_out) = as_other_user(audit)
            assert v_rc == 0 and "2 entries" in v_out, v_out
            assert s_rc == 0 and tx in s_out and "PAYING" in s_out, s_out
            assert _snapshot_files(d) == before
    finally:
        for d in media.values():
            d.chmod(0o755)
            shutil.rmtree(d, ignore_errors=True)


def test_mode_ro_alone_cannot_read_a_wal_copy_on_read_only_media(tmp_path: Path) -> None:
    """Why the read-only open does not simply use ?mode=ro: on read-only media without the
    -shm, SQLite cannot open it at all."""
    src = tmp_path / "src"
    j = Journal(journal_path(src))
    j._conn.execute("PRAGMA wal_autocheckpoint = 0")
    j.begin("fee", 1)
    d = _world_dir()
    try:
        shutil.copyfile(journal_path(src), journal_path(d))
        shutil.copyfile(f"{journal_path(src)}-wal", f"{journal_path(d)}-wal")
        j.close()
        for f in d.iterdir():
            f.chmod(0o444)
        d.chmod(0o555)

        def plain_ro() -> str:
            try:
                conn = sqlite3.connect(f"file:{journal_path(d)}?mode=ro", uri=True)
                conn.execute("SELECT count(*) FROM journal").fetchone()
            except sqlite3.OperationalError as exc:
                return str(exc)
            return "read"

        def ours() -> tuple[str, int]:
            with Journal.open_readonly(journal_path(d)) as ro:
                return ro.open_mode, len(ro.entries())

        assert "unable to open" in as_other_user(plain_ro)
        assert as_other_user(ours) == ("snapshot", 1)
    finally:
        d.chmod(0o755)
        shutil.rmtree(d, ignore_errors=True)


def test_missing_or_foreign_files_are_typed_unreadable(tmp_path: Path) -> None:
    with pytest.raises(JournalUnreadable):
        Journal.open_readonly(tmp_path / "nothing.sqlite3")
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database at all, just text " * 200)
    with pytest.raises(JournalUnreadable):
        Journal.open_readonly(junk)
    with pytest.raises(JournalUnreadable):
        Journal(junk)
    other = tmp_path / "other.sqlite3"
    sqlite3.connect(str(other)).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(JournalUnreadable, match="not a kiosk journal"):
        Journal.open_readonly(other)


# --- damaged rows ------------------------------------------------------------------------


def test_rows_with_an_unknown_state_or_bad_json_are_problems_not_tracebacks(journal: Journal) -> None:
    a = journal.begin("fee", 1).tx_id
    b = journal.begin("fee", 2).tx_id
    conn = _raw(journal.path)
    conn.execute("UPDATE journal SET state = 'BOGUS' WHERE seq = 1")
    conn.execute("UPDATE journal SET data = '{not json' WHERE seq = 2")
    conn.close()
    report = journal.verify()
    kinds = {(p.seq, p.kind) for p in report.problems}
    assert (1, "illegal_transition") in kinds and (2, "bad_row") in kinds
    with pytest.raises(JournalUnreadable, match="row 1"):
        journal.get(a)
    with pytest.raises(JournalUnreadable, match="row 2"):
        journal.get(b)
    with pytest.raises(JournalUnreadable):
        journal.state_of(a)
    with pytest.raises(JournalUnreadable):
        journal.transactions()


def test_verify_rows_is_pure_and_reports_wrong_column_types() -> None:
    data = canonical_json({})
    digest = entry_hash(GENESIS_HASH, "t1", "CREATED", 1.5, "fee", 1, data)
    good = (1, "t1", "CREATED", 1.5, "fee", 1, data, GENESIS_HASH, digest)
    assert chain_module.verify_rows([good]).ok
    bad = (1, "t1", None, 1.5, "fee", 1, data, GENESIS_HASH, digest)
    report = chain_module.verify_rows([bad])
    assert {p.kind for p in report.problems} == {"bad_row", "illegal_transition"}
    source = Path(chain_module.__file__).read_text()
    assert "sqlite3" not in source and "kiosk.journal.store" not in source


# --- file modes --------------------------------------------------------------------------


def test_journal_wal_and_shm_are_created_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with Journal(journal_path(tmp_path)) as j:
            j.begin("fee", 1)
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    finally:
        os.umask(old)
    assert set(modes) == {"journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm"}
    assert set(modes.values()) == {0o600}, {k: oct(v) for k, v in modes.items()}


def test_an_older_world_readable_journal_is_tightened_on_open(tmp_path: Path) -> None:
    path = journal_path(tmp_path)
    Journal(path).close()
    path.chmod(0o644)
    Journal(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- head, entry_at, anchors -------------------------------------------------------------


def test_head_and_entry_at(journal: Journal) -> None:
    assert journal.head() == (0, GENESIS_HASH) and journal.entry_at(1) is None
    tx = journal.begin("fee", 1).tx_id
    e = journal.append(tx, S.PAYING)
    assert journal.head() == (2, e.hash)
    assert journal.entry_at(2) == e and journal.entry_at(3) is None
    assert journal.entry_at(1).state is S.CREATED


def test_enqueue_with_anchor_stamps_the_tail_read_inside_the_same_commit(tmp_path: Path) -> None:
    path = journal_path(tmp_path)
    mine, other = Journal(path), Journal(path)
    try:
        tx = mine.begin("fee", 17_000).tx_id
        mine.append_many(tx, [(S.PAYING, None), (S.PAID, None), (S.FULFILLING, None),
                              (S.FULFILLED, None)])
        other.begin("fee", 5)  # another process appended: mine's cached tail is stale
        seq, head = mine.head()
        item = mine.outbox_enqueue(tx, "settle", {"amount_rials": 17_000}, "key-1",
                                   with_state=(S.POSTED, None), anchor=True)
        payload = mine.outbox_item(item).payload
        assert payload == {"amount_rials": 17_000, "journal_seq": seq, "journal_head": head}
        posted = mine.entry_at(seq + 1)
        assert posted.state is S.POSTED and posted.prev_hash == head
        # the same key again: the first item, nothing re-stamped or journaled
        assert mine.outbox_enqueue(tx, "settle", {}, "key-1", anchor=True) == item
        assert mine.head()[0] == seq + 1
    finally:
        mine.close()
        other.close()


def test_async_journal_writes_in_one_worker_thread_and_keeps_the_loop_free(
        journal: Journal, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[list[str], int]:
        aj = AsyncJournal(journal)
        ticks = 0
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0)

        tick_task = asyncio.create_task(ticker())
        txs = [(await aj.begin("fee", n)).tx_id for n in range(20)]
        for tx in txs:
            await aj.append(tx, S.PAYING)
        item = await aj.outbox_enqueue(txs[0], "settle", {}, "k", anchor=True)
        await aj.outbox_record_attempt(item, "timeout", 0.0)
        await aj.outbox_ack(item, {"ok": True})
        assert aj.state_of(txs[0]) is S.PAYING  # reads pass through
        assert aj.head()[0] == 40
        stop = True
        await tick_task
        await aj.aclose()
        return txs, ticks

    with caplog.at_level(logging.INFO, logger="kiosk.journal"):
        txs, ticks = asyncio.run(scenario())
    writers = {r.threadName for r in caplog.records if r.name == "kiosk.journal"}
    assert len(writers) == 1 and next(iter(writers)).startswith("journal-writer")
    assert ticks >= 40  # the loop ran while each fsync happened elsewhere
    assert len(txs) == 20


# --- anchors -----------------------------------------------------------------------------


class _A:
    def __init__(self, tx: str, seq: int, head: str) -> None:
        self.transaction_id, self.journal_seq, self.journal_head = tx, seq, head


def _settled(journal: Journal, n: int, key: str = "k") -> list[_A]:
    """n settled transactions, each posted with an anchor as the money path does."""
    anchors = []
    for k in range(n):
        tx = journal.begin("fee", 1000 + k).tx_id
        journal.append_many(tx, [(S.PAYING, None), (S.PAID, None), (S.FULFILLING, None),
                                 (S.FULFILLED, None)])
        item = journal.outbox_enqueue(tx, "settle", {}, f"{key}{k}", with_state=(S.POSTED, None),
                                      anchor=True)
        p = journal.outbox_item(item).payload
        journal.outbox_ack(item, {}, with_state=[(S.COMPLETED, None)])
        anchors.append(_A(tx, p["journal_seq"], p["journal_head"]))
    return anchors


def test_anchors_match_an_untouched_journal(journal: Journal) -> None:
    anchors = _settled(journal, 3)
    report = compare_anchors(journal.entries(), anchors)
    assert report.ok and report.checked == 3 and report.problems == []


def test_a_cut_tail_passes_verify_but_not_the_anchors(journal: Journal) -> None:
    anchors = _settled(journal, 3)
    conn = _raw(journal.path)
    conn.execute("DELETE FROM journal WHERE seq > ?", (anchors[1].journal_seq - 1,))
    conn.close()
    assert journal.verify().ok  # the local chain cannot see it
    report = compare_anchors(journal.entries(), anchors)
    assert [f.verdict for f in report.findings] == [AnchorVerdict.OK, AnchorVerdict.CUT,
                                                   AnchorVerdict.CUT]


def test_a_rewritten_chain_with_recomputed_hashes_is_caught(journal: Journal) -> None:
    anchors = _settled(journal, 2)
    rows = journal._conn.execute("SELECT seq, tx_id, state, at, kind, amount_rials, data "
                                 "FROM journal ORDER BY seq").fetchall()
    conn = _raw(journal.path)
    prev = GENESIS_HASH
    for seq, tx_id, state, at, kind, amount, data in rows:
        amount = 1 if tx_id == anchors[0].transaction_id else amount  # the edit
        digest = entry_hash(prev, tx_id, state, at, kind, amount, data)
        conn.execute("UPDATE journal SET amount_rials = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                     (amount, prev, digest, seq))
        prev = digest
    conn.close()
    assert journal.verify().ok
    report = compare_anchors(journal.entries(), anchors)
    assert {f.verdict for f in report.findings} == {AnchorVerdict.REWRITTEN}


def test_a_fork_from_an_old_copy_is_caught(tmp_path: Path) -> None:
    path = journal_path(tmp_path)
    with Journal(path) as j:
        _settled(j, 1)
    shutil.copyfile(path, tmp_path / "old.sqlite3")
    with Journal(path) as j:
        anchors = _settled(j, 1, key="second")
    Path(path).unlink()
    shutil.copyfile(tmp_path / "old.sqlite3", path)
    with Journal(path) as j:
        j.begin("fee", 9)  # life goes on on the old copy: other rows at the anchored seqs
        j.append_many(j.transactions()[0].tx_id, [(S.PAYING, None), (S.DECLINED, None)])
        j.begin("fee", 10)
        j.begin("fee", 11)
        j.begin("fee", 12)
        report = compare_anchors(j.entries(), anchors)
    assert [f.verdict for f in report.findings] == [AnchorVerdict.FORK]


def test_a_rewritten_basket_bill_is_reported_as_a_rewrite_not_a_fork() -> None:
    """A fee basket settles each bill under "<tx>.<i>": its anchor belongs to the basket "<tx>"."""
    from types import SimpleNamespace

    rows = [SimpleNamespace(seq=1, hash="a" * 64, tx_id="k-1-20261130-0a"),
            SimpleNamespace(seq=2, hash="b" * 64, tx_id="k-1-20261130-0a")]
    bill = SimpleNamespace(journal_seq=2, journal_head="c" * 64, transaction_id="k-1-20261130-0a.1")
    stranger = SimpleNamespace(journal_seq=2, journal_head="c" * 64, transaction_id="k-1-20261130-0b.1")
    verdicts = [f.verdict for f in compare_anchors(rows, [bill]).findings + compare_anchors(rows, [stranger]).findings]
    assert verdicts == [AnchorVerdict.REWRITTEN, AnchorVerdict.FORK]
