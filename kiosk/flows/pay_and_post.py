"""Pay for one order and have the back-office record it: the money half of every kind that is
fulfilled by its post alone (a traffic-zone permit; the fee payment has its own copy of this
shape, kiosk/flows/fee_payment.py). Open the transaction → charge at the terminal → queue and
send the post → signed receipt → COMPLETED. Every money step goes through kiosk.money_path, so
recovery finishes what a crash cut off; anything unexpected after CREATED is left to it and the
citizen is told the payment will be checked."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devices.base import DeviceError
from devices.contracts import AmountTooLarge
from kiosk.faults import fault_point
from kiosk.flows.payment_wait import PaymentCancelled, charge_or_cancel
from kiosk.journal import JournalError, Transaction, TxState
from kiosk.money_path import SettleResult
from kiosk.service_guard import STORAGE_ERRORS, JournalBroken, StorageLow
from kiosk.services.base import Order, TransactionKind
from kiosk.ui_port import Outcome, UIPort

log = logging.getLogger("kiosk.flows.pay")


@dataclass(frozen=True)
class PaidResult:
    outcome: Outcome
    final_state: TxState | None
    transaction_id: str | None
    amount_rials: int
    receipt_payload: str | None = None


async def pay_and_post(ctx: Any, ui: UIPort, kind: TransactionKind, order: Order, amount_rials: int, *,
                       done_key: str, done_params: Callable[[Transaction], dict[str, Any]]) -> PaidResult:
    """The outcome is shown here too. `done_key`/`done_params`: the success message."""
    money = ctx.money

    async def end(outcome: Outcome, state: TxState | None, tx_id: str | None = None,
                  payload: str | None = None) -> PaidResult:
        await ui.show_outcome(outcome)
        return PaidResult(outcome, state, tx_id, amount_rials, payload)

    if ctx.out_of_service is not None:
        await ui.show_error("service.out_of_service")
        return await end(Outcome(False, "service.out_of_service"), None)
    try:
        tx_id = await money.open_transaction(kind.name, amount_rials, order.to_journal())
    except JournalBroken:
        await ui.show_error("service.out_of_service")
        return await end(Outcome(False, "service.out_of_service"), None)
    except StorageLow as exc:
        await ui.show_error(exc.key)
        return await end(Outcome(False, exc.key), None)
    except (JournalError, *STORAGE_ERRORS) as exc:  # CREATED not written: nothing charged
        log.error("new transaction could not be journaled: %s", exc)
        await ui.show_error("service.unavailable")
        return await end(Outcome(False, "service.unavailable"), None)

    def state() -> TxState | None:
        try:
            return ctx.journal.state_of(tx_id)
        except (JournalError, *STORAGE_ERRORS):
            return None

    try:
        fault_point("after-created")
        await ui.show_step("pay.insert_card", amount_rials=amount_rials)
        try:
            charge = await charge_or_cancel(money, ui, tx_id, amount_rials)
        except PaymentCancelled as cancelled:  # the money path undid what the terminal did
            return await end(cancelled.outcome, cancelled.state, tx_id)
        except (AmountTooLarge, DeviceError) as exc:  # refused before or without the terminal
            await money.cancel(tx_id, {"reason": exc.to_dict()})
            key = "pay.amount_over_limit" if isinstance(exc, AmountTooLarge) else "service.unavailable"
            await ui.show_error(key)
            return await end(Outcome(False, key, transaction_id=tx_id), TxState.CANCELLED, tx_id)
        if charge.state == TxState.DECLINED:
            return await end(Outcome(False, "pay.declined", transaction_id=tx_id), TxState.DECLINED, tx_id)
        if charge.state == TxState.PAYING:  # the terminal cannot say yet; recovery will
            return await end(Outcome(False, "pay.unknown", {"tx": tx_id}, tx_id), TxState.PAYING, tx_id)
        fault_point("after-paid")
        await ui.show_step("settle.posting")
        settled = await money.settle(await money.start_settlement(tx_id))
        if settled in (SettleResult.REVERSED, SettleResult.REFUND_PENDING, SettleResult.REVERSAL_PENDING):
            key = "settle.refused_reversed" if settled == SettleResult.REVERSED else "settle.refused_refund_pending"
            return await end(Outcome(False, key, {"tx": tx_id}, tx_id), state(), tx_id)
        fault_point("before-receipt")
        await ui.show_step("receipt.printing")
        tx = ctx.journal.get(tx_id)
        issued = await ctx.receipts.issue(tx, pending=settled != SettleResult.SETTLED)
        if not issued.printed:
            await ui.show_error("receipt.not_printed", tracking=tx.data.get("tracking_code") or tx_id)
        if settled == SettleResult.SETTLED:
            await money.complete(tx_id, receipt_printed=issued.printed)
            outcome = Outcome(True, done_key, done_params(ctx.journal.get(tx_id)), tx_id, issued.payload)
        else:  # paid; the post waits in the outbox and completes when acknowledged
            outcome = Outcome(True, "settle.pending", {"tx": tx_id}, tx_id, issued.payload)
        return await end(outcome, state(), tx_id, issued.payload)
    except (JournalError, *STORAGE_ERRORS) as exc:
        log.error("journal write failed mid-payment, left for recovery: %s", exc, extra={"tx": tx_id})
        await ui.show_error("service.storage", tx=tx_id)
        return await end(Outcome(False, "service.storage", {"tx": tx_id}, tx_id), state(), tx_id)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected failure mid-payment, left for recovery", extra={"tx": tx_id})
        await ui.show_error("pay.unknown", tx=tx_id)
        return await end(Outcome(False, "pay.unknown", {"tx": tx_id}, tx_id), state(), tx_id)
    finally:
        money.release(tx_id)
