"""A terminal that writes a full card number where a masked one belongs: the kiosk's one
card-number rule (kiosk.sensitive) decides what is stored, in the money path, after the money
has moved — so the sale is still recorded and settled, and the number is stored only masked."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backoffice.seed import DEMO_NATIONAL_CODE
from kiosk.backoffice_client import BackofficeClient
from kiosk.context import KioskContext
from kiosk.flows.fee_payment import FeePaymentFlow
from kiosk.journal import Journal, TxState, journal_path
from kiosk.scripted_ui import ScriptedUI
from kiosk_demo.environment import demo_environment

FULL_PAN = "6037991234561234"  # Luhn-valid, Bank Melli BIN


@pytest.mark.parametrize("leaked,stored", [
    (FULL_PAN, "603799******1234"),
    ("6037 9912 3456 1234", "603799******1234"),
    ("603799******1234", "603799******1234"),
    ("411111 **** 1111", "411111 **** 1111"),  # a documented masked form, kept as written
])
def test_a_full_card_number_from_the_terminal_is_journaled_masked_and_the_sale_completes(
        tmp_path: Path, leaked: str, stored: str) -> None:
    with demo_environment(tmp_path) as env:
        env.terminal.masked_pan = leaked
        with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token) as client:
            slip = client.fee_slips(national_code=DEMO_NATIONAL_CODE).unpaid[0]
        script = {"fee.how_to_enter": "manual", "fee.enter_bill_id": slip.bill_id,
                  "fee.enter_payment_id": slip.payment_id, "fee.confirm": True}

        async def go():  # type: ignore[no-untyped-def]
            ctx = await KioskContext.open(env.settings, tmp_path)
            try:
                return await FeePaymentFlow(ctx, ScriptedUI(script)).run()
            finally:
                await ctx.close()

        result = asyncio.run(go())
        assert result.final_state == TxState.COMPLETED
        assert env.terminal.net_charged(result.transaction_id) == slip.amount_rials
    with Journal(journal_path(tmp_path), kiosk_id="check") as journal:
        assert journal.get(result.transaction_id).data["masked_pan"] == stored
    for path in tmp_path.rglob("journal.sqlite3*"):
        assert FULL_PAN.encode() not in path.read_bytes()
