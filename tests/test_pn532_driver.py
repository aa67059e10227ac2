"""The real PN532 UART driver against the virtual PN532 over a pseudo-terminal, byte for byte:
wake-up, firmware, discovery, MIFARE auth and value ops, resync, NACK, resend, unplug."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from devices.base import (
    CommandTimeout,
    DeviceOffline,
    DeviceState,
    HealthLevel,
    StatusEvent,
)
from devices.pn532 import frames
from devices.pn532.driver import AccessDenied, AuthenticationError, CardRemoved, NoCard, PN532Reader
from devices.contracts import KeyType
from devices.mifare_classic import decode_value, encode_value
from devices.pn532.virtual import VirtualCard, VirtualPN532
from devices.transit_card.demo import issue_virtual_card
from devices.transit_card.keys import CardKeys
from devices.registry import driver_for

MASTER = bytes(range(32))
KEYS = CardKeys(MASTER)
UID = bytes.fromhex("a1b2c3d4")
OTHER_UID = bytes.fromhex("0badcafe")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def virtual() -> Iterator[VirtualPN532]:
    v = VirtualPN532(baud=None)
    v.start()
    yield v
    v.stop()


async def opened(v: VirtualPN532, **options: Any) -> PN532Reader:
    reader = PN532Reader("reader", port=v.port, timeout=0.5, **options)
    await reader.open()
    return reader


def test_config_type_pn532_uart_builds_this_driver() -> None:
    assert driver_for("pn532-uart") is PN532Reader


def test_open_wakes_configures_sam_and_reports_firmware_1_6(virtual: VirtualPN532) -> None:
    async def go() -> PN532Reader:
        reader = await opened(virtual)
        assert await reader.firmware_version() == (0x32, 1, 6, 7)
        await reader.close()
        return reader

    reader = run(go())
    assert reader.identity.model == "PN532" and reader.identity.firmware == "1.6"
    assert virtual.commands[:2] == [0x14, 0x02]  # SAMConfiguration first, as after a wake-up


def test_external_health_check_is_a_firmware_round_trip(virtual: VirtualPN532) -> None:
    async def go() -> tuple[Any, Any]:
        reader = await opened(virtual)
        healthy = await reader.check_health(HealthLevel.EXTERNAL)
        virtual.unplug()
        broken = await reader.check_health(HealthLevel.EXTERNAL)
        await reader.close()
        return healthy, broken

    healthy, broken = run(go())
    assert healthy.ok and healthy.data == {"firmware": "1.6"}
    assert not broken.ok and broken.state == DeviceState.OFFLINE


def test_open_with_pacing_at_115200_baud_works_the_same() -> None:
    with VirtualPN532(baud=115200) as v:
        async def go() -> str:
            reader = await opened(v)
            v.place(VirtualCard.blank(UID))
            card = await reader.select()
            await reader.close()
            return card.uid
        assert run(go()) == UID.hex()


def test_card_on_the_field_is_discovered_with_uid_atqa_sak_and_a_present_event(
        virtual: VirtualPN532) -> None:
    events: list[StatusEvent] = []

    async def go() -> Any:
        reader = await opened(virtual)
        reader.subscribe(events.append)
        assert await reader.card_present() is None
        virtual.place(VirtualCard.blank(UID))
        card = await reader.wait_for_card(timeout=1)
        virtual.remove()
        assert await reader.card_present() is None
        await reader.close()
        return card

    card = run(go())
    assert (card.uid, card.atqa, card.sak, card.card_type) == (UID.hex(), "0004", 0x08, "mifare-classic-1k")
    card_events = [e.changes for e in events if "card" in e.changes]
    assert card_events == [{"card": "present", "uid": UID.hex()}, {"card": "removed"}]


def test_wait_for_card_returns_when_the_card_arrives_later(virtual: VirtualPN532) -> None:
    async def go() -> str:
        reader = await opened(virtual, poll_interval=0.02)
        threading.Timer(0.2, virtual.place, args=(VirtualCard.blank(UID),)).start()
        card = await reader.wait_for_card(timeout=3)
        await reader.close()
        return card.uid

    assert run(go()) == UID.hex()


def test_wait_for_card_with_no_card_times_out_and_select_says_no_card(virtual: VirtualPN532) -> None:
    async def go() -> None:
        reader = await opened(virtual, poll_interval=0.02)
        with pytest.raises(CommandTimeout):
            await reader.wait_for_card(timeout=0.2)
        with pytest.raises(NoCard):
            await reader.select()
        await reader.close()

    run(go())


def _personalised(uid: bytes = UID, balance: int = 5000) -> VirtualCard:
    return issue_virtual_card(uid, MASTER, balance, "1000000001")


def test_diversified_keys_open_the_card_and_read_its_value_block(virtual: VirtualPN532) -> None:
    virtual.place(_personalised())

    async def go() -> bytes:
        reader = await opened(virtual)
        await reader.select()
        await reader.authenticate(4, KeyType.A, KEYS.key(UID, 1, KeyType.A), UID)
        block = await reader.read_block(4)
        await reader.close()
        return block

    assert decode_value(run(go())) == (5000, 4)


def test_wrong_key_fails_with_authentication_error(virtual: VirtualPN532) -> None:
    virtual.place(_personalised())

    async def go() -> None:
        reader = await opened(virtual)
        await reader.select()
        with pytest.raises(AuthenticationError):
            await reader.authenticate(4, KeyType.A, b"\xff" * 6, UID)
        # the card refused the key; the reader is as usable as before (the next citizen's card)
        assert reader.state == DeviceState.ONLINE and reader.last_error is not None
        await reader.close()

    run(go())


def test_one_cards_keys_do_not_open_another(virtual: VirtualPN532) -> None:
    virtual.place(_personalised(OTHER_UID))

    async def go() -> None:
        reader = await opened(virtual)
        await reader.select()
        for key_type in (KeyType.A, KeyType.B):
            with pytest.raises(AuthenticationError):
                await reader.authenticate(4, key_type, KEYS.key(UID, 1, key_type), OTHER_UID)
            await reader.select()  # a failed auth halts the card: select it again
        await reader.authenticate(4, KeyType.B, KEYS.key(OTHER_UID, 1, KeyType.B), OTHER_UID)
        await reader.close()

    run(go())


def test_value_ops_move_the_value_through_the_transfer_buffer(virtual: VirtualPN532) -> None:
    card = _personalised()
    virtual.place(card)

    async def go() -> None:
        reader = await opened(virtual)
        await reader.select()
        await reader.authenticate(4, KeyType.B, KEYS.key(UID, 1, KeyType.B), UID)
        await reader.decrement(4, 1200)
        assert decode_value(card.block(4))[0] == 5000  # nothing lands before TRANSFER
        await reader.transfer(4)
        await reader.increment(4, 200)
        await reader.transfer(4)
        await reader.decrement(4, 999)  # buffered, then replaced by RESTORE: never lands
        await reader.restore(4)
        await reader.transfer(4)
        await reader.write_block(5, bytes(range(16)))
        assert await reader.read_block(5) == bytes(range(16))
        await reader.halt()
        await reader.close()

    run(go())
    assert decode_value(card.block(4)) == (4000, 4)


def test_transfer_into_a_block_whose_access_bits_forbid_it_is_refused(virtual: VirtualPN532) -> None:
    card = _personalised()
    virtual.place(card)
    identity = card.block(6)

    async def go() -> None:
        reader = await opened(virtual)
        await reader.select()
        await reader.authenticate(4, KeyType.B, KEYS.key(UID, 1, KeyType.B), UID)
        await reader.restore(4)
        with pytest.raises(AccessDenied):
            await reader.transfer(6)  # block 6 (identity) is a data block (C1C2C3 = 100): no value ops
        await reader.close()

    run(go())
    assert card.block(6) == identity


def test_key_a_may_decrement_but_not_increment_or_write_the_purse(virtual: VirtualPN532) -> None:
    card = _personalised()
    virtual.place(card)
    key_a = KEYS.key(UID, 1, KeyType.A)

    async def go() -> None:
        reader = await opened(virtual)
        await reader.select()
        await reader.authenticate(4, KeyType.A, key_a, UID)
        await reader.decrement(4, 1)
        await reader.transfer(4)
        with pytest.raises(AccessDenied):
            await reader.increment(4, 1)
        await reader.select()
        await reader.authenticate(4, KeyType.A, key_a, UID)
        with pytest.raises(AccessDenied):
            await reader.write_block(4, encode_value(10**6, 4))
        await reader.close()

    run(go())
    assert decode_value(card.block(4))[0] == 4999


def test_garbage_bytes_before_a_response_are_skipped(virtual: VirtualPN532) -> None:
    async def go() -> tuple[int, int, int, int]:
        reader = await opened(virtual)
        virtual.garbage_before_next_response(b"\x55\xff\x00\x00\xff\x09\x13\xd5\x00\xff")
        version = await reader.firmware_version()
        await reader.close()
        return version

    assert run(go()) == (0x32, 1, 6, 7)


def test_a_false_frame_header_in_line_noise_does_not_hide_the_response(virtual: VirtualPN532) -> None:
    async def go() -> tuple[int, int, int, int]:
        reader = await opened(virtual)
        # noise that claims a 64-byte frame is followed by the real (short) answer
        virtual.garbage_before_next_response(b"\x00\x00\xff\x40\xc0\xd5\x03")
        version = await reader.firmware_version()
        await reader.close()
        return version

    assert run(go()) == (0x32, 1, 6, 7)


def test_card_data_that_looks_like_frames_reads_back_intact() -> None:
    tricky = frames.ACK + frames.NACK + b"\x00\xff\x00\xff"
    with VirtualPN532(baud=115200) as v:  # paced: the response arrives in pieces
        card = _personalised()
        card.blocks[6] = bytearray(tricky)
        v.place(card)

        async def go() -> bytes:
            reader = await opened(v)
            await reader.select()
            await reader.authenticate(4, KeyType.A, KEYS.key(UID, 1, KeyType.A), UID)
            data = await reader.read_block(6)
            await reader.close()
            return data

        assert run(go()) == tricky


def test_nack_from_the_pn532_makes_the_driver_resend(virtual: VirtualPN532) -> None:
    async def go() -> PN532Reader:
        reader = await opened(virtual)
        virtual.nack_next(1)
        assert await reader.firmware_version() == (0x32, 1, 6, 7)
        await reader.close()
        return reader

    reader = run(go())
    assert reader.counters["nacks"] == 1
    assert virtual.commands.count(0x02) == 2  # open + the resent one (the NACKed one never ran)


def test_corrupt_response_is_nacked_and_the_pn532_resends_it(virtual: VirtualPN532) -> None:
    async def go() -> PN532Reader:
        reader = await opened(virtual)
        virtual.corrupt_next_response()
        assert await reader.firmware_version() == (0x32, 1, 6, 7)
        await reader.close()
        return reader

    assert run(go()).counters["checksum_errors"] == 1


def test_lost_ack_makes_the_driver_send_the_command_once_more(virtual: VirtualPN532) -> None:
    async def go() -> PN532Reader:
        reader = await opened(virtual)
        virtual.ignore_next(1)
        assert await reader.firmware_version() == (0x32, 1, 6, 7)
        virtual.ignore_next(2)
        with pytest.raises(CommandTimeout):
            await reader.firmware_version()
        await reader.close()
        return reader

    assert run(go()).counters["ack_timeouts"] == 3


def test_card_leaving_mid_write_is_card_removed_and_a_removed_event(virtual: VirtualPN532) -> None:
    card = _personalised()
    virtual.place(card)
    events: list[dict[str, Any]] = []

    async def go() -> None:
        reader = await opened(virtual)
        reader.subscribe(lambda e: events.append(e.changes))
        await reader.select()
        await reader.authenticate(4, KeyType.B, KEYS.key(UID, 1, KeyType.B), UID)
        virtual.tear_next_write(after_bytes=0)
        with pytest.raises(CardRemoved):
            await reader.write_block(5, bytes(16))
        with pytest.raises(NoCard):
            await reader.select()
        await reader.close()

    run(go())
    assert {"card": "removed"} in events
    assert virtual.torn_card is card


def test_unplug_mid_command_is_device_offline_and_replug_works(virtual: VirtualPN532) -> None:
    async def go() -> PN532Reader:
        reader = await opened(virtual)
        virtual.ignore_next(3)  # the command hangs waiting for its ACK…
        threading.Timer(0.03, virtual.unplug).start()  # …when the cable is pulled
        with pytest.raises(DeviceOffline):
            await reader.firmware_version()
        assert reader.state == DeviceState.OFFLINE
        with pytest.raises(DeviceOffline):
            await reader.firmware_version()  # refused while offline, no hang
        virtual.replug()
        await reader.open()
        assert reader.state == DeviceState.ONLINE
        virtual.place(VirtualCard.blank(UID))
        assert (await reader.select()).uid == UID.hex()
        await reader.close()
        return reader

    run(go())


def test_open_on_a_missing_port_is_device_offline(tmp_path: Any) -> None:
    async def go() -> PN532Reader:
        reader = PN532Reader("reader", port=str(tmp_path / "nothing"))
        with pytest.raises(DeviceOffline):
            await reader.open()
        return reader

    assert run(go()).state == DeviceState.OFFLINE


def test_open_when_nothing_answers_on_the_port_is_device_offline(virtual: VirtualPN532) -> None:
    virtual.ignore_next(10)

    async def go() -> PN532Reader:
        reader = PN532Reader("reader", port=virtual.port, timeout=0.3)
        with pytest.raises(DeviceOffline):
            await reader.open()
        return reader

    assert run(go()).state == DeviceState.OFFLINE


def test_a_late_ack_runs_the_command_twice_and_its_second_answer_is_not_the_next_commands(
        virtual: VirtualPN532) -> None:
    """The driver sends a command again when its ACK is late (ACK_TIMEOUT_S); the chip had
    it all along, so both copies run and answer. The second copy's answer (a WRITE's bare OK)
    must not be read as the next command's (a READ's 16 bytes): found in a full test run on a
    busy machine as "READ returned 0 bytes"."""
    card = _personalised()
    virtual.place(card)

    async def go() -> bytes:
        reader = await opened(virtual)
        await reader.select()
        await reader.authenticate(4, KeyType.B, KEYS.key(UID, 1, KeyType.B), UID)
        virtual.slow_next(0.15, count=2)  # past ACK_TIMEOUT_S (0.1 s): the driver resends the WRITE
        await reader.write_block(5, bytes(range(16)))
        data = await reader.read_block(5)
        await reader.close()
        return data

    assert run(go()) == bytes(range(16))
    assert virtual.commands.count(0x40) >= 4  # auth, write twice, read: the second WRITE ran
