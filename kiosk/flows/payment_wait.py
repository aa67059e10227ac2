"""Waiting for the card: the charge at the terminal, with the citizen's Cancel offered while
the terminal has not answered. Every flow that charges calls `charge_or_cancel` in place of
`money.charge`.

Cancel reaches the money path as a ChargeCancel (kiosk.money_path): while the terminal is
asked, the charge is cancelled and undoes itself — abort at the terminal, ask its status,
reverse anything approved anyway — and only once that undo has finished does the flow end,
with an outcome that says what happened to the money, read from the journal:

  CANCELLED                   pay.cancelled                 pressed before the terminal was asked
  DECLINED                    pay.cancelled                 nothing was charged (the terminal aborted)
  REVERSED                    pay.cancelled_reversed        charged, and given back
  REVERSING / REFUND_PENDING  pay.cancelled_refund_pending  charged; the refund is retried or an
  / PAID                                                    operator's (recovery reverses a PAID one)
  PAYING                      pay.cancelled_unknown         the terminal cannot say yet; recovery asks

Cancel pressed after the terminal answered is too late: the charge goes on as if it had not
been pressed (the answer is journaled and acted on). The Cancel button exists only while this
waits: `ui.wait_cancel()` runs for the charge alone, and the next screen has no button.
"""

from __future__ import annotations

import asyncio
import logging

from kiosk.journal import TxState
from kiosk.money_path import ChargeCancel, ChargeResult, MoneyPath
from kiosk.ui_port import Outcome, UIPort

log = logging.getLogger("kiosk.flows.payment")

#: what the citizen is told after a cancel, by the journal state the undo left
CANCELLED_KEYS: dict[TxState, str] = {
    TxState.DECLINED: "pay.cancelled",
    TxState.CANCELLED: "pay.cancelled",
    TxState.REVERSED: "pay.cancelled_reversed",
    TxState.REVERSING: "pay.cancelled_refund_pending",
    TxState.REFUND_PENDING: "pay.cancelled_refund_pending",
    TxState.PAID: "pay.cancelled_refund_pending",
    TxState.PAYING: "pay.cancelled_unknown",
}


class PaymentCancelled(Exception):
    """The citizen cancelled while the terminal waited for the card. The money path has
    finished its undo: `state` is the journal's state now, `outcome` what to show."""

    def __init__(self, tx_id: str, state: TxState) -> None:
        super().__init__(f"payment {tx_id} cancelled by the citizen ({state})")
        self.tx_id = tx_id
        self.state = state

    @property
    def nothing_charged(self) -> bool:
        return self.state in (TxState.DECLINED, TxState.CANCELLED)

    @property
    def message_key(self) -> str:
        return CANCELLED_KEYS.get(self.state, "pay.cancelled_unknown")

    @property
    def outcome(self) -> Outcome:
        return Outcome(False, self.message_key, {"tx": self.tx_id}, self.tx_id)


async def charge_or_cancel(money: MoneyPath, ui: UIPort, tx_id: str, amount_rials: int) -> ChargeResult:
    """`money.charge(tx_id, amount_rials)` with Cancel on the screen while the terminal waits.
    Returns the charge's result, raises what the charge raises (AmountTooLarge, DeviceError:
    nothing was asked), or PaymentCancelled once a cancelled charge is undone."""
    press = asyncio.ensure_future(ui.wait_cancel())
    try:
        await asyncio.sleep(0)  # the screen puts its Cancel up (a press already made is seen now)
    except asyncio.CancelledError:
        press.cancel()
        raise
    if _pressed(press):
        # before anything was asked of the terminal: nothing to undo
        await money.cancel(tx_id, {"reason": "citizen cancelled before the terminal was asked"})
        log.info("citizen cancelled before the terminal was asked", extra={"tx": tx_id})
        raise PaymentCancelled(tx_id, TxState.CANCELLED)
    cancel = ChargeCancel()
    charge = asyncio.ensure_future(money.charge(tx_id, amount_rials, cancel=cancel))
    try:
        await asyncio.wait({charge, press}, return_when=asyncio.FIRST_COMPLETED)
        if _pressed(press) and not charge.done():
            if cancel.request():
                log.info("citizen cancelled while the terminal waited", extra={"tx": tx_id})
            else:
                log.info("cancel pressed after the terminal answered: too late, ignored", extra={"tx": tx_id})
        # the Cancel button goes with its waiter (a second press finds none)
        press.cancel()
        await asyncio.gather(press, return_exceptions=True)
        if cancel.requested and not charge.done():
            await ui.show_step("pay.cancelling")
        await asyncio.wait({charge})
    except asyncio.CancelledError:
        # the flow itself is stopped (the kiosk shutting down): the charge goes with it, as
        # when the flow awaited it directly — its own cancel handling undoes it
        press.cancel()
        charge.cancel()
        raise
    if charge.cancelled():
        if not cancel.requested:
            raise asyncio.CancelledError  # not the citizen's cancel
        state = money.journal.state_of(tx_id)
        log.info("cancelled payment ends %s", state, extra={"tx": tx_id})
        raise PaymentCancelled(tx_id, state)
    return charge.result()


def _pressed(press: asyncio.Future[None]) -> bool:
    return press.done() and not press.cancelled() and press.exception() is None
