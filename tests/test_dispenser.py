"""The card dispenser simulator behind the CardDispenser contract: movements, jams, empty stacker,
levels and the status events they publish."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from devices.base import DeviceState, InvalidData, MediaError, StatusEvent
from devices.registry import driver_for
from devices.dispenser.simulator import SimulatedDispenser


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def opened(**options: Any) -> tuple[SimulatedDispenser, list[StatusEvent]]:
    d = SimulatedDispenser("dispenser", **options)
    events: list[StatusEvent] = []
    d.subscribe(events.append)
    await d.open()
    return d, events


def test_registry_knows_the_dispenser_simulator() -> None:
    assert driver_for("dispenser-sim") is SimulatedDispenser


def test_dispense_eject_and_capture_move_cards_and_count() -> None:
    async def go() -> tuple[SimulatedDispenser, dict[str, Any]]:
        d, _ = await opened(stacker=10)
        await d.dispense_to_reader()
        assert d.card_at_reader
        await d.eject()
        await d.dispense_to_reader()
        await d.capture()
        return d, await d.levels()

    d, levels = run(go())
    assert levels == {"stacker": "ok", "stacker_count": 8, "bin": "ok", "bin_count": 1}
    assert (d.counters["dispensed"], d.counters["ejected"], d.counters["captured"]) == (2, 1, 1)
    assert not d.card_at_reader and d.state == DeviceState.ONLINE


def test_jam_fails_next_move_with_media_jam_and_user_error_until_cleared() -> None:
    async def go() -> list[Any]:
        d, events = await opened()
        d.inject_jam()
        with pytest.raises(MediaError) as err:
            await d.dispense_to_reader()
        seen: list[Any] = [err.value.error_code, d.state]
        with pytest.raises(MediaError):
            await d.dispense_to_reader()  # still jammed: a retry does not fix a wedged card
        d.clear_jam()
        seen.append(d.state)
        await d.dispense_to_reader()
        seen.append(d.card_at_reader)
        seen.append([e.changes for e in events if "transport" in e.changes])
        return seen

    code, jammed_state, cleared_state, card, transport = run(go())
    assert code == "mediaJam" and jammed_state == DeviceState.USER_ERROR
    assert cleared_state == DeviceState.ONLINE and card
    assert transport == [{"transport": "jammed"}, {"transport": "ok"}]


def test_empty_stacker_is_no_media_and_refill_brings_it_back() -> None:
    async def go() -> list[Any]:
        d, events = await opened(stacker=1, low_at=0)
        await d.dispense_to_reader()
        await d.eject()
        with pytest.raises(MediaError) as err:
            await d.dispense_to_reader()
        out: list[Any] = [err.value.error_code, d.state, (await d.levels())["stacker"]]
        d.refill(5)
        out += [d.state, (await d.levels())["stacker"]]
        out.append([e.changes for e in events if "stacker" in e.changes])
        return out

    code, state, level, state_after, level_after, stacker_events = run(go())
    assert (code, state, level) == ("noMedia", DeviceState.USER_ERROR, "empty")
    assert (state_after, level_after) == (DeviceState.ONLINE, "ok")
    assert stacker_events == [{"stacker": "ok"}, {"stacker": "empty"}, {"stacker": "ok"}]


def test_stacker_low_event_is_published_once_when_crossing_the_threshold() -> None:
    async def go() -> list[dict[str, Any]]:
        d, events = await opened(stacker=7, low_at=5)
        for _ in range(4):
            await d.dispense_to_reader()
            await d.capture()
        return [e.changes for e in events if "stacker" in e.changes]

    assert run(go()) == [{"stacker": "ok"}, {"stacker": "low"}]


def test_full_reject_bin_refuses_capture() -> None:
    async def go() -> str:
        d, _ = await opened(bin_capacity=1)
        await d.dispense_to_reader()
        await d.capture()
        await d.dispense_to_reader()
        with pytest.raises(MediaError) as err:
            await d.capture()
        return err.value.error_code

    assert run(go()) == "binFull"


def test_eject_without_a_card_is_invalid_data_and_keeps_device_online() -> None:
    async def go() -> DeviceState:
        d, _ = await opened()
        with pytest.raises(InvalidData):
            await d.eject()
        await d.dispense_to_reader()
        with pytest.raises(InvalidData):
            await d.dispense_to_reader()
        return d.state

    assert run(go()) == DeviceState.ONLINE


def test_bad_options_are_a_typed_config_error() -> None:
    with pytest.raises(InvalidData):
        SimulatedDispenser("dispenser", stacker="many")
    with pytest.raises(InvalidData):
        SimulatedDispenser("dispenser", stacker=-1)


def test_slow_move_times_out_as_command_timeout() -> None:
    from devices.base import CommandTimeout

    async def go() -> None:
        d, _ = await opened(move_s=1.0)
        with pytest.raises(CommandTimeout):
            await d.dispense_to_reader(timeout=0.1)

    run(go())
