"""The DeviceManager with real drivers: the nexo driver against the loopback simulator and the
dispenser simulator; reconnects, the status map, health and polling."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from devices.base import DeviceOffline, DeviceState, HealthLevel, InvalidData, StatusEvent
from devices.contracts import CardDispenser, DeviceConfig, PaymentTerminal, ReceiptPrinter
from devices.dispenser.simulator import SimulatedDispenser
from devices.manager import DeviceManager, load_device_configs
from devices.terminal.simulator import NexoTerminalSimulator


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configs(port: int, **dispenser: Any) -> list[DeviceConfig]:
    return load_device_configs([
        {"name": "terminal", "type": "nexo-http", "url": f"http://127.0.0.1:{port}/", "sale_id": "KIOSK-7",
         "poi_id": "SIM-POI-1", "connect_timeout": 0.5, "allow_plain_http": True},
        {"name": "dispenser", "type": "dispenser-sim", "options": {"stacker": 20, **dispenser}},
    ])


async def until(cond: Callable[[], bool], seconds: float = 8.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


def test_one_unreachable_device_does_not_keep_the_others_offline() -> None:
    async def go() -> tuple[bool, bool, str]:
        async with DeviceManager(configs(free_port()), reconnect_initial=0.05, reconnect_max=0.2) as m:
            return m.is_available("dispenser"), m.is_available("terminal"), m.get("terminal").state

    dispenser_ok, terminal_ok, terminal_state = run(go())
    assert dispenser_ok and not terminal_ok
    assert terminal_state in (DeviceState.OFFLINE, DeviceState.STARTING)


def test_terminal_that_comes_up_later_is_reconnected_by_the_manager(tmp_path: Path) -> None:
    port = free_port()

    async def go() -> tuple[bool, bool, int]:
        async with DeviceManager(configs(port), reconnect_initial=0.05, reconnect_max=0.3) as m:
            before = m.is_available("terminal")
            await asyncio.sleep(0.3)  # a few failed attempts first
            with NexoTerminalSimulator(port=port, state_path=tmp_path / "t.sqlite"):
                came_back = await until(lambda: m.is_available("terminal"))
                return before, came_back, m.get("terminal").counters["reconnects"]

    before, came_back, reconnects = run(go())
    assert not before and came_back and reconnects == 1


def test_terminal_lost_during_use_is_reconnected_in_the_background(tmp_path: Path) -> None:
    port = free_port()

    async def go() -> list[Any]:
        sim = NexoTerminalSimulator(port=port, state_path=tmp_path / "t.sqlite")
        sim.start()
        async with DeviceManager(configs(port), reconnect_initial=0.05, reconnect_max=0.3) as m:
            term = m.first(PaymentTerminal)
            assert term is not None
            out: list[Any] = [m.is_available("terminal")]
            sim.stop()
            with pytest.raises(DeviceOffline):
                await term.pay(term.new_ref("tx-m1"), 10_000, timeout=3)
            out.append(term.state)
            sim = NexoTerminalSimulator(port=port, state_path=tmp_path / "t.sqlite")
            sim.start()
            try:
                out.append(await until(lambda: m.is_available("terminal")))  # no call needed to come back
                out.append((await term.pay(term.new_ref("tx-m1"), 10_000, timeout=3)).approved)
            finally:
                sim.stop()
            return out

    assert run(go()) == [True, DeviceState.OFFLINE, True, True]


def test_status_map_has_a_row_for_every_configured_device_even_an_unknown_type(tmp_path: Path) -> None:
    with NexoTerminalSimulator(state_path=tmp_path / "t.sqlite") as sim:
        cfgs = configs(sim.port) + [DeviceConfig("teleporter", "quantum-link")]

        async def go() -> dict[str, Any]:
            async with DeviceManager(cfgs) as m:
                return {k: v.to_dict() for k, v in m.status_map().items()}

        status = run(go())
    assert set(status) == {"terminal", "dispenser", "teleporter"}
    assert status["terminal"]["state"] == "online" and status["terminal"]["class"] == "PaymentTerminal"
    assert status["terminal"]["identity"]["serial"] == "SN-SIM-POI-1"
    assert status["dispenser"]["consumables"] == {"stacker": "ok", "bin": "ok"}
    assert status["teleporter"]["state"] == "offline"
    assert "quantum-link" in status["teleporter"]["last_error"]["message"]


def test_subscribers_see_every_devices_events_and_can_unsubscribe() -> None:
    async def go() -> tuple[list[StatusEvent], int]:
        seen: list[StatusEvent] = []
        m = DeviceManager(configs(free_port(), low_at=19), reconnect_initial=5.0)
        unsubscribe = m.subscribe(seen.append)
        await m.start()
        disp = m.first(CardDispenser)
        assert disp is not None
        await disp.dispense_to_reader()
        count = len(seen)
        unsubscribe()
        await disp.eject()
        n_after = len(seen)
        await m.stop()
        return seen[:count], n_after - count

    seen, after_unsubscribe = run(go())
    assert {e.device for e in seen} == {"terminal", "dispenser"}
    assert any(e.device == "dispenser" and e.changes == {"stacker": "low"} for e in seen)
    assert any(e.device == "terminal" and e.changes == {"state": "offline"} for e in seen)
    assert after_unsubscribe == 0


def test_first_prefers_an_available_device_and_knows_missing_contracts() -> None:
    async def go() -> tuple[Any, Any, Any]:
        async with DeviceManager(configs(free_port()), reconnect_initial=5.0) as m:
            return m.first(CardDispenser), m.first(ReceiptPrinter), m.first(PaymentTerminal)

    disp, printer, term = run(go())
    assert isinstance(disp, SimulatedDispenser) and printer is None
    assert term is not None and term.name == "terminal"  # offline, still returned: its calls raise typed errors


def test_get_unknown_name_is_a_clear_key_error() -> None:
    m = DeviceManager(configs(free_port()))
    with pytest.raises(KeyError, match="known"):
        m.get("scanner")
    assert not m.is_available("scanner")


def test_check_health_reports_every_device(tmp_path: Path) -> None:
    async def go() -> dict[str, bool]:
        async with DeviceManager(configs(free_port()) + [DeviceConfig("x", "nope")], reconnect_initial=5.0) as m:
            return {r.device: r.ok for r in await m.check_health(HealthLevel.EXTERNAL)}

    assert run(go()) == {"terminal": False, "dispenser": True, "x": False}


def test_poll_status_publishes_sensor_changes_every_interval() -> None:
    async def go() -> list[dict[str, Any]]:
        seen: list[StatusEvent] = []
        async with DeviceManager(configs(free_port(), poll_interval_s=0.05, low_at=2), reconnect_initial=5.0) as m:
            m.subscribe(seen.append)
            disp = m.get("dispenser")
            assert isinstance(disp, SimulatedDispenser)
            disp.stacker_count = 1  # a technician pulled cards out: only a poll notices
            await until(lambda: any("stacker" in e.changes for e in seen), 3.0)
        return [e.changes for e in seen if "stacker" in e.changes]

    assert run(go()) == [{"stacker": "low"}]


def test_load_device_configs_merges_options_and_rejects_bad_entries() -> None:
    cfg = load_device_configs([{"name": "p", "type": "escpos-file", "path": "/tmp/x", "options": {"width": 576}}])
    assert cfg == [DeviceConfig("p", "escpos-file", {"path": "/tmp/x", "width": 576})]
    for bad in ({"name": "p"}, [{"type": "x"}], [{"name": "a", "type": "t"}, {"name": "a", "type": "t"}],
                [{"name": "a", "type": "t", "options": []}], ["printer"]):
        with pytest.raises(InvalidData):
            load_device_configs(bad)  # type: ignore[arg-type]


def test_stop_cancels_pending_reconnects() -> None:
    async def go() -> int:
        m = DeviceManager(configs(free_port()), reconnect_initial=0.05)
        await m.start()
        await m.stop()
        return len([t for t in asyncio.all_tasks() if t.get_name().startswith("reconnect-")])

    assert run(go()) == 0


# --- the driver registry sits above base and the drivers -------------------------------------


def test_devices_base_imports_no_driver_and_the_registry_finds_every_builtin() -> None:
    import subprocess
    import sys

    code = ("import sys, devices.base, devices.contracts; "
            "print(sorted(m for m in sys.modules if m.startswith('devices.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == ["devices.base", "devices.contracts"]  # no driver came in with base
    from devices.registry import create, driver_for, registered_types

    assert {"escpos", "nexo-http", "dispenser-sim", "pn532-uart", "camera", "serial-scanner"} <= set(
        registered_types())
    assert driver_for("dispenser-sim") is SimulatedDispenser
    assert isinstance(create(DeviceConfig("d", "dispenser-sim", {})), SimulatedDispenser)
    with pytest.raises(KeyError, match="unknown device type 'nope'"):
        driver_for("nope")


def test_devices_base_has_no_import_of_the_drivers_anywhere_in_its_source() -> None:
    import ast

    import devices.base

    tree = ast.parse(Path(devices.base.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported |= {f"{node.module}.{a.name}" for a in node.names} | {node.module or ""}
    assert not {m for m in imported if "drivers" in m}, imported
