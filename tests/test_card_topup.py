"""Issue 8, card top-up (commit 9018208) end to end: CardTopupFlow through a KioskContext on the
embedded demo environment — the real PN532 driver against the virtual reader (whose cards
persist in the data dir), the nexo driver against its simulator, the ESC/POS printer emulator
and the real back-office on loopback. Every test checks that the three ledgers agree to the
rial: the card (read straight from its blocks, or through TransitCard), the terminal (what
the card holder is out of pocket) and the back-office (the card's account), plus the journal.

The rules checked (issue 8 and kiosk/services/topup.py):
  R1  a top-up writes the value to the card once, the counter moves by one, the back-office
      records the load with that balance and counter, the terminal charges once, a signed
      receipt is issued, the transaction ends COMPLETED
  R2  an amount outside the configured limits or over the card's maximum is refused before any
      money moves, and asked again; three refusals end the visit with nothing journaled
  R3  a card pulled during the write is UNCERTAIN; the same card put back tells by its counters
      whether the write landed: the value lands exactly once (roll forward, never twice)
  R4  a card that does not come back after a tear leaves a pending action at the back-office
      with the intended balance; the payment is never reversed once the write plan is journaled
  R5  a paid top-up whose card left before anything was written is reversed
  R6  the back-office down after the write: the value stays on the card and the load post
      waits in the outbox (store-and-forward) until it is posted
  R7  a crash at any point: after the plan is journaled never reversed (a pending action is
      owed to the card); before it, reversed
  R8  a concession card (senior, student) shows its profile
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest

from backoffice.server import serve_in_thread
from devices.contracts import CardReader
from devices.mifare_classic_virtual import VirtualCard, load_cards
from devices.transit_card import DEMO_MASTER_KEY, TransitCard, TxType, WriteOutcome, WritePlan
from devices.transit_card.demo import DEMO_CARD_SERIAL, DEMO_CARD_UID, describe_virtual_card, issue_virtual_card
from kiosk.backoffice_client import BackofficeClient, CardAccount
from kiosk.commands.recover import recover
from kiosk.context import KioskContext
from kiosk.flows.card_topup import CardTopupFlow, TopupResult
from kiosk.journal import Journal, OutboxStatus, TxState, journal_path
from kiosk.receipts import load_or_create_key, verify_payload
from kiosk.scripted_ui import ScriptedUI
from kiosk.settings import KioskSettings
from kiosk.ui_port import Choice
from kiosk_demo.environment import DemoEnvironment, demo_environment

T = TypeVar("T")

START = 250_000  # the demo card's balance
AMOUNT = 200_000
TOPUP = {"topup.choose_amount": str(AMOUNT), "topup.confirm": True}
HAPPY_STATES = [TxState.CREATED, TxState.PAYING, TxState.PAID, TxState.FULFILLING, TxState.FULFILLED,
                TxState.POSTED, TxState.COMPLETED]


# --- the kiosk and its three ledgers -------------------------------------------------------------------
@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with demo_environment(tmp_path) as environment:
        yield environment


def settings_of(env: DemoEnvironment, **overrides: Any) -> KioskSettings:
    return KioskSettings(**{**env.settings.__dict__, **overrides})


def in_kiosk(env: DemoEnvironment, work: Callable[[KioskContext], Awaitable[T]], **overrides: Any) -> T:
    """Run `work` in a kiosk process (a KioskContext) on the demo environment, then close it."""

    async def go() -> T:
        ctx = await KioskContext.open(settings_of(env, **overrides), env.data_dir)
        try:
            return await work(ctx)
        finally:
            await ctx.close()

    return asyncio.run(go())


def topup(env: DemoEnvironment, ui: ScriptedUI, **overrides: Any) -> TopupResult:
    async def work(ctx: KioskContext) -> TopupResult:
        return await CardTopupFlow(ctx, ui).run()

    return in_kiosk(env, work, **overrides)


def journal(data: Path) -> Journal:
    return Journal(journal_path(data), kiosk_id="check")


def states(data: Path, tx_id: str) -> list[TxState]:
    with journal(data) as j:
        return [e.state for e in j.get(tx_id).entries]


def card_state(card: VirtualCard) -> tuple[int, int]:
    """(balance, counter) the card holds, read straight from its blocks (no reader, no kiosk)."""
    summary = describe_virtual_card(card)
    assert "error" not in summary, summary
    return int(summary["balance_rials"]), int(summary["counter"])  # type: ignore[call-overload]


def demo_card_state(env: DemoEnvironment) -> tuple[int, int]:
    return card_state(env.card_reader.cards[DEMO_CARD_UID])


def account(url: str, token: str, serial: str = DEMO_CARD_SERIAL) -> CardAccount:
    with BackofficeClient(url, token, retries=1) as client:
        return client.card_account(serial)


def env_account(env: DemoEnvironment, serial: str = DEMO_CARD_SERIAL) -> CardAccount:
    return account(env.settings.backoffice_url, env.settings.backoffice_token, serial)


def charges(env: DemoEnvironment, tx_id: str) -> list[dict[str, Any]]:
    return [s for s in env.terminal.ledger() if s["reference"] == tx_id]


def write_plan_of(data: Path, tx_id: str) -> WritePlan:
    with journal(data) as j:
        plans = [e.data["write_plan"] for e in j.get(tx_id).entries
                 if e.state == TxState.FULFILLING and "write_plan" in e.data]
    assert len(plans) == 1, plans
    return WritePlan.from_dict(plans[0])


def read_through_reader(env: DemoEnvironment, plan: WritePlan | None = None) -> tuple[Any, Any, Any]:
    """The card on the reader as a kiosk reads it (the PN532 driver, TransitCard): balance,
    its log, and — given a plan — whether that plan is on the card."""

    async def work(ctx: KioskContext) -> tuple[Any, Any, Any]:
        reader = ctx.available(CardReader)
        assert reader is not None and ctx.transit_keys is not None
        card = TransitCard(reader, ctx.transit_keys)
        balance, trips = await card.read_card()
        outcome = await card.outcome_of(plan) if plan is not None else None
        return balance, trips, outcome

    return in_kiosk(env, work)


class Watching(ScriptedUI):
    """A scripted citizen who does something at a given step (`act` runs when the flow shows
    `at`) and who remembers the options every question offered."""

    def __init__(self, script: dict[str, Any], at: str = "", act: Callable[[], None] | None = None) -> None:
        super().__init__(script)
        self.at, self.act = at, act
        self.acted = 0
        self.offered: list[list[str]] = []

    async def show_step(self, key: str, **params: Any) -> None:
        await super().show_step(key, **params)
        if key == self.at and self.act is not None:
            self.acted += 1
            self.act()

    async def choose(self, key: str, options: list[Choice], **params: Any) -> str:
        self.offered.append([o.id for o in options])
        return await super().choose(key, options, **params)


# --- R1: the happy path ---------------------------------------------------------------------------------
def test_topup_lands_once_on_card_terminal_and_backoffice_with_a_verifiable_receipt(env: DemoEnvironment) -> None:
    """R1: 250,000 + 200,000 → the card holds 450,000 at counter +1, the back-office records
    that load with that balance and counter, the terminal charged 200,000 once, COMPLETED,
    and the receipt's payload verifies against the kiosk's key."""
    assert demo_card_state(env) == (START, 0)
    ui = Watching(TOPUP)
    result = topup(env, ui)
    tx = result.transaction_id
    assert tx is not None
    assert result.final_state == TxState.COMPLETED and result.outcome.ok, result
    assert result.outcome.message_key == "topup.done"
    assert (result.balance_before, result.balance_after, result.amount_rials) == (START, START + AMOUNT, AMOUNT)
    assert not [k for k in ui.keys("step") if k.startswith("card.profile.")]  # a regular card has none
    # the card
    assert demo_card_state(env) == (START + AMOUNT, 1)
    balance, trips, outcome = read_through_reader(env, write_plan_of(env.data_dir, tx))
    assert (balance.balance, balance.seq, balance.serial) == (START + AMOUNT, 1, DEMO_CARD_SERIAL)
    assert outcome == WriteOutcome.APPLIED
    assert [(t.tx_type, t.amount, t.seq) for t in trips] == [(TxType.TOPUP, AMOUNT, 1)]
    # the terminal
    assert env.terminal.net_charged(tx) == AMOUNT
    assert [(c["status"], c["amount_rials"]) for c in charges(env, tx)] == [("approved", AMOUNT)]
    # the back-office
    acct = env_account(env)
    assert acct.known and (acct.last_balance, acct.last_counter) == (START + AMOUNT, 1)
    assert [(ld.transaction_id, ld.amount_rials, ld.balance_after, ld.counter_after) for ld in acct.loads] == [
        (tx, AMOUNT, START + AMOUNT, 1)]
    assert acct.pending_actions == ()
    # the journal
    assert states(env.data_dir, tx) == HAPPY_STATES
    with journal(env.data_dir) as j:
        assert j.verify().ok and j.open_transactions() == []
        assert [i.status for i in j.outbox_for(tx)] == [OutboxStatus.ACKED]
    # the receipt: printed, and its payload verifies
    assert result.receipt_payload
    receipts = env.printer.receipts()
    assert len(receipts) == 1 and receipts[0].qr_codes == [result.receipt_payload]
    verified = verify_payload(result.receipt_payload, load_or_create_key(env.data_dir).public_key)
    assert (verified.tx_id, verified.amount_rials, verified.bill_id) == (tx, AMOUNT, DEMO_CARD_SERIAL)


# --- R2: amounts --------------------------------------------------------------------------------------------
NEAR_FULL_UID, NEAR_FULL_SERIAL, NEAR_FULL = "04d00d01", "9364010003", 9_600_000  # room: 400,000


def test_three_refused_amounts_each_show_their_error_ask_again_and_journal_nothing(env: DemoEnvironment) -> None:
    """R2: below topup_min_rials, above topup_max_rials, and over card_max_balance_rials (a
    card 400,000 short of the maximum) are each refused with their own error and the amount is
    asked again; presets that would overfill the card are not offered; after three refusals
    nothing is journaled and the terminal was never asked."""
    env.card_reader.place(issue_virtual_card(NEAR_FULL_UID, DEMO_MASTER_KEY, NEAR_FULL, NEAR_FULL_SERIAL))
    s = env.settings
    assert (s.topup_min_rials, s.topup_max_rials, s.card_max_balance_rials) == (20_000, 5_000_000, 10_000_000)
    ui = Watching({"topup.choose_amount": ["other"] * 3,
                   "topup.enter_amount": ["19999", "5000001", "400001"], "topup.confirm": True})
    result = topup(env, ui)
    assert ui.keys("error") == ["topup.amount_out_of_range", "topup.amount_out_of_range", "topup.over_card_max"]
    assert ui.keys("choose") == ["topup.choose_amount"] * 3 and ui.keys("digits") == ["topup.enter_amount"] * 3
    assert ui.offered == [["100000", "200000", "other"]] * 3  # 500,000 and 1,000,000 would overfill it
    assert ui.keys("confirm") == []
    assert result.transaction_id is None and result.final_state is None and not result.outcome.ok
    with journal(env.data_dir) as j:
        assert j.transactions() == []
    assert env.terminal.ledger() == []
    assert card_state(env.card_reader.cards[NEAR_FULL_UID]) == (NEAR_FULL, 0)


def test_an_amount_asked_again_after_a_refusal_may_fill_the_card_exactly_to_its_maximum(env: DemoEnvironment) -> None:
    """R2 (the edges): after a refused amount the citizen is asked again, and the amount that
    takes the card exactly to card_max_balance_rials is accepted and lands once."""
    env.card_reader.place(issue_virtual_card(NEAR_FULL_UID, DEMO_MASTER_KEY, NEAR_FULL, NEAR_FULL_SERIAL))
    ui = Watching({"topup.choose_amount": ["other", "other"], "topup.enter_amount": ["400001", "400000"],
                   "topup.confirm": True})
    result = topup(env, ui)
    assert ui.keys("error") == ["topup.over_card_max"]
    assert result.final_state == TxState.COMPLETED, result
    assert card_state(env.card_reader.cards[NEAR_FULL_UID]) == (10_000_000, 1)
    assert env.terminal.net_charged(result.transaction_id or "") == 400_000
    acct = env_account(env, NEAR_FULL_SERIAL)
    assert (acct.last_balance, acct.last_counter) == (10_000_000, 1)


# --- R3: a tear, the same card put back -------------------------------------------------------------------
TEARS = [  # (at_op, after_bytes): 1 the log entry, 2 the value block, 3 the commit record
    (1, 0), (2, 0), (3, 0), (1, 9), (2, 7), (3, 8), (3, 16),
]


@pytest.mark.parametrize(("at_op", "after_bytes"), TEARS, ids=[f"op{o}-{b}B" for o, b in TEARS])
def test_a_tear_with_the_same_card_put_back_lands_the_value_exactly_once(
        env: DemoEnvironment, at_op: int, after_bytes: int) -> None:
    """R3: the card leaves the field during write step `at_op` (after `after_bytes` of that
    block); the flow shows topup.place_again, the citizen puts the same card back: UNCERTAIN
    is journaled before FULFILLED, the card holds 450,000 at counter 1 (never 650,000), the
    back-office load and the terminal charge agree, COMPLETED."""
    reader = env.card_reader

    def put_back() -> None:
        assert reader.torn_card is not None and reader.card is None
        reader.place(reader.torn_card)

    ui = Watching(TOPUP, at="topup.place_again", act=put_back)
    reader.tear_next_write(at_op=at_op, after_bytes=after_bytes)
    result = topup(env, ui)
    tx = result.transaction_id or ""
    assert ui.acted == 1, (
        "after the tear the flow must ask for the same card again (topup.place_again): a card leaving "
        f"the field must not leave the reader unusable; steps {ui.keys('step')}, outcome {result.outcome.message_key}")
    assert result.final_state == TxState.COMPLETED and result.outcome.message_key == "topup.done", result
    assert result.balance_after == START + AMOUNT
    assert demo_card_state(env) == (START + AMOUNT, 1)
    balance, trips, outcome = read_through_reader(env, write_plan_of(env.data_dir, tx))
    assert (balance.balance, balance.seq, outcome) == (START + AMOUNT, 1, WriteOutcome.APPLIED)
    assert [(t.tx_type, t.amount) for t in trips] == [(TxType.TOPUP, AMOUNT)]
    assert env.terminal.net_charged(tx) == AMOUNT and len(charges(env, tx)) == 1
    acct = env_account(env)
    assert (acct.last_balance, acct.last_counter, acct.pending_actions) == (START + AMOUNT, 1, ())
    assert [(ld.transaction_id, ld.balance_after) for ld in acct.loads] == [(tx, START + AMOUNT)]
    got = states(env.data_dir, tx)
    assert got == [TxState.CREATED, TxState.PAYING, TxState.PAID, TxState.FULFILLING, TxState.UNCERTAIN,
                   TxState.FULFILLED, TxState.POSTED, TxState.COMPLETED]


# --- R4: a tear, the card not put back ---------------------------------------------------------------------
@pytest.mark.parametrize(("at_op", "after_bytes"), [(1, 0), (2, 0), (3, 8), (3, 16)],
                         ids=["op1", "op2", "op3-8B", "op3-16B"])
def test_a_tear_without_the_card_coming_back_leaves_a_pending_action_and_is_never_reversed(
        env: DemoEnvironment, at_op: int, after_bytes: int) -> None:
    """R4: the card is torn away and not put back within card_return_wait_s: the back-office
    holds an open pending action for the serial with the intended balance, the terminal keeps
    the charge (no reversal), the card holds exactly what outcome_of says (unchanged, or the
    value when the commit record was whole), outcome topup.pending_action, the journal ends
    COMPLETED with pending_action, and a receipt was issued."""
    reader = env.card_reader
    reader.tear_next_write(at_op=at_op, after_bytes=after_bytes)
    ui = Watching(TOPUP)
    result = topup(env, ui, card_return_wait_s=1.0)
    tx = result.transaction_id or ""
    assert result.outcome.message_key == "topup.pending_action", result
    assert result.final_state in (TxState.COMPLETED, TxState.POSTED)
    with journal(env.data_dir) as j:
        t = j.get(tx)
        assert t.data.get("pending_action") is True and t.state == result.final_state
    got = states(env.data_dir, tx)
    assert got[:5] == [TxState.CREATED, TxState.PAYING, TxState.PAID, TxState.FULFILLING, TxState.UNCERTAIN]
    assert TxState.REVERSING not in got and TxState.REVERSED not in got
    # the terminal: charged once, not reversed
    assert env.terminal.net_charged(tx) == AMOUNT
    assert [c["status"] for c in charges(env, tx)] == ["approved"]
    # the back-office: the open pending action, no load
    acct = env_account(env)
    assert [(a.transaction_id, a.status, a.counter_before, a.intended_balance, a.amount_rials)
            for a in acct.pending_actions] == [(tx, "open", 0, START + AMOUNT, AMOUNT)]
    assert acct.loads == ()
    # a receipt was issued and printed
    assert result.receipt_payload and [r.qr_codes for r in env.printer.receipts()] == [[result.receipt_payload]]
    # the card: what outcome_of tells, and the blocks agree with it
    torn = reader.torn_card
    assert torn is not None and reader.card is None
    plan = write_plan_of(env.data_dir, tx)
    reader.place(torn)
    _, _, outcome = read_through_reader(env, plan)
    on_card = demo_card_state(env)
    if outcome == WriteOutcome.APPLIED:
        assert on_card == (START + AMOUNT, 1)
    else:
        assert on_card == (START, 0)
    # only a whole commit record is a landed write
    assert outcome == (WriteOutcome.APPLIED if (at_op, after_bytes) == (3, 16) else WriteOutcome.NOT_APPLIED)
    # and the citizen was asked for the card for card_return_wait_s before the kiosk gave up
    assert "topup.place_again" in ui.keys("step"), (
        "a pending action is recorded only after asking for the card back (topup.place_again); "
        f"steps {ui.keys('step')}")


# --- R5: the card gone before the write -------------------------------------------------------------------
def test_a_card_gone_after_payment_before_the_plan_is_reversed(env: DemoEnvironment) -> None:
    """R5: the card is lifted once the payment is approved (the flow shows topup.writing) and
    not put back within card_return_wait_s: nothing was planned or written, so the payment is
    REVERSED (the terminal nets 0), the card is unchanged and the back-office holds nothing."""
    reader = env.card_reader
    ui = Watching(TOPUP, at="topup.writing", act=reader.remove)
    result = topup(env, ui, card_return_wait_s=1.0)
    tx = result.transaction_id or ""
    assert ui.acted == 1
    assert "topup.place_again" in ui.keys("step")  # asked for the card before giving the money back
    assert result.final_state == TxState.REVERSED, result
    assert result.outcome.message_key == "topup.not_written_reversed"
    assert states(env.data_dir, tx) == [TxState.CREATED, TxState.PAYING, TxState.PAID, TxState.REVERSING,
                                       TxState.REVERSED]
    assert env.terminal.net_charged(tx) == 0
    assert [c["status"] for c in charges(env, tx)] == ["reversed"]
    assert demo_card_state(env) == (START, 0)
    acct = env_account(env)
    assert (acct.known, acct.loads, acct.pending_actions) == (False, (), ())
    with journal(env.data_dir) as j:
        assert j.open_transactions() == [] and j.outbox_for(tx) == []


def test_a_card_lifted_after_payment_and_put_back_when_asked_is_topped_up_not_reversed(env: DemoEnvironment) -> None:
    """R5 (its other side) and R1: the card is lifted once the payment is approved; the flow asks
    for it again (topup.place_again) and the citizen puts it back: the write goes ahead on it —
    COMPLETED, 450,000 on the card, the load recorded, charged once and not reversed."""
    reader = env.card_reader
    lifted: list[VirtualCard] = []

    def lift() -> None:
        assert reader.card is not None
        lifted.append(reader.card)
        reader.remove()

    class LiftThenPutBack(Watching):
        async def show_step(self, key: str, **params: Any) -> None:
            await super().show_step(key, **params)
            if key == "topup.place_again":
                reader.place(lifted[0])

    ui = LiftThenPutBack(TOPUP, at="topup.writing", act=lift)
    result = topup(env, ui, card_return_wait_s=2.0)
    tx = result.transaction_id or ""
    assert "topup.place_again" in ui.keys("step"), (
        f"the card was not asked for again; outcome {result.outcome.message_key}, steps {ui.keys('step')}")
    assert result.final_state == TxState.COMPLETED and result.outcome.message_key == "topup.done", result
    assert demo_card_state(env) == (START + AMOUNT, 1)
    assert env.terminal.net_charged(tx) == AMOUNT
    acct = env_account(env)
    assert (acct.last_balance, acct.last_counter, acct.pending_actions) == (START + AMOUNT, 1, ())


def test_after_a_card_left_mid_write_the_same_kiosk_serves_the_next_citizen(env: DemoEnvironment) -> None:
    """R3/R4 (the kiosk carries on): in one running kiosk, a top-up whose card is torn away and
    not brought back ends as a pending action; the same card tapped for the next top-up at that
    kiosk is served — the tap settles the pending action, then the new top-up lands: card,
    back-office and terminal agree (250,000 + 200,000 + 100,000)."""
    reader = env.card_reader
    reader.tear_next_write(at_op=1)
    second_ui = Watching({"topup.choose_amount": "100000", "topup.confirm": True})

    async def work(ctx: KioskContext) -> tuple[TopupResult, TopupResult, str]:
        first = await CardTopupFlow(ctx, Watching(TOPUP)).run()
        reader_state = str(ctx.devices.first(CardReader).state)  # type: ignore[union-attr]
        assert reader.torn_card is not None
        reader.place(reader.torn_card)  # the citizen (or the next one) taps the card
        second = await CardTopupFlow(ctx, second_ui).run()
        return first, second, reader_state

    first, second, reader_state = in_kiosk(env, work, card_return_wait_s=1.0)
    assert first.outcome.message_key == "topup.pending_action", first
    assert second.outcome.message_key != "service.unavailable", (
        f"a torn card write must not leave the card reader unusable (it is {reader_state!r}): the next "
        "citizen's card service at this kiosk must run")
    assert second.final_state == TxState.COMPLETED, second
    assert "card.pending_applied" in second_ui.keys("step")
    assert demo_card_state(env) == (START + AMOUNT + 100_000, 2)
    acct = env_account(env)
    assert (acct.last_balance, acct.last_counter, acct.pending_actions) == (START + AMOUNT + 100_000, 2, ())
    assert env.terminal.net_charged(first.transaction_id or "") == AMOUNT
    assert env.terminal.net_charged(second.transaction_id or "") == 100_000


# --- R6: the back-office down at posting time --------------------------------------------------------------
@pytest.mark.parametrize("finisher", ["recovery", "outbox_worker"])
def test_backoffice_down_after_the_write_queues_the_load_and_it_is_posted_when_it_returns(
        env: DemoEnvironment, finisher: str) -> None:
    """R6: the back-office stops while the card is written: the card holds 450,000, the outcome
    is topup.done_pending, the journal is FULFILLED with the load queued in the outbox; once
    the back-office is back (same port) recovery, or the running kiosk's outbox worker, posts
    it: COMPLETED, and the back-office balance and counter match the card."""
    port = int(env.backoffice.url.rsplit(":", 1)[1])
    ui = Watching(TOPUP, at="topup.writing", act=env.backoffice.stop)
    result = topup(env, ui)
    tx = result.transaction_id or ""
    assert result.outcome.ok and result.outcome.message_key == "topup.done_pending", result
    assert result.final_state == TxState.FULFILLED
    assert demo_card_state(env) == (START + AMOUNT, 1)
    assert env.terminal.net_charged(tx) == AMOUNT
    assert result.receipt_payload
    with journal(env.data_dir) as j:
        assert [(i.kind, i.status) for i in j.outbox_for(tx)] == [("card_load", OutboxStatus.PENDING)]
    with serve_in_thread(env.backoffice_db_url, port=port):
        if finisher == "recovery":
            resolved = asyncio.run(recover(env.data_dir, env.settings))
            assert [(r["tx_id"], r["to_state"]) for r in resolved] == [(tx, "COMPLETED")]
        else:
            async def work(ctx: KioskContext) -> TxState:
                item = ctx.journal.outbox_for(tx)[0]
                ctx.journal.outbox_record_attempt(item.id, "test: due now", 0.0)
                ctx.start_outbox_worker(interval_s=0.1)
                for _ in range(100):
                    if ctx.journal.state_of(tx) == TxState.COMPLETED:
                        break
                    await asyncio.sleep(0.05)
                return ctx.journal.state_of(tx)

            assert in_kiosk(env, work) == TxState.COMPLETED
        acct = env_account(env)
    assert (acct.last_balance, acct.last_counter) == demo_card_state(env) == (START + AMOUNT, 1)
    assert [(ld.transaction_id, ld.amount_rials) for ld in acct.loads] == [(tx, AMOUNT)]
    assert acct.pending_actions == ()
    assert states(env.data_dir, tx) == HAPPY_STATES
    assert env.terminal.net_charged(tx) == AMOUNT


# --- R7: crashes ----------------------------------------------------------------------------------------------
def kiosk_cli(data: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("KIOSK_FAULT", None)
    if fault:
        env["KIOSK_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "kiosk.cli", "demo", *args, "--data-dir", str(data)],
                          env=env, capture_output=True, text=True, timeout=120)


def ledgers_at_rest(data: Path) -> tuple[tuple[int, int], dict[str, list[tuple[str, int]]], CardAccount]:
    """A stopped demo's three ledgers: the demo card (its blocks, from the data dir), the
    terminal's sales by reference, and the card's back-office account (served again to ask)."""
    cards, _ = load_cards(data / "cards.json")
    ledger = sqlite3.connect(data / "terminal-ledger.sqlite3")
    sales: dict[str, list[tuple[str, int]]] = {}
    for ref, status, amount in ledger.execute("SELECT reference, status, amount_rials FROM sales ORDER BY rowid"):
        sales.setdefault(ref, []).append((status, amount))
    ledger.close()
    token = json.loads((data / "demo-credentials.json").read_text())["token"]
    with serve_in_thread(f"sqlite:///{data / 'backoffice.sqlite3'}") as server:
        acct = account(server.url, token)
    return card_state(cards[DEMO_CARD_UID]), sales, acct


@pytest.mark.parametrize(("point", "written", "reversed_"), [
    ("before-card-write", False, False),
    ("after-card-write", True, False),
    ("after-paid", False, True),
])
def test_a_crash_mid_topup_is_recovered_without_refunding_a_planned_write(
        tmp_path: Path, point: str, written: bool, reversed_: bool) -> None:
    """R7: the demo crashes (os._exit) at `point`, then `kiosk demo --script recover` runs on
    the same data dir. After the write plan is journaled the top-up is never reversed: the
    terminal keeps the charge, the back-office holds an open pending action for the card with
    the intended balance, and the card holds the value exactly when the crash came after the
    write. Crashed right after payment (nothing planned): reversed, card unchanged. Then the
    card's next top-up (its next tap) leaves card = 250,000 + every top-up not reversed, and
    the back-office agrees with no action left open."""
    crashed = kiosk_cli(tmp_path, "--headless", "--script", "topup", "--json", fault=point)
    assert crashed.returncode == 99, crashed.stdout[-2000:] + crashed.stderr[-2000:]
    assert f"KIOSK_FAULT: crashing at {point}" in crashed.stderr
    with journal(tmp_path) as j:
        (tx_id,) = [t.tx_id for t in j.transactions()]

    recovered = kiosk_cli(tmp_path, "--script", "recover", "--json")
    assert recovered.returncode == 0, recovered.stdout[-2000:] + recovered.stderr[-2000:]
    rows = json.loads(recovered.stdout.strip().splitlines()[-1])
    assert [(r["tx_id"], r["resolved"]) for r in rows] == [(tx_id, True)]

    got = states(tmp_path, tx_id)
    with journal(tmp_path) as j:
        assert j.open_transactions() == [] and j.verify().ok
        data = j.get(tx_id).data
    on_card, sales, acct = ledgers_at_rest(tmp_path)
    if reversed_:
        assert rows[0]["to_state"] == "REVERSED" and got[-1] == TxState.REVERSED
        assert sales == {tx_id: [("reversed", AMOUNT)]}
        assert on_card == (START, 0)
        assert (acct.loads, acct.pending_actions) == ((), ())
    else:
        assert TxState.REVERSING not in got and TxState.REVERSED not in got, got
        assert got[-1] == TxState.COMPLETED and data.get("pending_action") is True, got
        assert sales == {tx_id: [("approved", AMOUNT)]}
        assert [(a.transaction_id, a.status, a.counter_before, a.intended_balance)
                for a in acct.pending_actions] == [(tx_id, "open", 0, START + AMOUNT)]
        assert acct.loads == ()
        assert on_card == ((START + AMOUNT, 1) if written else (START, 0))

    # the card's next tap: another top-up of 200,000 on the same data dir
    again = kiosk_cli(tmp_path, "--headless", "--script", "topup", "--json")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["final_state"] == "COMPLETED" and summary["recovered"] == []
    tx2 = summary["transaction_id"]
    delivered = [tx2] if reversed_ else [tx_id, tx2]
    on_card, sales, acct = ledgers_at_rest(tmp_path)
    assert on_card == (START + AMOUNT * len(delivered), len(delivered))
    assert summary["balance_after"] == on_card[0]
    assert sales[tx2] == [("approved", AMOUNT)]
    assert (acct.last_balance, acct.last_counter) == on_card
    assert sorted(ld.transaction_id for ld in acct.loads) == sorted(delivered)
    assert acct.pending_actions == ()


# --- R8: concession cards ------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["senior", "student"])
def test_a_concession_card_shows_its_profile_and_tops_up_like_any_other(env: DemoEnvironment, profile: str) -> None:
    """R8: a senior or student card shows card.profile.<profile> after its balance (a regular
    card shows none: see the happy-path test), and its top-up agrees on all three ledgers."""
    uid, serial = "04e1e2e3", "9364010009"
    env.card_reader.place(issue_virtual_card(uid, DEMO_MASTER_KEY, 50_000, serial, profile))
    ui = Watching({"topup.choose_amount": "100000", "topup.confirm": True})
    result = topup(env, ui)
    steps = ui.keys("step")
    assert steps[:5] == ["card.place", "card.reading", "card.balance", f"card.profile.{profile}", "card.trips"]
    balance_shown = next(s for s in ui.transcript if s.key == "card.balance")
    assert balance_shown.params["profile"] == profile and balance_shown.params["serial"] == serial
    assert result.final_state == TxState.COMPLETED, result
    assert card_state(env.card_reader.cards[uid]) == (150_000, 1)
    assert env.terminal.net_charged(result.transaction_id or "") == 100_000
    acct = env_account(env, serial)
    assert (acct.last_balance, acct.last_counter) == (150_000, 1)
