"""SerialScanner against the pty emulator: real pyserial on a real tty, real framing."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.base import DeviceOffline, DeviceState, InvalidData
from devices.registry import driver_for
from devices.scanner import SerialScanner, SerialScannerEmulator


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def emulator():
    emu = SerialScannerEmulator()
    yield emu
    emu.stop()


async def _scanner(port: str, **options: Any) -> SerialScanner:
    scanner = SerialScanner("scanner", port=port, **options)
    await scanner.open()
    return scanner


@pytest.mark.parametrize("suffix", ["\r", "\n", "\r\n"])
def test_each_configured_suffix_ends_a_scan(suffix: str) -> None:
    emu = SerialScannerEmulator(suffix=suffix)
    port = emu.start()

    async def go() -> list[str]:
        scanner = await _scanner(port, suffix=suffix)
        emu.send("77483178001420000001770160")
        emu.send("https://kiosk.tehran.ir/v?tx=1")
        texts = [(await scanner.read(timeout=2)).text for _ in range(2)]
        await scanner.close()
        return texts

    try:
        assert run(go()) == ["77483178001420000001770160", "https://kiosk.tehran.ir/v?tx=1"]
    finally:
        emu.stop()


def test_suffix_names_cr_lf_crlf_are_accepted_and_others_refused() -> None:
    assert SerialScanner("s", port="/dev/null", suffix="CRLF").suffix == "\r\n"
    assert SerialScanner("s", port="/dev/null", suffix="cr").suffix == "\r"
    with pytest.raises(InvalidData):
        SerialScanner("s", port="/dev/null", suffix="\t")


def test_configured_prefix_is_stripped_from_the_scan() -> None:
    emu = SerialScannerEmulator(prefix="]Q1")
    port = emu.start()

    async def go() -> str:
        scanner = await _scanner(port, prefix="]Q1")
        emu.send("fee-slip-884213")
        code = await scanner.read(timeout=2)
        await scanner.close()
        return code.text

    try:
        assert run(go()) == "fee-slip-884213"
    finally:
        emu.stop()


def test_a_frame_split_across_writes_is_joined_into_one_scan(emulator: SerialScannerEmulator) -> None:
    port = emulator.start()

    async def go() -> str:
        scanner = await _scanner(port)
        task = asyncio.create_task(scanner.read(timeout=3))
        for piece in (b"7748317800", b"1420000001", b"770160\r", b"\n"):
            emulator.send(piece)
            await asyncio.sleep(0.08)
        code = await task
        await scanner.close()
        return code.text

    assert run(go()) == "77483178001420000001770160"


def test_bytes_that_are_not_utf8_are_invalid_data_and_the_scanner_stays_online(
        emulator: SerialScannerEmulator) -> None:
    port = emulator.start()

    async def go() -> tuple[DeviceState, int, str]:
        scanner = await _scanner(port)
        emulator.send(b"\xff\xfe\x80garbage\r\n")
        with pytest.raises(InvalidData) as info:
            await scanner.read(timeout=2)
        assert info.value.error_code == "barcodeInvalid"
        state = scanner.state
        emulator.send("after-the-garbage")
        text = (await scanner.read(timeout=2)).text
        no_reads = scanner.counters["no_reads"]
        await scanner.close()
        return state, no_reads, text

    state, no_reads, text = run(go())
    assert state == DeviceState.ONLINE
    assert no_reads == 1
    assert text == "after-the-garbage"


def test_the_same_code_within_the_repeat_window_is_reported_once(emulator: SerialScannerEmulator) -> None:
    port = emulator.start()

    async def go() -> tuple[list[str], dict[str, int]]:
        scanner = await _scanner(port, repeat_window_s=5.0)
        for text in ("slip-1", "slip-1", "slip-1", "slip-2"):
            emulator.send(text)
        texts = [(await scanner.read(timeout=2)).text for _ in range(2)]
        counters = dict(scanner.counters)
        await scanner.close()
        return texts, counters

    texts, counters = run(go())
    assert texts == ["slip-1", "slip-2"]
    assert counters["duplicates_dropped"] == 2
    assert counters["good_scans"] == 2


def test_unplugging_the_port_makes_the_scanner_offline_and_it_reopens_when_back(
        emulator: SerialScannerEmulator) -> None:
    port = emulator.start()

    async def go() -> None:
        scanner = await _scanner(port)
        emulator.send("before")
        assert (await scanner.read(timeout=2)).text == "before"
        pending = asyncio.create_task(scanner.read(timeout=3))
        await asyncio.sleep(0.1)
        emulator.unplug()
        with pytest.raises(DeviceOffline):
            await pending
        assert scanner.state == DeviceState.OFFLINE
        with pytest.raises(DeviceOffline):  # still unplugged: the reopen fails
            await scanner.read(timeout=1)
        emulator.replug()
        task = asyncio.create_task(scanner.read(timeout=3))
        await asyncio.sleep(0.2)
        emulator.send("after")
        assert (await task).text == "after"
        assert scanner.state == DeviceState.ONLINE
        await scanner.close()

    run(go())


def test_a_missing_port_is_offline_at_open(tmp_path) -> None:
    scanner = SerialScanner("scanner", port=str(tmp_path / "ttyNOPE"))
    with pytest.raises(DeviceOffline):
        run(scanner.open())
    assert scanner.state == DeviceState.OFFLINE


def test_serial_scanner_is_registered_for_config() -> None:
    assert driver_for("serial-scanner") is SerialScanner


def test_emulator_port_is_a_real_tty(emulator: SerialScannerEmulator) -> None:
    port = emulator.start()
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd)
    finally:
        os.close(fd)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.text(alphabet=st.characters(blacklist_characters="\r\n",
                                                     blacklist_categories=("Cs",)), min_size=1,
                              max_size=40), min_size=1, max_size=6),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
       suffix=st.sampled_from(["\r", "\n", "\r\n"]))
def test_any_split_of_the_byte_stream_yields_exactly_the_scanned_texts(
        texts: list[str], cuts: list[int], suffix: str) -> None:
    scanner = SerialScanner("fuzz", port="/dev/null", suffix=suffix, prefix="#")
    stream = b"".join(("#" + t + suffix).encode() for t in texts)
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    got = []
    for a, b in itertools.pairwise(bounds):
        scanner._buffer += stream[a:b]  # what _fill appends, chunk by chunk
        while (frame := scanner._take_frame()) is not None:
            code = scanner._decode_frame(frame)
            if code is not None:
                got.append(code.text)
    assert got == texts
