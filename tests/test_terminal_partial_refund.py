"""Partial referenced refunds on the real nexo driver against the real simulator over loopback:
a ReversalRequest whose ReversedAmount is below what is left of the sale gives that share
back (Adyen Terminal API referenced refunds, several partial refunds per sale); each refund
answers status under its own ServiceID; more than is left is refused; the ledger keeps the
total given back, across a simulator restart."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from devices.contracts import MessageRef, PaymentOutcome
from devices.terminal import nexo
from devices.terminal.driver import NexoTerminal
from devices.terminal.simulator import NexoTerminalSimulator

POI = "SIM-POI-1"
SALE = "KIOSK-7"


def terminal(url: str) -> NexoTerminal:
    return NexoTerminal("terminal", url=url, sale_id=SALE, poi_id=POI, connect_timeout=1.0, allow_plain_http=True)


def test_partial_refunds_give_back_each_share_and_each_answers_status_by_its_own_service_id(tmp_path: Path) -> None:
    state = tmp_path / "term.sqlite"
    with NexoTerminalSimulator(state_path=state) as sim:
        async def go() -> dict[str, Any]:
            t = terminal(sim.url)
            await t.open()
            paid = await t.pay(t.new_ref("tx-basket-1"), 600_000, timeout=5)
            first_ref = t.new_ref("tx-basket-1", "Reversal")
            first = await t.reverse(first_ref, 150_000, paid.poi_transaction)
            after_first = sim.net_charged("tx-basket-1")
            second_ref = t.new_ref("tx-basket-1", "Reversal")
            second = await t.reverse(second_ref, 200_000, paid.poi_transaction)
            return {"paid": paid, "first": first, "second": second, "after_first": after_first,
                    "first_ref": first_ref.to_dict(), "second_ref": second_ref.to_dict()}

        r = asyncio.run(go())
        assert r["paid"].outcome == PaymentOutcome.APPROVED
        assert r["first"].outcome == PaymentOutcome.REVERSED and r["first"].amount_rials == 150_000
        assert r["second"].outcome == PaymentOutcome.REVERSED and r["second"].amount_rials == 200_000
        assert r["after_first"] == 450_000
        assert sim.net_charged("tx-basket-1") == 250_000
        [sale] = sim.ledger()
        assert sale["status"] == "approved" and sale["reversed_rials"] == 350_000

    # a restarted simulator (same ledger) and a restarted kiosk (only the journaled refs)
    with NexoTerminalSimulator(state_path=state) as again:
        async def statuses() -> list[Any]:
            t = terminal(again.url)
            await t.open()
            return [await t.transaction_status(MessageRef.from_dict(r["first_ref"])),
                    await t.transaction_status(MessageRef.from_dict(r["second_ref"]))]

        first_status, second_status = asyncio.run(statuses())
        assert again.net_charged("tx-basket-1") == 250_000
    assert first_status.outcome == PaymentOutcome.REVERSED and first_status.amount_rials == 150_000
    assert second_status.outcome == PaymentOutcome.REVERSED and second_status.amount_rials == 200_000


def test_a_refund_of_more_than_is_left_is_refused_and_the_last_share_reverses_the_sale(tmp_path: Path) -> None:
    with NexoTerminalSimulator(state_path=tmp_path / "term.sqlite") as sim:
        async def go() -> dict[str, Any]:
            t = terminal(sim.url)
            await t.open()
            paid = await t.pay(t.new_ref("tx-basket-2"), 500_000, timeout=5)
            part = await t.reverse(t.new_ref("tx-basket-2", "Reversal"), 200_000, paid.poi_transaction)
            whole_ref = t.new_ref("tx-basket-2", "Reversal")
            whole = await t.reverse(whole_ref, 500_000, paid.poi_transaction)  # more than the 300,000 left
            whole_status = await t.transaction_status(whole_ref)
            last = await t.reverse(t.new_ref("tx-basket-2", "Reversal"), 300_000, paid.poi_transaction)
            after = await t.reverse(t.new_ref("tx-basket-2", "Reversal"), 1, paid.poi_transaction)
            return {"part": part, "whole": whole, "whole_status": whole_status, "last": last, "after": after}

        r = asyncio.run(go())
        assert r["part"].outcome == PaymentOutcome.REVERSED
        # refused, not "never seen": its status says so under its own ServiceID
        assert r["whole"].outcome == PaymentOutcome.DECLINED and r["whole"].error_condition == nexo.NOT_ALLOWED
        assert r["whole_status"].outcome == PaymentOutcome.DECLINED
        assert r["last"].outcome == PaymentOutcome.REVERSED and r["last"].amount_rials == 300_000
        assert r["after"].outcome == PaymentOutcome.DECLINED  # nothing left to give back
        [sale] = sim.ledger()
        assert sale["status"] == "reversed" and sale["reversed_rials"] == 500_000
        assert sim.net_charged("tx-basket-2") == 0


def test_a_full_reversal_still_reverses_the_sale_and_reports_its_amount(tmp_path: Path) -> None:
    with NexoTerminalSimulator(state_path=tmp_path / "term.sqlite") as sim:
        async def go() -> Any:
            t = terminal(sim.url)
            await t.open()
            paid = await t.pay(t.new_ref("tx-full"), 70_000, timeout=5)
            return await t.reverse(t.new_ref("tx-full", "Reversal"), 70_000, paid.poi_transaction)

        done = asyncio.run(go())
        assert done.outcome == PaymentOutcome.REVERSED and done.amount_rials == 70_000
        assert [s["status"] for s in sim.ledger()] == ["reversed"] and sim.net_charged("tx-full") == 0


def test_a_ledger_written_before_partial_refunds_opens_with_nothing_given_back(tmp_path: Path) -> None:
    state = tmp_path / "old.sqlite"
    db = sqlite3.connect(state)  # the sales table as the simulator wrote it before this change
    db.execute("CREATE TABLE sales (poi_transaction_id TEXT PRIMARY KEY, reference TEXT, amount_rials INTEGER,"
               " status TEXT, masked_pan TEXT, rrn TEXT, stan TEXT, approval_code TEXT, error_condition TEXT,"
               " sale_timestamp TEXT, poi_timestamp TEXT, service_id TEXT, sale_id TEXT)")
    db.execute("INSERT INTO sales VALUES ('SIM-POI-1-00000001', 'tx-old', 90000, 'approved', '603799******1234',"
               " '123456789012', '000001', '111111', '', '2026-11-30T10:00:00Z', '2026-11-30T10:00:01Z', 'S1', 'K')")
    db.commit()
    db.close()
    with NexoTerminalSimulator(state_path=state) as sim:
        assert sim.net_charged("tx-old") == 90_000
        assert sim.ledger()[0]["reversed_rials"] == 0


def test_a_reversal_the_terminal_is_still_working_on_reads_in_progress_then_its_answer(tmp_path: Path) -> None:
    """TransactionStatus of a transaction still running answers InProgress (Adyen's
    "transaction in progress" example, docs/payment-terminal.md) — for a reversal as for a
    payment. Before, a slow refund read NotFound, which the kiosk took for "never arrived"."""
    from devices.base import CommandTimeout

    with NexoTerminalSimulator(state_path=tmp_path / "term.sqlite", reversal_latency_s=1.5) as sim:
        async def go() -> dict[str, Any]:
            t = terminal(sim.url)
            await t.open()
            paid = await t.pay(t.new_ref("tx-slow"), 400_000, timeout=5)
            ref = t.new_ref("tx-slow", "Reversal")
            try:
                await t.reverse(ref, 100_000, paid.poi_transaction, timeout=0.3)
                timed_out = False
            except CommandTimeout:
                timed_out = True
            during = await terminal(sim.url).transaction_status(ref)
            await asyncio.sleep(1.6)
            after = await terminal(sim.url).transaction_status(ref)
            return {"timed_out": timed_out, "during": during, "after": after}

        r = asyncio.run(go())
        assert r["timed_out"]
        assert r["during"].outcome == PaymentOutcome.IN_PROGRESS
        assert r["after"].outcome == PaymentOutcome.REVERSED and r["after"].amount_rials == 100_000
        assert sim.net_charged("tx-slow") == 300_000


def test_a_derived_reference_names_the_same_request_again_and_differs_per_key(tmp_path: Path) -> None:
    """The kiosk can name a refund request again after losing its journal row: the same
    (sale, key) gives the same ServiceID (at most 10 characters), another key another one."""
    with NexoTerminalSimulator(state_path=tmp_path / "term.sqlite") as sim:
        t, again = terminal(sim.url), terminal(sim.url)
        a = t.derived_ref("tx-1", "Reversal", "refund:bill=2:0")
        assert a.service_id == again.derived_ref("tx-1", "Reversal", "refund:bill=2:0").service_id
        assert 1 <= len(a.service_id) <= 10 and a.category == "Reversal"
        assert a.service_id != t.derived_ref("tx-1", "Reversal", "refund:bill=2:1").service_id
        assert a.service_id != t.derived_ref("tx-2", "Reversal", "refund:bill=2:0").service_id


def test_a_busy_answer_to_a_reversal_is_device_busy_not_a_refusal(tmp_path: Path) -> None:
    from devices.base import DeviceBusy

    with NexoTerminalSimulator(state_path=tmp_path / "term.sqlite") as sim:
        sim._reversal = lambda req: nexo.response_message(  # type: ignore[method-assign]
            req.header, "ReversalResponse", nexo.failure_body(nexo.BUSY))

        async def go() -> BaseException | None:
            t = terminal(sim.url)
            await t.open()
            paid = await t.pay(t.new_ref("tx-busy"), 50_000, timeout=5)
            try:
                await t.reverse(t.new_ref("tx-busy", "Reversal"), 10_000, paid.poi_transaction)
            except DeviceBusy as exc:
                return exc
            return None

        assert isinstance(asyncio.run(go()), DeviceBusy)
        assert sim.net_charged("tx-busy") == 50_000
