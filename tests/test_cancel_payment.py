"""Issue 10, "payment waiting": the citizen presses Cancel while the payment terminal waits for
the card (kiosk.flows.payment_wait). Everything real: the demo back-office on loopback, the
nexo simulator through the nexo driver, the virtual card reader, journals on disk; the citizen
is a ScriptedUI whose Cancel is pressed by its script ("pay.insert_card": "cancel") or by
the test at a chosen moment (`press_cancel()`).

The rules checked, for the fee payment, the basket and the top-up (and, cancelled at once, for
every flow that charges):
  C1  Cancel while the terminal waits for the card: the terminal is told (AbortRequest),
      nothing is charged, the journal ends DECLINED and the citizen reads "payment cancelled,
      nothing charged" (fa/en catalog keys)
  C2  Cancel pressed as the terminal approves: the approved sale is reversed (net 0), the
      citizen reads "charged and given back"; a second press changes nothing (one reversal)
  C3  Cancel is offered only while the terminal has not answered: pressed after, nothing
      waits for it and the paid flow carries on
  C4  a crash inside the cancel, and a restart after it: nothing is left open, net 0, and a
      second restart has nothing to do
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Iterator, Sequence, TypeVar

import pytest
import sqlalchemy as sa

from backoffice.seed import DEMO_NATIONAL_CODE
from devices.transit_card.demo import DEMO_CARD_SERIAL, DEMO_CARD_UID, describe_virtual_card
from kiosk.backoffice_client import BackofficeClient, FeeSlip
from kiosk.commands.recover import recover
from kiosk.context import KioskContext
from kiosk.faults import SimulatedCrash, crash_in_process
from kiosk.flows.card_topup import CardTopupFlow
from kiosk.flows.fee_basket import FeeBasketFlow
from kiosk.flows.fee_payment import FeePaymentFlow
from kiosk.journal import Journal, TxState, journal_path
from kiosk.messages import CATALOG
from kiosk.money_path import ChargeCancel
from kiosk.scripted_ui import ScriptedUI
from kiosk_demo.environment import DemoEnvironment, demo_environment
from kiosk_demo.municipal_scripts import MUNICIPAL_SCRIPTS
from kiosk_demo.transit_scripts import TRANSIT_SCRIPTS

T = TypeVar("T")

DECLINED_STATES = [TxState.CREATED, TxState.PAYING, TxState.DECLINED]
REVERSED_STATES = [TxState.CREATED, TxState.PAYING, TxState.PAID, TxState.REVERSING, TxState.REVERSED]
CARD_START = 250_000  # the demo transit card's balance
TOPUP = {"topup.choose_amount": "200000", "topup.confirm": True}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with demo_environment(tmp_path) as environment:
        yield environment


# --- the kiosk, the citizen's Cancel, the ledgers ---------------------------------------------------
Flow = Callable[[KioskContext, ScriptedUI], Awaitable[Any]]
Presser = Callable[[DemoEnvironment, ScriptedUI], Awaitable[list[bool]]]


def run(env: DemoEnvironment, flow: Flow, ui: ScriptedUI, *, press: Presser | None = None,
        crash: str | None = None) -> tuple[Any, list[bool]]:
    """One kiosk process runs `flow`; `press` (a coroutine) presses Cancel alongside it and
    returns what each press found. With `crash` the process dies at that fault point: the
    result is None and the data dir is what a power cut leaves."""

    async def go() -> tuple[Any, list[bool]]:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        crash_in_process(crash)
        presser = asyncio.create_task(press(env, ui)) if press is not None else None
        try:
            try:
                result = await flow(ctx, ui)
            except SimulatedCrash:
                result = None
            presses = await asyncio.wait_for(presser, 30) if presser is not None else []
            return result, presses
        finally:
            crash_in_process(None)
            if presser is not None and not presser.done():
                presser.cancel()
            await ctx.close()

    return asyncio.run(go())


async def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the terminal never got that far"
        await asyncio.sleep(0.02)


async def press_while_waiting_for_card(env: DemoEnvironment, ui: ScriptedUI) -> list[bool]:
    """Cancel once the terminal has the payment and waits for a card (latency)."""
    await _until(lambda: "PaymentRequest" in env.terminal.requests_seen)
    await asyncio.sleep(0.2)
    return [ui.press_cancel()]


async def press_twice_as_approved(env: DemoEnvironment, ui: ScriptedUI) -> list[bool]:
    """Cancel the moment the terminal has approved (its answer held back), then again."""
    await _until(env.terminal.held.is_set)
    first = ui.press_cancel()
    await asyncio.sleep(0.05)
    return [first, ui.press_cancel()]


def sales_requests(env: DemoEnvironment) -> list[str]:
    """What the terminal was asked about sales (not the kiosk's DiagnosisRequest at start)."""
    return [r for r in env.terminal.requests_seen if r != "DiagnosisRequest"]


def journal(env: DemoEnvironment) -> Journal:
    return Journal(journal_path(env.data_dir), kiosk_id="check")


def states(env: DemoEnvironment, tx_id: str) -> list[TxState]:
    with journal(env) as j:
        return [e.state for e in j.get(tx_id).entries]


def recover_now(env: DemoEnvironment) -> dict[str, dict[str, Any]]:
    return {r["tx_id"]: r for r in asyncio.run(recover(env.data_dir, env.settings))}


def backoffice_payments(env: DemoEnvironment, tx_id: str) -> list[str]:
    engine = sa.create_engine(env.backoffice_db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT transaction_id FROM payments")).scalars().all()
    engine.dispose()
    return [r for r in rows if r == tx_id or r.startswith(tx_id + ".")]


def closed(env: DemoEnvironment) -> None:
    """The journal verifies, holds nothing open, and a restart has nothing to do."""
    with journal(env) as j:
        assert j.verify().ok and j.open_transactions() == []
    assert recover_now(env) == {}


def check_cancelled(env: DemoEnvironment, result: Any, ui: ScriptedUI, *, reversed_: bool = False,
                    asked: bool = True) -> str:
    """What every cancel ends in: the outcome, the journal, the terminal, the back-office.
    `asked`: the terminal had the payment (else Cancel came first: CANCELLED, nothing sent)."""
    tx_id = result.transaction_id
    assert tx_id is not None and not result.outcome.ok
    if not asked:
        assert result.final_state == TxState.CANCELLED
        assert result.outcome.message_key == "pay.cancelled"
        assert states(env, tx_id) == [TxState.CREATED, TxState.CANCELLED]
        assert sales_requests(env) == [] and env.terminal.ledger() == []
    elif reversed_:
        assert result.final_state == TxState.REVERSED
        assert result.outcome.message_key == "pay.cancelled_reversed"
        assert states(env, tx_id) == REVERSED_STATES
        assert [s["status"] for s in env.terminal.ledger() if s["reference"] == tx_id] == ["reversed"]
        assert env.terminal.requests_seen.count("ReversalRequest") == 1  # given back once
    else:
        assert result.final_state == TxState.DECLINED
        assert result.outcome.message_key == "pay.cancelled"
        assert states(env, tx_id) == DECLINED_STATES
        assert all(s["status"] != "approved" for s in env.terminal.ledger())
    assert env.terminal.net_charged(tx_id) == 0
    assert "AbortRequest" in env.terminal.requests_seen or not asked  # the terminal was told
    assert backoffice_payments(env, tx_id) == []
    assert ui.keys("outcome") == [result.outcome.message_key]
    assert ui._cancel_waiters == []  # no Cancel left on the screen
    key = result.outcome.message_key
    assert CATALOG[key][0] and CATALOG[key][1]  # fa and en
    closed(env)
    return tx_id


# --- the flows --------------------------------------------------------------------------------------
def unpaid_slips(env: DemoEnvironment, n: int) -> list[FeeSlip]:
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=0) as client:
        chosen = list(client.fee_slips(national_code=DEMO_NATIONAL_CODE).unpaid[:n])
    assert (sum(s.amount_rials for s in chosen) // 1000) % 100 != 13  # a total the simulator approves
    return chosen


def fee_script(slip: FeeSlip, **extra: Any) -> dict[str, Any]:
    return {"fee.how_to_enter": "manual", "fee.enter_bill_id": slip.bill_id,
            "fee.enter_payment_id": slip.payment_id, "fee.confirm": True, **extra}


async def fee(ctx: KioskContext, ui: ScriptedUI) -> Any:
    return await FeePaymentFlow(ctx, ui).run()


def basket(chosen: Sequence[FeeSlip]) -> Flow:
    async def go(ctx: KioskContext, ui: ScriptedUI) -> Any:
        return await FeeBasketFlow(ctx, ui).pay(chosen)
    return go


async def topup(ctx: KioskContext, ui: ScriptedUI) -> Any:
    return await CardTopupFlow(ctx, ui).run()


def card_state(env: DemoEnvironment) -> tuple[int, int]:
    summary = describe_virtual_card(env.card_reader.cards[DEMO_CARD_UID])
    return int(summary["balance_rials"]), int(summary["counter"])  # type: ignore[call-overload]


def card_loads(env: DemoEnvironment) -> int:
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=1) as client:
        return len(client.card_account(DEMO_CARD_SERIAL).loads)


# --- C1: Cancel while the terminal waits for the card ----------------------------------------------
def test_fee_cancelled_while_the_terminal_waits_for_the_card_charges_nothing(env: DemoEnvironment) -> None:
    env.terminal.latency_s = 60.0  # the citizen never presents a card
    [slip] = unpaid_slips(env, 1)
    started = time.monotonic()
    ui = ScriptedUI(fee_script(slip))
    result, presses = run(env, fee, ui, press=press_while_waiting_for_card)
    assert presses == [True]
    assert time.monotonic() - started < 40  # the abort ended the wait, not the terminal's latency
    check_cancelled(env, result, ui, reversed_=False)
    steps = ui.keys("step")
    assert steps[steps.index("pay.insert_card") + 1] == "pay.cancelling"
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=0) as client:
        assert client.lookup_bill(slip.bill_id, slip.payment_id).status == "unpaid"


def test_fee_cancel_pressed_the_moment_it_appears_never_asks_the_terminal(env: DemoEnvironment) -> None:
    """The script's own Cancel ("pay.insert_card": "cancel"), pressed the moment the payment
    screen offers it: nothing was asked of the terminal, so the transaction is CANCELLED."""
    [slip] = unpaid_slips(env, 1)
    ui = ScriptedUI(fee_script(slip, **{"pay.insert_card": "cancel"}))
    result, _ = run(env, fee, ui)
    check_cancelled(env, result, ui, asked=False)
    assert [s.answer for s in ui.transcript if s.kind == "cancel"] == ["✓"]


def test_cancel_pressed_while_paying_is_journaled_stops_before_the_terminal_is_asked(env: DemoEnvironment) -> None:
    """The money path's own rule (ChargeCancel): a Cancel that lands while PAYING is being
    journaled stops the charge before the payment request leaves; the terminal is asked about
    the reference (NotFound) and the payment ends DECLINED. A second press: False, nothing."""

    async def go() -> tuple[str, list[bool], bool]:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            tx_id = await ctx.money.open_transaction("fee_payment", 230_000, {"bill_id": "1", "payment_id": "2"})
            cancel = ChargeCancel()
            charge = asyncio.ensure_future(ctx.money.charge(tx_id, 230_000, cancel=cancel))
            await asyncio.sleep(0)  # the charge is journaling PAYING
            presses = [cancel.request(), cancel.request()]
            with pytest.raises(asyncio.CancelledError):
                await charge
            ctx.money.release(tx_id)
            return tx_id, presses, cancel.request()
        finally:
            await ctx.close()

    tx_id, presses, after = asyncio.run(go())
    assert presses == [True, False] and after is False
    assert states(env, tx_id) == DECLINED_STATES
    assert "PaymentRequest" not in env.terminal.requests_seen and env.terminal.ledger() == []
    assert env.terminal.net_charged(tx_id) == 0
    closed(env)


def test_cancel_after_the_terminal_answered_is_too_late_and_changes_nothing(env: DemoEnvironment) -> None:
    async def go() -> tuple[str, Any, bool]:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            tx_id = await ctx.money.open_transaction("fee_payment", 230_000, {"bill_id": "1", "payment_id": "2"})
            cancel = ChargeCancel()
            result = await ctx.money.charge(tx_id, 230_000, cancel=cancel)
            late = cancel.request()
            await ctx.money.reverse(tx_id, "test over", ask_backoffice=False)
            ctx.money.release(tx_id)
            return tx_id, result, late
        finally:
            await ctx.close()

    tx_id, result, late = asyncio.run(go())
    assert result.state == TxState.PAID and late is False
    assert "AbortRequest" not in env.terminal.requests_seen


def test_basket_cancelled_while_the_terminal_waits_charges_no_bill(env: DemoEnvironment) -> None:
    env.terminal.latency_s = 60.0
    chosen = unpaid_slips(env, 2)
    ui = ScriptedUI({"basket.confirm": True})
    result, presses = run(env, basket(chosen), ui, press=press_while_waiting_for_card)
    assert presses == [True]
    check_cancelled(env, result, ui, reversed_=False)
    assert [(b.bill_id, b.outcome) for b in result.bills] == [(s.bill_id, "not_charged") for s in chosen]
    assert result.refunded_rials == 0


def test_topup_cancelled_while_the_terminal_waits_leaves_the_card_as_it_was(env: DemoEnvironment) -> None:
    env.terminal.latency_s = 60.0
    ui = ScriptedUI(TOPUP)
    result, presses = run(env, topup, ui, press=press_while_waiting_for_card)
    assert presses == [True]
    check_cancelled(env, result, ui, reversed_=False)
    assert card_state(env) == (CARD_START, 0) and card_loads(env) == 0


# --- C2: Cancel racing the approval ----------------------------------------------------------------
def test_fee_cancel_racing_the_approval_gives_the_money_back_once_pressed_twice(env: DemoEnvironment) -> None:
    env.terminal.hold_approved = True  # approved at the terminal; the answer waits for the abort
    [slip] = unpaid_slips(env, 1)
    ui = ScriptedUI(fee_script(slip))
    result, presses = run(env, fee, ui, press=press_twice_as_approved)
    assert presses == [True, False]  # the second press found no Cancel button
    check_cancelled(env, result, ui, reversed_=True)
    assert [s.answer for s in ui.transcript if s.kind == "cancel"] == ["✓", "(no button)"]


def test_basket_cancel_racing_the_approval_refunds_every_bill(env: DemoEnvironment) -> None:
    env.terminal.hold_approved = True
    chosen = unpaid_slips(env, 2)
    ui = ScriptedUI({"basket.confirm": True})
    result, presses = run(env, basket(chosen), ui, press=press_twice_as_approved)
    assert presses == [True, False]
    check_cancelled(env, result, ui, reversed_=True)
    assert [b.outcome for b in result.bills] == ["refunded", "refunded"]
    assert result.refunded_rials == sum(s.amount_rials for s in chosen)


def test_topup_cancel_racing_the_approval_gives_the_money_back_and_writes_nothing(env: DemoEnvironment) -> None:
    env.terminal.hold_approved = True
    ui = ScriptedUI(TOPUP)
    result, presses = run(env, topup, ui, press=press_twice_as_approved)
    assert presses == [True, False]
    check_cancelled(env, result, ui, reversed_=True)
    assert card_state(env) == (CARD_START, 0) and card_loads(env) == 0
    assert "topup.writing" not in ui.keys("step")


# --- C3: too late once the terminal answered --------------------------------------------------------
class PressAfterPaid(ScriptedUI):
    """Presses Cancel on every step after the payment screen: the terminal has answered."""

    def __init__(self, script: dict[str, Any]) -> None:
        super().__init__(script)
        self.paid_presses: list[bool] = []
        self._after_payment = False

    async def show_step(self, key: str, **params: Any) -> None:
        await super().show_step(key, **params)
        if self._after_payment:
            self.paid_presses.append(self.press_cancel())
        self._after_payment = self._after_payment or key == "pay.insert_card"


def test_cancel_is_gone_once_the_terminal_approved_and_the_fee_is_paid(env: DemoEnvironment) -> None:
    [slip] = unpaid_slips(env, 1)
    ui = PressAfterPaid(fee_script(slip))
    result, _ = run(env, fee, ui)
    assert result.final_state == TxState.COMPLETED and result.outcome.message_key == "fee.paid"
    assert ui.paid_presses and not any(ui.paid_presses)  # nothing waited for a Cancel
    assert env.terminal.net_charged(result.transaction_id) == slip.amount_rials
    assert "AbortRequest" not in env.terminal.requests_seen
    closed(env)


def test_topup_cancel_after_the_approval_does_not_stop_the_write(env: DemoEnvironment) -> None:
    ui = PressAfterPaid(TOPUP)
    result, _ = run(env, topup, ui)
    assert result.final_state == TxState.COMPLETED, result
    assert ui.paid_presses and not any(ui.paid_presses)
    assert card_state(env) == (CARD_START + 200_000, 1) and card_loads(env) == 1
    assert env.terminal.net_charged(result.transaction_id) == 200_000


# --- C4: crashes and restarts -------------------------------------------------------------------------
def test_a_crash_as_the_cancelled_payment_is_journaled_is_declined_by_the_restart(env: DemoEnvironment) -> None:
    """Cancel pressed as the charge journals PAYING, and the kiosk dies right then (the terminal
    never asked): the restart's recovery asks the terminal (NotFound) and closes it DECLINED."""

    async def go() -> str:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        crash_in_process("after-paying")
        try:
            tx_id = await ctx.money.open_transaction("fee_payment", 230_000, {"bill_id": "1", "payment_id": "2"})
            cancel = ChargeCancel()
            charge = asyncio.ensure_future(ctx.money.charge(tx_id, 230_000, cancel=cancel))
            await asyncio.sleep(0)  # the charge is journaling PAYING
            assert cancel.request() is True
            with pytest.raises(SimulatedCrash):
                await charge
            return tx_id
        finally:
            crash_in_process(None)
            await ctx.close()

    tx_id = asyncio.run(go())
    assert states(env, tx_id) == [TxState.CREATED, TxState.PAYING]
    resolved = recover_now(env)
    assert resolved[tx_id]["to_state"] == "DECLINED"
    assert "PaymentRequest" not in env.terminal.requests_seen
    assert env.terminal.net_charged(tx_id) == 0 and backoffice_payments(env, tx_id) == []
    closed(env)


def test_a_crash_inside_the_cancel_of_an_approved_sale_is_reversed_by_the_restart(env: DemoEnvironment) -> None:
    """Cancel as the terminal approves; the undo journals PAID and the kiosk dies before the
    reversal: the restart's recovery finds the back-office holds nothing and reverses once."""
    env.terminal.hold_approved = True
    [slip] = unpaid_slips(env, 1)
    ui = ScriptedUI(fee_script(slip))
    result, presses = run(env, fee, ui, press=press_twice_as_approved, crash="after-paid")
    assert result is None and presses[0] is True
    [tx] = journal(env).transactions()
    assert tx.state == TxState.PAID and env.terminal.net_charged(tx.tx_id) == slip.amount_rials
    resolved = recover_now(env)
    assert resolved[tx.tx_id]["to_state"] == "REVERSED"
    assert env.terminal.net_charged(tx.tx_id) == 0 and backoffice_payments(env, tx.tx_id) == []
    assert env.terminal.requests_seen.count("ReversalRequest") == 1
    closed(env)


def test_a_basket_cancelled_then_the_kiosk_restarted_has_nothing_open(env: DemoEnvironment) -> None:
    env.terminal.hold_approved = True
    chosen = unpaid_slips(env, 3)
    result, _ = run(env, basket(chosen), ScriptedUI({"basket.confirm": True}), press=press_twice_as_approved,
                    crash="after-paid")
    assert result is None
    [tx] = journal(env).transactions()
    assert recover_now(env)[tx.tx_id]["to_state"] == "REVERSED"
    assert env.terminal.net_charged(tx.tx_id) == 0 and backoffice_payments(env, tx.tx_id) == []
    closed(env)


def test_a_topup_cancelled_as_approved_and_crashed_is_reversed_and_the_card_untouched(env: DemoEnvironment) -> None:
    env.terminal.hold_approved = True
    result, presses = run(env, topup, ScriptedUI(TOPUP), press=press_twice_as_approved, crash="after-paid")
    assert result is None and presses[0] is True
    [tx] = journal(env).transactions()
    assert tx.state == TxState.PAID  # no write plan: nothing owed to the card
    assert recover_now(env)[tx.tx_id]["to_state"] == "REVERSED"
    assert env.terminal.net_charged(tx.tx_id) == 0
    assert card_state(env) == (CARD_START, 0) and card_loads(env) == 0
    closed(env)


# --- every flow that charges ---------------------------------------------------------------------------
CHARGING_SCRIPTS = {name: s for name, s in {**TRANSIT_SCRIPTS, **MUNICIPAL_SCRIPTS}.items()
                    if name in ("topup", "qr-ticket", "buy-card", "slips-pay", "certificate", "traffic-permit")}


@pytest.mark.parametrize("name", sorted(CHARGING_SCRIPTS))
def test_every_flow_that_charges_offers_cancel_on_the_payment_screen(env: DemoEnvironment, name: str) -> None:
    script = CHARGING_SCRIPTS[name]
    ui = ScriptedUI({**script.answers, "pay.insert_card": "cancel"})

    async def go(ctx: KioskContext, ui: ScriptedUI) -> Any:
        return (await script.run(ctx, env, ui))[0]

    result, _ = run(env, go, ui)
    assert result.outcome.message_key == "pay.cancelled", (name, ui.keys())
    assert result.final_state == TxState.CANCELLED and result.transaction_id is not None
    assert states(env, result.transaction_id) == [TxState.CREATED, TxState.CANCELLED]
    assert sales_requests(env) == [] and env.terminal.ledger() == []
    closed(env)


# --- when the money cannot come back at once ----------------------------------------------------------
def test_a_cancel_whose_status_answers_are_lost_says_so_and_the_restart_gives_the_money_back(
        env: DemoEnvironment) -> None:
    """Cancel as the terminal approves, and every status answer is lost (the connection drops
    after the terminal has answered): the kiosk cannot tell whether the card was charged, says
    so, and leaves the payment open; the restart asks again, finds it approved and reverses it."""
    env.terminal.hold_approved = True
    handle = env.terminal.handle

    def lose_status_answers(raw: bytes) -> Any:
        answer = handle(raw)
        return None if b"TransactionStatusRequest" in raw else answer

    env.terminal.handle = lose_status_answers  # type: ignore[method-assign]
    [slip] = unpaid_slips(env, 1)
    ui = ScriptedUI(fee_script(slip))
    result, presses = run(env, fee, ui, press=press_twice_as_approved)
    assert presses[0] is True
    tx_id = result.transaction_id
    assert result.final_state == TxState.PAYING and result.outcome.message_key == "pay.cancelled_unknown"
    assert result.outcome.params == {"tx": tx_id} and not result.outcome.ok
    assert env.terminal.net_charged(tx_id) == slip.amount_rials  # charged, and the kiosk knows it cannot say
    env.terminal.handle = handle  # type: ignore[method-assign]
    assert recover_now(env)[tx_id]["to_state"] == "REVERSED"
    assert env.terminal.net_charged(tx_id) == 0 and backoffice_payments(env, tx_id) == []
    closed(env)


def test_a_cancel_whose_reversal_the_terminal_refuses_goes_to_an_operator(env: DemoEnvironment) -> None:
    """Cancel as the terminal approves, and the acquirer refuses reversals today: the money is
    still taken, the citizen is told a refund is recorded (with the transaction number), and
    the journal ends REFUND_PENDING for an operator — never 'nothing charged'."""
    from devices.terminal import nexo

    env.terminal.hold_approved = True
    env.terminal._reversal = lambda req: nexo.response_message(  # type: ignore[method-assign]
        req.header, "ReversalResponse", nexo.failure_body(nexo.REFUSAL))
    [slip] = unpaid_slips(env, 1)
    ui = ScriptedUI(fee_script(slip))
    result, presses = run(env, fee, ui, press=press_twice_as_approved)
    assert presses == [True, False]
    tx_id = result.transaction_id
    assert result.final_state == TxState.REFUND_PENDING
    assert result.outcome.message_key == "pay.cancelled_refund_pending" and result.outcome.params == {"tx": tx_id}
    assert env.terminal.net_charged(tx_id) == slip.amount_rials and backoffice_payments(env, tx_id) == []
    closed(env)  # an operator's, not recovery's
