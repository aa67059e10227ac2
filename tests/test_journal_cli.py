"""`kiosk journal verify|show` on damaged files, with zones, and against the real back-office's
anchors on loopback."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backoffice.seed import DEMO_NATIONAL_CODE, seed_demo
from backoffice.server import RunningServer, serve_in_thread
from kiosk.backoffice_client import BackofficeClient, PaymentPost
from kiosk.cli import main as kiosk_main
from kiosk.journal import Journal, TxState, journal_path

S = TxState
ROOT = Path(__file__).resolve().parent.parent
KIOSK_ID = "kiosk-anchor"
TOKEN = "anchor-test-token-0123456789abcdef"
# a second kiosk, so each test's anchors are its own journal's only
KIOSK_ID_2 = "kiosk-anchor-2"
TOKEN_2 = "anchor-test-token-2-0123456789abcdef"


def _run(args: list[str], tz: str = "UTC") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TZ": tz}
    return subprocess.run([sys.executable, "-m", "kiosk.cli", *args], capture_output=True,
                          text=True, env=env, timeout=60, cwd=ROOT)


def _tamper(path: Path, sql: str) -> None:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("DROP TRIGGER IF EXISTS journal_no_update")
    conn.execute("DROP TRIGGER IF EXISTS journal_no_delete")
    conn.execute(sql)
    conn.close()


@pytest.mark.parametrize("damage", [
    "UPDATE journal SET state = 'BOGUS' WHERE seq = 2",
    "UPDATE journal SET data = '{not json' WHERE seq = 2",
    "UPDATE journal SET data = '[1,2]' WHERE seq = 2",
])
def test_a_damaged_row_is_one_line_for_show_and_a_problem_for_verify(tmp_path: Path,
                                                                      damage: str) -> None:
    with Journal(journal_path(tmp_path)) as j:
        tx = j.begin("fee", 1).tx_id
        j.append(tx, S.PAYING)
    _tamper(journal_path(tmp_path), damage)
    show = _run(["journal", "show", "--data-dir", str(tmp_path)])
    assert show.returncode == 1 and "Traceback" not in show.stderr
    assert show.stderr.count("\n") == 1 and "row 2" in show.stderr, show.stderr
    verify = _run(["journal", "verify", "--data-dir", str(tmp_path)])
    assert verify.returncode == 1 and "Traceback" not in verify.stderr
    assert "seq 2:" in verify.stdout and "BROKEN" in verify.stdout


def test_a_file_that_is_not_a_database_is_one_line_and_exit_1(tmp_path: Path) -> None:
    journal_path(tmp_path).write_bytes(b"not a database " * 500)
    for action in ("show", "verify"):
        proc = _run(["journal", action, "--data-dir", str(tmp_path)])
        assert proc.returncode == 1, proc
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        assert "not a kiosk journal" in proc.stderr or "not a database" in proc.stderr


def test_show_names_the_zone_of_its_times(tmp_path: Path) -> None:
    with Journal(journal_path(tmp_path)) as j:
        j.begin("fee", 1)
    tehran = _run(["journal", "show", "--data-dir", str(tmp_path)], tz="Asia/Tehran")
    utc = _run(["journal", "show", "--data-dir", str(tmp_path)], tz="UTC")
    assert tehran.returncode == 0 and utc.returncode == 0
    assert " +0330 (+0330)" in tehran.stdout, tehran.stdout
    assert " +0000 (UTC)" in utc.stdout, utc.stdout
    listed = json.loads(_run(["journal", "show", "--json", "--data-dir", str(tmp_path)]).stdout)
    assert listed[0]["updated"].endswith("+0000 (UTC)")


# --- against the real back-office ----------------------------------------------------------


@pytest.fixture(scope="module")
def backoffice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    url = f"sqlite:///{tmp_path_factory.mktemp('bo') / 'backoffice.sqlite3'}"
    with serve_in_thread(url) as running:
        seed_demo(url, {KIOSK_ID: TOKEN, KIOSK_ID_2: TOKEN_2})
        yield running


def _settle_anchored(journal: Journal, client: BackofficeClient, n: int) -> list[str]:
    """n fee payments settled as the money path does: an anchored outbox item, posted."""
    txs = []
    for slip in client.fee_slips(national_code=DEMO_NATIONAL_CODE).unpaid[:n]:
        tx = journal.begin("fee_payment", slip.amount_rials).tx_id
        journal.append_many(tx, [(S.PAYING, None), (S.PAID, None), (S.FULFILLING, None),
                                 (S.FULFILLED, None)])
        item = journal.outbox_enqueue(tx, "settle", {"bill_id": slip.bill_id}, f"settle-{tx}",
                                      with_state=(S.POSTED, None), anchor=True)
        anchor = journal.outbox_item(item).payload
        client.post_payment(PaymentPost(
            transaction_id=tx, bill_id=slip.bill_id, payment_id=slip.payment_id,
            amount_rials=slip.amount_rials, paid_at="2026-11-30T09:00:00Z", rrn="998877665544",
            stan="000123", poi_reference="SIM/1", masked_pan="603799******7893",
            journal_seq=anchor["journal_seq"], journal_head=anchor["journal_head"]),
            idempotency_key=f"settle-{tx}")
        journal.outbox_ack(item, {}, with_state=[(S.COMPLETED, None)])
        txs.append(tx)
    return txs


def test_verify_against_the_backoffice_catches_a_cut_tail_that_local_verify_misses(
        tmp_path: Path, backoffice: RunningServer) -> None:
    (tmp_path / "kiosk.json").write_text(json.dumps(
        {"kiosk_id": KIOSK_ID, "backoffice_url": backoffice.url, "backoffice_token": TOKEN}))
    with BackofficeClient(backoffice.url, TOKEN) as client, \
            Journal(journal_path(tmp_path), kiosk_id=KIOSK_ID) as j:
        _settle_anchored(j, client, 2)
        last_anchor = client.journal_anchors()[-1].journal_seq
    ok = _run(["journal", "verify", "--against-backoffice", "--data-dir", str(tmp_path)])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "back-office anchors ok: 2 checked" in ok.stdout
    _tamper(journal_path(tmp_path), f"DELETE FROM journal WHERE seq >= {last_anchor}")
    assert _run(["journal", "verify", "--data-dir", str(tmp_path)]).returncode == 0
    cut = _run(["journal", "verify", "--against-backoffice", "--json",
                "--data-dir", str(tmp_path)])
    assert cut.returncode == 1, cut.stderr
    report = json.loads(cut.stdout)
    assert report["ok"] is False and report["problems"] == []
    assert [p["kind"] for p in report["anchors"]["problems"]] == ["cut"]
    # the URL and token can be given instead of kiosk.json's
    (tmp_path / "kiosk.json").unlink()
    again = _run(["journal", "verify", "--against-backoffice", "--backoffice-url",
                  backoffice.url, "--token", TOKEN, "--data-dir", str(tmp_path)])
    assert again.returncode == 1 and "seq " in again.stdout and ": cut:" in again.stdout
    missing = _run(["journal", "verify", "--against-backoffice", "--data-dir", str(tmp_path)])
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_in_process_verify_against_backoffice_flags_a_rewrite(
        tmp_path: Path, backoffice: RunningServer, capsys: pytest.CaptureFixture[str]) -> None:
    from kiosk.journal import GENESIS_HASH, entry_hash

    with BackofficeClient(backoffice.url, TOKEN_2) as client, \
            Journal(journal_path(tmp_path), kiosk_id=KIOSK_ID_2) as j:
        txs = _settle_anchored(j, client, 1)
        rows = j._conn.execute("SELECT seq, tx_id, state, at, kind, amount_rials, data FROM "
                               "journal ORDER BY seq").fetchall()
    conn = sqlite3.connect(str(journal_path(tmp_path)), isolation_level=None)
    conn.execute("DROP TRIGGER journal_no_update")
    prev = GENESIS_HASH
    for seq, tx_id, state, at, kind, amount, data in rows:  # halve the amount, re-hash all
        amount = amount // 2 if tx_id == txs[0] else amount
        digest = entry_hash(prev, tx_id, state, at, kind, amount, data)
        conn.execute("UPDATE journal SET amount_rials = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                     (amount, prev, digest, seq))
        prev = digest
    conn.close()
    args = ["journal", "verify", "--against-backoffice", "--backoffice-url", backoffice.url,
            "--token", TOKEN_2, "--data-dir", str(tmp_path)]
    assert kiosk_main(args) == 1
    out = capsys.readouterr().out
    assert "journal ok:" in out and "back-office anchors BROKEN" in out
    assert out.count(": rewritten:") == 1 and ": cut:" not in out and ": fork:" not in out


def test_show_by_state_lists_the_refunds_an_operator_owes(tmp_path: Path) -> None:
    from kiosk.journal import Journal, TxState, journal_path

    with Journal(journal_path(tmp_path), kiosk_id="kiosk-t") as journal:
        owed = journal.begin("fee_payment", 420_000).tx_id
        for state in (TxState.PAYING, TxState.PAID, TxState.REVERSING, TxState.REFUND_PENDING):
            journal.append(owed, state)
        done = journal.begin("fee_payment", 150_000).tx_id
        journal.append(done, TxState.CANCELLED)
    out = subprocess.run([sys.executable, "-m", "kiosk.cli", "journal", "show", "--state", "refund_pending", "--json",
                                  "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [t["tx_id"] for t in json.loads(out.stdout)] == [owed]
    bad = subprocess.run([sys.executable, "-m", "kiosk.cli", "journal", "show", "--state", "LOST", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown state" in bad.stderr and "Traceback" not in bad.stderr
