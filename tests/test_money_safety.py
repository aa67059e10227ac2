"""Issue 6, money safety: NotFound is not a refund (3), ask the back-office before refunding
(4), a broken chain stops the money (5), settlements carry the journal's anchor (6), and a
running kiosk resolves its own open transactions in the background without racing a live
flow (1). Everything real: the back-office on loopback (SQLite), the nexo terminal simulator,
the ESC/POS printer emulator, real journals edited the way an attacker would."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import sqlalchemy as sa

from backoffice.seed import DEMO_NATIONAL_CODE
from devices.base import ProtocolError
from kiosk.backoffice_client import BackofficeClient
from kiosk.commands.recover import recover
from kiosk.context import KioskContext
from kiosk.flows.fee_payment import FeePaymentFlow, FeePaymentResult
from kiosk.journal import Journal, OutboxStatus, TxState, journal_path
from kiosk.money_path import SettleResult
from kiosk.scripted_ui import ScriptedUI
from kiosk.settings import KioskSettings
from kiosk_demo.environment import DemoEnvironment, demo_environment

KIOSK = [sys.executable, "-m", "kiosk.cli"]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with demo_environment(tmp_path) as environment:
        yield environment


def unpaid_slip(env: DemoEnvironment, index: int = 0) -> Any:
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=0) as client:
        return client.fee_slips(national_code=DEMO_NATIONAL_CODE).unpaid[index]


def typed(slip: Any) -> dict[str, Any]:
    return {"fee.how_to_enter": "manual", "fee.enter_bill_id": slip.bill_id,
            "fee.enter_payment_id": slip.payment_id, "fee.confirm": True}


def with_settings(env: DemoEnvironment, **overrides: Any) -> KioskSettings:
    return KioskSettings(**{**env.settings.__dict__, **overrides})


def pay(env: DemoEnvironment, slip: Any, settings: KioskSettings | None = None) -> FeePaymentResult:
    async def go() -> FeePaymentResult:
        ctx = await KioskContext.open(settings or env.settings, env.data_dir)
        try:
            return await FeePaymentFlow(ctx, ScriptedUI(typed(slip))).run()
        finally:
            await ctx.close()

    return asyncio.run(go())


def charge_only(env: DemoEnvironment, slip: Any) -> str:
    """A transaction approved at the terminal and journaled PAID, never settled: what a
    kiosk leaves when it dies right after the approval."""

    async def go() -> str:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            tx_id = await ctx.money.open_transaction(
                "fee_payment", slip.amount_rials, {"bill_id": slip.bill_id, "payment_id": slip.payment_id})
            charge = await ctx.money.charge(tx_id, slip.amount_rials)
            ctx.money.release(tx_id)
            assert charge.state == TxState.PAID
            return tx_id
        finally:
            await ctx.close()

    return asyncio.run(go())


def recover_now(env: DemoEnvironment, settings: KioskSettings | None = None) -> dict[str, dict[str, Any]]:
    return {r["tx_id"]: r for r in asyncio.run(recover(env.data_dir, settings or env.settings))}


def journal(env: DemoEnvironment) -> Journal:
    return Journal(journal_path(env.data_dir), kiosk_id="check")


def payments(env: DemoEnvironment, tx_id: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(env.backoffice_db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM payments WHERE transaction_id = :t"), {"t": tx_id}).mappings().all()
    engine.dispose()
    return [dict(r) for r in rows]


def tamper(env: DemoEnvironment, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Edit the journal file as someone holding it could: the append-only triggers dropped."""
    db = sqlite3.connect(journal_path(env.data_dir))
    db.execute("DROP TRIGGER IF EXISTS journal_no_update")
    db.execute("DROP TRIGGER IF EXISTS journal_no_delete")
    for sql, args in statements:
        db.execute(sql, args)
    db.commit()
    db.close()


# --- 3. NotFound is not a refund -------------------------------------------------------------

def test_a_paid_sale_the_terminal_cannot_find_goes_to_refund_pending_not_reversed(env: DemoEnvironment) -> None:
    with journal(env) as j:  # approved (RRN on record), but not on this terminal's ledger
        tx_id = j.begin("fee_payment", 420_000, {"bill_id": "1", "payment_id": "2"}).tx_id
        j.append(tx_id, TxState.PAYING, {"terminal": "terminal"})
        j.append(tx_id, TxState.PAID, {"rrn": "123456789012", "stan": "000123", "masked_pan": "603799******1234"})
    resolved = recover_now(env)
    assert resolved[tx_id]["to_state"] == "REFUND_PENDING" and resolved[tx_id]["action"] == "refund_pending"
    with journal(env) as j:
        assert j.state_of(tx_id) == TxState.REFUND_PENDING
        assert j.get(tx_id).data["reversal_outcome"] == "notFound"


class BareNotFoundProxy:
    """A reverse proxy in front of the back-office that answers every /payments request with
    its own HTML 404 (a misrouted path), and forwards everything else."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/api/v1/payments"):
                    page = b"<html><body><h1>404 Not Found</h1>nginx</body></html>"
                    self.send_response(404)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                resp = requests.request(self.command, proxy.upstream + self.path, headers=headers, data=body,
                                        timeout=10)
                self.send_response(resp.status_code)
                self.send_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_bare_404_from_a_proxy_never_reverses_a_payment(env: DemoEnvironment) -> None:
    proxy = BareNotFoundProxy(env.settings.backoffice_url)
    try:
        behind_proxy = with_settings(env, backoffice_url=proxy.url)
        slip = unpaid_slip(env)
        result = pay(env, slip, behind_proxy)  # the settlement post meets the proxy's 404
        assert result.final_state == TxState.FULFILLING and result.outcome.message_key == "settle.pending"
        with journal(env) as j:
            (item,) = j.outbox_for(result.transaction_id)
        assert item.status == OutboxStatus.PENDING  # still queued, not failed
        assert env.terminal.net_charged(result.transaction_id) == slip.amount_rials

        paid = charge_only(env, unpaid_slip(env))  # and a PAID one: its status query gets the 404
        resolved = recover_now(env, behind_proxy)
        assert resolved[paid]["to_state"] == "PAID" and not resolved[paid]["resolved"]
        assert resolved[result.transaction_id]["to_state"] == "FULFILLING"
        assert all(s["status"] == "approved" for s in env.terminal.ledger())  # nothing reversed
    finally:
        proxy.stop()
    # the real back-office answers: the settlement goes through, the PAID one is returned
    resolved = recover_now(env)
    assert resolved[result.transaction_id]["to_state"] == "COMPLETED"
    assert resolved[paid]["to_state"] == "REVERSED"
    assert len(payments(env, result.transaction_id)) == 1


# --- 4. Ask before refunding -----------------------------------------------------------------

@pytest.mark.parametrize("outbox_too", [False, True], ids=["tail-cut", "tail-and-outbox-cut"])
def test_a_settled_payment_whose_journal_tail_was_cut_is_completed_not_reversed(
        env: DemoEnvironment, outbox_too: bool) -> None:
    slip = unpaid_slip(env)
    result = pay(env, slip)
    tx_id = result.transaction_id
    assert result.final_state == TxState.COMPLETED
    cut = [("DELETE FROM journal WHERE tx_id = ? AND state IN ('FULFILLING', 'FULFILLED', 'POSTED', 'COMPLETED')",
            (tx_id,))]
    if outbox_too:
        cut.append(("DELETE FROM outbox WHERE tx_id = ?", (tx_id,)))
    tamper(env, *cut)
    with journal(env) as j:
        assert j.state_of(tx_id) == TxState.PAID and j.verify().ok  # a cut tail passes a local verify

    resolved = recover_now(env)
    assert resolved[tx_id]["to_state"] == "COMPLETED" and resolved[tx_id]["resolved"]
    assert [s["status"] for s in env.terminal.ledger()] == ["approved"]  # no reversal: paid once
    assert env.terminal.net_charged(tx_id) == slip.amount_rials
    assert len(payments(env, tx_id)) == 1
    with journal(env) as j:
        tx = j.get(tx_id)
        assert tx.data["tracking_code"] == payments(env, tx_id)[0]["tracking_code"]
        assert TxState.REVERSING not in [e.state for e in tx.entries]


def test_a_queued_settlement_whose_fulfilling_row_was_cut_is_posted_not_reversed(env: DemoEnvironment) -> None:
    # the kiosk queued the settlement (FULFILLING + outbox row in one commit) and the FULFILLING
    # row was then cut from the journal: the back-office holds nothing yet, but the outbox
    # would post it — reversing now would give the money back AND settle the bill
    slip = unpaid_slip(env)
    tx_id = charge_only(env, slip)

    async def queue() -> None:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            await ctx.money.start_settlement(tx_id)
        finally:
            await ctx.close()

    asyncio.run(queue())
    tamper(env, ("DELETE FROM journal WHERE tx_id = ? AND state = 'FULFILLING'", (tx_id,)))
    with journal(env) as j:
        assert j.state_of(tx_id) == TxState.PAID and j.verify().ok
        assert [i.status for i in j.outbox_for(tx_id)] == [OutboxStatus.PENDING]

    resolved = recover_now(env)
    assert resolved[tx_id]["to_state"] == "COMPLETED" and resolved[tx_id]["resolved"]
    assert env.terminal.net_charged(tx_id) == slip.amount_rials  # no reversal
    assert len(payments(env, tx_id)) == 1
    with journal(env) as j:
        assert [i.status for i in j.outbox_for(tx_id)] == [OutboxStatus.ACKED]
        assert TxState.REVERSING not in [e.state for e in j.get(tx_id).entries]
        assert j.verify().ok


def test_a_paid_transaction_is_not_reversed_while_the_backoffice_cannot_be_asked(env: DemoEnvironment) -> None:
    slip = unpaid_slip(env)
    tx_id = charge_only(env, slip)
    unreachable = with_settings(env, backoffice_url="http://127.0.0.1:9")  # nothing listens there
    resolved = recover_now(env, unreachable)
    assert resolved[tx_id]["to_state"] == "PAID" and resolved[tx_id]["action"] == "backoffice_unreachable"
    assert not resolved[tx_id]["resolved"]
    assert env.terminal.net_charged(tx_id) == slip.amount_rials
    resolved = recover_now(env)  # the back-office answers: it holds no such payment
    assert resolved[tx_id]["to_state"] == "REVERSED"
    assert env.terminal.net_charged(tx_id) == 0


# --- 5. A broken chain stops the money -------------------------------------------------------

def test_an_edited_amount_stops_recover_and_new_payments(env: DemoEnvironment) -> None:
    slip = unpaid_slip(env)
    tx_id = charge_only(env, slip)  # open: recover would reverse it
    tamper(env, ("UPDATE journal SET amount_rials = 1000 WHERE tx_id = ?", (tx_id,)))
    with journal(env) as j:
        rows_before = len(j.entries())
    env.settings.save(env.data_dir / "kiosk.json")  # `kiosk recover` on this kiosk's own config

    out = subprocess.run(KIOSK + ["recover", "--json", "--data-dir", str(env.data_dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "failed verification" in out.stderr and "edited" in out.stderr
    assert env.terminal.net_charged(tx_id) == slip.amount_rials  # nothing reversed

    ui = ScriptedUI(typed(unpaid_slip(env)))

    async def citizen() -> FeePaymentResult:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            assert ctx.out_of_service is not None
            ctx.start_outbox_worker(interval_s=0.05, recovery_interval_s=0.0)
            result = await FeePaymentFlow(ctx, ui).run()
            await asyncio.sleep(0.2)  # background rounds would have run by now
            return result
        finally:
            await ctx.close()

    result = asyncio.run(citizen())
    assert ui.keys("error") == ["service.out_of_service"] and not result.outcome.ok
    with journal(env) as j:
        assert len(j.entries()) == rows_before  # no new rows: nothing resolved, nothing begun
    assert len(env.terminal.ledger()) == 1


# --- 6. Anchor the chain ----------------------------------------------------------------------

def test_the_settlement_carries_the_journal_seq_and_head_and_the_backoffice_keeps_them(env: DemoEnvironment) -> None:
    result = pay(env, unpaid_slip(env))
    with journal(env) as j:
        (item,) = j.outbox_for(result.transaction_id)
        paid_row = [e for e in j.get(result.transaction_id).entries if e.state == TxState.PAID][0]
    # the anchor is the chain's tail read just before FULFILLING was appended: the PAID row
    assert (item.payload["journal_seq"], item.payload["journal_head"]) == (paid_row.seq, paid_row.hash)
    (stored,) = payments(env, result.transaction_id)
    assert (stored["journal_seq"], stored["journal_head"]) == (paid_row.seq, paid_row.hash)


# --- 1. Background recovery in a running kiosk -----------------------------------------------

class SlowReceipt(ScriptedUI):
    """Lingers on the receipt step (the transaction is POSTED) while background rounds run."""

    async def show_step(self, key: str, **params: Any) -> None:
        await super().show_step(key, **params)
        if key == "receipt.printing":
            await asyncio.sleep(0.5)


def test_a_running_kiosk_resolves_unclaimed_transactions_and_never_races_a_live_flow(env: DemoEnvironment) -> None:
    left_paid = charge_only(env, unpaid_slip(env))  # a kiosk that died after the approval
    slip = unpaid_slip(env)

    async def go() -> tuple[FeePaymentResult, TxState]:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            ctx.start_outbox_worker(interval_s=0.02, recovery_interval_s=0.0)  # a round every 20 ms
            result = await FeePaymentFlow(ctx, SlowReceipt(typed(slip))).run()
            for _ in range(200):
                if ctx.journal.state_of(left_paid) == TxState.REVERSED:
                    break
                await asyncio.sleep(0.05)
            return result, ctx.journal.state_of(left_paid)
        finally:
            await ctx.close()

    result, background_state = asyncio.run(go())
    # the live flow's POSTED transaction was left to the flow: completed once, by the flow
    assert result.final_state == TxState.COMPLETED and result.outcome.message_key == "fee.paid"
    with journal(env) as j:
        entries = j.get(result.transaction_id).entries
        assert [e.state for e in entries].count(TxState.COMPLETED) == 1
        assert "completed_by" not in entries[-1].data
        assert j.verify().ok
    assert env.terminal.net_charged(result.transaction_id) == slip.amount_rials
    assert len(payments(env, result.transaction_id)) == 1
    # the unclaimed PAID one was resolved in the background while the kiosk ran
    assert background_state == TxState.REVERSED
    assert env.terminal.net_charged(left_paid) == 0


def test_the_demo_summary_names_the_outcome_when_no_transaction_was_made(tmp_path: Path) -> None:
    out = subprocess.run(KIOSK + ["demo", "--headless", "--script", "pay-fee-cancel", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "None" not in out.stdout.split("Result")[-1]
    assert "no transaction: nothing charged" in out.stdout and "fee.cancelled" in out.stdout
    token = tmp_path / "demo-credentials.json"
    assert token.stat().st_mode & 0o777 == 0o600
    assert json.loads(token.read_text())["token"]


def test_a_row_edited_while_the_kiosk_runs_stops_the_next_transaction(env: DemoEnvironment) -> None:
    first_slip, second_slip = unpaid_slip(env, 0), unpaid_slip(env, 1)
    second_ui = ScriptedUI(typed(second_slip))

    async def go() -> tuple[FeePaymentResult, FeePaymentResult]:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            first = await FeePaymentFlow(ctx, ScriptedUI(typed(first_slip))).run()
            # someone with the file rewrites the payment just made (its RRN)
            tamper(env, ("UPDATE journal SET data = replace(data, '\"rrn\"', '\"rrX\"') "
                         "WHERE tx_id = ? AND state = 'PAID'", (first.transaction_id,)))
            return first, await FeePaymentFlow(ctx, second_ui).run()
        finally:
            await ctx.close()

    first, second = asyncio.run(go())
    assert first.final_state == TxState.COMPLETED
    assert second_ui.keys("error") == ["service.out_of_service"] and second.transaction_id is None
    assert len(env.terminal.ledger()) == 1  # the second citizen's card was never asked


def test_the_demo_terminal_answers_and_waits_as_asked(tmp_path: Path) -> None:
    bad = subprocess.run(KIOSK + ["demo", "--terminal-latency", "-1", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "between 0 and 120" in bad.stderr and "Traceback" not in bad.stderr
    out = subprocess.run(KIOSK + ["demo", "--headless", "--script", "pay-fee-manual", "--terminal-answer", "decline",
                                  "--terminal-latency", "0.5", "--json", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 1  # the scripted citizen did not get the fee paid
    assert summary["final_state"] == "DECLINED" and summary["outcome"] == "pay.declined"


def test_no_unpaid_demo_slip_is_a_typed_error_not_a_traceback(env: DemoEnvironment) -> None:
    from kiosk_demo.run import NoUnpaidSlips, _pick_unpaid_slip

    engine = sa.create_engine(env.backoffice_db_url)
    with engine.begin() as conn:  # every slip paid (an old back-office db the seed cannot top up)
        conn.execute(sa.text("UPDATE bills SET status = 'paid'"))
    engine.dispose()
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=0) as client:
        with pytest.raises(NoUnpaidSlips) as refused:
            _pick_unpaid_slip(client)
    assert "fresh --data-dir" in refused.value.message("en") and refused.value.message("fa")


def test_an_older_row_edited_behind_a_running_kiosk_is_caught_by_the_periodic_full_verify(
        env: DemoEnvironment) -> None:
    slips = [unpaid_slip(env, i) for i in range(3)]
    third_ui = ScriptedUI(typed(slips[2]))

    async def go() -> tuple[str, FeePaymentResult]:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            first = await FeePaymentFlow(ctx, ScriptedUI(typed(slips[0]))).run()
            await FeePaymentFlow(ctx, ScriptedUI(typed(slips[1]))).run()
            # a row of the first payment, older than what the next transaction re-checks
            tamper(env, ("UPDATE journal SET data = replace(data, '\"rrn\"', '\"rrX\"') "
                         "WHERE tx_id = ? AND state = 'PAID'", (first.transaction_id,)))
            ctx.start_outbox_worker(interval_s=0.02, full_verify_interval_s=0.0)
            for _ in range(200):
                if ctx.out_of_service is not None:
                    break
                await asyncio.sleep(0.02)
            return str(ctx.out_of_service), await FeePaymentFlow(ctx, third_ui).run()
        finally:
            await ctx.close()

    why, third = asyncio.run(go())
    assert "edited" in why
    assert third_ui.keys("error") == ["service.out_of_service"] and third.transaction_id is None
    assert len(env.terminal.ledger()) == 2


class GarbledReversalAnswer:
    """The real nexo driver, but its reversal's answer is lost in a garbled frame after the
    terminal has reversed the sale (a ProtocolError that says nothing of the outcome)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def reverse(self, *args: Any, **kwargs: Any) -> Any:
        await self.real.reverse(*args, **kwargs)
        raise ProtocolError("reversal response did not parse", device="terminal")


def test_a_garbled_reversal_answer_is_checked_with_the_terminal_not_sent_to_an_operator(
        env: DemoEnvironment) -> None:
    slip = unpaid_slip(env)
    tx_id = charge_only(env, slip)

    async def go() -> SettleResult:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            real = ctx.money.terminal()
            ctx.money._terminal = lambda: GarbledReversalAnswer(real)
            return await ctx.money.reverse(tx_id, "test: citizen gone", ask_backoffice=False)
        finally:
            await ctx.close()

    assert asyncio.run(go()) == SettleResult.REVERSED  # not REFUND_PENDING: no second refund
    assert env.terminal.net_charged(tx_id) == 0
    with journal(env) as j:
        assert j.state_of(tx_id) == TxState.REVERSED
