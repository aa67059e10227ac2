"""The status coordinator (kiosk.status) on the real device layer: the ESC/POS driver against
the network printer emulator, the simulated dispenser, a PN532 reader that is not there.
Screens subscribe; the devices push; a service whose device is down is unavailable with the
reason, and comes back when the device does."""

from __future__ import annotations

import asyncio
from pathlib import Path

from devices.base import DeviceState
from devices.contracts import DeviceConfig
from devices.manager import DeviceManager
from devices.printer.emulator import NetworkPrinterEmulator
from kiosk.messages_ui import render
from kiosk.status import Reason, StatusCoordinator, judge


def test_a_published_device_is_judged_and_services_follow() -> None:
    now = [1000.0]
    c = StatusCoordinator(clock=lambda: now[0])
    seen: list[dict[str, bool]] = []
    remove = c.add_listener(lambda co: seen.append({s: st.available for s, st in co.services.items()}))
    assert not c.service("fee_payment").available  # no terminal yet
    assert c.service("fee_payment").reason == Reason("status.not_installed", {"device": "device.PaymentTerminal"})

    c.publish("terminal", device_class="PaymentTerminal", state=DeviceState.ONLINE)
    assert c.service("fee_payment").available and c.service("qr_ticket").available
    assert c.devices["terminal"].last_ok_at == 1000.0
    assert seen[-1]["fee_payment"] is True

    now[0] = 1010.0
    c.publish("terminal", device_class="PaymentTerminal", state=DeviceState.OFFLINE)
    fee = c.service("fee_payment")
    assert not fee.available and fee.blocked_by == "terminal"
    assert fee.reason == Reason("status.offline", {"device": "device.PaymentTerminal"})
    assert render(fee.reason.key, "fa", **fee.reason.params) == "کارتخوان بانکی در دسترس نیست"
    assert render(fee.reason.key, "en", **fee.reason.params) == "The card terminal is not available"
    assert c.devices["terminal"].last_ok_at == 1000.0  # the last time it was usable

    calls = len(seen)
    c.publish("terminal", device_class="PaymentTerminal", state=DeviceState.OFFLINE)
    assert len(seen) == calls  # nothing changed: nobody is called
    remove()
    c.publish("terminal", device_class="PaymentTerminal", state=DeviceState.ONLINE)
    assert len(seen) == calls and c.service("fee_payment").available


def test_consumables_make_a_device_unusable() -> None:
    assert judge("ReceiptPrinter", DeviceState.ONLINE, {"paper": "low"}) is None
    assert judge("ReceiptPrinter", DeviceState.ONLINE, {"paper": "out"}).key == "status.paper_out"
    assert judge("CardDispenser", DeviceState.ONLINE, {"stacker": "empty"}).key == "status.stacker_empty"
    assert judge("CardDispenser", DeviceState.ONLINE, {"stacker": "low"}) is None
    assert judge("CardReader", DeviceState.HARDWARE_ERROR, {}).key == "status.fault"


def test_a_blocker_stops_the_services_that_need_it() -> None:
    c = StatusCoordinator()
    for name, cls in (("terminal", "PaymentTerminal"), ("reader", "CardReader")):
        c.publish(name, device_class=cls, state=DeviceState.ONLINE)
    assert c.service("card_balance").available and c.service("fee_payment").available
    c.set_blocker("journal", Reason("service.out_of_service"))
    assert not c.service("fee_payment").available and not c.service("card_topup").available
    assert c.service("fee_payment").reason.key == "service.out_of_service"
    assert c.service("card_balance").available  # reading a balance moves no money
    c.set_blocker("journal", None)
    assert c.service("fee_payment").available


def test_the_real_device_layer_pushes_paper_stacker_and_offline(tmp_path: Path) -> None:
    async def scenario() -> None:
        with NetworkPrinterEmulator() as printer:
            host, port = printer.host, printer.port
            manager = DeviceManager([
                DeviceConfig("printer", "escpos", {"connection": "network", "host": host, "port": port,
                                                   "poll_interval_s": 0.05}),
                DeviceConfig("dispenser", "dispenser-sim", {"stacker": 1, "low_at": 0,
                                                            "state_path": str(tmp_path / "dispenser.json")}),
                DeviceConfig("reader", "pn532-uart", {"port": str(tmp_path / "no-such-tty")}),
            ], reconnect_initial=30)
            await manager.start()
            try:
                c = StatusCoordinator()
                changes: list[str] = []
                c.add_listener(lambda co: changes.append(str(co.devices.get("printer") and
                                                             co.devices["printer"].consumables.get("paper"))))
                c.attach(manager)
                assert c.devices["printer"].usable and c.devices["dispenser"].usable
                assert c.devices["reader"].reason == Reason("status.offline", {"device": "device.CardReader"})
                assert c.service("card_balance").reason.key == "status.offline"
                assert c.service("fee_payment").reason.key == "status.not_installed"  # no terminal configured

                printer.set_paper("out")  # the driver's own poll notices; the coordinator is told
                for _ in range(100):
                    if c.devices["printer"].consumables.get("paper") == "out":
                        break
                    await asyncio.sleep(0.05)
                assert c.devices["printer"].reason == Reason("status.paper_out", {"device": "device.ReceiptPrinter"})
                assert "out" in changes

                dispenser = manager.get("dispenser")
                await dispenser.dispense_to_reader()  # the last card: the stacker is empty now
                assert c.devices["dispenser"].consumables["stacker"] == "empty"
                assert c.service("card_sale").reason is not None
                assert c.devices["dispenser"].reason.key == "status.stacker_empty"
            finally:
                await manager.stop()

    asyncio.run(scenario())
