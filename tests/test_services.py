"""Issue 8, "one money path for every kind": each transaction kind owns its typed order, its
back-office post, its resume-after-crash step and its receipt (kiosk.services); the money
path, recovery and the outbox worker dispatch on the kind. A kind this build does not know
is never handled as a fee."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator

import pytest

from kiosk.commands.recover import recover
from kiosk.context import KioskContext
from kiosk.journal import Journal, OutboxStatus, TxState, journal_path
from kiosk.services import FEE_PAYMENT, KINDS, FeeOrder, InvalidOrder, kind_of, kind_of_outbox
from kiosk.services.base import UnknownKind
from kiosk_demo.environment import DemoEnvironment, demo_environment


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with demo_environment(tmp_path) as environment:
        yield environment


def journal(env: DemoEnvironment) -> Journal:
    return Journal(journal_path(env.data_dir), kiosk_id="check")


def test_a_fee_order_goes_to_the_journal_and_back_typed() -> None:
    order = FeeOrder("7748317800142", "1770160", 6, "عوارض نوسازی", "kiosk-1")
    assert FeeOrder.from_journal(order.to_journal()) == order
    assert FeeOrder.from_journal({"bill_id": "1", "payment_id": "2"}) == FeeOrder("1", "2")  # older rows
    for bad in ({}, {"bill_id": 1, "payment_id": "2"}, {"bill_id": "1", "payment_id": "2", "service_type": "x"}):
        with pytest.raises(InvalidOrder):
            FeeOrder.from_journal(bad)


def test_kinds_are_looked_up_by_journal_kind_and_by_outbox_kind() -> None:
    assert kind_of("fee_payment") is FEE_PAYMENT and KINDS["fee_payment"] is FEE_PAYMENT
    assert kind_of_outbox(FEE_PAYMENT.outbox_kind) is FEE_PAYMENT
    assert kind_of_outbox("card_load_from_the_future") is None
    with pytest.raises(UnknownKind):
        kind_of("transit_topup_v9")


def test_an_open_transaction_of_an_unknown_kind_is_left_for_an_operator_not_handled_as_a_fee(
        env: DemoEnvironment) -> None:
    """The bug the issue names: recovery switched on state, not kind, so an open top-up at
    FULFILLING (or PAID) would have been posted as a fee settlement or reversed as one. A kind
    this build does not know is left exactly as it is, and said so."""
    before = len(env.terminal.requests_seen)
    with journal(env) as j:
        paid = j.begin("card_topup_from_the_future", 50_000, {"card_serial": "1000000017"}).tx_id
        j.append(paid, TxState.PAYING, {"terminal": "terminal"})
        j.append(paid, TxState.PAID, {"rrn": "123456789012", "stan": "000001"})
        fulfilling = j.begin("card_topup_from_the_future", 70_000, {"card_serial": "1000000017"}).tx_id
        j.append(fulfilling, TxState.PAYING, {"terminal": "terminal"})
        j.append(fulfilling, TxState.PAID, {"rrn": "123456789013", "stan": "000002"})
        j.outbox_enqueue(fulfilling, "card_load_from_the_future", {"transaction_id": fulfilling},
                         idempotency_key=fulfilling, with_state=(TxState.FULFILLING, None))
    resolved = {r["tx_id"]: r for r in asyncio.run(recover(env.data_dir, env.settings))}
    for tx_id, state in ((paid, "PAID"), (fulfilling, "FULFILLING")):
        assert resolved[tx_id]["action"] == "unknown_kind" and resolved[tx_id]["resolved"] is False
        assert resolved[tx_id]["to_state"] == state
    # nothing asked of the terminal about them, nothing reversed (opening it is a Diagnosis)
    assert set(env.terminal.requests_seen[before:]) <= {"DiagnosisRequest"}
    with journal(env) as j:
        assert [i.status for i in j.outbox_for(fulfilling)] == [OutboxStatus.PENDING]  # nothing posted


def test_the_outbox_worker_posts_only_kinds_it_knows(env: DemoEnvironment) -> None:
    """An outbox item of a kind no transaction kind posts stays queued, untouched."""
    from kiosk.outbox_worker import OutboxWorker

    with journal(env) as j:
        tx_id = j.begin("card_topup_from_the_future", 50_000, {}).tx_id
        j.append(tx_id, TxState.PAYING, {"terminal": "terminal"})
        j.append(tx_id, TxState.PAID, {})
        j.outbox_enqueue(tx_id, "card_load_from_the_future", {"transaction_id": tx_id},
                         idempotency_key=tx_id, with_state=(TxState.FULFILLING, None))

    async def go() -> Any:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            return await OutboxWorker(ctx.journal, ctx.money, recovery_interval_s=None).drain_once()
        finally:
            await ctx.close()

    assert asyncio.run(go()) == []
    with journal(env) as j:
        item = j.outbox_for(tx_id)[0]
    assert item.status == OutboxStatus.PENDING and item.attempts == 0


def test_the_fee_receipt_is_the_fee_kinds(env: DemoEnvironment) -> None:
    """The receipt issuer asks the transaction's kind for its receipt; the fee kind's carries
    the bill and the terminal's references fixed at PAID."""
    from kiosk.receipt_issuer import receipt_data

    with journal(env) as j:
        tx_id = j.begin("fee_payment", 120_000, FeeOrder("7748317800142", "1770160").to_journal()).tx_id
        j.append(tx_id, TxState.PAYING, {"terminal": "terminal"})
        j.append(tx_id, TxState.PAID, {"rrn": "123456789012", "stan": "000042", "masked_pan": "603799******1234"})
        tx = j.get(tx_id)
    data = receipt_data(tx, kiosk_id="kiosk-1", pending=True)
    assert (data.bill_id, data.payment_id, data.rrn, data.amount_rials) == ("7748317800142", "1770160", "123456789012",
                                                                             120_000)
    assert data.status == "pending_settlement" and data.kind == "fee_payment"
