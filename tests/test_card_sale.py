"""Issue 8, item 3 — buy a new transit card — end to end: CardSaleFlow through a KioskContext on
the embedded demo environment: the simulated dispenser linked to the virtual PN532 (a dispensed
card is a blank MIFARE Classic card in the reader's field), the real PN532 driver, the nexo
driver against its simulator, the ESC/POS printer emulator and the real back-office on
loopback. Every test checks the ledgers that must agree: the card (read from its blocks or
through the reader), the dispenser's stacker and bin, the terminal (what the buyer is out of
pocket) and the back-office (the card's account), plus the journal.

Rules (kiosk/services/card_sale.py, docs/card-sale.md):
  S1  a sale charges price + value once, hands over a card that reads back with its serial and
      value at counter 0, and the back-office binds serial and UID with a card_sale load
  S2  an empty stacker: the service is unavailable, nothing asked, nothing journaled
  S3  a declined payment: no card leaves the stacker
  S4  a card not handed over (jam, torn personalisation, failed eject) is captured when the
      dispenser can, and the payment is reversed; the back-office never hears of its serial
  S5  a crash at any point: a card that never left the machine → reversed and captured; a card
      that left → recorded; never both, never neither
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, TypeVar

import pytest

from devices.base import MediaError
from devices.contracts import CardDispenser, CardReader
from devices.dispenser.simulator import SimulatedDispenser
from devices.mifare_classic_virtual import VirtualCard
from devices.transit_card import TransitCard
from devices.transit_card.demo import DEMO_CARD_UID, describe_virtual_card
from kiosk.backoffice_client import BackofficeClient, CardAccount
from kiosk.context import KioskContext
from kiosk.flows.card_sale import CardSaleFlow, CardSaleResult
from kiosk.journal import Journal, OutboxStatus, TxState, journal_path
from kiosk.receipts import load_or_create_key, verify_payload
from kiosk.recovery import Recovery, Resolution
from kiosk.scripted_ui import ScriptedUI
from kiosk.services.card_sale import CARD_PRICE_RIALS, attach_devices, luhn_digit
from kiosk.settings import KioskSettings
from kiosk_demo.environment import DemoEnvironment, demo_environment

T = TypeVar("T")

VALUE = 200_000
TOTAL = CARD_PRICE_RIALS + VALUE
BUY = {"card_sale.choose_value": str(VALUE), "card_sale.confirm": True}
STACKER = 50  # the demo dispenser's
HAPPY = [TxState.CREATED, TxState.PAYING, TxState.PAID, TxState.FULFILLING, TxState.UNCERTAIN, TxState.FULFILLED,
         TxState.POSTED, TxState.COMPLETED]


# --- the kiosk and its ledgers -----------------------------------------------------------------------------
@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with demo_environment(tmp_path) as environment:
        yield environment


def in_kiosk(env: DemoEnvironment, work: Callable[[KioskContext], Awaitable[T]], **overrides: Any) -> T:
    """Run `work` in a kiosk process (a KioskContext on the demo environment), then close it."""

    async def go() -> T:
        ctx = await KioskContext.open(KioskSettings(**{**env.settings.__dict__, **overrides}), env.data_dir)
        try:
            return await work(ctx)
        finally:
            await ctx.close()

    return asyncio.run(go())


def dispenser_of(ctx: KioskContext) -> SimulatedDispenser:
    found = ctx.devices.first(CardDispenser)
    assert isinstance(found, SimulatedDispenser)
    return found


def buy(env: DemoEnvironment, ui: ScriptedUI, before: Callable[[KioskContext], None] | None = None
        ) -> CardSaleResult:
    async def work(ctx: KioskContext) -> CardSaleResult:
        if before is not None:
            before(ctx)
        return await CardSaleFlow(ctx, ui).run()

    return in_kiosk(env, work)


def recover(env: DemoEnvironment) -> list[Resolution]:
    """A restarted kiosk's recovery, its devices attached to the money path as a context does."""

    async def work(ctx: KioskContext) -> list[Resolution]:
        attach_devices(ctx)
        return await Recovery(ctx.journal, ctx.money).run()

    return in_kiosk(env, work)


def dispenser_state(data: Path) -> dict[str, Any]:
    return json.loads((data / "dispenser.json").read_text())


def journal(data: Path) -> Journal:
    return Journal(journal_path(data), kiosk_id="check")


def states(data: Path, tx_id: str) -> list[TxState]:
    with journal(data) as j:
        return [e.state for e in j.get(tx_id).entries]


def only_tx(data: Path) -> str:
    with journal(data) as j:
        (tx_id,) = [t.tx_id for t in j.transactions()]
    return tx_id


def card_summary(card: VirtualCard) -> dict[str, object]:
    """What a card holds, read straight from its blocks (no reader, no kiosk)."""
    return describe_virtual_card(card)


def account(env: DemoEnvironment, serial: str) -> CardAccount:
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=1) as client:
        return client.card_account(serial)


def plan_uid(data: Path, tx_id: str) -> str:
    with journal(data) as j:
        plans = [e.data["sale_plan"] for e in j.get(tx_id).entries if "sale_plan" in e.data]
    assert len(plans) == 1, plans
    return str(plans[0]["uid"])


class Watching(ScriptedUI):
    """A scripted citizen; `act` runs when the flow shows step `at`."""

    def __init__(self, script: dict[str, Any], at: str = "", act: Callable[[], None] | None = None) -> None:
        super().__init__(script)
        self.at, self.act = at, act

    async def show_step(self, key: str, **params: Any) -> None:
        await super().show_step(key, **params)
        if key == self.at and self.act is not None:
            self.act()


class PowerCut(BaseException):
    """Stops the flow where it stands (nothing catches it), as a crash would; what is on disk
    is what a crash leaves."""


def assert_given_back(env: DemoEnvironment, tx: str, serial: str) -> None:
    """The buyer is out of nothing and the back-office never heard of the serial."""
    got = states(env.data_dir, tx)
    assert got[-1] == TxState.REVERSED and TxState.FULFILLED not in got, got
    assert env.terminal.net_charged(tx) == 0
    assert [c["status"] for c in env.terminal.ledger() if c["reference"] == tx] == ["reversed"]
    acct = account(env, serial)
    assert not acct.known and acct.loads == ()
    with journal(env.data_dir) as j:
        assert j.verify().ok and j.open_transactions() == []


# --- S1: the happy path --------------------------------------------------------------------------------------
def test_a_sale_hands_over_a_card_with_its_serial_and_value_and_the_backoffice_binds_it(env: DemoEnvironment) -> None:
    """S1: 100,000 card + 200,000 value charged once; the card (4-byte UID) was blank, is now
    a transit card holding 200,000 at counter 0 under the serial on the receipt, and is out
    of the machine; the stacker is one card lighter; the back-office holds the card_sale load
    binding serial and UID; the journal went through every state; the receipt verifies."""
    assert env.card_reader.card is not None and env.card_reader.card.uid_hex == DEMO_CARD_UID  # the citizen's card
    result = buy(env, ScriptedUI(BUY))
    tx = result.transaction_id
    assert tx is not None and result.outcome.ok, result
    assert (result.final_state, result.outcome.message_key, result.amount_rials) == (TxState.COMPLETED,
                                                                                     "card_sale.done", TOTAL)
    serial, uid = result.card_serial, result.card_uid
    assert len(serial) == 10 and serial.isdigit() and luhn_digit(serial[:9]) == serial[9]
    assert (result.balance_before, result.balance_after) == (None, VALUE)
    assert len(uid) == 8 and uid != DEMO_CARD_UID
    # the card: handed over (out of the field), a transit card with its serial and value
    assert env.card_reader.card is None
    assert card_summary(env.card_reader.cards[uid]) == {"uid": uid, "serial": serial, "profile": "regular",
                                                        "balance_rials": VALUE, "counter": 0}
    env.card_reader.place_uid(uid)  # the buyer taps the new card: the kiosk reads it with its keys

    async def read(ctx: KioskContext) -> Any:
        reader, keys = ctx.available(CardReader), ctx.transit_keys
        assert reader is not None and keys is not None
        return await TransitCard(reader, keys).read_card()

    balance, trips = in_kiosk(env, read)
    assert (balance.uid, balance.serial, balance.balance, balance.seq, str(balance.profile)) == (
        uid, serial, VALUE, 0, "regular")
    assert trips == []
    # the dispenser
    st = dispenser_state(env.data_dir)
    assert (st["stacker_count"], st["bin_count"], st["card_at_reader"], st["counters"]) == (
        STACKER - 1, 0, False, {"dispensed": 1, "ejected": 1, "captured": 0})
    # the terminal: charged once
    assert env.terminal.net_charged(tx) == TOTAL
    assert [(c["status"], c["amount_rials"]) for c in env.terminal.ledger()] == [("approved", TOTAL)]
    # the back-office: the card's account, bound to its UID, from this sale
    acct = account(env, serial)
    assert acct.known and acct.card_uid.lower() == uid and (acct.last_balance, acct.last_counter) == (VALUE, 0)
    assert [(ld.transaction_id, ld.kind, ld.amount_rials, ld.balance_after, ld.counter_after) for ld in acct.loads] \
        == [(tx, "card_sale", TOTAL, VALUE, 0)]
    # the journal
    assert states(env.data_dir, tx) == HAPPY
    with journal(env.data_dir) as j:
        assert j.verify().ok and j.open_transactions() == []
        assert [i.status for i in j.outbox_for(tx)] == [OutboxStatus.ACKED]
        assert j.get(tx).data["card_serial"] == serial
    # the receipt carries the serial, signed
    assert result.receipt_payload and [r.qr_codes for r in env.printer.receipts()] == [[result.receipt_payload]]
    verified = verify_payload(result.receipt_payload, load_or_create_key(env.data_dir).public_key)
    assert (verified.tx_id, verified.amount_rials, verified.bill_id, verified.kind) == (
        tx, TOTAL, serial, "transit_card_sale")


def test_a_card_without_value_on_a_7_byte_uid_and_the_next_sale_gets_the_next_serial(env: DemoEnvironment) -> None:
    """S1 for a 7-byte UID card bought with no value (0 is a preset): the price alone is
    charged and recorded, the card holds 0. The next sale gets another serial and UID."""

    def seven(ctx: KioskContext) -> None:
        dispenser_of(ctx).uid_lengths = [7]

    first = buy(env, ScriptedUI({"card_sale.choose_value": "0", "card_sale.confirm": True}), seven)
    second = buy(env, ScriptedUI(BUY))
    assert first.final_state == second.final_state == TxState.COMPLETED, (first, second)
    assert len(first.card_uid) == 14 and first.balance_after == 0 and first.amount_rials == CARD_PRICE_RIALS
    assert card_summary(env.card_reader.cards[first.card_uid])["balance_rials"] == 0
    assert card_summary(env.card_reader.cards[first.card_uid])["serial"] == first.card_serial
    assert first.card_serial != second.card_serial and first.card_uid != second.card_uid
    assert int(second.card_serial[3:9]) == int(first.card_serial[3:9]) + 1  # the kiosk's sale number
    acct = account(env, first.card_serial)
    assert acct.card_uid.lower() == first.card_uid and [(ld.amount_rials, ld.balance_after) for ld in acct.loads] \
        == [(CARD_PRICE_RIALS, 0)]
    assert env.terminal.net_charged(first.transaction_id or "") == CARD_PRICE_RIALS
    assert dispenser_state(env.data_dir)["stacker_count"] == STACKER - 2


# --- S2, S3: nothing to sell, nothing paid -----------------------------------------------------------------
def test_an_empty_stacker_shows_the_service_unavailable_and_journals_nothing(env: DemoEnvironment) -> None:
    """S2: no card left → the service says so before asking anything; no transaction."""

    def empty(ctx: KioskContext) -> None:
        dispenser_of(ctx).stacker_count = 0

    ui = ScriptedUI(BUY)
    result = buy(env, ui, empty)
    assert (result.outcome.ok, result.outcome.message_key, result.transaction_id) == (False, "card_sale.unavailable",
                                                                                      None)
    assert ui.keys("choose") == [] and ui.keys("confirm") == [] and ui.keys("error") == ["card_sale.unavailable"]
    with journal(env.data_dir) as j:
        assert j.transactions() == []
    assert env.terminal.ledger() == []


def test_a_declined_payment_dispenses_nothing(env: DemoEnvironment) -> None:
    """S3: the bank declines: DECLINED, no card leaves the stacker, the citizen's card stays."""
    env.terminal.set_mode("once-decline")
    result = buy(env, ScriptedUI(BUY))
    tx = result.transaction_id
    assert tx is not None and result.final_state == TxState.DECLINED and result.outcome.message_key == "pay.declined"
    assert states(env.data_dir, tx) == [TxState.CREATED, TxState.PAYING, TxState.DECLINED]
    st = dispenser_state(env.data_dir) if (env.data_dir / "dispenser.json").exists() else {"stacker_count": STACKER,
                                                                                             "counters": {}}
    assert st["stacker_count"] == STACKER and not st["counters"].get("dispensed")
    assert env.card_reader.card is not None and env.card_reader.card.uid_hex == DEMO_CARD_UID
    assert env.terminal.net_charged(tx) == 0


# --- S4: a card not handed over -------------------------------------------------------------------------------
def test_a_jam_at_dispense_reverses_the_payment_and_the_kiosk_stops_selling_until_cleared(
        env: DemoEnvironment) -> None:
    """S4: the transport jams as the card leaves the stacker: nothing reached the read
    position, so nothing is captured; the payment is reversed; the dispenser is in userError
    and the next citizen is told the service is unavailable before paying anything."""

    held: dict[str, SimulatedDispenser] = {}

    def remember(ctx: KioskContext) -> None:
        held["d"] = dispenser_of(ctx)

    # the jam comes with the dispense (the flow shows "preparing" right before it)
    result = buy(env, Watching(BUY, at="card_sale.preparing", act=lambda: held["d"].inject_jam()), remember)
    tx = result.transaction_id
    assert tx is not None and result.outcome.message_key == "card_sale.failed_reversed", result
    assert TxState.FULFILLING not in states(env.data_dir, tx)  # nothing was planned: no card came
    assert_given_back(env, tx, result.card_serial)
    st = dispenser_state(env.data_dir) if (env.data_dir / "dispenser.json").exists() else None
    assert st is None or (st["stacker_count"], st["bin_count"], st["captured_uids"]) == (STACKER, 0, [])

    async def jammed_then_next(ctx: KioskContext) -> CardSaleResult:
        dispenser_of(ctx).inject_jam()
        await dispenser_of(ctx).levels()
        with pytest.raises(MediaError):
            await dispenser_of(ctx).dispense_to_reader()  # the jam puts the dispenser in userError
        return await CardSaleFlow(ctx, ScriptedUI(BUY)).run()

    nxt = in_kiosk(env, jammed_then_next)
    assert (nxt.outcome.message_key, nxt.transaction_id) == ("service.unavailable", None)


def test_a_torn_personalisation_is_captured_and_reversed(env: DemoEnvironment) -> None:
    """S4: the card leaves the field on the third block write of its personalisation: it is
    captured to the bin (its UID among the bin's), half-written, never handed over; the
    payment is reversed; the back-office never hears of the serial."""
    env.card_reader.tear_next_write(at_op=3, after_bytes=7)
    result = buy(env, ScriptedUI(BUY))
    tx = result.transaction_id
    assert tx is not None and result.outcome.message_key == "card_sale.failed_reversed", result
    uid = plan_uid(env.data_dir, tx)
    got = states(env.data_dir, tx)
    assert got[:4] == [TxState.CREATED, TxState.PAYING, TxState.PAID, TxState.FULFILLING], got
    assert_given_back(env, tx, result.card_serial)
    st = dispenser_state(env.data_dir)
    assert (st["stacker_count"], st["bin_count"], st["captured_uids"], st["card_at_reader"]) == (
        STACKER - 1, 1, [uid], False)
    assert "error" in card_summary(env.card_reader.cards[uid])  # not a readable transit card


def test_a_personalised_card_that_cannot_be_ejected_is_reversed_and_captured_by_the_next_sale(
        env: DemoEnvironment) -> None:
    """S4: the card is personalised and verified, then the transport jams as it is ejected
    (and again as it is captured): the card stays inside, holding value the back-office never
    recorded — the money goes back, the value never reaches a citizen. Once a technician
    clears the jam the next sale first captures that card, then sells a new one."""
    held: dict[str, SimulatedDispenser] = {}

    def remember(ctx: KioskContext) -> None:
        held["d"] = dispenser_of(ctx)

    ui = Watching(BUY, at="card_sale.take_card", act=lambda: held["d"].inject_jam())
    result = buy(env, ui, remember)
    tx = result.transaction_id
    assert tx is not None and result.outcome.message_key == "card_sale.failed_reversed", result
    uid = plan_uid(env.data_dir, tx)
    assert TxState.UNCERTAIN in states(env.data_dir, tx)
    assert_given_back(env, tx, result.card_serial)
    assert card_summary(env.card_reader.cards[uid])["serial"] == result.card_serial  # personalised, inside
    assert dispenser_state(env.data_dir)["card_at_reader"] is True

    nxt = buy(env, ScriptedUI(BUY))  # a new process: the jam is cleared by the power cycle
    assert nxt.final_state == TxState.COMPLETED and nxt.card_uid != uid
    st = dispenser_state(env.data_dir)
    assert (st["bin_count"], st["captured_uids"], st["stacker_count"]) == (1, [uid], STACKER - 2)
    assert not account(env, result.card_serial).known


# --- S5: crashes -----------------------------------------------------------------------------------------------
def kiosk_demo(data: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environ.pop("KIOSK_FAULT", None)
    if fault:
        environ["KIOSK_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "kiosk.cli", "demo", "--headless", *args, "--data-dir", str(data),
                           "--json"], env=environ, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("point", "delivered", "captured"), [
    ("after-paid", False, False),          # PAID, nothing dispensed
    ("after-dispense", False, True),       # PAID, a blank card at the read position: the next sale captures it
    ("before-card-write", False, True),    # FULFILLING (planned), blank card inside
    ("after-card-write", False, True),     # FULFILLING, personalised card inside: captured, value never handed over
    ("after-card-eject", True, False),     # UNCERTAIN, the card is out: the sale is recorded
])
def test_a_crash_mid_sale_is_recovered_never_both_never_neither(
        tmp_path: Path, point: str, delivered: bool, captured: bool) -> None:
    """S5: `kiosk demo --script buy-card` dies (os._exit) at `point`; a restarted kiosk on the
    same data dir recovers (devices attached) and sells the next card. A card that left the
    machine is recorded at the back-office and its payment kept; one that did not is captured
    (at the latest by the next sale) and its payment reversed."""
    crashed = kiosk_demo(tmp_path, "--script", "buy-card", fault=point)
    assert crashed.returncode == 99, crashed.stdout[-2000:] + crashed.stderr[-2000:]
    assert f"KIOSK_FAULT: crashing at {point}" in crashed.stderr
    tx = only_tx(tmp_path)
    with journal(tmp_path) as j:
        serial = j.get(tx).data["card_serial"]
    with demo_environment(tmp_path) as env:
        rows = recover(env)
        assert [(r.tx_id, r.resolved) for r in rows] == [(tx, True)], rows
        got = states(tmp_path, tx)
        if delivered:
            assert got[-1] == TxState.COMPLETED and TxState.REVERSING not in got, got
            assert env.terminal.net_charged(tx) == TOTAL
            uid = plan_uid(tmp_path, tx)
            acct = account(env, serial)
            assert acct.card_uid.lower() == uid and [(ld.transaction_id, ld.amount_rials) for ld in acct.loads] == [
                (tx, TOTAL)]
            assert card_summary(env.card_reader.cards[uid])["balance_rials"] == VALUE
        else:
            assert_given_back(env, tx, serial)
        nxt = buy(env, ScriptedUI(BUY))
        assert nxt.final_state == TxState.COMPLETED, nxt
        st = dispenser_state(tmp_path)
        want_bin = 1 if captured else 0
        dispensed = 1 if point == "after-paid" else 2
        assert (st["bin_count"], st["stacker_count"], st["card_at_reader"]) == (want_bin, STACKER - dispensed, False)
        with journal(tmp_path) as j:
            assert j.verify().ok and j.open_transactions() == []


def test_a_crash_at_the_hand_over_with_the_card_still_inside_is_reversed_and_captured(env: DemoEnvironment) -> None:
    """S5, the other side of the hand-over: UNCERTAIN is journaled, then the power goes before
    the eject. Recovery finds the card at the read position: not handed over → money back,
    card to the bin. A kiosk whose dispenser is not there leaves it open (never guesses)."""
    def power_cut() -> None:
        raise PowerCut

    ui = Watching(BUY, at="card_sale.take_card", act=power_cut)
    with pytest.raises(PowerCut):
        buy(env, ui)
    tx = only_tx(env.data_dir)
    assert states(env.data_dir, tx)[-1] == TxState.UNCERTAIN
    with journal(env.data_dir) as j:
        serial = j.get(tx).data["card_serial"]

    async def blind(ctx: KioskContext) -> list[Resolution]:  # a kiosk without its dispenser: it may not decide
        return await Recovery(ctx.journal, ctx.money).run()

    (row,) = in_kiosk(env, blind, devices=tuple(d for d in env.settings.devices if d.type != "dispenser-sim"))
    assert (row.to_state, row.action, row.resolved) == ("UNCERTAIN", "dispenser_needed", False)
    (row,) = recover(env)
    assert (row.tx_id, row.to_state, row.resolved) == (tx, "REVERSED", True)
    assert_given_back(env, tx, serial)
    st = dispenser_state(env.data_dir)
    assert (st["bin_count"], st["captured_uids"], st["card_at_reader"]) == (1, [plan_uid(env.data_dir, tx)], False)


def test_the_demo_script_prints_the_new_cards_serial_and_balances(tmp_path: Path) -> None:
    """`kiosk demo --headless --script buy-card --json`: ok, COMPLETED, serial and balances."""
    out = kiosk_demo(tmp_path, "--script", "buy-card")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["ok"] and summary["final_state"] == "COMPLETED" and summary["outcome"] == "card_sale.done"
    assert (summary["balance_before"], summary["balance_after"], summary["amount_rials"]) == (None, VALUE, TOTAL)
    assert len(summary["card_serial"]) == 10 and summary["receipt_png"]
