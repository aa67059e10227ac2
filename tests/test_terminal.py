"""The real nexo driver against the real nexo simulator over loopback HTTP, in every mode."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
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
from devices.contracts import PaymentOutcome
from devices.registry import driver_for
from devices.terminal.driver import NexoTerminal, NoResponse
from devices.terminal.simulator import NexoTerminalSimulator, SimulatorModeError

POI = "SIM-POI-1"


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
    return NexoTerminal("terminal", url=url, sale_id="KIOSK-7", poi_id=POI, connect_timeout=1.0, **extra)


async def opened(url: str) -> NexoTerminal:
    t = terminal(url)
    await t.open()
    return t


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


def test_approved_sale_status_repeats_the_same_rrn(sim: NexoTerminalSimulator) -> None:
    async def go() -> tuple[Any, Any]:
        t = await opened(sim.url)
        paid = await t.pay("tx-approve-1", 250_000, timeout=5)
        return paid, await t.transaction_status("tx-approve-1")

    paid, status = run(go())
    assert paid.outcome == PaymentOutcome.APPROVED
    assert paid.amount_rials == 250_000
    assert re.fullmatch(r"\d{12}", paid.rrn) and re.fullmatch(r"\d{6}", paid.stan)
    assert paid.masked_pan == "603799******1234"
    assert status.outcome == PaymentOutcome.APPROVED
    assert (status.rrn, status.stan, status.poi_reference) == (paid.rrn, paid.stan, paid.poi_reference)
    assert sim.net_charged("tx-approve-1") == 250_000


def test_lost_response_raises_timeout_and_status_says_approved(sim: NexoTerminalSimulator) -> None:
    sim.set_mode("lost-response")

    async def go() -> Any:
        t = await opened(sim.url)
        with pytest.raises(CommandTimeout) as err:
            await t.pay("tx-lost-1", 90_000, timeout=5)
        assert isinstance(err.value, NoResponse) and err.value.error_code == "noResponse"
        assert t.state == DeviceState.ONLINE
        return await t.transaction_status("tx-lost-1")

    status = run(go())
    assert status.outcome == PaymentOutcome.APPROVED
    assert status.amount_rials == 90_000
    assert status.rrn == sim.ledger()[0]["rrn"]


def test_terminal_that_never_answers_times_out_and_the_sale_is_not_found_after_abort(sim: NexoTerminalSimulator) -> None:
    sim.set_mode("timeout")

    async def go() -> tuple[Any, Any, NexoTerminal]:
        t = await opened(sim.url)
        with pytest.raises(CommandTimeout) as err:
            await t.pay("tx-hang-1", 40_000, timeout=0.4)
        assert not isinstance(err.value, NoResponse)
        during = await t.transaction_status("tx-hang-1")
        await t.abort("tx-hang-1")
        await asyncio.sleep(0.2)
        return during, await t.transaction_status("tx-hang-1"), t

    during, after, t = run(go())
    assert during.outcome == PaymentOutcome.IN_PROGRESS
    assert after.outcome == PaymentOutcome.NOT_FOUND
    assert sim.ledger() == []
    assert t.counters["faults"] == 1


def test_decline_mode_returns_declined_with_refusal(sim: NexoTerminalSimulator) -> None:
    sim.set_mode("decline")

    async def go() -> tuple[Any, Any]:
        t = await opened(sim.url)
        return await t.pay("tx-dec-1", 50_000, timeout=5), await t.transaction_status("tx-dec-1")

    paid, status = run(go())
    assert paid.outcome == PaymentOutcome.DECLINED and paid.error_condition == "Refusal"
    assert status.outcome == PaymentOutcome.DECLINED
    assert sim.net_charged("tx-dec-1") == 0


def test_amount_ending_in_13_thousand_rials_is_declined_in_approve_mode(sim: NexoTerminalSimulator) -> None:
    async def go() -> tuple[Any, Any]:
        t = await opened(sim.url)
        return await t.pay("tx-a", 113_000, timeout=5), await t.pay("tx-b", 114_000, timeout=5)

    declined, approved = run(go())
    assert declined.outcome == PaymentOutcome.DECLINED
    assert approved.outcome == PaymentOutcome.APPROVED


def test_busy_terminal_raises_device_busy_and_records_nothing(sim: NexoTerminalSimulator) -> None:
    sim.set_mode("busy")

    async def go() -> Any:
        t = await opened(sim.url)
        with pytest.raises(DeviceBusy):
            await t.pay("tx-busy-1", 10_000, timeout=5)
        return await t.transaction_status("tx-busy-1")

    assert run(go()).outcome == PaymentOutcome.NOT_FOUND
    assert sim.ledger() == []


def test_malformed_answer_is_protocol_error_and_hardware_error_until_a_good_answer(sim: NexoTerminalSimulator) -> None:
    sim.set_mode("once-malformed")

    async def go() -> list[str]:
        t = await opened(sim.url)
        states: list[str] = []
        with pytest.raises(ProtocolError):
            await t.pay("tx-bad-1", 10_000, timeout=5)
        states.append(t.state)
        await t.transaction_status("tx-bad-1")
        states.append(t.state)
        return states

    assert run(go()) == [DeviceState.HARDWARE_ERROR, DeviceState.ONLINE]


def test_reversal_is_idempotent_and_nets_to_zero(sim: NexoTerminalSimulator) -> None:
    async def go() -> list[Any]:
        t = await opened(sim.url)
        await t.pay("tx-rev-1", 70_000, timeout=5)
        first = await t.reverse("tx-rev-1", 70_000)
        second = await t.reverse("tx-rev-1", 70_000)
        fresh = terminal(sim.url)  # a restarted kiosk knows nothing but the reference
        await fresh.open()
        third = await fresh.reverse("tx-rev-1", 70_000)
        return [first, second, third, await t.transaction_status("tx-rev-1")]

    results = run(go())
    assert [r.outcome for r in results] == [PaymentOutcome.REVERSED] * 4
    assert sim.net_charged("tx-rev-1") == 0
    assert [e["status"] for e in sim.ledger()] == ["reversed"]


def test_reverse_of_a_sale_the_terminal_never_saw_is_not_found(sim: NexoTerminalSimulator) -> None:
    async def go() -> Any:
        t = await opened(sim.url)
        return await t.reverse("tx-never", 10_000)

    assert run(go()).outcome == PaymentOutcome.NOT_FOUND


def test_restarted_simulator_on_same_state_path_still_answers_status(state_path: Path) -> None:
    with NexoTerminalSimulator(state_path=state_path) as first:
        paid = run(_pay(first.url, "tx-crash-1", 30_000))
    with NexoTerminalSimulator(state_path=state_path) as second:
        status = run(_status(second.url, "tx-crash-1"))  # a new driver: no ServiceID remembered
        assert second.net_charged("tx-crash-1") == 30_000
    assert status.outcome == PaymentOutcome.APPROVED
    assert status.rrn == paid.rrn


async def _pay(url: str, ref: str, amount: int) -> Any:
    t = await opened(url)
    return await t.pay(ref, amount, timeout=5)


async def _status(url: str, ref: str) -> Any:
    t = await opened(url)
    return await t.transaction_status(ref)


def test_cancelled_pay_sends_abort_and_is_not_a_timeout(sim: NexoTerminalSimulator) -> None:
    sim.latency_s = 3.0

    async def go() -> tuple[bool, NexoTerminal, Any]:
        t = await opened(sim.url)
        task = asyncio.create_task(t.pay("tx-cancel-1", 20_000, timeout=10))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(50):  # the abort goes out in the background
            if "AbortRequest" in sim.requests_seen:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        return task.cancelled(), t, await t.transaction_status("tx-cancel-1")

    cancelled, t, status = run(go())
    assert cancelled
    assert "AbortRequest" in sim.requests_seen
    assert t.counters["canceled"] == 1 and t.counters["faults"] == 0  # no CommandTimeout recorded
    assert t.last_error is None
    assert status.outcome == PaymentOutcome.NOT_FOUND
    assert sim.ledger() == []


def test_terminal_down_is_offline_and_the_next_call_reconnects(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"

    async def go() -> list[str]:
        t = terminal(url)
        states = []
        with pytest.raises(DeviceOffline):
            await t.open()
        states.append(t.state)
        with pytest.raises(DeviceOffline):
            await t.pay("tx-off-1", 10_000, timeout=3)
        states.append(t.state)
        with NexoTerminalSimulator(port=port, state_path=tmp_path / "s.sqlite"):
            paid = await t.pay("tx-off-1", 10_000, timeout=3)
            states.append(paid.outcome)
            states.append(t.state)
        return states

    assert run(go()) == [DeviceState.OFFLINE, DeviceState.OFFLINE, PaymentOutcome.APPROVED, DeviceState.ONLINE]


def test_same_reference_is_never_charged_twice(sim: NexoTerminalSimulator) -> None:
    async def go() -> tuple[Any, Any]:
        t = await opened(sim.url)
        return await t.pay("tx-dup", 10_000, timeout=5), await t.pay("tx-dup", 10_000, timeout=5)

    first, second = run(go())
    assert first.outcome == PaymentOutcome.APPROVED
    assert second.outcome == PaymentOutcome.DECLINED and second.error_condition == "NotAllowed"
    assert sim.net_charged("tx-dup") == 10_000


def test_once_mode_applies_to_the_next_payment_only(sim: NexoTerminalSimulator) -> None:
    sim.set_mode("once-decline")
    assert sim.mode == "once-decline"

    async def go() -> list[Any]:
        t = await opened(sim.url)
        return [await t.pay("tx-o1", 5_000, timeout=5), await t.pay("tx-o2", 5_000, timeout=5)]

    assert [r.outcome for r in run(go())] == [PaymentOutcome.DECLINED, PaymentOutcome.APPROVED]
    assert sim.mode == "approve"


def test_control_endpoint_drives_mode_and_lists_ledger_from_another_process(sim: NexoTerminalSimulator) -> None:
    r = requests.post(sim.url + "sim/mode", json={"mode": "decline"}, timeout=5)
    assert r.status_code == 200 and r.json() == {"mode": "decline"}
    bad = requests.post(sim.url + "sim/mode", json={"mode": "explode"}, timeout=5)
    assert bad.status_code == 400
    run(_pay(sim.url, "tx-ctl", 8_000))
    ledger = requests.get(sim.url + "sim/ledger", timeout=5).json()
    assert [(e["reference"], e["status"], e["poi_id"]) for e in ledger] == [("tx-ctl", "declined", POI)]


def test_unknown_simulator_mode_is_rejected() -> None:
    with pytest.raises(SimulatorModeError):
        NexoTerminalSimulator(mode="on-fire")


def test_ledger_file_never_holds_a_full_card_number(sim: NexoTerminalSimulator, state_path: Path) -> None:
    async def go() -> None:
        t = await opened(sim.url)
        for i in range(5):
            await t.pay(f"tx-pan-{i}", 10_000 + i * 1000, timeout=5)
        await t.reverse("tx-pan-0", 10_000)

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
        for ref, amount in (("tx", 0), ("tx", -5), ("tx", 10.5), ("", 1000)):
            with pytest.raises(InvalidData):
                await t.pay(ref, amount, timeout=5)  # type: ignore[arg-type]

    run(go())
    assert "PaymentRequest" not in sim.requests_seen


def test_missing_options_are_a_typed_config_error() -> None:
    with pytest.raises(InvalidData):
        NexoTerminal("terminal", url="http://127.0.0.1:1/")
