"""Issue 7, items 1 and 2 at the money path: after a restart and after a reversal, the kiosk
finds its sales again the way a real terminal lets it — by the message reference journaled
before each request left (SaleID, ServiceID, MessageCategory) — never by our own sale
reference, and never by asking a reversed payment's status (a real terminal answers that
with the original approval). Everything real: the demo back-office, the nexo simulator (as
strict as the Terminal API: no reference lookup), journals on disk."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from devices.contracts import MessageRef
from devices.terminal import nexo
from kiosk.commands.recover import recover
from kiosk.context import KioskContext
from kiosk.journal import Journal, TxState, journal_path
from kiosk_demo.environment import DemoEnvironment, demo_environment


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with demo_environment(tmp_path) as environment:
        yield environment


class Wire:
    """Every request the simulator receives, parsed; and which answers to drop (the
    connection closes after the terminal has acted — a lost response)."""

    def __init__(self, env: DemoEnvironment) -> None:
        self.sim = env.terminal
        self.requests: list[dict[str, Any]] = []
        self.drop: set[str] = set()  # body names whose answer is lost
        self._handle = self.sim.handle

        def handle(raw: bytes) -> Any:
            msg = json.loads(raw)["SaleToPOIRequest"]
            self.requests.append(msg)
            answer = self._handle(raw)
            name = next(k for k in msg if k != "MessageHeader")
            return None if name in self.drop else answer

        self.sim.handle = handle  # type: ignore[method-assign]

    def of(self, body_name: str) -> list[dict[str, Any]]:
        return [m for m in self.requests if body_name in m]


def journal(env: DemoEnvironment) -> Journal:
    return Journal(journal_path(env.data_dir), kiosk_id="check")


def recover_now(env: DemoEnvironment) -> dict[str, dict[str, Any]]:
    return {r["tx_id"]: r for r in asyncio.run(recover(env.data_dir, env.settings))}


def charge(env: DemoEnvironment, amount: int = 230_000) -> tuple[str, Any]:
    """CREATED → PAYING → (the terminal's answer) in one kiosk process that then stops."""

    async def go() -> tuple[str, Any]:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            tx_id = await ctx.money.open_transaction("fee_payment", amount, {"bill_id": "1", "payment_id": "2"})
            result = await ctx.money.charge(tx_id, amount)
            ctx.money.release(tx_id)
            return tx_id, result
        finally:
            await ctx.close()

    return asyncio.run(go())


def paying_ref(env: DemoEnvironment, tx_id: str) -> MessageRef:
    with journal(env) as j:
        paying = [e for e in j.get(tx_id).entries if e.state == TxState.PAYING]
    return MessageRef.from_dict(paying[0].data["message_ref"])


def test_paying_journals_the_message_reference_before_the_request_leaves(env: DemoEnvironment) -> None:
    """Item 1: the ServiceID and timestamp the terminal will know the sale by are in the
    journal's PAYING row, and the PaymentRequest carries exactly those."""
    wire = Wire(env)
    tx_id, result = charge(env)
    assert result.state == TxState.PAID
    ref = paying_ref(env, tx_id)
    sent = wire.of("PaymentRequest")[0]
    assert sent["MessageHeader"]["ServiceID"] == ref.service_id
    assert sent["MessageHeader"]["SaleID"] == ref.sale_id == env.settings.kiosk_id
    assert sent["PaymentRequest"]["SaleData"]["SaleTransactionID"] == {"TransactionID": tx_id, "TimeStamp": ref.timestamp}
    with journal(env) as j:  # PAID keeps the terminal's transaction id and timestamp for a reversal
        data = j.get(tx_id).data
    assert data["poi_reference"] == result.payment.poi_reference
    assert data["poi_timestamp"] == result.payment.poi_timestamp != ""


def test_a_restarted_kiosk_finds_a_lost_approval_by_the_journaled_service_id(env: DemoEnvironment) -> None:
    """Item 1: the approval's answer is lost and the kiosk stops; the next process asks
    TransactionStatus with MessageReference (SaleID, ServiceID from the journal, Payment) —
    no sale reference, which a real terminal would not look up — and records PAID, then
    (the citizen gone, the back-office holding nothing) reverses it."""
    wire = Wire(env)
    wire.drop.update({"PaymentRequest", "TransactionStatusRequest"})  # the process learns nothing
    tx_id, first = charge(env)
    assert first.state == TxState.PAYING
    ref = paying_ref(env, tx_id)
    wire.drop.clear()
    before = len(wire.of("TransactionStatusRequest"))
    resolved = recover_now(env)
    assert resolved[tx_id]["to_state"] == "REVERSED"
    asked = wire.of("TransactionStatusRequest")[before]["TransactionStatusRequest"]["MessageReference"]
    assert asked == {"MessageCategory": "Payment", "SaleID": env.settings.kiosk_id, "ServiceID": ref.service_id}
    assert env.terminal.net_charged(tx_id) == 0


def test_paying_without_a_journaled_reference_stays_open_for_an_operator(env: DemoEnvironment) -> None:
    """Item 1: a PAYING row without a message reference (a journal from before references
    were journaled) cannot be asked about — and "not found" must never be read as "not
    charged" — so recovery leaves it PAYING and asks the terminal nothing."""
    wire = Wire(env)
    with journal(env) as j:
        tx_id = j.begin("fee_payment", 120_000, {"bill_id": "1", "payment_id": "2"}).tx_id
        j.append(tx_id, TxState.PAYING, {"terminal": "terminal"})
    resolved = recover_now(env)
    assert resolved[tx_id]["to_state"] == "PAYING" and resolved[tx_id]["resolved"] is False
    assert wire.of("TransactionStatusRequest") == []


def test_a_sale_made_at_another_terminal_is_not_asked_of_this_one(env: DemoEnvironment) -> None:
    """Item 1: the journaled reference names the POIID that took the sale; after the
    terminal is replaced, this one would truthfully answer NotFound — which must not read as
    DECLINED. The transaction stays PAYING."""
    wire = Wire(env)
    other = MessageRef("Payment", "x", "abcdef0123", env.settings.kiosk_id, "V400m-000000001", nexo.now_iso())
    with journal(env) as j:
        tx_id = j.begin("fee_payment", 120_000, {"bill_id": "1", "payment_id": "2"}).tx_id
        j.append(tx_id, TxState.PAYING, {"terminal": "terminal", "message_ref": {**other.to_dict(), "reference": tx_id}})
    resolved = recover_now(env)
    assert resolved[tx_id]["to_state"] == "PAYING"
    assert wire.of("TransactionStatusRequest") == []


def reverse_now(env: DemoEnvironment, tx_id: str) -> Any:
    async def go() -> Any:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            return await ctx.money.reverse(tx_id, "test: citizen gone", ask_backoffice=False)
        finally:
            await ctx.close()

    return asyncio.run(go())


def test_a_lost_reversal_answer_is_resolved_by_the_reversal_status_not_a_second_reversal(env: DemoEnvironment) -> None:
    """Item 2: the terminal reverses but its answer is lost. The kiosk asks TransactionStatus
    with MessageCategory Reversal and the reversal's own ServiceID (journaled in REVERSING
    before the request left) and records REVERSED. Asking the payment's status instead would
    read APPROVED (a real terminal repeats the original PaymentResponse) and send a second
    reversal."""
    wire = Wire(env)
    tx_id, result = charge(env)
    assert result.state == TxState.PAID
    wire.drop.add("ReversalRequest")
    reverse_now(env, tx_id)
    with journal(env) as j:
        tx = j.get(tx_id)
    reversing = [e for e in tx.entries if e.state == TxState.REVERSING]
    assert tx.state == TxState.REVERSED
    assert len(wire.of("ReversalRequest")) == 1 and len(reversing) == 1
    rev_ref = MessageRef.from_dict(reversing[0].data["message_ref"])
    sent = wire.of("ReversalRequest")[0]
    assert sent["MessageHeader"]["ServiceID"] == rev_ref.service_id
    assert sent["ReversalRequest"]["OriginalPOITransaction"]["POITransactionID"] == {
        "TransactionID": result.payment.poi_reference, "TimeStamp": result.payment.poi_timestamp}
    asked = wire.of("TransactionStatusRequest")[-1]["TransactionStatusRequest"]["MessageReference"]
    assert asked["MessageCategory"] == "Reversal" and asked["ServiceID"] == rev_ref.service_id
    assert env.terminal.net_charged(tx_id) == 0


def test_a_reversal_done_before_a_crash_is_found_by_recovery_and_not_sent_again(env: DemoEnvironment) -> None:
    """Item 2: the reversal went out and was done, and the kiosk died before journaling the
    answer (REVERSING is the last row). Recovery asks that reversal's status first: REVERSED,
    with no second ReversalRequest — which the terminal would refuse (NotAllowed) and which
    would have sent the citizen's refunded money to an operator as REFUND_PENDING."""
    wire = Wire(env)
    tx_id, result = charge(env)
    ref_holder: dict[str, MessageRef] = {}

    async def reverse_then_die() -> None:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            term = ctx.money.terminal()
            ref = term.new_ref(tx_id, "Reversal")
            ref_holder["ref"] = ref
            await ctx.money.writer.append(tx_id, TxState.REVERSING, {"message_ref": ref.to_dict(), "reason": "test"})
            done = await term.reverse(ref, 230_000, result.payment.poi_transaction)
            assert done.outcome == "reversed"
        finally:
            await ctx.close()

    asyncio.run(reverse_then_die())
    resolved = recover_now(env)
    assert resolved[tx_id]["to_state"] == "REVERSED"
    assert len(wire.of("ReversalRequest")) == 1
    asked = wire.of("TransactionStatusRequest")[-1]["TransactionStatusRequest"]["MessageReference"]
    assert asked["MessageCategory"] == "Reversal" and asked["ServiceID"] == ref_holder["ref"].service_id


def test_a_reversal_journaled_but_never_sent_is_retried_under_a_new_service_id(env: DemoEnvironment) -> None:
    """Item 2 and the 48-hour rule: REVERSING was journaled, then the kiosk died before the
    request left. Recovery asks about it (NotFound: never arrived), journals a second
    REVERSING with a new ServiceID (a terminal refuses one used again) and reverses."""
    wire = Wire(env)
    tx_id, result = charge(env)

    async def journal_then_die() -> MessageRef:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            ref = ctx.money.terminal().new_ref(tx_id, "Reversal")
            await ctx.money.writer.append(tx_id, TxState.REVERSING, {"message_ref": ref.to_dict(), "reason": "test"})
            return ref
        finally:
            await ctx.close()

    first = asyncio.run(journal_then_die())
    resolved = recover_now(env)
    assert resolved[tx_id]["to_state"] == "REVERSED"
    with journal(env) as j:
        refs = [MessageRef.from_dict(e.data["message_ref"]) for e in j.get(tx_id).entries if e.state == TxState.REVERSING]
    assert len(refs) == 2 and refs[0] == first and refs[1].service_id != first.service_id
    assert [m["MessageHeader"]["ServiceID"] for m in wire.of("ReversalRequest")] == [refs[1].service_id]
    assert env.terminal.rejected == [] and env.terminal.net_charged(tx_id) == 0


def test_a_refused_reversal_goes_to_an_operator_once(env: DemoEnvironment) -> None:
    """A reversal the terminal refuses (here: the sale was already reversed behind the
    kiosk's back, so the terminal answers NotAllowed) is REFUND_PENDING — money the kiosk
    cannot show returned is an operator's — and the refusal itself is what is recorded."""
    tx_id, result = charge(env)

    async def reverse_elsewhere() -> None:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            term = ctx.money.terminal()
            await term.reverse(term.new_ref(tx_id, "Reversal"), 230_000, result.payment.poi_transaction)
        finally:
            await ctx.close()

    asyncio.run(reverse_elsewhere())
    reverse_now(env, tx_id)
    with journal(env) as j:
        tx = j.get(tx_id)
    assert tx.state == TxState.REFUND_PENDING
    assert tx.data["error_condition"] == "NotAllowed"


def test_a_fee_over_the_terminal_maximum_is_refused_before_the_terminal_is_asked(env: DemoEnvironment) -> None:
    """Item 5: RequestedAmount's schema maximum is 99999999.999999, so a 120,000,000-rial
    slip cannot be paid by card here. The citizen is told so (in Persian and English) and
    the transaction is CANCELLED: nothing journaled as PAYING, no request sent."""
    import datetime as dt

    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from backoffice.models import Bill, BillStatus
    from kiosk.bills import make_bill_id, make_payment_id, parse_bill
    from kiosk.flows.fee_payment import FeePaymentFlow
    from kiosk.messages import text
    from kiosk.scripted_ui import ScriptedUI

    amount = 120_000_000
    bill = parse_bill(make_bill_id("77123", "123", 7), make_payment_id(make_bill_id("77123", "123", 7), amount, 4, 9))
    engine = sa.create_engine(env.backoffice_db_url)
    with Session(engine) as session, session.begin():
        session.add(Bill(bill_id=bill.bill_id, payment_id=bill.payment_id, service_type=int(bill.service_type),
                         company_code=bill.company_code, amount_rials=bill.amount_rials, status=BillStatus.UNPAID,
                         payer_name="آزمون", due_date=dt.date(2026, 12, 21), description_fa="عوارض آزمون"))
    engine.dispose()
    wire = Wire(env)
    ui = ScriptedUI({"fee.how_to_enter": "manual", "fee.enter_bill_id": bill.bill_id,
                     "fee.enter_payment_id": bill.payment_id, "fee.confirm": True})

    async def go() -> Any:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            return await FeePaymentFlow(ctx, ui).run()
        finally:
            await ctx.close()

    result = asyncio.run(go())
    assert result.outcome.message_key == "pay.amount_over_limit" and result.final_state == TxState.CANCELLED
    assert any(s.key == "pay.amount_over_limit" for s in ui.transcript)  # the citizen was told
    assert wire.of("PaymentRequest") == []
    with journal(env) as j:
        assert [e.state for e in j.get(result.transaction_id).entries] == [TxState.CREATED, TxState.CANCELLED]
    fa, en = text("pay.amount_over_limit", "fa"), text("pay.amount_over_limit", "en")
    assert "سقف" in fa and "limit" in en


def test_a_lost_service_id_is_asked_by_reference_only_where_the_terminal_documents_it(env: DemoEnvironment) -> None:
    """Item 1, the documented option: a PAYING row without a message reference is asked
    about by our sale reference alone when the terminal offers that lookup
    (status_by_reference on the driver, reference_lookup on the simulator) — and then the
    approval is found, recorded and (the citizen gone) reversed."""
    from dataclasses import replace as dc_replace

    from devices.contracts import DeviceConfig
    from kiosk.settings import KioskSettings

    wire = Wire(env)
    # a sale approved at the terminal under tx id `old`, whose journal — as an older kiosk
    # wrote it — holds PAYING without the ServiceID
    old = "kiosk-demo-01-old-sale"

    async def pay_at_terminal() -> None:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            term = ctx.money.terminal()
            assert (await term.pay(term.new_ref(old), 150_000)).approved
        finally:
            await ctx.close()

    asyncio.run(pay_at_terminal())
    with journal(env) as j:
        j.begin("fee_payment", 150_000, {"bill_id": "1", "payment_id": "2"}, tx_id=old)
        j.append(old, TxState.PAYING, {"terminal": "terminal"})
    env.terminal.reference_lookup = True
    devices = tuple(dc_replace(d, options={**d.options, "status_by_reference": True}) if d.name == "terminal" else d
                    for d in env.settings.devices)
    env.settings = KioskSettings(**{**env.settings.__dict__, "devices": devices})
    resolved = recover_now(env)
    assert resolved[old]["to_state"] == "REVERSED"
    asked = [m["TransactionStatusRequest"]["MessageReference"] for m in wire.of("TransactionStatusRequest")]
    assert {"MessageCategory": "Payment", "SaleID": env.settings.kiosk_id,
            "SaleTransactionID": {"TransactionID": old}} in asked
    assert env.terminal.net_charged(old) == 0
