"""The fee-payment flow end to end in-process: a scripted citizen against the real back-office
on loopback (SQLite), the nexo terminal simulator through the nexo driver, and the ESC/POS
network printer emulator through the escpos driver."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import zxingcpp

from backoffice.seed import DEMO_NATIONAL_CODE, DEMO_RENOVATION_CODE
from backoffice.server import serve_in_thread
from kiosk.backoffice_client import BackofficeClient, PaymentPost
from kiosk.bills import make_bill_id, make_payment_id
from kiosk.context import KioskContext
from kiosk_demo.environment import demo_environment
from kiosk.flows.fee_payment import FeePaymentFlow
from kiosk.journal import TxState
from kiosk.receipts import verify_payload
from kiosk.scripted_ui import ScriptedUI


class Kiosk:
    """One kiosk on the embedded environment, for one test."""

    def __init__(self, env: Any, data: Path) -> None:
        self.env = env
        self.data = data
        self.client = BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=1)

    def unpaid_slip(self, index: int = 0) -> Any:
        owner = self.client.fee_slips(national_code=DEMO_NATIONAL_CODE, renovation_code=DEMO_RENOVATION_CODE)
        return [s for s in owner.slips if s.status == "unpaid"][index]

    def run(self, script: dict[str, Any], ui: ScriptedUI | None = None, **overrides: Any) -> tuple[Any, ScriptedUI, KioskContext]:
        ui = ui or ScriptedUI(script)
        settings = self.env.settings.__class__(**{**self.env.settings.__dict__, **overrides})

        async def go() -> tuple[Any, KioskContext]:
            ctx = await KioskContext.open(settings, self.data)
            try:
                return await FeePaymentFlow(ctx, ui).run(), ctx
            finally:
                await ctx.close()

        result, ctx = asyncio.run(go())
        return result, ui, ctx

    def journal(self) -> Any:
        from kiosk.journal import Journal, journal_path

        return Journal(journal_path(self.data), kiosk_id="check")

    def payments_for(self, bill_id: str, payment_id: str) -> int:
        engine = sa.create_engine(self.env.backoffice_db_url)
        with engine.connect() as conn:
            n = conn.execute(sa.text("SELECT count(*) FROM payments WHERE bill_id = :b AND payment_id = :p"),
                             {"b": bill_id, "p": payment_id}).scalar_one()
        engine.dispose()
        return int(n)


@pytest.fixture
def kiosk(tmp_path: Path):
    with demo_environment(tmp_path) as env:
        k = Kiosk(env, tmp_path)
        yield k
        k.client.close()


def typed(slip: Any, confirm: bool = True) -> dict[str, Any]:
    return {"fee.how_to_enter": "manual", "fee.enter_bill_id": slip.bill_id, "fee.enter_payment_id": slip.payment_id,
            "fee.confirm": confirm}


def test_fee_is_paid_once_settled_once_and_a_signed_receipt_is_printed(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()
    result, ui, ctx = kiosk.run(typed(slip))

    assert result.final_state == TxState.COMPLETED
    assert result.outcome.ok and result.outcome.message_key == "fee.paid"
    assert kiosk.env.terminal.net_charged(result.transaction_id) == slip.amount_rials
    assert kiosk.payments_for(slip.bill_id, slip.payment_id) == 1
    assert kiosk.client.lookup_bill(slip.bill_id, slip.payment_id).status == "paid"
    states = [e.state for e in kiosk.journal().get(result.transaction_id).entries]
    assert states == [TxState.CREATED, TxState.PAYING, TxState.PAID, TxState.FULFILLING,
                      TxState.FULFILLED, TxState.POSTED, TxState.COMPLETED]
    assert kiosk.journal().verify().ok
    # the receipt: the printer emulator got ESC/POS bytes whose QR is the signed payload
    receipts = kiosk.env.printer.receipts()
    assert len(receipts) == 1 and receipts[0].qr_codes == [result.receipt_payload]
    verified = verify_payload(result.receipt_payload, ctx.receipts.signer.public_key)
    assert verified.tx_id == result.transaction_id and verified.amount_rials == slip.amount_rials
    # and the printed picture itself carries a QR a phone can read back
    read = zxingcpp.read_barcodes(receipts[0].image.convert("L"))
    assert result.receipt_payload in [r.text for r in read]


def test_invalid_typed_ids_get_a_typed_error_three_times_and_nothing_is_journaled(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()
    wrong_payment = slip.payment_id[:-1] + str((int(slip.payment_id[-1]) + 1) % 10)
    script = {"fee.how_to_enter": ["manual"] * 3, "fee.enter_bill_id": [slip.bill_id] * 3,
              "fee.enter_payment_id": [wrong_payment] * 3}
    result, ui, _ = kiosk.run(script)
    assert ui.keys("error") == ["bill.invalid"] * 3
    assert result.final_state is None and not result.outcome.ok
    assert kiosk.journal().transactions() == []


def test_unknown_bill_is_refused_before_any_money_moves(kiosk: Kiosk) -> None:
    bill_id = make_bill_id("99887766", "102", 6)
    payment_id = make_payment_id(bill_id, 250_000, 5, 7)
    result, ui, _ = kiosk.run({"fee.how_to_enter": "manual", "fee.enter_bill_id": bill_id,
                               "fee.enter_payment_id": payment_id, "fee.confirm": True})
    assert ui.keys("error") == ["bill.not_found"]
    assert kiosk.journal().transactions() == []
    assert kiosk.env.terminal.ledger() == []


def test_already_paid_bill_is_refused_before_any_money_moves(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()
    first, _, _ = kiosk.run(typed(slip))
    assert first.final_state == TxState.COMPLETED
    second, ui, _ = kiosk.run(typed(slip))
    assert ui.keys("error") == ["bill.already_paid"]
    assert second.transaction_id is None
    assert len(kiosk.env.terminal.ledger()) == 1


def test_slip_amount_that_disagrees_with_the_backoffice_is_refused(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()
    engine = sa.create_engine(kiosk.env.backoffice_db_url)
    with engine.begin() as conn:  # the municipality re-assessed the fee after the slip was printed
        conn.execute(sa.text("UPDATE bills SET amount_rials = amount_rials + 1000 WHERE bill_id = :b AND payment_id = :p"),
                     {"b": slip.bill_id, "p": slip.payment_id})
    engine.dispose()
    result, ui, _ = kiosk.run(typed(slip))
    assert ui.keys("error") == ["payment.amount_mismatch"]
    assert kiosk.journal().transactions() == []


def test_cancel_at_confirmation_charges_nothing(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()
    result, ui, _ = kiosk.run(typed(slip, confirm=False))
    assert result.outcome.message_key == "fee.cancelled"
    assert kiosk.journal().transactions() == [] and kiosk.env.terminal.ledger() == []


def test_declined_card_is_journaled_declined_and_nothing_is_charged(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()
    kiosk.env.terminal.set_mode("once-decline")
    result, ui, _ = kiosk.run(typed(slip))
    assert result.final_state == TxState.DECLINED
    assert result.outcome.message_key == "pay.declined"
    assert kiosk.env.terminal.net_charged(result.transaction_id) == 0
    assert kiosk.payments_for(slip.bill_id, slip.payment_id) == 0
    assert kiosk.journal().open_transactions() == []


def test_terminal_timeout_asks_status_and_ends_declined_without_charge(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()
    kiosk.env.terminal.hang_s = 3.0
    kiosk.env.terminal.set_mode("once-timeout")
    result, ui, _ = kiosk.run(typed(slip), pay_timeout_s=1.0)
    assert result.final_state == TxState.DECLINED
    assert kiosk.env.terminal.net_charged(result.transaction_id) == 0
    assert kiosk.journal().open_transactions() == []


def test_lost_terminal_response_is_recovered_from_status_and_charged_once(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()
    kiosk.env.terminal.set_mode("once-lost-response")
    result, ui, _ = kiosk.run(typed(slip), pay_timeout_s=2.0)
    assert result.final_state == TxState.COMPLETED
    assert kiosk.env.terminal.net_charged(result.transaction_id) == slip.amount_rials
    assert len(kiosk.env.terminal.ledger()) == 1
    assert kiosk.payments_for(slip.bill_id, slip.payment_id) == 1


def test_backoffice_down_at_lookup_is_a_typed_error_and_nothing_is_journaled(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()
    result, ui, _ = kiosk.run(typed(slip), backoffice_url="http://127.0.0.1:9")  # nothing listens there
    assert ui.keys("error") == ["backoffice.unavailable"]
    assert kiosk.journal().transactions() == []


class StopBackofficeOnConfirm(ScriptedUI):
    """The citizen confirms; at that moment the back-office goes down (network cut)."""

    def __init__(self, script: dict[str, Any], kiosk: Kiosk) -> None:
        super().__init__(script)
        self.kiosk = kiosk

    async def confirm(self, key: str, **params: Any) -> bool:
        self.kiosk.env.backoffice.stop()
        return await super().confirm(key, **params)


def test_backoffice_down_at_settlement_keeps_the_payment_queued_and_the_outbox_settles_it_later(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()
    port = int(kiosk.env.backoffice.url.rsplit(":", 1)[1])
    result, ui, _ = kiosk.run(typed(slip), ui=StopBackofficeOnConfirm(typed(slip), kiosk))
    assert result.outcome.ok and result.outcome.message_key == "settle.pending"
    assert result.final_state == TxState.FULFILLING
    assert result.receipt_payload  # the citizen leaves with a receipt that says settlement is pending
    assert kiosk.env.terminal.net_charged(result.transaction_id) == slip.amount_rials

    with serve_in_thread(kiosk.env.backoffice_db_url, port=port):  # the back-office is back
        from kiosk.commands.recover import recover

        resolved = asyncio.run(recover(kiosk.data, kiosk.env.settings))
    assert [(r["tx_id"], r["to_state"]) for r in resolved] == [(result.transaction_id, "COMPLETED")]
    assert kiosk.payments_for(slip.bill_id, slip.payment_id) == 1
    assert kiosk.journal().open_transactions() == []


class PayElsewhereOnConfirm(ScriptedUI):
    """While the citizen reads the confirmation, the same bill is paid through another channel."""

    def __init__(self, script: dict[str, Any], kiosk: Kiosk, slip: Any) -> None:
        super().__init__(script)
        self.kiosk, self.slip = kiosk, slip

    async def confirm(self, key: str, **params: Any) -> bool:
        post = PaymentPost(transaction_id="bank-app-1", bill_id=self.slip.bill_id, payment_id=self.slip.payment_id,
                           amount_rials=self.slip.amount_rials, paid_at="2026-11-28T10:00:00Z")
        await asyncio.to_thread(self.kiosk.client.post_payment, post, idempotency_key="bank-app-1")
        return await super().confirm(key, **params)


def test_settlement_refused_as_already_paid_reverses_the_card_payment(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()
    result, ui, _ = kiosk.run(typed(slip), ui=PayElsewhereOnConfirm(typed(slip), kiosk, slip))
    assert result.final_state == TxState.REVERSED
    assert result.outcome.message_key == "settle.refused_reversed"
    assert kiosk.env.terminal.net_charged(result.transaction_id) == 0
    assert kiosk.payments_for(slip.bill_id, slip.payment_id) == 1  # only the other channel's
    assert kiosk.journal().open_transactions() == []


def test_printer_out_of_paper_still_completes_payment_and_shows_the_tracking_code(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()
    kiosk.env.printer.set_paper("out")
    result, ui, _ = kiosk.run(typed(slip))
    assert result.final_state == TxState.COMPLETED
    assert "receipt.not_printed" in ui.keys("error")
    assert kiosk.env.printer.jobs == [] or all(not j for j in kiosk.env.printer.jobs)
    assert kiosk.journal().get(result.transaction_id).data["receipt_printed"] is False


def test_scanned_slip_barcode_pays_without_touching_the_keypad(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()

    class ScanThenConfirm(ScriptedUI):
        async def choose(self, key: str, options: list, **params: Any) -> str:
            kiosk.env.scanner.send(slip.bill_id.zfill(13) + slip.payment_id.zfill(13))
            return await super().choose(key, options, **params)

    result, ui, _ = kiosk.run({}, ui=ScanThenConfirm({"fee.how_to_enter": "wait", "fee.confirm": True}))
    assert result.final_state == TxState.COMPLETED
    assert "fee.scanned" in ui.keys("step") and ui.keys("digits") == []
    assert kiosk.payments_for(slip.bill_id, slip.payment_id) == 1


def test_scanned_text_that_is_not_a_bill_is_refused_with_its_own_error(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()
    sent = iter(["https://example.org/not-a-bill", slip.bill_id.zfill(13) + slip.payment_id.zfill(13)])

    class ScanTwice(ScriptedUI):
        async def choose(self, key: str, options: list, **params: Any) -> str:
            kiosk.env.scanner.send(next(sent))
            return await super().choose(key, options, **params)

    result, ui, _ = kiosk.run({}, ui=ScanTwice({"fee.how_to_enter": ["wait", "wait"], "fee.confirm": True}))
    assert ui.keys("error") == ["bill.not_a_bill"]
    assert result.final_state == TxState.COMPLETED  # the second, real slip was then paid
    assert len(kiosk.journal().transactions()) == 1


def test_outbox_worker_settles_a_queued_payment_while_the_kiosk_keeps_running(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()
    port = int(kiosk.env.backoffice.url.rsplit(":", 1)[1])
    ui = StopBackofficeOnConfirm(typed(slip), kiosk)

    async def go() -> tuple[Any, TxState]:
        ctx = await KioskContext.open(kiosk.env.settings, kiosk.data)
        try:
            ctx.start_outbox_worker(interval_s=0.1)
            result = await FeePaymentFlow(ctx, ui).run()
            assert result.final_state == TxState.FULFILLING  # queued: the back-office is down
            with serve_in_thread(kiosk.env.backoffice_db_url, port=port):
                item = ctx.journal.outbox_for(result.transaction_id)[0]
                # the failed attempt set a back-off; make it due now rather than waiting minutes
                ctx.journal.outbox_record_attempt(item.id, "test: due now", 0.0)
                for _ in range(100):
                    if ctx.journal.state_of(result.transaction_id) == TxState.COMPLETED:
                        break
                    await asyncio.sleep(0.05)
            return result, ctx.journal.state_of(result.transaction_id)
        finally:
            await ctx.close()

    result, state = asyncio.run(go())
    assert state == TxState.COMPLETED
    assert kiosk.payments_for(slip.bill_id, slip.payment_id) == 1
    assert kiosk.env.terminal.net_charged(result.transaction_id) == slip.amount_rials


class DisableKioskOnConfirm(ScriptedUI):
    """The citizen confirms; at that moment the kiosk's back-office credential stops working
    (a token rotation gone wrong): settlement gets 401."""

    def __init__(self, script: dict[str, Any], kiosk: Kiosk) -> None:
        super().__init__(script)
        self.kiosk = kiosk

    async def confirm(self, key: str, **params: Any) -> bool:
        engine = sa.create_engine(self.kiosk.env.backoffice_db_url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE kiosks SET enabled = :off"), {"off": False})
        engine.dispose()
        return await super().confirm(key, **params)


def test_settlement_refused_for_credentials_keeps_the_payment_queued_and_never_reverses_it(kiosk: Kiosk) -> None:
    slip = kiosk.unpaid_slip()
    result, ui, _ = kiosk.run(typed(slip), ui=DisableKioskOnConfirm(typed(slip), kiosk))
    assert result.final_state == TxState.FULFILLING and result.outcome.message_key == "settle.pending"
    assert kiosk.env.terminal.net_charged(result.transaction_id) == slip.amount_rials
    item = kiosk.journal().outbox_for(result.transaction_id)[0]
    assert item.status == "pending" and item.attempts == 1


def test_a_reversal_the_terminal_refuses_is_refund_pending_not_reversed(kiosk: Kiosk) -> None:
    from devices.terminal import nexo

    slip = kiosk.unpaid_slip()
    # the acquirer's host refuses reversals today (simulator behaviour, not kiosk code)
    kiosk.env.terminal._reversal = lambda req: nexo.response_message(  # type: ignore[method-assign]
        req.header, "ReversalResponse", nexo.failure_body(nexo.REFUSAL))
    result, ui, _ = kiosk.run(typed(slip), ui=PayElsewhereOnConfirm(typed(slip), kiosk, slip))
    assert result.final_state == TxState.REFUND_PENDING
    assert result.outcome.message_key == "settle.refused_refund_pending"
    assert kiosk.env.terminal.net_charged(result.transaction_id) == slip.amount_rials  # still held: an operator refunds


def test_cancel_while_the_terminal_approves_gives_the_money_back(kiosk: Kiosk) -> None:
    """Deterministic: the terminal approves and holds its answer until the citizen's cancel
    (the Abort) arrives, so the approved-then-reversed branch runs every time."""
    slip = kiosk.unpaid_slip()
    kiosk.env.terminal.hold_approved = True

    async def go() -> tuple[str, TxState, list[TxState]]:
        ctx = await KioskContext.open(kiosk.env.settings, kiosk.data)
        try:
            tx_id = await ctx.money.open_transaction("fee_payment", slip.amount_rials,
                                                     {"bill_id": slip.bill_id, "payment_id": slip.payment_id})
            task = asyncio.create_task(ctx.money.charge(tx_id, slip.amount_rials))
            # the sale is approved at the terminal, its answer not yet sent: cancel now
            assert await asyncio.to_thread(kiosk.env.terminal.held.wait, 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            ctx.money.release(tx_id)
            return tx_id, ctx.journal.state_of(tx_id), [e.state for e in ctx.journal.get(tx_id).entries]
        finally:
            await ctx.close()

    tx_id, state, states = asyncio.run(go())
    assert states == [TxState.CREATED, TxState.PAYING, TxState.PAID, TxState.REVERSING, TxState.REVERSED]
    assert [s["status"] for s in kiosk.env.terminal.ledger()] == ["reversed"]
    assert kiosk.env.terminal.net_charged(tx_id) == 0
