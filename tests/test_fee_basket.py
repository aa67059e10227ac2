"""Several fee slips paid with one card payment (issue 9, item 4), end to end in-process: the
real back-office on loopback (SQLite), the nexo driver against the terminal simulator, the
ESC/POS printer emulator. Crashes at the basket's points (kiosk.faults.crash_in_process: the
flow stops where a power cut would; the context is dropped and `recover` runs as a restart
does), and every ledger is checked after: the journal (final state, verify), the
back-office's payments (each settled bill once, under `<tx>.<i>`), the terminal (net charge
= total − refunds) and the receipt's lines."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest
import sqlalchemy as sa

from backoffice.seed import DEMO_NATIONAL_CODE
from backoffice.server import serve_in_thread
from kiosk.backoffice_client import BackofficeClient, FeeSlip, PaymentPost
from kiosk.commands.recover import recover
from kiosk.context import KioskContext
from kiosk.faults import SimulatedCrash, crash_in_process
from kiosk.flows.fee_basket import FeeBasketFlow, FeeBasketResult
from kiosk.journal import IllegalTransition, Journal, TxState, journal_path
from kiosk.receipts import build_document, verify_payload
from kiosk.receipts.layout import Row
from kiosk.scripted_ui import ScriptedUI
from kiosk.services import kind_of
from kiosk.services.basket import bill_outcomes
from kiosk_demo.environment import DemoEnvironment, demo_environment

CONFIRM = {"basket.confirm": True}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[DemoEnvironment]:
    with demo_environment(tmp_path) as environment:
        yield environment


def slips(env: DemoEnvironment, n: int = 3) -> list[FeeSlip]:
    """n unpaid demo slips whose total the simulator approves (no total ending in 13 thousand)."""
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=0) as client:
        chosen = list(client.fee_slips(national_code=DEMO_NATIONAL_CODE).unpaid[:n])
    assert (sum(s.amount_rials for s in chosen) // 1000) % 100 != 13
    return chosen


def pay(env: DemoEnvironment, chosen: Sequence[FeeSlip], ui: ScriptedUI | None = None, *,
        crash: str | None = None) -> FeeBasketResult | None:
    """Run the basket flow once; with `crash`, die at that point (None returned) and leave
    the data dir as a power cut would."""

    async def go() -> FeeBasketResult | None:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        crash_in_process(crash)
        try:
            return await FeeBasketFlow(ctx, ui or ScriptedUI(CONFIRM)).pay(chosen)
        except SimulatedCrash:
            return None
        finally:
            crash_in_process(None)
            await ctx.close()

    return asyncio.run(go())


def recover_now(env: DemoEnvironment) -> dict[str, dict[str, Any]]:
    return {r["tx_id"]: r for r in asyncio.run(recover(env.data_dir, env.settings))}


def journal(env: DemoEnvironment) -> Journal:
    return Journal(journal_path(env.data_dir), kiosk_id="check")


def only_tx(env: DemoEnvironment) -> str:
    [tx] = journal(env).transactions()
    return tx.tx_id


def payments(env: DemoEnvironment) -> list[dict[str, Any]]:
    engine = sa.create_engine(env.backoffice_db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT transaction_id, bill_id, payment_id, amount_rials, tracking_code "
                                    "FROM payments ORDER BY transaction_id")).mappings().all()
    engine.dispose()
    return [dict(r) for r in rows]


def kiosk_payments(env: DemoEnvironment, tx_id: str) -> dict[str, dict[str, Any]]:
    return {p["transaction_id"]: p for p in payments(env) if p["transaction_id"].startswith(tx_id + ".")}


def pay_elsewhere(env: DemoEnvironment, slip: FeeSlip, ref: str) -> None:
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=0) as client:
        client.post_payment(PaymentPost(transaction_id=ref, bill_id=slip.bill_id, payment_id=slip.payment_id,
                                        amount_rials=slip.amount_rials, paid_at="2026-11-28T10:00:00Z"),
                            idempotency_key=ref)


class PayElsewhereOnConfirm(ScriptedUI):
    """While the citizen reads the total, some of the bills are paid through another channel."""

    def __init__(self, env: DemoEnvironment, paid: Sequence[FeeSlip]) -> None:
        super().__init__(CONFIRM)
        self.env, self.paid = env, paid

    async def confirm(self, key: str, **params: Any) -> bool:
        for n, slip in enumerate(self.paid):
            await asyncio.to_thread(pay_elsewhere, self.env, slip, f"bank-app-{n}")
        return await super().confirm(key, **params)


def receipt_lines(env: DemoEnvironment, tx_id: str) -> list[tuple[str, str]]:
    tx = journal(env).get(tx_id)
    data = kind_of(tx.kind).receipt_data(tx, kiosk_id="k", pending=False)
    return [(i.outcome, i.tracking_code) for i in data.items]


def check_ledgers(env: DemoEnvironment, tx_id: str, chosen: Sequence[FeeSlip], settled: set[int]) -> None:
    """Journal closed and verified; the back-office holds exactly the settled bills, once each,
    under this basket's ids; the terminal holds exactly their total."""
    j = journal(env)
    assert j.verify().ok and j.open_transactions() == []
    held = kiosk_payments(env, tx_id)
    assert sorted(held) == sorted(f"{tx_id}.{i}" for i in settled)
    for i in settled:
        assert (held[f"{tx_id}.{i}"]["bill_id"], held[f"{tx_id}.{i}"]["amount_rials"]) == \
            (chosen[i].bill_id, chosen[i].amount_rials)
    for slip in chosen:  # never two settlements of one bill, whoever paid it
        assert sum(p["bill_id"] == slip.bill_id and p["payment_id"] == slip.payment_id for p in payments(env)) <= 1
    assert env.terminal.net_charged(tx_id) == sum(chosen[i].amount_rials for i in settled)
    assert len([s for s in env.terminal.ledger() if s["reference"] == tx_id]) == 1  # one card payment


# --- the happy path and refusals while the citizen is there --------------------------------------

def test_three_slips_are_paid_with_one_card_payment_and_settled_each_once(env: DemoEnvironment) -> None:
    chosen = slips(env, 3)
    result = pay(env, chosen)
    assert result is not None
    total = sum(s.amount_rials for s in chosen)
    assert result.final_state == TxState.COMPLETED and result.outcome.ok
    assert result.outcome.message_key == "basket.paid" and result.amount_rials == total
    check_ledgers(env, result.transaction_id, chosen, {0, 1, 2})
    held = kiosk_payments(env, result.transaction_id)
    assert [b.outcome for b in result.bills] == ["settled"] * 3
    assert [b.tracking_code for b in result.bills] == [held[f"{result.transaction_id}.{i}"]["tracking_code"]
                                                       for i in range(3)]
    states = [e.state for e in journal(env).get(result.transaction_id).entries]
    assert states == [TxState.CREATED, TxState.PAYING, TxState.PAID] + [TxState.FULFILLING] * 6 + \
        [TxState.FULFILLED, TxState.POSTED, TxState.COMPLETED]
    # one signed receipt for the total, listing each bill with its tracking code
    [printed] = env.printer.receipts()
    assert printed.qr_codes == [result.receipt_payload]
    with KioskContextKey(env) as public_key:
        verified = verify_payload(result.receipt_payload, public_key)
    assert verified.amount_rials == total and verified.kind == "fee_basket"
    assert receipt_lines(env, result.transaction_id) == [("settled", b.tracking_code) for b in result.bills]


class KioskContextKey:
    """The kiosk's receipt public key (read from a context on the same data dir)."""

    def __init__(self, env: DemoEnvironment) -> None:
        self.env = env

    def __enter__(self) -> Any:
        async def go() -> Any:
            ctx = await KioskContext.open(self.env.settings, self.env.data_dir)
            try:
                return ctx.receipts.signer.public_key
            finally:
                await ctx.close()

        return asyncio.run(go())

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_bill_paid_elsewhere_before_paying_is_dropped_before_any_money_moves(env: DemoEnvironment) -> None:
    chosen = slips(env, 3)
    pay_elsewhere(env, chosen[1], "bank-app-early")
    ui = ScriptedUI(CONFIRM)
    result = pay(env, chosen, ui)
    assert result is not None and result.final_state == TxState.COMPLETED
    assert ui.keys("error") == ["basket.bill_dropped"]
    assert [(b.bill_id, b.outcome) for b in result.bills] == [
        (chosen[1].bill_id, "not_paid"), (chosen[0].bill_id, "settled"), (chosen[2].bill_id, "settled")]
    assert result.bills[0].reason == "bill.already_paid"
    assert result.amount_rials == chosen[0].amount_rials + chosen[2].amount_rials
    assert env.terminal.net_charged(result.transaction_id) == result.amount_rials
    assert sorted(kiosk_payments(env, result.transaction_id)) == [f"{result.transaction_id}.0",
                                                                  f"{result.transaction_id}.1"]


def test_a_bill_refused_at_settlement_gets_its_share_refunded_and_the_rest_settled(env: DemoEnvironment) -> None:
    chosen = slips(env, 3)
    result = pay(env, chosen, PayElsewhereOnConfirm(env, [chosen[1]]))
    assert result is not None
    tx_id = result.transaction_id
    assert result.final_state == TxState.COMPLETED and result.outcome.ok
    assert result.outcome.message_key == "basket.paid_part_refunded"
    assert result.outcome.params["refunded_rials"] == chosen[1].amount_rials
    assert [b.outcome for b in result.bills] == ["settled", "refunded", "settled"]
    assert result.refunded_rials == chosen[1].amount_rials
    check_ledgers(env, tx_id, chosen, {0, 2})
    [sale] = [s for s in env.terminal.ledger() if s["reference"] == tx_id]
    assert sale["status"] == "approved" and sale["reversed_rials"] == chosen[1].amount_rials
    # the refund went out under a message reference journaled before it, and is confirmed
    steps = [(e.data.get("bill"), e.data.get("step")) for e in journal(env).get(tx_id).entries
             if e.state == TxState.FULFILLING]
    assert (1, "refused") in steps and steps.index((1, "refunding")) < steps.index((1, "refunded"))
    refunding = [e.data for e in journal(env).get(tx_id).entries if e.data.get("step") == "refunding"]
    assert refunding[0]["message_ref"]["category"] == "Reversal" and refunding[0]["share_rials"] == chosen[1].amount_rials
    assert [o for o, _ in receipt_lines(env, tx_id)] == ["settled", "refunded", "settled"]
    [printed] = env.printer.receipts()
    assert printed.qr_codes == [result.receipt_payload]


def test_every_bill_refused_at_settlement_reverses_the_whole_sale(env: DemoEnvironment) -> None:
    chosen = slips(env, 2)
    result = pay(env, chosen, PayElsewhereOnConfirm(env, chosen))
    assert result is not None
    assert result.final_state == TxState.REVERSED and not result.outcome.ok
    assert result.outcome.message_key == "basket.all_refused_reversed"
    assert [b.outcome for b in result.bills] == ["refunded", "refunded"]
    check_ledgers(env, result.transaction_id, chosen, set())
    assert [s["status"] for s in env.terminal.ledger()] == ["reversed"]
    assert env.printer.receipts() == []  # nothing was bought: no receipt, as for one refused fee


def test_a_share_refund_the_terminal_refuses_ends_refund_pending_naming_the_bill(env: DemoEnvironment) -> None:
    from devices.terminal import nexo

    chosen = slips(env, 3)
    env.terminal._reversal = lambda req: nexo.response_message(  # type: ignore[method-assign]
        req.header, "ReversalResponse", nexo.failure_body(nexo.REFUSAL))  # the acquirer refuses refunds today
    result = pay(env, chosen, PayElsewhereOnConfirm(env, [chosen[2]]))
    assert result is not None
    tx_id = result.transaction_id
    assert result.final_state == TxState.REFUND_PENDING and result.outcome.ok  # two bills are paid
    assert result.outcome.message_key == "basket.paid_refund_pending"
    assert result.outcome.params["pending_rials"] == chosen[2].amount_rials
    assert [b.outcome for b in result.bills] == ["settled", "settled", "refund_pending"]
    tx = journal(env).get(tx_id)
    assert tx.data["bills_refund_pending"] == [2] and tx.data["refund_pending_rials"] == chosen[2].amount_rials
    assert journal(env).verify().ok and journal(env).open_transactions() == []  # an operator's, not recovery's
    assert sorted(kiosk_payments(env, tx_id)) == [f"{tx_id}.0", f"{tx_id}.1"]
    assert env.terminal.net_charged(tx_id) == sum(s.amount_rials for s in chosen)  # still held: an operator refunds
    assert [o for o, _ in receipt_lines(env, tx_id)] == ["settled", "settled", "refund_pending"]


class StopBackofficeOnConfirm(ScriptedUI):
    def __init__(self, env: DemoEnvironment) -> None:
        super().__init__(CONFIRM)
        self.env = env

    async def confirm(self, key: str, **params: Any) -> bool:
        self.env.backoffice.stop()
        return await super().confirm(key, **params)


def test_backoffice_down_at_settlement_keeps_every_bill_queued_and_recovery_settles_them(env: DemoEnvironment) -> None:
    chosen = slips(env, 3)
    port = int(env.backoffice.url.rsplit(":", 1)[1])
    result = pay(env, chosen, StopBackofficeOnConfirm(env))
    assert result is not None
    tx_id = result.transaction_id
    assert result.final_state == TxState.FULFILLING and result.outcome.ok
    assert result.outcome.message_key == "basket.pending" and result.receipt_payload
    assert [b.outcome for b in result.bills] == ["pending"] * 3
    assert len([i for i in journal(env).outbox_for(tx_id) if i.status == "pending"]) == 3
    with serve_in_thread(env.backoffice_db_url, port=port):
        resolved = recover_now(env)
        assert resolved[tx_id]["to_state"] == "COMPLETED"
        check_ledgers(env, tx_id, chosen, {0, 1, 2})


def test_the_outbox_worker_finishes_a_queued_basket_while_the_kiosk_runs(env: DemoEnvironment) -> None:
    chosen = slips(env, 2)
    port = int(env.backoffice.url.rsplit(":", 1)[1])
    ui = StopBackofficeOnConfirm(env)

    async def go() -> tuple[str, TxState]:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            ctx.start_outbox_worker(interval_s=0.1, recovery_interval_s=3600.0)
            result = await FeeBasketFlow(ctx, ui).pay(chosen)
            assert result.final_state == TxState.FULFILLING
            with serve_in_thread(env.backoffice_db_url, port=port):
                for item in ctx.journal.outbox_for(result.transaction_id):
                    ctx.journal.outbox_record_attempt(item.id, "test: due now", 0.0)
                for _ in range(200):
                    if ctx.journal.state_of(result.transaction_id) == TxState.COMPLETED:
                        break
                    await asyncio.sleep(0.05)
                return result.transaction_id, ctx.journal.state_of(result.transaction_id)
        finally:
            await ctx.close()

    tx_id, state = asyncio.run(go())
    assert state == TxState.COMPLETED
    check_ledgers(env, tx_id, chosen, {0, 1})


def test_an_empty_or_doubled_selection_is_refused_before_anything_is_asked(env: DemoEnvironment) -> None:
    chosen = slips(env, 2)
    for selection in ([], [chosen[0], chosen[0]]):
        ui = ScriptedUI(CONFIRM)
        result = pay(env, selection, ui)
        assert result is not None and result.transaction_id is None
        assert ui.keys("error") == ["basket.invalid"]
    assert journal(env).transactions() == [] and env.terminal.ledger() == []


def test_cancel_at_the_total_charges_nothing(env: DemoEnvironment) -> None:
    result = pay(env, slips(env, 2), ScriptedUI({"basket.confirm": False}))
    assert result is not None and result.outcome.message_key == "basket.cancelled"
    assert journal(env).transactions() == [] and env.terminal.ledger() == []


def test_the_basket_state_table_allows_its_steps_and_a_fee_does_not(env: DemoEnvironment) -> None:
    with journal(env) as j:
        basket = j.begin("fee_basket", 100, {"items": [{"bill_id": "1", "payment_id": "2", "amount_rials": 100}]}).tx_id
        fee = j.begin("fee_payment", 100, {"bill_id": "1", "payment_id": "2"}).tx_id
        for tx in (basket, fee):
            j.append(tx, TxState.PAYING)
            j.append(tx, TxState.PAID)
            j.append(tx, TxState.FULFILLING)
        j.append(basket, TxState.FULFILLING, {"bill": 0, "step": "refused"})
        with pytest.raises(IllegalTransition):
            j.append(fee, TxState.FULFILLING, {"bill": 0, "step": "refused"})
        with pytest.raises(IllegalTransition):
            j.append(fee, TxState.REFUND_PENDING)
        j.append(basket, TxState.REFUND_PENDING)
        assert j.verify().ok


# --- crashes between the steps of one basket ------------------------------------------------------

@pytest.mark.parametrize("point, settled_before", [
    ("after-paid", None),                       # nothing queued: recovery reverses the whole sale
    ("between-basket-settlements", 1),          # bill 0 settled; 1 and 2 queued
    ("after-post-sent", 0),                     # bill 0 reached the back-office; its answer not journaled
    ("before-receipt", 3),                      # everything settled; no receipt yet
])
def test_a_crash_inside_a_basket_is_finished_by_recovery_with_every_ledger_agreeing(
        env: DemoEnvironment, point: str, settled_before: int | None) -> None:
    chosen = slips(env, 3)
    assert pay(env, chosen, crash=point) is None
    tx_id = only_tx(env)
    before = journal(env).get(tx_id)
    if settled_before is not None:
        assert sum(o.step == "settled" for o in bill_outcomes(before)) == settled_before
    resolved = recover_now(env)
    if point == "after-paid":
        assert resolved[tx_id]["to_state"] == "REVERSED"
        check_ledgers(env, tx_id, chosen, set())
        return
    assert resolved[tx_id]["to_state"] == "COMPLETED"
    check_ledgers(env, tx_id, chosen, {0, 1, 2})
    assert [o for o, _ in receipt_lines(env, tx_id)] == ["settled"] * 3
    assert recover_now(env) == {}  # nothing left: a second restart does nothing


@pytest.mark.parametrize("point", ["between-basket-settlements", "after-partial-refund"])
def test_a_crash_around_a_refused_bill_refunds_its_share_exactly_once(env: DemoEnvironment, point: str) -> None:
    chosen = slips(env, 3)
    assert pay(env, chosen, PayElsewhereOnConfirm(env, [chosen[1]]), crash=point) is None
    tx_id = only_tx(env)
    if point == "after-partial-refund":
        # the terminal gave the share back; the journal has only the request (refunding)
        assert env.terminal.net_charged(tx_id) == chosen[0].amount_rials + chosen[2].amount_rials
        assert bill_outcomes(journal(env).get(tx_id))[1].step == "refunding"
    resolved = recover_now(env)
    assert resolved[tx_id]["to_state"] == "COMPLETED"
    check_ledgers(env, tx_id, chosen, {0, 2})
    [sale] = [s for s in env.terminal.ledger() if s["reference"] == tx_id]
    assert sale["reversed_rials"] == chosen[1].amount_rials  # refunded once, not twice
    refunds = [e for e in journal(env).get(tx_id).entries if e.data.get("step") == "refunding"]
    assert len(refunds) == 1  # recovery asked about the journaled request instead of sending another
    assert [o for o, _ in receipt_lines(env, tx_id)] == ["settled", "refunded", "settled"]


def test_the_printed_basket_receipt_lists_each_bill_and_what_came_back(env: DemoEnvironment) -> None:
    chosen = slips(env, 3)
    result = pay(env, chosen, PayElsewhereOnConfirm(env, [chosen[1]]))
    assert result is not None
    tx = journal(env).get(result.transaction_id)
    data = kind_of(tx.kind).receipt_data(tx, kiosk_id="kiosk-test", pending=False)
    for lang in ("fa", "en"):
        doc = build_document(data, result.receipt_payload, lang=lang)
        rows = [b for b in doc.blocks if isinstance(b, Row)]
        labels = [r.label for r in rows]
        assert labels.count("Bill ID" if lang == "en" else "شناسه قبض") == 3
        assert labels.count("Tracking code" if lang == "en" else "کد رهگیری") == 2
    en = build_document(data, result.receipt_payload, lang="en")
    values = {r.label: r.value for r in en.blocks if isinstance(r, Row)}
    assert values["Returned to card"] == f"{chosen[1].amount_rials:,} rials"


@pytest.mark.parametrize("outbox_too", [False, True])
def test_a_basket_whose_fulfilling_rows_were_cut_is_carried_on_never_reversed(
        env: DemoEnvironment, outbox_too: bool) -> None:
    """Bill 0 settled, then the journal's FULFILLING rows are cut (an attacker, or a restored
    old copy): the journal says PAID. Asking the back-office about the basket's own id would
    read "nothing held" and reverse a settled bill's money; each bill is asked instead."""
    import sqlite3

    chosen = slips(env, 3)
    assert pay(env, chosen, crash="between-basket-settlements") is None
    tx_id = only_tx(env)
    db = sqlite3.connect(journal_path(env.data_dir))
    db.execute("DROP TRIGGER IF EXISTS journal_no_delete")
    db.execute("DELETE FROM journal WHERE tx_id = ? AND state = 'FULFILLING'", (tx_id,))
    if outbox_too:
        db.execute("DELETE FROM outbox WHERE tx_id = ?", (tx_id,))
    db.commit()
    db.close()
    with journal(env) as j:
        assert j.state_of(tx_id) == TxState.PAID and j.verify().ok  # a cut tail passes a local verify
    resolved = recover_now(env)
    assert resolved[tx_id]["to_state"] == "COMPLETED"
    check_ledgers(env, tx_id, chosen, {0, 1, 2})
    assert TxState.REVERSING not in [e.state for e in journal(env).get(tx_id).entries]


def refund_rows(env: DemoEnvironment, tx_id: str) -> list[tuple[str, str]]:
    """(step, ServiceID) of every journaled refund request row of the basket, in order."""
    return [(e.data["step"], e.data["message_ref"]["service_id"]) for e in journal(env).get(tx_id).entries
            if e.data.get("step") in ("refunding", "refund_unsent")]


def recover_in_process(env: DemoEnvironment, **money: Any) -> list[Any]:
    """One recovery round in a context of its own, with MoneyPath attributes set (`money`)."""
    from kiosk.recovery import Recovery

    async def go() -> list[Any]:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            for name, value in money.items():
                setattr(ctx.money, name, value)
            return await Recovery(ctx.journal, ctx.money).run()
        finally:
            await ctx.close()

    return asyncio.run(go())


def test_a_refund_whose_answer_was_lost_is_never_sent_again_and_goes_to_an_operator_once_unconfirmed(
        env: DemoEnvironment) -> None:
    """The refund request reaches the terminal and the connection drops without an answer;
    the terminal's status says NotFound. That is not "never happened" for a request that went
    out (it may sit in a queue or still be worked on): recovery asks again and never sends a
    second refund; once the request has had its time, an operator (REFUND_PENDING) — never a
    second refund that could give the share back twice (review 9, M2)."""
    chosen = slips(env, 3)
    env.terminal._reversal = lambda req: None  # type: ignore[method-assign]  # dropped unanswered
    result = pay(env, chosen, PayElsewhereOnConfirm(env, [chosen[0]]))
    assert result is not None
    tx_id = result.transaction_id
    assert result.final_state == TxState.FULFILLING and result.outcome.message_key == "basket.paid_refund_pending"
    assert [b.outcome for b in result.bills] == ["refund_pending", "settled", "settled"]
    assert journal(env).open_transactions()[0].tx_id == tx_id  # recovery's, not an operator's

    resolved = recover_now(env)  # at once: the request may still be on its way
    assert (resolved[tx_id]["to_state"], resolved[tx_id]["resolved"]) == ("FULFILLING", False)
    assert len(refund_rows(env, tx_id)) == 1  # not sent again
    [r] = recover_in_process(env, refund_confirm_s=0.0)  # it had its time: an operator
    assert r.to_state == "REFUND_PENDING"
    tx = journal(env).get(tx_id)
    assert tx.data["bills_refund_pending"] == [0] and tx.data["refund_pending_rials"] == chosen[0].amount_rials
    assert len(refund_rows(env, tx_id)) == 1
    assert env.terminal.net_charged(tx_id) == sum(s.amount_rials for s in chosen)  # an operator refunds


def test_a_refund_the_terminal_was_too_busy_to_take_is_sent_again_under_a_new_reference(
        env: DemoEnvironment) -> None:
    """The terminal answers the share's refund Busy: it did not take the request up — not a
    refusal (never REFUND_PENDING for that), and definitely not done (journaled
    refund_unsent). The next round asks about it (NotFound), then sends one new request
    under a new ServiceID."""
    from devices.terminal import nexo

    chosen = slips(env, 3)
    real = env.terminal._reversal
    env.terminal._reversal = lambda req: nexo.response_message(  # type: ignore[method-assign]
        req.header, "ReversalResponse", nexo.failure_body(nexo.BUSY))
    result = pay(env, chosen, PayElsewhereOnConfirm(env, [chosen[0]]))
    assert result is not None
    tx_id = result.transaction_id
    assert result.final_state == TxState.FULFILLING and result.bills[0].outcome == "refund_pending"
    assert [step for step, _ in refund_rows(env, tx_id)] == ["refunding", "refund_unsent"]
    env.terminal._reversal = real  # type: ignore[method-assign]
    resolved = recover_now(env)
    assert resolved[tx_id]["to_state"] == "COMPLETED"
    check_ledgers(env, tx_id, chosen, {1, 2})
    rows = refund_rows(env, tx_id)
    assert [step for step, _ in rows] == ["refunding", "refund_unsent", "refunding"] and rows[0][1] != rows[2][1]
    [sale] = [s for s in env.terminal.ledger() if s["reference"] == tx_id]
    assert sale["reversed_rials"] == chosen[0].amount_rials


def test_a_total_over_the_terminal_maximum_is_cancelled_before_the_terminal_is_asked(env: DemoEnvironment) -> None:
    chosen = slips(env, 3)

    async def go() -> FeeBasketResult:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            term = ctx.money.terminal()
            # a terminal whose maximum lies between one slip and the three together
            term.capabilities["max_amount_rials"] = chosen[1].amount_rials + 1
            return await FeeBasketFlow(ctx, ScriptedUI(CONFIRM)).pay(chosen)
        finally:
            await ctx.close()

    result = asyncio.run(go())
    assert result.final_state == TxState.CANCELLED and result.outcome.message_key == "basket.amount_over_limit"
    assert [b.outcome for b in result.bills] == ["not_charged"] * 3
    assert env.terminal.ledger() == [] and kiosk_payments(env, result.transaction_id) == {}


class ReassessAndPayElsewhereOnConfirm(ScriptedUI):
    """While the citizen reads the total, bill 0 is paid through another channel and bill 2 is
    re-assessed by the municipality (its amount changes)."""

    def __init__(self, env: DemoEnvironment, chosen: Sequence[FeeSlip]) -> None:
        super().__init__(CONFIRM)
        self.env, self.chosen = env, chosen

    async def confirm(self, key: str, **params: Any) -> bool:
        await asyncio.to_thread(pay_elsewhere, self.env, self.chosen[0], "bank-app-x")
        engine = sa.create_engine(self.env.backoffice_db_url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE bills SET amount_rials = amount_rials + 1000 WHERE bill_id = :b AND payment_id = :p"),
                         {"b": self.chosen[2].bill_id, "p": self.chosen[2].payment_id})
        engine.dispose()
        return await super().confirm(key, **params)


def test_two_bills_refused_for_different_reasons_get_two_partial_refunds(env: DemoEnvironment) -> None:
    chosen = slips(env, 3)
    result = pay(env, chosen, ReassessAndPayElsewhereOnConfirm(env, chosen))
    assert result is not None
    tx_id = result.transaction_id
    assert result.final_state == TxState.COMPLETED and result.outcome.message_key == "basket.paid_part_refunded"
    assert [(b.outcome, b.reason) for b in result.bills] == [
        ("refunded", "bill.already_paid"), ("settled", ""), ("refunded", "payment.amount_mismatch")]
    check_ledgers(env, tx_id, chosen, {1})
    [sale] = [s for s in env.terminal.ledger() if s["reference"] == tx_id]
    assert sale["reversed_rials"] == chosen[0].amount_rials + chosen[2].amount_rials and sale["status"] == "approved"
    tx = journal(env).get(tx_id)
    assert tx.data["bills_refunded"] == 2 and tx.data["refunded_rials"] == chosen[0].amount_rials + chosen[2].amount_rials


# --- review 9: money findings ---------------------------------------------------------------------

def set_amount(env: DemoEnvironment, slip: FeeSlip, amount_rials: int) -> None:
    engine = sa.create_engine(env.backoffice_db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE bills SET amount_rials = :a WHERE bill_id = :b AND payment_id = :p"),
                     {"a": amount_rials, "b": slip.bill_id, "p": slip.payment_id})
    engine.dispose()


def test_a_slip_with_nothing_due_is_dropped_before_paying_and_never_charged(env: DemoEnvironment) -> None:
    """M1: a slip the back-office lists at 0 rials (discounted to zero) is dropped at the
    re-check with the citizen told; the others are paid and settled. Before, it was journaled
    and charged, and the order (a bill of 0 rials) could not be read back: settle and recovery
    failed for ever with the money taken."""
    chosen = slips(env, 3)
    set_amount(env, chosen[2], 0)
    with BackofficeClient(env.settings.backoffice_url, env.settings.backoffice_token, retries=0) as client:
        listed = {(s.bill_id, s.payment_id): s for s in client.fee_slips(national_code=DEMO_NATIONAL_CODE).slips}
    chosen = [listed[(s.bill_id, s.payment_id)] for s in chosen]
    assert chosen[2].amount_rials == 0
    ui = ScriptedUI(CONFIRM)
    result = pay(env, chosen, ui)
    assert result is not None and result.final_state == TxState.COMPLETED
    assert ui.keys("error") == ["basket.bill_dropped"]
    assert [(b.bill_id, b.outcome, b.reason) for b in result.bills][0] == (
        chosen[2].bill_id, "not_paid", "basket.bill_nothing_due")
    assert result.amount_rials == chosen[0].amount_rials + chosen[1].amount_rials
    assert env.terminal.net_charged(result.transaction_id) == result.amount_rials
    assert journal(env).open_transactions() == [] and recover_now(env) == {}


def test_a_paid_basket_whose_order_cannot_be_read_is_reversed_not_left_paid(env: DemoEnvironment) -> None:
    """M1: a basket journaled (by an older build) with a bill of 0 rials, then charged: its
    order cannot be read back. Recovery must not error for ever with the money taken: the
    back-office holds none of its bills, so the whole sale goes back."""
    chosen = slips(env, 2)
    items = [{"bill_id": s.bill_id, "payment_id": s.payment_id, "amount_rials": s.amount_rials} for s in chosen]
    items.append({"bill_id": "zero-bill", "payment_id": "zero-pay", "amount_rials": 0})
    total = sum(s.amount_rials for s in chosen)

    async def go() -> str:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            tx_id = await ctx.money.open_transaction("fee_basket", total, {"items": items, "kiosk_id": "k"})
            try:
                assert (await ctx.money.charge(tx_id, total)).state == TxState.PAID
            finally:
                ctx.money.release(tx_id)
            return tx_id
        finally:
            await ctx.close()

    tx_id = asyncio.run(go())
    assert env.terminal.net_charged(tx_id) == total
    resolved = recover_now(env)
    assert resolved[tx_id]["to_state"] == "REVERSED" and resolved[tx_id]["resolved"]
    assert env.terminal.net_charged(tx_id) == 0 and kiosk_payments(env, tx_id) == {}
    assert journal(env).open_transactions() == [] and recover_now(env) == {}


def test_a_basket_with_an_unreadable_order_and_a_bill_held_goes_to_an_operator(env: DemoEnvironment) -> None:
    """M1: the same unreadable order, but the back-office holds one of its bills: nothing can
    be reversed blind or refunded by share — REFUND_PENDING for an operator, never PAID."""
    chosen = slips(env, 2)
    items = [{"bill_id": s.bill_id, "payment_id": s.payment_id, "amount_rials": s.amount_rials} for s in chosen]
    items.append({"bill_id": "zero-bill", "payment_id": "zero-pay", "amount_rials": 0})
    total = sum(s.amount_rials for s in chosen)

    async def go() -> str:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            tx_id = await ctx.money.open_transaction("fee_basket", total, {"items": items, "kiosk_id": "k"})
            try:
                assert (await ctx.money.charge(tx_id, total)).state == TxState.PAID
            finally:
                ctx.money.release(tx_id)
            return tx_id
        finally:
            await ctx.close()

    tx_id = asyncio.run(go())
    pay_elsewhere(env, chosen[0], f"{tx_id}.0")  # the back-office holds bill 0 under the basket's id
    resolved = recover_now(env)
    assert resolved[tx_id]["to_state"] == "REFUND_PENDING"
    tx = journal(env).get(tx_id)
    assert tx.data["order_unreadable"] and tx.data["refund_pending_rials"] == total
    assert env.terminal.net_charged(tx_id) == total  # nothing given back blind
    assert journal(env).open_transactions() == [] and journal(env).verify().ok


def test_a_slow_partial_refund_is_asked_about_while_the_terminal_works_and_given_back_once(
        env: DemoEnvironment) -> None:
    """M2: the terminal takes longer over a share's refund than the kiosk's read waits. Its
    status says InProgress meanwhile; the next rounds ask again and never send a new refund
    under a new ServiceID (both would go through: a partial refund has no "already reversed"
    guard while the sale has enough left). The share is given back once."""
    import dataclasses
    import time

    chosen = slips(env, 3)
    env.terminal.reversal_latency_s = 2.5
    env.settings = dataclasses.replace(env.settings, status_timeout_s=0.5)  # the read gives up after 1 s
    result = pay(env, chosen, PayElsewhereOnConfirm(env, [chosen[2]]))
    assert result is not None
    tx_id = result.transaction_id
    assert result.final_state == TxState.FULFILLING
    resolved = recover_now(env)  # the terminal is still on it: InProgress
    assert (resolved[tx_id]["to_state"], resolved[tx_id]["resolved"]) == ("FULFILLING", False)
    time.sleep(2.0)
    env.terminal.reversal_latency_s = 0.0
    assert recover_now(env)[tx_id]["to_state"] == "COMPLETED"
    check_ledgers(env, tx_id, chosen, {0, 1})
    assert len(refund_rows(env, tx_id)) == 1
    [sale] = [s for s in env.terminal.ledger() if s["reference"] == tx_id]
    assert sale["reversed_rials"] == chosen[2].amount_rials


def test_a_partial_refund_held_before_the_terminal_sees_it_is_never_sent_twice(env: DemoEnvironment) -> None:
    """M2: the refund request sits in a queue before the terminal sees it: its status says
    NotFound while it waits. NotFound shortly after sending is not "never happened": no new
    request is made; once the terminal has done it, the next round journals it refunded."""
    import dataclasses
    import time

    chosen = slips(env, 3)
    env.terminal.reversal_unseen_s = 2.5
    env.settings = dataclasses.replace(env.settings, status_timeout_s=0.5)
    result = pay(env, chosen, PayElsewhereOnConfirm(env, [chosen[2]]))
    assert result is not None
    tx_id = result.transaction_id
    assert result.final_state == TxState.FULFILLING
    resolved = recover_now(env)  # NotFound: not yet at the terminal
    assert (resolved[tx_id]["to_state"], resolved[tx_id]["resolved"]) == ("FULFILLING", False)
    assert len(refund_rows(env, tx_id)) == 1
    time.sleep(2.0)
    env.terminal.reversal_unseen_s = 0.0
    assert recover_now(env)[tx_id]["to_state"] == "COMPLETED"
    check_ledgers(env, tx_id, chosen, {0, 1})
    [sale] = [s for s in env.terminal.ledger() if s["reference"] == tx_id]
    assert sale["reversed_rials"] == chosen[2].amount_rials


@pytest.mark.parametrize("cut", ["after-refused", "to-paid"])
def test_a_journal_cut_past_a_share_refund_never_refunds_it_twice(env: DemoEnvironment, cut: str) -> None:
    """M3: bill 2 refused at settlement, its share refunded, the basket COMPLETED; then the
    journal is cut back past the refund's rows (after bill 2's `refused` row, or back to PAID
    with the outbox kept). The journal no longer shows the refund; recovery asks the terminal
    about every request this share can have had (by reference) and finds it given back: it is
    journaled refunded, never sent again."""
    import sqlite3

    chosen = sorted(slips(env, 3), key=lambda s: -s.amount_rials)
    result = pay(env, chosen, PayElsewhereOnConfirm(env, [chosen[2]]))
    assert result is not None and result.final_state == TxState.COMPLETED
    tx_id = result.transaction_id
    db = sqlite3.connect(journal_path(env.data_dir))
    db.execute("DROP TRIGGER IF EXISTS journal_no_delete")
    if cut == "after-refused":
        rows = db.execute("SELECT seq, data FROM journal WHERE tx_id = ? ORDER BY seq", (tx_id,)).fetchall()
        keep = max(seq for seq, d in rows if '"step":"refused"' in d.replace(" ", ""))
        db.execute("DELETE FROM journal WHERE tx_id = ? AND seq > ?", (tx_id, keep))
    else:
        db.execute("DELETE FROM journal WHERE tx_id = ? AND state NOT IN ('CREATED', 'PAYING', 'PAID')", (tx_id,))
    db.commit()
    db.close()
    with journal(env) as j:
        assert j.verify().ok and j.state_of(tx_id) in (TxState.FULFILLING, TxState.PAID)
    resolved = recover_now(env)
    assert resolved[tx_id]["to_state"] == "COMPLETED"
    check_ledgers(env, tx_id, chosen, {0, 1})
    [sale] = [s for s in env.terminal.ledger() if s["reference"] == tx_id]
    assert sale["reversed_rials"] == chosen[2].amount_rials  # once
    assert refund_rows(env, tx_id) == []  # nothing sent again
    assert [o for o, _ in receipt_lines(env, tx_id)] == ["settled", "settled", "refunded"]


def test_a_journal_cut_between_a_bills_queued_and_settled_rows_is_finished_from_the_outbox(
        env: DemoEnvironment) -> None:
    """M4: the journal is cut back to just after bill 0's `settled` row: bills 1 and 2 keep
    their `queued` rows, their `settled` rows are gone, and their outbox rows are ACKED. The
    answers are rebuilt from the acknowledged rows (whatever step the journal kept) and the
    basket finishes. Before, it waited for "queued" bills for ever, reported resolved."""
    import sqlite3

    chosen = slips(env, 3)
    result = pay(env, chosen)
    assert result is not None and result.final_state == TxState.COMPLETED
    tx_id = result.transaction_id
    db = sqlite3.connect(journal_path(env.data_dir))
    db.execute("DROP TRIGGER IF EXISTS journal_no_delete")
    rows = db.execute("SELECT seq, data FROM journal WHERE tx_id = ? ORDER BY seq", (tx_id,)).fetchall()
    first_settled = min(seq for seq, d in rows if '"step":"settled"' in d.replace(" ", ""))
    db.execute("DELETE FROM journal WHERE tx_id = ? AND seq > ?", (tx_id, first_settled))
    db.commit()
    db.close()
    with journal(env) as j:
        assert j.state_of(tx_id) == TxState.FULFILLING and j.verify().ok
        assert [o.step for o in bill_outcomes(j.get(tx_id))] == ["settled", "queued", "queued"]
    resolved = recover_now(env)
    assert (resolved[tx_id]["to_state"], resolved[tx_id]["resolved"]) == ("COMPLETED", True)
    check_ledgers(env, tx_id, chosen, {0, 1, 2})
    held = kiosk_payments(env, tx_id)
    assert receipt_lines(env, tx_id) == [("settled", held[f"{tx_id}.{i}"]["tracking_code"]) for i in range(3)]
    assert recover_now(env) == {}


def test_a_basket_that_cannot_progress_is_reported_unresolved_for_an_operator(env: DemoEnvironment) -> None:
    """M4: bill 1 journaled queued, its outbox row marked acknowledged with no answer, and the
    back-office holds no such payment: nothing will ever answer it (never read as a refusal:
    an acknowledged post is not refused money). Recovery reports it "stuck", resolved=False,
    every time — not "queued", resolved, for ever."""
    import sqlite3

    chosen = slips(env, 2)
    port = int(env.backoffice.url.rsplit(":", 1)[1])
    result = pay(env, chosen, StopBackofficeOnConfirm(env))  # both bills queued, the back-office away
    assert result is not None and result.final_state == TxState.FULFILLING
    tx_id = result.transaction_id
    db = sqlite3.connect(journal_path(env.data_dir))
    db.execute("UPDATE outbox SET status = 'acked', response = NULL WHERE tx_id = ?", (tx_id,))
    db.commit()
    db.close()
    with serve_in_thread(env.backoffice_db_url, port=port):
        for _ in range(2):
            resolved = recover_now(env)
            assert resolved[tx_id]["to_state"] == "FULFILLING"
            assert (resolved[tx_id]["action"], resolved[tx_id]["resolved"]) == ("stuck", False)
    assert env.terminal.net_charged(tx_id) == sum(s.amount_rials for s in chosen)  # nothing refunded on a guess


def test_journal_show_lists_what_a_refund_pending_basket_owes_not_its_total(env: DemoEnvironment) -> None:
    """M5: `kiosk journal show --state REFUND_PENDING` (where `kiosk recover` points an
    operator) shows the amount owed — the refused bill's share — and which bill, not the
    basket's whole total."""
    import json
    import subprocess
    import sys

    from devices.terminal import nexo

    chosen = slips(env, 3)
    env.terminal._reversal = lambda req: nexo.response_message(  # type: ignore[method-assign]
        req.header, "ReversalResponse", nexo.failure_body(nexo.REFUSAL))
    result = pay(env, chosen, PayElsewhereOnConfirm(env, [chosen[2]]))
    assert result is not None and result.final_state == TxState.REFUND_PENDING
    base = [sys.executable, "-m", "kiosk.cli", "journal", "show", "--state", "REFUND_PENDING",
            "--data-dir", str(env.data_dir)]
    table = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split("  ")[-1].strip() == "owed (rials)"
    assert row.endswith(f"{chosen[2].amount_rials:,} (bill {chosen[2].bill_id})")
    listed = json.loads(subprocess.run(base + ["--json"], capture_output=True, text=True, timeout=60).stdout)
    assert listed[0]["owed_rials"] == chosen[2].amount_rials
    assert listed[0]["amount_rials"] == sum(s.amount_rials for s in chosen)
    assert [(b["index"], b["bill_id"]) for b in listed[0]["bills_owed"]] == [(2, chosen[2].bill_id)]


def test_a_backoffice_error_that_is_not_a_bills_refusal_is_shown_as_itself_not_as_bills_dropped(
        env: DemoEnvironment) -> None:
    """A rotated token (401 from the back-office) at the re-check is not "this bill is paid or
    unknown": before, every bill was shown dropped and the basket read "nothing to pay". Now
    the real error is shown and nothing is charged."""
    import dataclasses

    chosen = slips(env, 2)
    env.settings = dataclasses.replace(env.settings, backoffice_token="a-rotated-token")
    ui = ScriptedUI(CONFIRM)
    result = pay(env, chosen, ui)
    assert result is not None and result.final_state is None and not result.outcome.ok
    assert result.outcome.message_key == "backoffice.rejected"
    assert "basket.bill_dropped" not in ui.keys("error") and ui.keys("error") == ["backoffice.rejected"]
    assert env.terminal.ledger() == []


def test_a_whole_reversal_the_terminal_is_too_busy_for_is_retried_not_handed_to_an_operator(
        env: DemoEnvironment) -> None:
    """Every bill refused; the terminal answers the reversal Busy (it did not take it up):
    not a refusal — the basket stays REVERSING and the next round reverses it once."""
    from devices.terminal import nexo

    chosen = slips(env, 2)
    real = env.terminal._reversal
    env.terminal._reversal = lambda req: nexo.response_message(  # type: ignore[method-assign]
        req.header, "ReversalResponse", nexo.failure_body(nexo.BUSY))
    result = pay(env, chosen, PayElsewhereOnConfirm(env, chosen))
    assert result is not None and result.final_state == TxState.REVERSING
    tx_id = result.transaction_id
    env.terminal._reversal = real  # type: ignore[method-assign]
    assert recover_now(env)[tx_id]["to_state"] == "REVERSED"
    assert env.terminal.net_charged(tx_id) == 0 and kiosk_payments(env, tx_id) == {}


def test_a_refund_made_at_a_terminal_since_swapped_goes_to_an_operator_not_retried_for_ever(
        env: DemoEnvironment) -> None:
    """The share's refund went out (its answer lost) at the terminal the kiosk had then; the
    terminal is swapped (another POIID). The new one cannot be asked about the earlier
    request (a wrong-terminal reference): before, the basket stayed 'retry later' for ever;
    now an operator refunds the share (REFUND_PENDING, otherTerminal), never a blind second
    refund."""
    from kiosk.recovery import Recovery

    chosen = slips(env, 3)
    env.terminal._reversal = lambda req: None  # type: ignore[method-assign]  # dropped unanswered
    result = pay(env, chosen, PayElsewhereOnConfirm(env, [chosen[0]]))
    assert result is not None and result.final_state == TxState.FULFILLING
    tx_id = result.transaction_id

    async def go() -> list[Any]:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        try:
            ctx.money.terminal().poi_id = "SIM-POI-2"  # the kiosk now talks to another terminal
            return await Recovery(ctx.journal, ctx.money).run()
        finally:
            await ctx.close()

    [r] = asyncio.run(go())
    assert r.to_state == "REFUND_PENDING"
    tx = journal(env).get(tx_id)
    assert tx.data["bills_refund_pending"] == [0] and tx.data["error_condition"] == "otherTerminal"
    assert len(refund_rows(env, tx_id)) == 1


def test_a_share_refund_of_a_sale_whose_poi_transaction_was_not_journaled_asks_the_terminal_for_it(
        env: DemoEnvironment) -> None:
    """PAID journaled without the terminal's POI transaction id (a journal an older build
    wrote): the share's refund asks the terminal for the sale by the payment's reference, as
    a whole reversal does, instead of handing the share to an operator."""
    from kiosk.services.basket import settle_basket

    chosen = slips(env, 2)
    items = [{"bill_id": s.bill_id, "payment_id": s.payment_id, "amount_rials": s.amount_rials} for s in chosen]
    total = sum(s.amount_rials for s in chosen)

    async def go() -> str:
        ctx = await KioskContext.open(env.settings, env.data_dir)
        money = ctx.money
        try:
            tx_id = await money.open_transaction("fee_basket", total, {"items": items, "kiosk_id": "k"})
            try:
                term = money.terminal()
                ref = term.new_ref(tx_id, "Payment")
                await money.writer.append(tx_id, TxState.PAYING, {"terminal": term.name, "message_ref": ref.to_dict()})
                paid = await term.pay(ref, total, timeout=10)
                await money.writer.append(tx_id, TxState.PAID, {"rrn": paid.rrn, "stan": paid.stan})  # no POI id
                await asyncio.to_thread(pay_elsewhere, env, chosen[1], "bank-app-old")
                await settle_basket(money, tx_id)
            finally:
                money.release(tx_id)
            return tx_id
        finally:
            await ctx.close()

    tx_id = asyncio.run(go())
    assert journal(env).state_of(tx_id) == TxState.POSTED
    assert recover_now(env)[tx_id]["to_state"] == "COMPLETED"
    check_ledgers(env, tx_id, chosen, {0})
    assert [o for o, _ in receipt_lines(env, tx_id)] == ["settled", "refunded"]
