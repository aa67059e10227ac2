"""A serial device whose port goes away under a command ends it with a typed DeviceOffline,
never with what the wire happened to raise (termios.error, pyserial's TypeError on a handle
closed by another thread), and never leaves the device stuck busy. The real drivers on the real
emulators' pseudo-terminals, stopped or closed mid-operation."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from devices.base import DeviceOffline, DeviceState
from devices.pn532.driver import PN532Reader
from devices.pn532.virtual import VirtualCard, VirtualPN532
from devices.scanner.emulator import SerialScannerEmulator
from devices.scanner.serial_scanner import SerialScanner

UID = bytes.fromhex("a1b2c3d4")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _reader(v: VirtualPN532) -> PN532Reader:
    reader = PN532Reader("reader", port=v.port, timeout=0.5)
    await reader.open()
    return reader


def test_pn532_emulator_stopped_between_two_commands_is_device_offline_not_termios_error() -> None:
    v = VirtualPN532(baud=None)
    v.start()

    async def go() -> None:
        reader = await _reader(v)
        assert (await reader.firmware_version())[0] == 0x32
        v.stop()  # the emulator and its pty are gone: the next command's flush fails (EIO)
        with pytest.raises(DeviceOffline) as info:
            await reader.firmware_version()
        assert info.value.error_code == "portLost" and reader.port in str(info.value)
        assert reader.state == DeviceState.OFFLINE
        with pytest.raises(DeviceOffline):
            await reader.firmware_version()  # refused while offline, no hang
        await reader.close()

    try:
        run(go())
    finally:
        v.stop()


def test_pn532_emulator_stopped_while_waiting_for_a_card_is_device_offline() -> None:
    v = VirtualPN532(baud=None)
    v.start()

    async def go() -> None:
        reader = await _reader(v)
        threading.Timer(0.3, v.stop).start()  # mid-operation: the reader is polling the field
        with pytest.raises(DeviceOffline) as info:
            await asyncio.wait_for(reader.wait_for_card(timeout=20.0), 15)
        assert reader.port in str(info.value)
        assert reader.state == DeviceState.OFFLINE
        await reader.close()

    try:
        run(go())
    finally:
        v.stop()


def test_pn532_port_closed_while_a_command_waits_for_its_answer_is_device_offline() -> None:
    v = VirtualPN532(baud=None)
    v.start()

    async def go() -> None:
        reader = await _reader(v)
        for _ in range(5):
            v.ignore_next(3)  # the command waits for an ACK that never comes…
            command = asyncio.ensure_future(reader.firmware_version())
            await asyncio.sleep(0.05)
            await reader.close()  # …when the reader is closed under it
            with pytest.raises(DeviceOffline):
                await command
            assert reader.state == DeviceState.OFFLINE
            v.ignore_next(0)  # what the closed command left unheard is not the reopen's
            await reader.open()
        v.place(VirtualCard.blank(UID))
        assert (await reader.select()).uid == UID.hex()  # reopened: the wire works again
        await reader.close()

    try:
        run(go())
    finally:
        v.stop()


def test_scanner_closed_mid_read_is_device_offline_not_type_error() -> None:
    emulator = SerialScannerEmulator()
    emulator.start()

    async def go() -> list[str]:
        scanner = SerialScanner("scanner", port=emulator.port)
        seen: list[str] = []
        # the close lands inside pyserial's blocking read on some rounds and between two reads
        # on others: both must end the read the same typed way
        for i in range(20):
            await scanner.open()
            read = asyncio.ensure_future(scanner.read(timeout=10))
            await asyncio.sleep(0.1 + (i % 5) * 0.007)
            await scanner.close()
            with pytest.raises(DeviceOffline) as info:
                await read
            seen.append(info.value.error_code)
            assert scanner.state == DeviceState.OFFLINE
        await scanner.open()
        read = asyncio.ensure_future(scanner.read(timeout=10))
        await asyncio.sleep(0.1)
        emulator.send("1110012016193030711")
        assert (await read).text == "1110012016193030711"  # reopened: scans come through again
        await scanner.close()
        return seen

    try:
        seen = run(go())
    finally:
        emulator.stop()
    assert set(seen) == {"portClosed"}


def test_scanner_emulator_stopped_mid_read_is_device_offline_port_lost() -> None:
    emulator = SerialScannerEmulator()
    emulator.start()

    async def go() -> None:
        scanner = SerialScanner("scanner", port=emulator.port)
        await scanner.open()
        read = asyncio.ensure_future(scanner.read(timeout=10))
        await asyncio.sleep(0.2)
        emulator.stop()
        with pytest.raises(DeviceOffline) as info:
            await read
        assert info.value.error_code == "portLost"
        assert scanner.state == DeviceState.OFFLINE
        await scanner.close()

    try:
        run(go())
    finally:
        emulator.stop()
