"""The demo's transit scripts, one entry each: what the citizen does, their answers to the
screens, how the flow runs against the embedded environment and what the summary adds (the
card's serial and balances). `kiosk demo --script NAME` looks them up here; a new transit
service adds one entry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kiosk.flows.card_balance import CardBalanceFlow
from kiosk.flows.card_topup import CardTopupFlow
from kiosk.flows.qr_ticket import QrTicketFlow
from kiosk.journal import TxState
from kiosk.scripted_ui import ScriptedUI


@dataclass(frozen=True)
class NoTransaction:
    """What the summary reads of a flow that moves no money (balance)."""

    outcome: Any
    final_state: None = None
    transaction_id: None = None
    amount_rials: int = 0
    receipt_payload: None = None


#: (the flow's result with outcome/final_state/transaction_id/amount_rials/receipt_payload,
#: the card fields of the summary)
Ran = tuple[Any, dict[str, Any]]


@dataclass(frozen=True)
class TransitScript:
    description: str
    answers: dict[str, Any]
    run: Callable[[Any, Any, ScriptedUI], Awaitable[Ran]]  # (ctx, env, ui)
    expected_state: TxState | None = TxState.COMPLETED


async def _topup(ctx: Any, env: Any, ui: ScriptedUI) -> Ran:
    result = await CardTopupFlow(ctx, ui).run()
    return result, {"card_serial": result.card_serial, "balance_before": result.balance_before,
                    "balance_after": result.balance_after}


async def _balance(ctx: Any, env: Any, ui: ScriptedUI) -> Ran:
    seen = await CardBalanceFlow(ctx, ui).run()
    return NoTransaction(seen.outcome), {"card_serial": seen.card_serial, "balance_before": seen.balance_rials,
                                         "balance_after": seen.balance_rials, "card_profile": seen.profile,
                                         "recent_trips": len(seen.trips)}


async def _qr_ticket(ctx: Any, env: Any, ui: ScriptedUI) -> Ran:
    result = await QrTicketFlow(ctx, ui).run()
    return result, result.summary()


async def _collect_pending(ctx: Any, env: Any, ui: ScriptedUI) -> Ran:
    from kiosk.flows.collect_pending import CollectPendingFlow

    result = await CollectPendingFlow(ctx, ui).run()
    return result, {"card_serial": result.card_serial, "balance_before": result.balance_before,
                    "balance_after": result.balance_after, "collected": len([c for c in result.collected if c.on_card])}


async def _buy_card(ctx: Any, env: Any, ui: ScriptedUI) -> Ran:
    from kiosk.flows.card_sale import CardSaleFlow

    result = await CardSaleFlow(ctx, ui).run()
    return result, {"card_serial": result.card_serial, "balance_before": result.balance_before,
                    "balance_after": result.balance_after, "card_uid": result.card_uid}


TRANSIT_SCRIPTS: dict[str, TransitScript] = {
    "topup": TransitScript("place the demo transit card, top it up by 200,000 rials, pay, write, verify, post, "
                           "receipt", {"topup.choose_amount": "200000", "topup.confirm": True}, _topup),
    "balance": TransitScript("place the demo transit card: balance, concession and recent trips (nothing paid)",
                             {}, _balance, expected_state=None),
    "qr-ticket": TransitScript("buy a return QR ticket (two trips, 90,000 rials): pay, issue the signed QR, record "
                               "it at the back-office, print it", {"ticket.choose_kind": "return", "ticket.confirm": True},
                               _qr_ticket),
    "collect-pending": TransitScript("place the demo transit card: the 50,000-rial top-up bought for it elsewhere is "
                                     "claimed, written, verified, recorded and a slip printed", {}, _collect_pending),
    "buy-card": TransitScript("buy a new transit card with 200,000 rials on it (card price 100,000): pay, dispense, "
                              "personalise, verify, hand over, record, receipt",
                              {"card_sale.choose_value": "200000", "card_sale.confirm": True}, _buy_card),
}
