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


@pytest.mark.parametrize("at_op", [1, 2, 3], ids=["log-entry", "value", "commit-record"])
def test_a_torn_top_up_whose_card_left_is_settled_by_its_next_tap_exactly_once(env: DemoEnvironment,
                                                                               at_op: int) -> None:
    """The tear at each write step (log entry, value block, commit record), the card taken
    away for good: the first top-up ends as a pending action (charged, not reversed, owed to
    the card). The card's next tap, at the start of a second top-up, writes or records it;
    then the second top-up goes through. Card = initial + both; the back-office has both
    loads and no open action; the terminal charged both once."""
    env.card_reader.tear_next_write(at_op=at_op)
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
