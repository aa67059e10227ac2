"""Issue 8, item 4 (balance and recent trips on tap, nothing paid, concession cards shown as
such) and item 9 (the transit demo scripts print the fee demo's summary plus the card's
serial and balances; the virtual card persists in the data dir)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from devices.transit_card.demo import DEMO_CARD_BALANCE, DEMO_CARD_SERIAL, issue_virtual_card
from devices.transit_card.keys import DEMO_MASTER_KEY
from kiosk.context import KioskContext
from kiosk.flows.card_balance import BalanceResult, CardBalanceFlow
from kiosk.journal import Journal, journal_path
from kiosk.scripted_ui import ScriptedUI
from kiosk_demo.environment import DemoEnvironment, demo_environment

KIOSK = [sys.executable, "-m", "kiosk.cli"]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with demo_environment(tmp_path) as environment:
        yield environment


def balance(env: DemoEnvironment) -> tuple[BalanceResult, ScriptedUI]:
    ui = ScriptedUI({})

    async def go() -> BalanceResult:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            return await CardBalanceFlow(ctx, ui).run()
        finally:
            await ctx.close()

    return asyncio.run(go()), ui


def test_a_tap_shows_balance_and_trips_and_moves_no_money(env: DemoEnvironment) -> None:
    result, ui = balance(env)
    assert result.outcome.ok and result.balance_rials == DEMO_CARD_BALANCE and result.card_serial == DEMO_CARD_SERIAL
    keys = [s.key for s in ui.transcript]
    assert keys.index("card.place") < keys.index("card.balance") < keys.index("card.trips")
    with Journal(journal_path(env.data_dir), kiosk_id="check") as j:
        assert j.transactions() == []  # nothing journaled: no money, no value moved
    assert [r for r in env.terminal.requests_seen if r != "DiagnosisRequest"] == []


@pytest.mark.parametrize("profile", ["senior", "student"])
def test_a_concession_card_is_shown_as_such(env: DemoEnvironment, profile: str) -> None:
    env.card_reader.place(issue_virtual_card("04c0ffee", DEMO_MASTER_KEY, 80_000, "9364010002", profile))
    result, ui = balance(env)
    assert result.profile == profile and result.balance_rials == 80_000
    shown = [s for s in ui.transcript if s.key == f"card.profile.{profile}"]
    assert shown and ("65" in shown[0].line("en") if profile == "senior" else "Student" in shown[0].line("en"))


def test_a_regular_card_shows_no_concession(env: DemoEnvironment) -> None:
    _, ui = balance(env)
    assert not any(s.key.startswith("card.profile.") for s in ui.transcript)


def test_no_card_within_the_wait_ends_without_a_transaction(env: DemoEnvironment) -> None:
    from kiosk.settings import KioskSettings

    env.card_reader.remove()
    env.settings = KioskSettings(**{**env.settings.__dict__, "card_wait_s": 0.5})
    result, _ = balance(env)
    assert not result.outcome.ok and result.outcome.message_key == "card.not_placed"


def demo(data: Path, script: str) -> dict:
    out = subprocess.run([*KIOSK, "demo", "--headless", "--script", script, "--json", "--data-dir", str(data)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_the_transit_demo_scripts_print_the_card_and_the_card_persists_across_runs(tmp_path: Path) -> None:
    """Item 9: `kiosk demo --script topup|balance --json` print the fee demo's summary plus
    card_serial, balance_before and balance_after; the virtual card lives in the data dir,
    so the next run (as after a crash and a restart) meets the same card."""
    first = demo(tmp_path, "balance")
    assert (first["ok"], first["card_serial"], first["balance_before"]) == (True, DEMO_CARD_SERIAL, DEMO_CARD_BALANCE)
    topped = demo(tmp_path, "topup")
    assert topped["ok"] and topped["final_state"] == "COMPLETED" and topped["journal_ok"]
    assert topped["balance_before"] == DEMO_CARD_BALANCE
    assert topped["balance_after"] == DEMO_CARD_BALANCE + topped["amount_rials"]
    assert topped["receipt_payload"] and topped["transaction_id"]
    again = demo(tmp_path, "balance")
    assert again["balance_before"] == topped["balance_after"]
