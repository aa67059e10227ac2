"""Issue 8, item 5: collect pending top-ups (دریافت شارژ خریداری‌شده). Top-ups paid elsewhere
against a card's serial are written to the card at a tap, exactly once, and the citizen is told.

Real parts throughout: CollectPendingFlow in a KioskContext on the embedded demo environment —
the PN532 driver against the virtual reader (its cards persist in the data dir), the ESC/POS
printer emulator and the real back-office on loopback; pending loads are created as the payer
system does (POST /transit/pending-loads with an integration token); crashes are real
processes dying at KIOSK_FAULT points. Each test checks the card (read straight from its
blocks), the back-office and the journal agree.

The rules checked (kiosk/services/pending_load.py, kiosk/flows/collect_pending.py):
  C1  a pending load is written to the card once: card +amount at counter +1, the back-office
      records a `pending_load` load under the transaction and marks the pending load applied
      by it, a zero-price signed slip is printed, COMPLETED; the next tap collects nothing
  C2  two pending loads: two transactions, each its own counter step, load and slip
  C3  a tear with the same card put back: UNCERTAIN, then the value lands once
  C4  a tear with the card gone: the claim stays as the card's pending action holding the
      pending load (not collectable elsewhere); the card's next tap settles it, once
  C5  the back-office is the arbiter: a pending load applied elsewhere after the check is
      refused at the claim and nothing is written (CANCELLED)
  C6  the back-office unreachable at the claim: nothing written; recovery finds no claim and
      cancels; the load is collected at the next tap
  C7  crashes (after-created, before-card-write, after-card-write) are recovered and the value
      is never credited twice
  C8  the journal's state table per kind: value-only kinds go CREATED → FULFILLING, fee rows may
      not, and the verifier reports one that does
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest
import requests

from backoffice.models import ServiceRole
from backoffice.seed import DEMO_PENDING_LOAD_RIALS, seed_demo
from backoffice.server import serve_in_thread
from devices.mifare_classic_virtual import VirtualCard, load_cards
from devices.transit_card.demo import DEMO_CARD_BALANCE, DEMO_CARD_SERIAL, DEMO_CARD_UID, describe_virtual_card
from kiosk.backoffice_client import BackofficeClient, CardAccount, LoadPost, PendingActionPost
from kiosk.context import KioskContext
from kiosk.flows.collect_pending import CollectPendingFlow, CollectResult
from kiosk.journal import IllegalTransition, Journal, OutboxStatus, TxState, journal_path, verify_rows
from kiosk.journal.chain import entry_hash
from kiosk.journal.states import ALLOWED, VALUE_ONLY_ALLOWED, VALUE_ONLY_KINDS, transitions
from kiosk.receipts import load_or_create_key, verify_payload
from kiosk.recovery import Recovery
from kiosk.scripted_ui import ScriptedUI
from kiosk.services import PENDING_LOAD, kind_of
from kiosk.settings import KioskSettings
from kiosk_demo.environment import DemoEnvironment, demo_environment

T = TypeVar("T")
S = TxState

START = DEMO_CARD_BALANCE  # 250,000
DEMO = DEMO_PENDING_LOAD_RIALS  # the seeded pending load of the demo card: 50,000
HAPPY = [S.CREATED, S.FULFILLING, S.FULFILLED, S.POSTED, S.COMPLETED]
INTEGRATION = "collect-ussd-Vb7Nq2Xr5Tz8Lm3Kp"


# --- the kiosk, the payer system and the ledgers ------------------------------------------------------
@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with demo_environment(tmp_path) as environment:
        # the payer system's credential (USSD gateway), as `backoffice seed --integration` adds it
        seed_demo(environment.backoffice_db_url, {}, {"ussd-gw": (ServiceRole.INTEGRATION, INTEGRATION)})
        yield environment


def settings_of(env: DemoEnvironment, **overrides: Any) -> KioskSettings:
    return KioskSettings(**{**env.settings.__dict__, **overrides})


def in_kiosk(env: DemoEnvironment, work: Callable[[KioskContext], Awaitable[T]], **overrides: Any) -> T:
    async def go() -> T:
        ctx = await KioskContext.open(settings_of(env, **overrides), env.data_dir)
        try:
            return await work(ctx)
        finally:
            await ctx.close()

    return asyncio.run(go())


class Watching(ScriptedUI):
    """A citizen who does something when the flow shows step `at`."""

    def __init__(self, at: str = "", act: Callable[[], None] | None = None) -> None:
        super().__init__({})
        self.at, self.act, self.acted = at, act, 0

    async def show_step(self, key: str, **params: Any) -> None:
        await super().show_step(key, **params)
        if key == self.at and self.act is not None:
            self.acted += 1
            self.act()


def collect(env: DemoEnvironment, ui: ScriptedUI | None = None, **overrides: Any) -> CollectResult:
    async def work(ctx: KioskContext) -> CollectResult:
        return await CollectPendingFlow(ctx, ui or ScriptedUI({})).run()

    return in_kiosk(env, work, **overrides)


def pay_elsewhere(env: DemoEnvironment, amount: int, *, source: str = "ussd", ref: str | None = None,
                  serial: str = DEMO_CARD_SERIAL) -> dict[str, Any]:
    """The payer system records a top-up paid on its side (USSD): a pending load."""
    body = {"card_serial": serial, "amount_rials": amount, "source": source,
            "external_ref": ref or f"ussd-{uuid.uuid4().hex[:20]}"}
    resp = requests.post(f"{env.settings.backoffice_url}/api/v1/transit/pending-loads", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {INTEGRATION}"})
    assert resp.status_code in (200, 201), resp.text
    return dict(resp.json())


def account(env: DemoEnvironment) -> CardAccount:
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=1) as client:
        return client.card_account(DEMO_CARD_SERIAL)


def backoffice_rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """The back-office's own tables (its SQLite file), for what no API lists: applied loads."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def applied(data: Path) -> list[tuple[int, int, str | None]]:
    """Every pending load of the demo card: (id, amount, applied by which transaction)."""
    return backoffice_rows(data / "backoffice.sqlite3",
                           "SELECT id, amount_rials, applied_transaction_id FROM transit_pending_loads "
                           "WHERE card_serial = ? ORDER BY id", DEMO_CARD_SERIAL)


def loads(data: Path) -> list[tuple[str, str, int, int, int, int | None]]:
    """The demo card's ledger: (transaction, kind, amount, counter after, balance after, pending load)."""
    return backoffice_rows(data / "backoffice.sqlite3",
                           "SELECT transaction_id, kind, amount_rials, counter_after, balance_after, pending_load_id "
                           "FROM transit_loads WHERE card_serial = ? ORDER BY counter_after", DEMO_CARD_SERIAL)


def card_state(card: VirtualCard) -> tuple[int, int]:
    """(balance, counter) read straight from the card's blocks (no reader, no kiosk)."""
    summary = describe_virtual_card(card)
    assert "error" not in summary, summary
    return int(summary["balance_rials"]), int(summary["counter"])  # type: ignore[call-overload]


def demo_card(env: DemoEnvironment) -> tuple[int, int]:
    return card_state(env.card_reader.cards[DEMO_CARD_UID])


def journal(data: Path) -> Journal:
    return Journal(journal_path(data), kiosk_id="check")


def states(data: Path, tx_id: str) -> list[TxState]:
    with journal(data) as j:
        return [e.state for e in j.get(tx_id).entries]


def transactions(data: Path) -> list[str]:
    with journal(data) as j:
        return [t.tx_id for t in j.transactions()]


# --- C1: collected once ---------------------------------------------------------------------------------
def test_a_pending_load_is_collected_once_with_a_zero_price_slip_and_the_next_tap_finds_nothing(
        env: DemoEnvironment) -> None:
    (pending_id, amount, by), = applied(env.data_dir)
    assert (amount, by, demo_card(env)) == (DEMO, None, (START, 0))
    result = collect(env)
    tx = result.transaction_id or ""
    assert result.outcome.ok and result.outcome.message_key == "collect.done", result
    assert (result.final_state, result.amount_rials) == (S.COMPLETED, DEMO)
    assert (result.card_serial, result.balance_before, result.balance_after) == (DEMO_CARD_SERIAL, START, START + DEMO)
    # the card: +50,000 at counter 1
    assert demo_card(env) == (START + DEMO, 1)
    # the back-office: a pending_load load under this transaction, the pending load applied by it
    assert loads(env.data_dir) == [(tx, "pending_load", DEMO, 1, START + DEMO, pending_id)]
    assert applied(env.data_dir) == [(pending_id, DEMO, tx)]
    acct = account(env)
    assert (acct.last_balance, acct.last_counter, acct.collectable, acct.pending_actions) == (START + DEMO, 1, (), ())
    # the journal: value-only, no payment, nothing reversed; the load post acknowledged
    assert states(env.data_dir, tx) == HAPPY
    with journal(env.data_dir) as j:
        t = j.get(tx)
        assert (t.kind, t.amount_rials) == ("pending_load", DEMO) and j.verify().ok
        assert [(i.kind, i.status) for i in j.outbox_for(tx)] == [("pending_load_post", OutboxStatus.ACKED)]
        assert t.data["tracking_code"] and t.data["pending_load_id"] == pending_id
    # the slip: zero price, the card serial and the pending load's id signed
    assert result.receipt_payload and [r.qr_codes for r in env.printer.receipts()] == [[result.receipt_payload]]
    signed = verify_payload(result.receipt_payload, load_or_create_key(env.data_dir).public_key)
    assert (signed.tx_id, signed.amount_rials, signed.bill_id, signed.payment_id, signed.kind) == (
        tx, 0, DEMO_CARD_SERIAL, str(pending_id), "pending_topup")

    # the next tap: nothing waits, nothing journaled, the card unchanged
    again = collect(env)
    assert again.outcome.message_key == "collect.none" and again.transaction_id is None
    assert transactions(env.data_dir) == [tx]
    assert demo_card(env) == (START + DEMO, 1) and len(loads(env.data_dir)) == 1


# --- C2: two pending loads ------------------------------------------------------------------------------
def test_two_pending_loads_are_two_transactions_each_collected_once(env: DemoEnvironment) -> None:
    second = pay_elsewhere(env, 30_000)
    result = collect(env)
    assert result.outcome.ok and result.outcome.message_key == "collect.done", result
    assert (result.amount_rials, result.balance_after) == (DEMO + 30_000, START + DEMO + 30_000)
    txs = [c.transaction_id for c in result.collected]
    assert len(txs) == 2 and all(states(env.data_dir, t) == HAPPY for t in txs)
    assert demo_card(env) == (START + DEMO + 30_000, 2)
    assert [(ld[0], ld[2], ld[3], ld[4]) for ld in loads(env.data_dir)] == [
        (txs[0], DEMO, 1, START + DEMO), (txs[1], 30_000, 2, START + DEMO + 30_000)]
    assert [(a[1], a[2]) for a in applied(env.data_dir)] == [(DEMO, txs[0]), (30_000, txs[1])]
    assert applied(env.data_dir)[1][0] == second["pending_load_id"]
    assert len(env.printer.receipts()) == 2
    # the payer system asking about its top-up sees it applied, by this kiosk's transaction
    status = pay_elsewhere(env, 30_000, ref=second["external_ref"])
    assert (status["status"], status["applied_by_transaction_id"]) == ("applied", txs[1])
    assert collect(env).outcome.message_key == "collect.none"
    assert demo_card(env) == (START + DEMO + 30_000, 2)


# --- C3: a tear, the same card put back -----------------------------------------------------------------
@pytest.mark.parametrize("at_op", [1, 3])
def test_a_tear_with_the_card_put_back_lands_the_value_once(env: DemoEnvironment, at_op: int) -> None:
    reader = env.card_reader

    def put_back() -> None:
        assert reader.torn_card is not None and reader.card is None
        reader.place(reader.torn_card)

    ui = Watching("collect.place_again", put_back)
    reader.tear_next_write(at_op=at_op, after_bytes=16 if at_op == 3 else 0)
    result = collect(env, ui)
    tx = result.transaction_id or ""
    assert ui.acted == 1 and result.outcome.message_key == "collect.done", (result, ui.keys("step"))
    assert states(env.data_dir, tx) == [S.CREATED, S.FULFILLING, S.UNCERTAIN, S.FULFILLED, S.POSTED, S.COMPLETED]
    assert demo_card(env) == (START + DEMO, 1)  # never 350,000
    assert [(ld[0], ld[3], ld[4]) for ld in loads(env.data_dir)] == [(tx, 1, START + DEMO)]
    assert account(env).pending_actions == ()


# --- C4: a tear, the card gone ----------------------------------------------------------------------------
@pytest.mark.parametrize(("at_op", "after_bytes", "landed"), [(1, 0, False), (3, 16, True)],
                         ids=["not-landed", "landed"])
def test_a_tear_with_the_card_gone_keeps_the_load_for_the_card_and_its_next_tap_applies_it_once(
        env: DemoEnvironment, at_op: int, after_bytes: int, landed: bool) -> None:
    reader = env.card_reader
    reader.tear_next_write(at_op=at_op, after_bytes=after_bytes)
    ui = ScriptedUI({})
    result = collect(env, ui, card_return_wait_s=0.5)
    tx = result.transaction_id or ""
    assert result.outcome.message_key == "collect.pending_action" and not result.outcome.ok, result
    assert "collect.place_again" in ui.keys("step")
    assert states(env.data_dir, tx) == [S.CREATED, S.FULFILLING, S.UNCERTAIN, S.FULFILLED, S.POSTED, S.COMPLETED]
    with journal(env.data_dir) as j:
        assert j.get(tx).data.get("pending_action") is True
    # the claim is the card's open pending action; it holds the pending load (not collectable)
    acct = account(env)
    (pending,) = acct.pending_loads
    assert [(a.transaction_id, a.pending_load_id, a.counter_before, a.intended_balance, a.status)
            for a in acct.pending_actions] == [(tx, pending.pending_load_id, 0, START + DEMO, "open")]
    assert (pending.status, acct.collectable, loads(env.data_dir)) == ("reserved", (), [])
    assert result.outcome.params["tracking"] == acct.pending_actions[0].tracking_code
    assert result.receipt_payload and len(env.printer.receipts()) == 1
    torn = reader.torn_card
    assert torn is not None and card_state(torn) == ((START + DEMO, 1) if landed else (START, 0))

    # the card's next tap (any kiosk, any service): the claim is settled from the card itself
    reader.place(torn)
    ui = ScriptedUI({})
    nxt = collect(env, ui)
    assert "card.pending_applied" in ui.keys("step")
    assert nxt.outcome.message_key == "collect.none" and nxt.transaction_id is None
    assert demo_card(env) == (START + DEMO, 1)  # once, whether the torn write had landed or not
    assert loads(env.data_dir) == [(tx, "pending_load", DEMO, 1, START + DEMO, pending.pending_load_id)]
    assert applied(env.data_dir) == [(pending.pending_load_id, DEMO, tx)]
    assert account(env).pending_actions == ()


# --- C5: the back-office is the arbiter -------------------------------------------------------------------
def test_a_pending_load_applied_elsewhere_after_the_check_is_refused_at_the_claim_and_nothing_is_written(
        env: DemoEnvironment) -> None:
    """Between the kiosk's look at the account and its claim, another kiosk records a load
    applying that pending load. The claim is refused; the card is never written."""
    (pending_id, _, _), = applied(env.data_dir)
    other = "collect-other-kiosk-Rq4Wm8Tz2Xc6Vb"
    seed_demo(env.backoffice_db_url, {"kiosk-other": other})

    def elsewhere() -> None:
        with BackofficeClient(env.settings.backoffice_url, other, retries=0) as client:
            client.post_load(LoadPost("other-1", DEMO_CARD_SERIAL, DEMO_CARD_UID, 0, 1, DEMO, START + DEMO,
                                      "pending_load", pending_id), idempotency_key="other-1")

    ui = Watching("collect.writing", elsewhere)
    result = collect(env, ui)
    tx = result.transaction_id or ""
    assert ui.acted == 1
    assert result.outcome.message_key == "collect.already_collected" and not result.outcome.ok, result
    assert states(env.data_dir, tx) == [S.CREATED, S.FULFILLING, S.CANCELLED]
    with journal(env.data_dir) as j:
        assert j.get(tx).data["refusal"] == "transit.pending_load_applied"
    assert demo_card(env) == (START, 0)  # not written
    assert applied(env.data_dir) == [(pending_id, DEMO, "other-1")]
    assert env.printer.receipts() == []


# --- C6: the back-office unreachable at the claim ----------------------------------------------------------
def test_an_unanswered_claim_writes_nothing_and_recovery_cancels_it_when_no_claim_landed(
        env: DemoEnvironment) -> None:
    port = int(env.backoffice.url.rsplit(":", 1)[1])
    ui = Watching("collect.writing", env.backoffice.stop)
    result = collect(env, ui)
    tx = result.transaction_id or ""
    assert result.outcome.message_key == "collect.backoffice_unavailable", result
    assert states(env.data_dir, tx) == [S.CREATED, S.FULFILLING]  # left for recovery to ask
    assert demo_card(env) == (START, 0)
    with serve_in_thread(env.backoffice_db_url, port=port):
        async def recover(ctx: KioskContext) -> list[Any]:
            return await Recovery(ctx.journal, ctx.money).run()

        (resolution,) = in_kiosk(env, recover)
        assert (resolution.tx_id, resolution.to_state, resolution.action) == (tx, "CANCELLED", "cancelled")
        # the pending load still waits, and the next tap collects it
        nxt = collect(env)
        assert nxt.outcome.message_key == "collect.done" and nxt.transaction_id != tx
    assert demo_card(env) == (START + DEMO, 1)
    assert [ld[0] for ld in loads(env.data_dir)] == [nxt.transaction_id]


def test_recovery_of_a_landed_claim_keeps_it_as_the_cards_pending_action(env: DemoEnvironment) -> None:
    """A crash between the claim and the write (no fault point needed: the claim is posted and
    the process stops before writing): recovery finds the open claim, journals it owed to the
    card (FULFILLED + POSTED → COMPLETED), never CANCELLED, and the next tap writes it once."""
    from devices.contracts import CardReader
    from devices.transit_card import TransitCard
    from kiosk.services.pending_load import PendingLoadOrder, claim

    async def claimed_then_stop(ctx: KioskContext) -> str:
        reader = ctx.available(CardReader)
        assert reader is not None and ctx.transit_keys is not None
        card = TransitCard(reader, ctx.transit_keys)
        balance = await card.read_balance()
        (pending,) = (await asyncio.to_thread(ctx.backoffice.card_account, balance.serial)).collectable
        order = PendingLoadOrder(pending.pending_load_id, balance.uid, balance.serial, "regular",
                                 balance.balance, balance.seq)
        tx_id = await ctx.money.open_transaction("pending_load", pending.amount_rials, order.to_journal())
        plan = await card.plan_credit(pending.amount_rials, tx_id)
        await ctx.money.writer.append(tx_id, S.FULFILLING, {"write_plan": plan.to_dict()})
        await claim(ctx.backoffice, ctx.journal.get(tx_id), plan)
        ctx.money.release(tx_id)  # the flow is gone
        return tx_id

    tx = in_kiosk(env, claimed_then_stop)

    async def recover(ctx: KioskContext) -> list[Any]:
        return await Recovery(ctx.journal, ctx.money).run()

    (resolution,) = in_kiosk(env, recover)
    assert (resolution.to_state, resolution.resolved) == ("COMPLETED", True)
    assert states(env.data_dir, tx) == [S.CREATED, S.FULFILLING, S.FULFILLED, S.POSTED, S.COMPLETED]
    assert [a.transaction_id for a in account(env).pending_actions] == [tx]
    assert demo_card(env) == (START, 0)
    ui = ScriptedUI({})
    assert collect(env, ui).outcome.message_key == "collect.none" and "card.pending_applied" in ui.keys("step")
    assert demo_card(env) == (START + DEMO, 1)
    assert [(ld[0], ld[1]) for ld in loads(env.data_dir)] == [(tx, "pending_load")]


def test_the_load_post_settles_the_claim_and_answers_the_one_record_whoever_settled_it(
        env: DemoEnvironment) -> None:
    """The kind's post after a verified write: the claim is settled "applied" and the load
    posted; when the card's next tap elsewhere settled it first, the post answers that same
    record (tracking code included), again and again — never a refusal, never a second load."""
    (pending_id, _, _), = applied(env.data_dir)
    tx = "kiosk-demo-01-test-claim-1"
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=0) as client:
        action = client.post_pending_action(PendingActionPost(tx, DEMO_CARD_SERIAL, DEMO_CARD_UID, 0, START + DEMO,
                                                              DEMO, pending_load_id=pending_id), idempotency_key=tx)
        # another kiosk's tap settles it from the card
        client.settle_pending_action(tx, card_serial=DEMO_CARD_SERIAL, outcome="applied", counter_seen=1,
                                     settled_by_transaction_id="kiosk-b-tap-1")
        payload = LoadPost(tx, DEMO_CARD_SERIAL, DEMO_CARD_UID.lower(), 0, 1, DEMO, START + DEMO, "pending_load",
                           pending_id).to_dict()
        first = PENDING_LOAD.post(client, payload, idempotency_key=tx)
        again = PENDING_LOAD.post(client, payload, idempotency_key=tx)
    assert first == again and first.tracking_code == action.tracking_code
    assert loads(env.data_dir) == [(tx, "pending_load", DEMO, 1, START + DEMO, pending_id)]


# --- C7: crashes -----------------------------------------------------------------------------------------------
def kiosk_cli(data: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("KIOSK_FAULT", None)
    if fault:
        env["KIOSK_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "kiosk.cli", "demo", *args, "--data-dir", str(data)],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("point", "written", "ends"), [
    ("after-created", False, "cancelled"),
    ("before-card-write", False, "owed"),
    ("after-card-write", True, "owed"),
    ("after-post-sent", True, "posted"),
])
def test_a_crash_mid_collection_is_recovered_and_never_credited_twice(
        tmp_path: Path, point: str, written: bool, ends: str) -> None:
    """The demo dies (os._exit) at `point`; `kiosk demo --script recover` runs on the same data
    dir. Before the claim (after-created): CANCELLED, the load still waits. After it: the claim
    is the card's pending action (COMPLETED, pending_action), the card holds the value exactly
    when the crash came after the write. After the load post reached the back-office: re-posted,
    the one record answers. Then the card's next tap: 250,000 + 50,000, once."""
    owed = ends == "owed"
    crashed = kiosk_cli(tmp_path, "--headless", "--script", "collect-pending", "--json", fault=point)
    assert crashed.returncode == 99, crashed.stdout[-2000:] + crashed.stderr[-2000:]
    assert f"KIOSK_FAULT: crashing at {point}" in crashed.stderr
    (tx,) = transactions(tmp_path)
    (pending_id, _, _), = applied(tmp_path)

    recovered = kiosk_cli(tmp_path, "--script", "recover", "--json")
    assert recovered.returncode == 0, recovered.stdout[-2000:] + recovered.stderr[-2000:]
    rows = json.loads(recovered.stdout.strip().splitlines()[-1])
    assert [(r["tx_id"], r["resolved"]) for r in rows] == [(tx, True)]
    got = states(tmp_path, tx)
    with journal(tmp_path) as j:
        assert j.open_transactions() == [] and j.verify().ok
        data = j.get(tx).data
    cards, _ = load_cards(tmp_path / "cards.json")
    assert card_state(cards[DEMO_CARD_UID]) == ((START + DEMO, 1) if written else (START, 0))
    actions = backoffice_rows(tmp_path / "backoffice.sqlite3",
                              "SELECT transaction_id, pending_load_id, status FROM transit_pending_actions")
    if ends == "owed":
        assert got == [S.CREATED, S.FULFILLING, S.FULFILLED, S.POSTED, S.COMPLETED] and data["pending_action"]
        assert actions == [(tx, pending_id, "open")]
        assert loads(tmp_path) == [] and applied(tmp_path) == [(pending_id, DEMO, None)]
    elif ends == "posted":
        assert got == [S.CREATED, S.FULFILLING, S.FULFILLED, S.POSTED, S.COMPLETED] and "pending_action" not in data
        assert actions == [(tx, pending_id, "applied")]
        assert loads(tmp_path) == [(tx, "pending_load", DEMO, 1, START + DEMO, pending_id)]
        # applied, so `kiosk demo` (which seeds on every start) gave the demo card a new one
        assert applied(tmp_path)[0] == (pending_id, DEMO, tx)
    else:
        assert got == [S.CREATED, S.CANCELLED] and actions == []
        assert loads(tmp_path) == [] and applied(tmp_path) == [(pending_id, DEMO, None)]

    # the card's next tap, at the collect service
    again = kiosk_cli(tmp_path, "--headless", "--script", "collect-pending", "--json")
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["recovered"] == []
    assert any(s["key"] == "card.pending_applied" for s in summary["transcript"]) == owed
    collected_by = summary["transaction_id"] if ends == "cancelled" else tx
    ledger = loads(tmp_path)
    # the crashed collection's pending load: on the ledger exactly once, applied by one transaction
    assert [(ld[0], ld[1]) for ld in ledger if ld[5] == pending_id] == [(collected_by, "pending_load")]
    assert applied(tmp_path)[0] == (pending_id, DEMO, collected_by)
    # and the card holds exactly what the ledger says was written to it, every load once
    cards, _ = load_cards(tmp_path / "cards.json")
    assert card_state(cards[DEMO_CARD_UID]) == (START + DEMO * len(ledger), len(ledger))
    assert summary["balance_after"] == START + DEMO * len(ledger)
    assert [(ld[3], ld[4]) for ld in ledger] == [(n, START + DEMO * n) for n in range(1, len(ledger) + 1)]
    # the load seeded after the first was applied is the only other thing the tap collected
    assert len(ledger) == (2 if ends == "posted" else 1)
    assert summary["outcome"] == ("collect.none" if ends == "owed" else "collect.done"), summary


# --- C8: the state table per kind --------------------------------------------------------------------------
def _path_to(table: dict[TxState, frozenset[TxState]], target: TxState) -> list[TxState] | None:
    """The shortest run of states from CREATED to `target` in `table` (None: unreachable)."""
    paths: dict[TxState, list[TxState]] = {S.CREATED: []}
    frontier = [S.CREATED]
    while frontier:
        nxt = []
        for state in frontier:
            for after in sorted(table[state]):
                if after not in paths:
                    paths[after] = paths[state] + [after]
                    nxt.append(after)
        frontier = nxt
    return paths.get(target)


def test_each_kind_moves_exactly_as_its_own_table_allows(tmp_path: Path) -> None:
    """Every (state, next) pair, for a value-only kind and a fee: the journal's append accepts
    the move exactly when the kind's table lists it, and the chain verifies afterwards."""
    assert VALUE_ONLY_KINDS == {"pending_load"} and transitions("pending_load") is VALUE_ONLY_ALLOWED
    assert transitions("fee_payment") is ALLOWED and transitions("card_topup") is ALLOWED
    with Journal(tmp_path / "journal.sqlite3", kiosk_id="k1") as j:
        tried = 0
        for kind, table in (("pending_load", VALUE_ONLY_ALLOWED), ("fee_payment", ALLOWED)):
            for current in TxState:
                path = _path_to(table, current)
                if path is None:
                    continue  # a state this kind never reaches
                for requested in TxState:
                    tx = j.begin(kind, 50_000).tx_id
                    for state in path:
                        j.append(tx, state)
                    if requested in table[current]:
                        assert j.append(tx, requested).state is requested
                    else:
                        with pytest.raises(IllegalTransition):
                            j.append(tx, requested)
                        assert j.state_of(tx) is current
                    tried += 1
        assert j.verify().ok
    assert tried > 200
    # no way to PAYING, PAID or a reversal for a value-only kind: there is nothing to give back
    for state in (S.PAYING, S.PAID, S.DECLINED, S.REVERSING, S.REVERSED, S.REFUND_PENDING):
        assert _path_to(VALUE_ONLY_ALLOWED, state) is None
    assert PENDING_LOAD.refusals == () and kind_of("pending_load") is PENDING_LOAD


def test_a_fee_row_going_created_to_fulfilling_is_refused_by_append_and_reported_by_verify(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with Journal(path, kiosk_id="k1") as j:
        fee = j.begin("fee_payment", 10_000).tx_id
        value = j.begin("pending_load", 10_000).tx_id
        with pytest.raises(IllegalTransition):  # the cached head (fast path)
            j.append(fee, S.FULFILLING, {"write_plan": {}})
        with pytest.raises(IllegalTransition):  # one commit of several steps (checked in the file)
            j.append_many(fee, [(S.FULFILLING, None), (S.FULFILLED, None)])
        assert j.append(value, S.FULFILLING).state is S.FULFILLING
    with Journal(path, kiosk_id="k1") as j:  # a fresh process: no cache, the stored head
        with pytest.raises(IllegalTransition):
            j.append(fee, S.FULFILLING)
        assert j.state_of(fee) is S.CREATED and j.verify().ok

    # written around the API: the verifier reports it, for the fee only
    conn = sqlite3.connect(path, isolation_level=None)
    seq, prev = conn.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
    forged = (fee, "FULFILLING", 1_700_000_000.0, "fee_payment", 10_000, "{}")
    conn.execute("INSERT INTO journal VALUES (?,?,?,?,?,?,?,?,?)", (seq + 1, *forged, prev, entry_hash(prev, *forged)))
    conn.close()
    with Journal(path, kiosk_id="k1") as j:
        report = j.verify()
    assert [(p.seq, p.kind) for p in report.problems] == [(seq + 1, "illegal_transition")]
    assert "CREATED → FULFILLING" in report.problems[0].detail and "fee_payment" in report.problems[0].detail


def test_verify_checks_a_row_against_its_transactions_kind_not_the_kind_it_claims() -> None:
    """A fee transaction's row that names the value-only kind cannot borrow its table."""
    def chain(rows: list[tuple[str, str, str]]) -> list[tuple[Any, ...]]:
        out, prev = [], "0" * 64
        for seq, (tx, state, kind) in enumerate(rows, 1):
            values = (tx, state, 1_700_000_000.0 + seq, kind, 10_000, "{}")
            digest = entry_hash(prev, *values)
            out.append((seq, *values, prev, digest))
            prev = digest
        return out

    good = chain([("v1", "CREATED", "pending_load"), ("v1", "FULFILLING", "pending_load"),
                  ("v1", "CANCELLED", "pending_load")])
    assert verify_rows(good).ok
    borrowed = verify_rows(chain([("f1", "CREATED", "fee_payment"), ("f1", "FULFILLING", "pending_load")]))
    assert [(p.seq, p.kind) for p in borrowed.problems] == [(2, "illegal_transition"), (2, "illegal_transition")]
    reversed_value = verify_rows(chain([("v2", "CREATED", "pending_load"), ("v2", "FULFILLING", "pending_load"),
                                        ("v2", "REVERSING", "pending_load")]))
    assert [p.seq for p in reversed_value.problems] == [3]
