"""Issue 8, item 2: a card pulled mid-write that does not come back leaves a pending action at
the back-office, and the card's next tap at any kiosk settles it — written now if the torn write
had not landed, recorded if it had — exactly once. The card, the terminal and the back-office
agree to the rial. Real parts throughout: the PN532 driver on the virtual reader, the nexo
simulator, the back-office on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator

import pytest

from devices.transit_card.demo import DEMO_CARD_BALANCE, DEMO_CARD_SERIAL, DEMO_CARD_UID, describe_virtual_card
from kiosk.backoffice_client import BackofficeClient
from kiosk.context import KioskContext
from kiosk.flows.card_topup import CardTopupFlow, TopupResult
from kiosk.scripted_ui import ScriptedUI
from kiosk.settings import KioskSettings
from kiosk_demo.environment import DemoEnvironment, demo_environment


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with demo_environment(tmp_path) as environment:
        environment.settings = KioskSettings(**{**environment.settings.__dict__, "card_return_wait_s": 1.0})
        yield environment


def topup(env: DemoEnvironment, amount: int) -> tuple[TopupResult, ScriptedUI]:
    ui = ScriptedUI({"topup.choose_amount": "other", "topup.enter_amount": str(amount), "topup.confirm": True})

    async def go() -> TopupResult:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            return await CardTopupFlow(ctx, ui).run()
        finally:
            await ctx.close()

    return asyncio.run(go()), ui


def account(env: DemoEnvironment) -> Any:
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=0) as client:
        return client.card_account(DEMO_CARD_SERIAL)


def card_balance(env: DemoEnvironment) -> int:
    card = env.card_reader.cards[DEMO_CARD_UID]
    return int(describe_virtual_card(card)["balance_rials"])  # type: ignore[arg-type]


@pytest.mark.parametrize("after_bytes", [0, 7], ids=["clean", "half-block"])
@pytest.mark.parametrize("at_op", [1, 2, 3], ids=["log-entry", "value", "commit-record"])
def test_a_torn_top_up_whose_card_left_is_settled_by_its_next_tap_exactly_once(env: DemoEnvironment,
                                                                               at_op: int, after_bytes: int) -> None:
    """The tear at each write step (log entry, value block, commit record), the card taken
    away for good: the first top-up ends as a pending action (charged, not reversed, owed to
    the card). The card's next tap, at the start of a second top-up, writes or records it;
    then the second top-up goes through. Card = initial + both; the back-office has both
    loads and no open action; the terminal charged both once."""
    env.card_reader.tear_next_write(at_op=at_op, after_bytes=after_bytes)
    first, _ = topup(env, 100_000)
    assert first.outcome.message_key == "topup.pending_action"
    opened = account(env).pending_actions
    assert [(a.transaction_id, a.intended_balance, a.status) for a in opened] == [
        (first.transaction_id, DEMO_CARD_BALANCE + 100_000, "open")]
    assert env.terminal.net_charged(first.transaction_id) == 100_000  # charged, never reversed

    env.card_reader.place(env.card_reader.torn_card)  # the citizen comes back another day
    second, ui = topup(env, 50_000)
    assert second.outcome.ok, second.outcome
    assert any(s.key == "card.pending_applied" for s in ui.transcript)
    assert second.balance_before == DEMO_CARD_BALANCE + 100_000  # the first top-up, now on the card
    assert card_balance(env) == second.balance_after == DEMO_CARD_BALANCE + 150_000
    after = account(env)
    assert after.pending_actions == ()
    assert after.last_balance == DEMO_CARD_BALANCE + 150_000
    assert sorted(load.transaction_id for load in after.loads) == sorted([first.transaction_id,
                                                                          second.transaction_id])
    assert env.terminal.net_charged(first.transaction_id) == 100_000
    assert env.terminal.net_charged(second.transaction_id) == 50_000


def test_a_pending_action_is_not_settled_on_another_card(env: DemoEnvironment) -> None:
    """The action names its card's UID: a different card with the same serial settles nothing."""
    from devices.transit_card.demo import issue_virtual_card
    from devices.transit_card.keys import DEMO_MASTER_KEY

    env.card_reader.tear_next_write(at_op=3)
    first, _ = topup(env, 100_000)
    assert first.outcome.message_key == "topup.pending_action"
    env.card_reader.place(issue_virtual_card("04d1e2f3", DEMO_MASTER_KEY, 90_000, DEMO_CARD_SERIAL))
    second, ui = topup(env, 50_000)
    assert not any(s.key == "card.pending_applied" for s in ui.transcript)
    assert [a.status for a in account(env).pending_actions] == ["open"]  # still owed to the right card
    # and the back-office refuses to record a load for a card whose uid differs from its serial's
    assert second.outcome.message_key in ("topup.done_pending", "topup.done")


def _backoffice_down(env: DemoEnvironment) -> int:
    port = int(env.settings.backoffice_url.rsplit(":", 1)[1])
    env.backoffice.stop()
    return port


def _backoffice_up(env: DemoEnvironment, port: int) -> None:
    from backoffice.server import serve_in_thread

    env.backoffice = serve_in_thread(env.backoffice_db_url, port=port)


def _drain(env: DemoEnvironment) -> None:
    """The running kiosk's outbox worker, a few rounds, everything due now."""
    from kiosk.outbox_worker import OutboxWorker

    async def go() -> None:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            worker = OutboxWorker(ctx.journal, ctx.money, recovery_interval_s=None)
            for _ in range(3):
                for item in ctx.journal.outbox_pending(now=float("inf")):  # due or not
                    await ctx.money.writer.outbox_record_attempt(item.id, "test: due now", 0.0)
                await worker.drain_once()
        finally:
            await ctx.close()

    asyncio.run(go())


def test_a_card_that_moved_on_while_the_back_office_was_down_gets_its_pending_value_credited_now(
        env: DemoEnvironment) -> None:
    """Found by the soak: the pending action is at the back-office, the back-office is down at
    the card's next tap, so that top-up writes first and takes the counter the torn write had
    planned — the plan can never land. At a later tap the value is credited at the card's
    counter then, under the original transaction, and the action settled with where it went:
    nothing owed is lost, nothing is credited twice, and the loads queued meanwhile go through."""
    env.card_reader.tear_next_write(at_op=1)
    first, _ = topup(env, 100_000)
    assert first.outcome.message_key == "topup.pending_action"
    env.card_reader.place(env.card_reader.torn_card)
    port = _backoffice_down(env)
    second, _ = topup(env, 30_000)  # cannot ask: writes at the counter the plan named
    assert second.outcome.message_key == "topup.done_pending"
    assert card_balance(env) == DEMO_CARD_BALANCE + 30_000
    _backoffice_up(env, port)
    third, ui = topup(env, 20_000)  # this tap credits the owed 100,000, then tops up 20,000
    assert any(s.key == "card.pending_applied" for s in ui.transcript)
    _drain(env)  # the second top-up's queued load
    _drain(env)
    assert card_balance(env) == DEMO_CARD_BALANCE + 150_000
    after = account(env)
    assert after.pending_actions == () and after.last_balance == DEMO_CARD_BALANCE + 150_000
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=0) as client:
        amounts = sorted(client.load_status(r.transaction_id).amount_rials for r in (first, second, third))
    assert amounts == [20_000, 30_000, 100_000]
    # and the same card again: nothing more is credited
    fourth, ui = topup(env, 20_000)
    assert not any(s.key == "card.pending_applied" for s in ui.transcript)
    assert card_balance(env) == DEMO_CARD_BALANCE + 170_000


def test_a_pending_action_still_queued_here_lands_at_the_next_tap_and_is_settled_behind_its_post(
        env: DemoEnvironment) -> None:
    """The back-office is down at the tear too: the pending action waits in this kiosk's
    outbox. At the card's next tap (still down) this kiosk lands the write from its own
    journal before anything else is written, and queues the settlement behind the pending
    action's post; when the back-office is back, both go through and the loads agree."""
    port = _backoffice_down(env)
    env.card_reader.tear_next_write(at_op=2)
    first, _ = topup(env, 100_000)
    assert first.outcome.message_key == "topup.pending_action"
    env.card_reader.place(env.card_reader.torn_card)
    second, ui = topup(env, 30_000)
    assert any(s.key == "card.pending_applied" for s in ui.transcript)
    assert card_balance(env) == DEMO_CARD_BALANCE + 130_000
    _backoffice_up(env, port)
    _drain(env)
    after = account(env)
    assert after.pending_actions == () and after.last_balance == DEMO_CARD_BALANCE + 130_000
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=0) as client:
        assert client.load_status(first.transaction_id).amount_rials == 100_000
        assert client.load_status(second.transaction_id).amount_rials == 30_000
