"""The real nexo driver against the real nexo simulator over loopback HTTP, in every mode.

Every request goes out under a MessageRef made first (`new_ref`): a terminal finds a sale
again by its message reference (SaleID, ServiceID, MessageCategory), so status, reversal and
abort name the request they are about by that reference, never by our sale reference alone."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from devices.base import (
    CommandTimeout,
    DeviceBusy,
    DeviceOffline,
    DeviceState,
    HealthLevel,
    InvalidData,
    ProtocolError,
)
from devices.contracts import AmountTooLarge, MessageRef, PaymentOutcome, PaymentResult, PoiTransaction
from devices.registry import driver_for
from devices.terminal import nexo
from devices.terminal.driver import NexoTerminal, NoResponse, WrongTerminal
from devices.terminal.simulator import NexoTerminalSimulator, SimulatorModeError

POI = "SIM-POI-1"
SALE = "KIOSK-7"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "terminal.sqlite"


@pytest.fixture
def sim(state_path: Path) -> Iterator[NexoTerminalSimulator]:
    with NexoTerminalSimulator(state_path=state_path, hang_s=5.0) as s:
        yield s


def terminal(url: str, **extra: Any) -> NexoTerminal:
    options: dict[str, Any] = {"sale_id": SALE, "poi_id": POI, "connect_timeout": 1.0, "allow_plain_http": True}
    options.update(extra)
    return NexoTerminal("terminal", url=url, **options)


async def opened(url: str, **extra: Any) -> NexoTerminal:
    t = terminal(url, **extra)
    await t.open()
    return t


def control_url(sim: NexoTerminalSimulator, path: str) -> str:
    """The simulator's control endpoints live beside /nexo, at the server root."""
    return f"http://{sim.host}:{sim.port}{path}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_registry_knows_the_nexo_http_driver() -> None:
    assert driver_for("nexo-http") is NexoTerminal


def test_open_reads_identity_from_diagnosis(sim: NexoTerminalSimulator) -> None:
    t = run(opened(sim.url))
    assert t.state == DeviceState.ONLINE
    assert t.identity.serial == f"SN-{POI}"
    assert t.identity.model == "NexoSim 1"


def test_simulator_serves_nexo_at_the_path_real_terminals_use(sim: NexoTerminalSimulator) -> None:
    """Adyen: "the terminal listens for POST requests to /nexo on port 8443"."""
    assert sim.url.endswith("/nexo")
    payload = nexo.diagnosis_request(nexo.Header(nexo.Category.DIAGNOSIS, "diag1", SALE, POI))
    answer = requests.post(sim.url, json=payload, timeout=5)
    assert answer.status_code == 200 and "DiagnosisResponse" in answer.json()["SaleToPOIResponse"]
    elsewhere = requests.post(control_url(sim, "/not-nexo"), json=payload, timeout=5)
    assert elsewhere.status_code == 404
    assert sim.requests_seen == ["DiagnosisRequest"]  # the 404 never reached the terminal


def test_new_ref_names_this_kiosk_and_terminal_and_changes_service_id_each_time(sim: NexoTerminalSimulator) -> None:
    t = terminal(sim.url)
    first, second = t.new_ref("tx-ref-1"), t.new_ref("tx-ref-1")
    reversal = t.new_ref("tx-ref-1", "Reversal")
    assert (first.category, first.reference, first.sale_id, first.poi_id) == ("Payment", "tx-ref-1", SALE, POI)
    assert reversal.category == "Reversal"
    assert len({first.service_id, second.service_id, reversal.service_id}) == 3
    assert all(1 <= len(r.service_id) <= 10 for r in (first, second, reversal))
    assert MessageRef.from_dict(first.to_dict()) == first  # what the journal keeps reads back
    with pytest.raises(InvalidData):
        t.new_ref("tx-ref-1", "Refund")
    assert sim.requests_seen == []  # no I/O


def test_approved_sale_status_repeats_the_same_rrn(sim: NexoTerminalSimulator) -> None:
    async def go() -> tuple[Any, Any]:
        t = await opened(sim.url)
        ref = t.new_ref("tx-approve-1")
        paid = await t.pay(ref, 250_000, timeout=5)
        return paid, await t.transaction_status(ref)

    paid, status = run(go())
    assert paid.outcome == PaymentOutcome.APPROVED
    assert paid.amount_rials == 250_000
    assert re.fullmatch(r"\d{12}", paid.rrn) and re.fullmatch(r"\d{6}", paid.stan)
    assert paid.masked_pan == "603799******1234"
    assert paid.poi_transaction is not None
    assert status.outcome == PaymentOutcome.APPROVED
    assert (status.rrn, status.stan, status.poi_reference, status.poi_timestamp) == (
        paid.rrn, paid.stan, paid.poi_reference, paid.poi_timestamp)
    assert sim.net_charged("tx-approve-1") == 250_000


def test_lost_response_raises_timeout_and_status_says_approved(sim: NexoTerminalSimulator) -> None:
    sim.set_mode("lost-response")

    async def go() -> Any:
        t = await opened(sim.url)
        ref = t.new_ref("tx-lost-1")
        with pytest.raises(CommandTimeout) as err:
            await t.pay(ref, 90_000, timeout=5)
        assert isinstance(err.value, NoResponse) and err.value.error_code == "noResponse"
        assert t.state == DeviceState.ONLINE
        return await t.transaction_status(ref)

    status = run(go())
    assert status.outcome == PaymentOutcome.APPROVED
    assert status.amount_rials == 90_000
    assert status.rrn == sim.ledger()[0]["rrn"]


def test_terminal_that_never_answers_times_out_and_the_sale_is_not_charged_after_abort(
        sim: NexoTerminalSimulator) -> None:
    """While the terminal works, status is IN_PROGRESS; an abort ends the sale uncharged. The
    terminal remembers the aborted payment and repeats its answer (Failure, Aborted), as it
    repeats any answer it gave."""
    sim.set_mode("timeout")

    async def go() -> tuple[Any, Any, NexoTerminal]:
        t = await opened(sim.url)
        ref = t.new_ref("tx-hang-1")
        with pytest.raises(CommandTimeout) as err:
            await t.pay(ref, 40_000, timeout=0.4)
        assert not isinstance(err.value, NoResponse)
        during = await t.transaction_status(ref)
        await t.abort(ref)
        await asyncio.sleep(0.2)
        return during, await t.transaction_status(ref), t

    during, after, t = run(go())
    assert during.outcome == PaymentOutcome.IN_PROGRESS
    assert after.outcome == PaymentOutcome.DECLINED and after.error_condition == "Aborted"
    assert sim.net_charged("tx-hang-1") == 0
    assert [(e["status"], e["error_condition"]) for e in sim.ledger()] == [("declined", "Aborted")]
    assert t.counters["faults"] == 1


def test_decline_mode_returns_declined_with_refusal(sim: NexoTerminalSimulator) -> None:
    sim.set_mode("decline")

    async def go() -> tuple[Any, Any]:
        t = await opened(sim.url)
        ref = t.new_ref("tx-dec-1")
        return await t.pay(ref, 50_000, timeout=5), await t.transaction_status(ref)

    paid, status = run(go())
    assert paid.outcome == PaymentOutcome.DECLINED and paid.error_condition == "Refusal"
    assert status.outcome == PaymentOutcome.DECLINED and status.error_condition == "Refusal"
    assert sim.net_charged("tx-dec-1") == 0


def test_amount_ending_in_13_thousand_rials_is_declined_in_approve_mode(sim: NexoTerminalSimulator) -> None:
    async def go() -> tuple[Any, Any]:
        t = await opened(sim.url)
        return (await t.pay(t.new_ref("tx-a"), 113_000, timeout=5),
                await t.pay(t.new_ref("tx-b"), 114_000, timeout=5))

    declined, approved = run(go())
    assert declined.outcome == PaymentOutcome.DECLINED
    assert approved.outcome == PaymentOutcome.APPROVED


def test_busy_terminal_raises_device_busy_and_records_nothing(sim: NexoTerminalSimulator) -> None:
    sim.set_mode("busy")

    async def go() -> tuple[Any, NexoTerminal]:
        t = await opened(sim.url)
        ref = t.new_ref("tx-busy-1")
        with pytest.raises(DeviceBusy):
            await t.pay(ref, 10_000, timeout=5)
        return await t.transaction_status(ref), t

    status, t = run(go())
    assert status.outcome == PaymentOutcome.NOT_FOUND
    assert t.state == DeviceState.ONLINE  # Busy is a well-formed answer
    assert sim.ledger() == []


def test_malformed_answer_is_protocol_error_and_hardware_error_until_a_good_answer(sim: NexoTerminalSimulator) -> None:
    sim.set_mode("once-malformed")

    async def go() -> list[str]:
        t = await opened(sim.url)
        ref = t.new_ref("tx-bad-1")
        states: list[str] = []
        with pytest.raises(ProtocolError):
            await t.pay(ref, 10_000, timeout=5)
        states.append(t.state)
        await t.transaction_status(ref)
        states.append(t.state)
        return states

    assert run(go()) == [DeviceState.HARDWARE_ERROR, DeviceState.ONLINE]


def test_reversal_nets_to_zero_and_each_request_keeps_its_own_status(sim: NexoTerminalSimulator) -> None:
    """A reversed payment's status is still the original approval; the reversal's own status
    (its Reversal ref) reads REVERSED; a second reversal of the reversed sale is refused. A
    restarted kiosk that kept only the journaled references reads the same."""

    async def go() -> dict[str, Any]:
        t = await opened(sim.url)
        pay_ref = t.new_ref("tx-rev-1")
        paid = await t.pay(pay_ref, 70_000, timeout=5)
        rev_ref = t.new_ref("tx-rev-1", "Reversal")
        first = await t.reverse(rev_ref, 70_000, paid.poi_transaction)
        again_ref = t.new_ref("tx-rev-1", "Reversal")
        second = await t.reverse(again_ref, 70_000, paid.poi_transaction)
        fresh = terminal(sim.url)  # a restarted kiosk: it knows the journaled references only
        await fresh.open()
        journaled = [MessageRef.from_dict(r.to_dict()) for r in (pay_ref, rev_ref, again_ref)]
        return {
            "paid": paid, "first": first, "second": second,
            "pay_status": await t.transaction_status(pay_ref),
            "rev_status": await t.transaction_status(rev_ref),
            "again_status": await t.transaction_status(again_ref),
            "fresh": [await fresh.transaction_status(r) for r in journaled],
        }

    r = run(go())
    assert r["first"].outcome == PaymentOutcome.REVERSED and r["first"].amount_rials == 70_000
    assert r["second"].outcome == PaymentOutcome.DECLINED and r["second"].error_condition == "NotAllowed"
    assert r["pay_status"].outcome == PaymentOutcome.APPROVED
    assert r["pay_status"].poi_reference == r["paid"].poi_reference and r["pay_status"].rrn == r["paid"].rrn
    assert r["rev_status"].outcome == PaymentOutcome.REVERSED
    assert r["again_status"].outcome == PaymentOutcome.DECLINED and r["again_status"].error_condition == "NotAllowed"
    assert [s.outcome for s in r["fresh"]] == [PaymentOutcome.APPROVED, PaymentOutcome.REVERSED,
                                               PaymentOutcome.DECLINED]
    assert sim.net_charged("tx-rev-1") == 0
    assert [e["status"] for e in sim.ledger()] == ["reversed"]


def test_reverse_of_a_sale_the_terminal_never_saw_is_not_found(sim: NexoTerminalSimulator) -> None:
    async def go() -> Any:
        t = await opened(sim.url)
        never = PoiTransaction(f"{POI}-99999999", nexo.now_iso())
        return await t.reverse(t.new_ref("tx-never", "Reversal"), 10_000, never)

    assert run(go()).outcome == PaymentOutcome.NOT_FOUND
    assert sim.ledger() == []


def test_reverse_without_the_original_poi_transaction_is_invalid_data_before_anything_is_sent(
        sim: NexoTerminalSimulator) -> None:
    async def go() -> None:
        t = await opened(sim.url)
        declined = PaymentResult(PaymentOutcome.DECLINED, "tx-x")  # no POITransactionID to name
        for original in (declined.poi_transaction, PoiTransaction("SIM-POI-1-00000001", "")):
            with pytest.raises(InvalidData):
                await t.reverse(t.new_ref("tx-x", "Reversal"), 10_000, original)  # type: ignore[arg-type]

    run(go())
    assert sim.requests_seen == ["DiagnosisRequest"]


def test_restarted_simulator_on_same_state_path_still_answers_status(state_path: Path) -> None:
    with NexoTerminalSimulator(state_path=state_path) as first:
        ref, paid = run(_pay(first.url, "tx-crash-1", 30_000))
    journaled = MessageRef.from_dict(ref.to_dict())
    with NexoTerminalSimulator(state_path=state_path) as second:
        status = run(_status(second.url, journaled))  # a new driver: only the journal remembers the ref
        assert second.net_charged("tx-crash-1") == 30_000
    assert status.outcome == PaymentOutcome.APPROVED
    assert status.rrn == paid.rrn


async def _pay(url: str, reference: str, amount: int) -> tuple[MessageRef, PaymentResult]:
    t = await opened(url)
    ref = t.new_ref(reference)
    return ref, await t.pay(ref, amount, timeout=5)


async def _status(url: str, ref: MessageRef) -> PaymentResult:
    t = await opened(url)
    return await t.transaction_status(ref)


def test_cancelled_pay_sends_abort_and_is_not_a_timeout(sim: NexoTerminalSimulator) -> None:
    sim.latency_s = 3.0

    async def go() -> tuple[bool, NexoTerminal, Any]:
        t = await opened(sim.url)
        ref = t.new_ref("tx-cancel-1")
        task = asyncio.create_task(t.pay(ref, 20_000, timeout=10))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(50):  # the abort goes out in the background
            if "AbortRequest" in sim.requests_seen:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        return task.cancelled(), t, await t.transaction_status(ref)

    cancelled, t, status = run(go())
    assert cancelled
    assert "AbortRequest" in sim.requests_seen
    assert t.counters["canceled"] == 1 and t.counters["faults"] == 0  # no CommandTimeout recorded
    assert t.last_error is None
    # the abort stopped the sale: the terminal repeats its Aborted answer, nothing was charged
    assert status.outcome == PaymentOutcome.DECLINED and status.error_condition == "Aborted"
    assert sim.net_charged("tx-cancel-1") == 0
    assert [e["status"] for e in sim.ledger()] == ["declined"]


def test_a_cancelled_payment_that_reaches_the_terminal_late_is_aborted_before_its_status_is_asked(
        sim: NexoTerminalSimulator) -> None:
    """The payment request and the abort are separate HTTP requests: a payment held in the
    network arrives after the abort (which finds nothing to stop) and after a status query
    (NotFound), then waits for a card that would be charged. settle_cancelled aborts again
    until the payment's own exchange has returned, so the status asked next is the Aborted
    sale's and nothing is charged."""
    sim.payment_unseen_s, sim.latency_s = 1.0, 3.0

    async def go() -> tuple[bool, float, PaymentResult]:
        t = await opened(sim.url)
        ref = t.new_ref("tx-cancel-late")
        task = asyncio.create_task(t.pay(ref, 20_000, timeout=10))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        early = await t.transaction_status(ref)  # what asking at once would have been told
        assert early.outcome == PaymentOutcome.NOT_FOUND
        began = asyncio.get_running_loop().time()
        settled = await t.settle_cancelled(ref, timeout=10)
        took = asyncio.get_running_loop().time() - began
        return settled, took, await t.transaction_status(ref)

    settled, took, status = run(go())
    assert settled and took < 3.0  # aborted once it arrived, not left to wait for a card
    assert status.outcome == PaymentOutcome.DECLINED and status.error_condition == "Aborted"
    assert sim.requests_seen.count("AbortRequest") >= 2
    time.sleep(0.5)
    assert sim.net_charged("tx-cancel-late") == 0 and [e["status"] for e in sim.ledger()] == ["declined"]


def test_a_payment_cancelled_as_it_is_sent_is_never_left_waiting_for_a_card(sim: NexoTerminalSimulator) -> None:
    """Cancelled at once, a payment is either never sent, or sent — possibly behind the first
    abort — and then aborted: after settle_cancelled the terminal has nothing running, and
    the status is a definite answer, never "not found" for a sale still to come."""
    sim.latency_s = 2.0

    async def go(i: int) -> tuple[MessageRef, PaymentResult]:
        t = await opened(sim.url)
        ref = t.new_ref(f"tx-cancel-now-{i}")
        task = asyncio.create_task(t.pay(ref, 20_000, timeout=10))
        await asyncio.sleep(0.001 * i)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await t.settle_cancelled(ref, timeout=5)
        return ref, await t.transaction_status(ref)

    for i in range(6):
        before = sim.requests_seen.count("PaymentRequest")
        ref, status = run(go(i))
        sent = sim.requests_seen.count("PaymentRequest") > before
        if sent:
            assert status.outcome == PaymentOutcome.DECLINED and status.error_condition == "Aborted", i
        else:
            assert status.outcome == PaymentOutcome.NOT_FOUND, i
        assert sim.net_charged(ref.reference) == 0
    time.sleep(2.2)  # had any been left waiting for a card, it would be approved by now
    assert all(e["status"] == "declined" for e in sim.ledger())


def test_terminal_down_is_offline_and_the_next_call_reconnects(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/nexo"

    async def go() -> list[str]:
        t = terminal(url)
        states = []
        with pytest.raises(DeviceOffline):
            await t.open()
        states.append(t.state)
        ref = t.new_ref("tx-off-1")
        with pytest.raises(DeviceOffline):
            await t.pay(ref, 10_000, timeout=3)
        states.append(t.state)
        with NexoTerminalSimulator(port=port, state_path=tmp_path / "s.sqlite"):
            # nothing reached the terminal, so the same reference may go out now
            paid = await t.pay(ref, 10_000, timeout=3)
            states.append(paid.outcome)
            states.append(t.state)
        return states

    assert run(go()) == [DeviceState.OFFLINE, DeviceState.OFFLINE, PaymentOutcome.APPROVED, DeviceState.ONLINE]


def test_same_sale_reference_under_a_new_service_id_is_a_new_sale(sim: NexoTerminalSimulator) -> None:
    """A real terminal does not dedupe by SaleTransactionID (the kiosk never pays one
    reference twice; that guard is the money path's). What the terminal does refuse is the
    same message reference twice (test_terminal_strict)."""

    async def go() -> tuple[Any, Any]:
        t = await opened(sim.url)
        return (await t.pay(t.new_ref("tx-dup"), 10_000, timeout=5),
                await t.pay(t.new_ref("tx-dup"), 10_000, timeout=5))

    first, second = run(go())
    assert first.outcome == PaymentOutcome.APPROVED
    assert second.outcome == PaymentOutcome.APPROVED
    assert first.poi_reference != second.poi_reference
    assert sim.net_charged("tx-dup") == 20_000


def test_a_ref_made_for_another_kiosk_or_terminal_is_wrong_terminal_before_anything_is_sent(
        sim: NexoTerminalSimulator) -> None:
    """Only the terminal that took a sale can say what became of it: another SaleID's or
    another POIID's reference is refused by every call, and nothing goes out."""

    async def go() -> None:
        t = await opened(sim.url)
        ours = t.new_ref("tx-wrong")
        original = PoiTransaction(f"{POI}-00000001", nexo.now_iso())
        for foreign in (replace(ours, sale_id="KIOSK-8"), replace(ours, poi_id="SIM-POI-2"),
                        terminal(sim.url, sale_id="KIOSK-8").new_ref("tx-wrong"),
                        terminal(sim.url, poi_id="SIM-POI-2").new_ref("tx-wrong")):
            with pytest.raises(WrongTerminal):
                await t.pay(foreign, 10_000, timeout=5)
            with pytest.raises(WrongTerminal):
                await t.transaction_status(foreign)
            with pytest.raises(WrongTerminal):
                await t.abort(foreign)
            with pytest.raises(WrongTerminal):
                await t.reverse(replace(foreign, category="Reversal"), 10_000, original)

    run(go())
    assert sim.requests_seen == ["DiagnosisRequest"]
    assert sim.ledger() == []


def test_a_ref_of_the_wrong_category_is_invalid_data_before_anything_is_sent(sim: NexoTerminalSimulator) -> None:
    async def go() -> None:
        t = await opened(sim.url)
        original = PoiTransaction(f"{POI}-00000001", nexo.now_iso())
        with pytest.raises(InvalidData):
            await t.pay(t.new_ref("tx-cat", "Reversal"), 10_000, timeout=5)
        with pytest.raises(InvalidData):
            await t.abort(t.new_ref("tx-cat", "Reversal"))
        with pytest.raises(InvalidData):
            await t.reverse(t.new_ref("tx-cat"), 10_000, original)

    run(go())
    assert sim.requests_seen == ["DiagnosisRequest"]


def test_once_mode_applies_to_the_next_payment_only(sim: NexoTerminalSimulator) -> None:
    sim.set_mode("once-decline")
    assert sim.mode == "once-decline"

    async def go() -> list[Any]:
        t = await opened(sim.url)
        return [await t.pay(t.new_ref("tx-o1"), 5_000, timeout=5), await t.pay(t.new_ref("tx-o2"), 5_000, timeout=5)]

    assert [r.outcome for r in run(go())] == [PaymentOutcome.DECLINED, PaymentOutcome.APPROVED]
    assert sim.mode == "approve"


def test_control_endpoint_drives_mode_and_lists_ledger_from_another_process(sim: NexoTerminalSimulator) -> None:
    r = requests.post(control_url(sim, "/sim/mode"), json={"mode": "decline"}, timeout=5)
    assert r.status_code == 200 and r.json() == {"mode": "decline"}
    assert requests.get(control_url(sim, "/sim/mode"), timeout=5).json() == {"mode": "decline"}
    bad = requests.post(control_url(sim, "/sim/mode"), json={"mode": "explode"}, timeout=5)
    assert bad.status_code == 400
    run(_pay(sim.url, "tx-ctl", 8_000))
    ledger = requests.get(control_url(sim, "/sim/ledger"), timeout=5).json()
    assert [(e["reference"], e["status"], e["poi_id"]) for e in ledger] == [("tx-ctl", "declined", POI)]


def test_unknown_simulator_mode_is_rejected() -> None:
    with pytest.raises(SimulatorModeError):
        NexoTerminalSimulator(mode="on-fire")


def test_ledger_file_never_holds_a_full_card_number(sim: NexoTerminalSimulator, state_path: Path) -> None:
    async def go() -> None:
        t = await opened(sim.url)
        paid = [await t.pay(t.new_ref(f"tx-pan-{i}"), 10_000 + i * 1000, timeout=5) for i in range(5)]
        reversed_ = await t.reverse(t.new_ref("tx-pan-0", "Reversal"), 10_000, paid[0].poi_transaction)
        assert reversed_.outcome == PaymentOutcome.REVERSED

    run(go())
    blob = b"".join(p.read_bytes() for p in state_path.parent.glob(state_path.name + "*"))
    assert b"603799******1234" in blob  # the masked form is what is kept
    assert re.search(rb"(?<!\d)\d{13,19}(?!\d)", blob) is None


def test_check_health_external_round_trips_diagnosis(sim: NexoTerminalSimulator) -> None:
    async def go() -> tuple[Any, Any]:
        t = await opened(sim.url)
        good = await t.check_health(HealthLevel.EXTERNAL)
        sim.stop()
        return good, await t.check_health(HealthLevel.EXTERNAL)

    good, bad = run(go())
    assert good.ok and good.data["serial"] == f"SN-{POI}"
    assert not bad.ok and bad.state == DeviceState.OFFLINE


def test_bad_amount_or_reference_is_invalid_data_before_anything_is_sent(sim: NexoTerminalSimulator) -> None:
    async def go() -> None:
        t = await opened(sim.url)
        for ref, amount in (("tx", 0), ("tx", -5), ("tx", 10.5), ("tx", True), ("", 1000), ("x" * 65, 1000)):
            with pytest.raises(InvalidData):
                await t.pay(t.new_ref(ref), amount, timeout=5)  # type: ignore[arg-type]
        with pytest.raises(InvalidData):
            await t.pay("tx", 1000, timeout=5)  # type: ignore[arg-type]  # a bare reference is not a MessageRef

    run(go())
    assert "PaymentRequest" not in sim.requests_seen


def test_missing_options_are_a_typed_config_error() -> None:
    with pytest.raises(InvalidData):
        NexoTerminal("terminal", url="http://127.0.0.1:1/")


@pytest.mark.parametrize("amount, error", [(0, InvalidData), (-5, InvalidData), (100_000_000, AmountTooLarge)])
def test_a_reversal_amount_the_terminal_would_refuse_is_a_typed_error_before_sending(
        sim: NexoTerminalSimulator, amount: int, error: type) -> None:
    """A reversal amount of zero, below zero or over the schema's maximum is refused by the
    driver with a typed error (never a bare ValueError) and nothing is sent."""
    async def go() -> None:
        t = await opened(sim.url)
        paid = await t.pay(t.new_ref("tx-rev-amt"), 10_000, timeout=5)
        before = list(sim.requests_seen)
        with pytest.raises(error):
            await t.reverse(t.new_ref("tx-rev-amt", "Reversal"), amount, paid.poi_transaction)
        assert sim.requests_seen == before

    run(go())
