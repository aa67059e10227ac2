"""The virtual PN532 and MIFARE Classic card answer as the real ones do (issue 7, items 7-9).
Each test names the public source of its rule (docs/card-layout.md, "Strict card rules")."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from devices.contracts import KeyType
from devices.mifare_classic import AccessBits, MifareCmd, build_trailer, decode_value, encode_value
from devices.pn532 import frames
from devices.pn532.driver import AccessDenied, AuthenticationError, CardRemoved, PN532Reader
from devices.pn532.virtual import TEAR_STATUSES, VirtualCard, VirtualPN532
from devices.transit_card import CardKeys, TransitCard
from devices.transit_card.demo import issue_virtual_card

UID = bytes.fromhex("a1b2c3d4")
FF = b"\xff" * 6
KEY_B = bytes.fromhex("b0b1b2b3b4b5")
OK, TIMEOUT, INVALID_FRAME, AUTH_ERROR = 0x00, 0x01, 0x13, 0x14


def _card_with_sector1(data_bits: tuple[int, int, int], trailer_bits: tuple[int, int, int]) -> VirtualCard:
    """A blank card whose sector 1 (blocks 4..7) has key A FF…FF, key B B0…B5, blocks 4..6 under
    `data_bits` and its trailer under `trailer_bits`."""
    card = VirtualCard.blank(UID)
    access = AccessBits((data_bits, data_bits, data_bits, trailer_bits))
    card.blocks[7] = bytearray(build_trailer(FF, access, KEY_B))
    card.blocks[4] = bytearray(encode_value(1000, 4))
    return card


class Chip:
    """Drives the virtual PN532's command layer directly (no pty): status bytes as sent."""

    def __init__(self, card: VirtualCard) -> None:
        self.v = VirtualPN532(baud=None)
        self.v.place(card)
        self.card = card

    def select(self) -> None:
        assert self.v._dispatch(0x4A, b"\x01\x00")[0] == 1

    def mf(self, cmd: int, block: int, payload: bytes = b"") -> bytes:
        return self.v._dispatch(0x40, bytes([1, cmd, block]) + payload)

    def auth(self, block: int, key_type: str, key: bytes) -> int:
        cmd = MifareCmd.AUTH_A if key_type == "A" else MifareCmd.AUTH_B
        return self.mf(cmd, block, key + UID)[0]


@pytest.fixture
def virtual() -> Iterator[VirtualPN532]:
    v = VirtualPN532(baud=None)
    v.start()
    yield v
    v.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- item 7: status bytes ------------------------------------------------------------------------


def test_only_a_failed_auth_answers_0x14_and_the_card_then_stays_silent_until_reselected() -> None:
    """Source: PN532 user manual UM0701-02 §7.1 error table (0x14 = MIFARE authentication error;
    0x01 = target timeout), libnfc pn53x-internal.h EMFAUTH/ETIMEOUT; MF1S50 §9 (a card that
    fails authentication returns to idle and must be selected again)."""
    chip = Chip(VirtualCard.blank(UID))
    chip.select()
    assert chip.auth(4, "A", b"\x00" * 6) == AUTH_ERROR
    assert chip.mf(MifareCmd.READ, 4)[0] == TIMEOUT  # halted: no answer
    assert chip.auth(4, "A", FF) == TIMEOUT
    chip.select()
    assert chip.auth(4, "A", FF) == OK


def test_a_read_refused_by_the_access_bits_is_a_nak_reported_as_0x13_not_0x14() -> None:
    """Source: MF1S50 §8.7.3 table 8 (C1C2C3 = 111: never read); MF1S50 §9 (the card answers a
    refused command with a 4-bit NAK); UM0701-02 §7.1 / libnfc EINVRXFRAM 0x13 / nfcpy pn53x
    error table (0x13: the received frame is not valid)."""
    chip = Chip(_card_with_sector1((1, 1, 1), (0, 1, 1)))
    chip.select()
    assert chip.auth(4, "A", FF) == OK
    assert chip.mf(MifareCmd.READ, 4) == bytes([INVALID_FRAME])
    assert chip.mf(MifareCmd.READ, 5)[0] == TIMEOUT  # the NAK halted the card


def test_a_write_refused_by_the_access_bits_is_0x13_and_changes_nothing() -> None:
    """Source: MF1S50 §8.7.3 table 8 (C1C2C3 = 100: write with key B only); UM0701-02 §7.1 and
    libnfc EINVRXFRAM (0x13) for the card's NAK."""
    card = _card_with_sector1((1, 0, 0), (0, 1, 1))
    chip = Chip(card)
    chip.select()
    assert chip.auth(5, "A", FF) == OK
    assert chip.mf(MifareCmd.WRITE, 5, bytes(range(16))) == bytes([INVALID_FRAME])
    assert card.block(5) == bytes(16)


def test_the_driver_maps_0x13_from_a_card_still_present_to_access_denied(virtual: VirtualPN532) -> None:
    """Source: UM0701-02 §7.1 / libnfc pn53x-internal.h: 0x13 (EINVRXFRAM) is what the PN532
    reports for a NAK; the card still answering a select shows it was a refusal, not a tear."""
    virtual.place(_card_with_sector1((1, 1, 1), (0, 1, 1)))

    async def go() -> None:
        reader = PN532Reader("reader", port=virtual.port, timeout=0.5)
        await reader.open()
        await reader.select()
        await reader.authenticate(4, KeyType.A, FF, UID)
        with pytest.raises(AccessDenied):
            await reader.read_block(4)
        await reader.authenticate(4, KeyType.A, FF, UID)  # the card was selected again
        with pytest.raises(AuthenticationError):
            await reader.authenticate(4, KeyType.A, b"\x01" * 6, UID)
        await reader.close()

    run(go())


@pytest.mark.parametrize("status", TEAR_STATUSES)
def test_every_rf_error_of_a_card_leaving_mid_write_is_card_removed(
        virtual: VirtualPN532, status: int) -> None:
    """Source: UM0701-02 §7.1 error table and libnfc pn53x-internal.h (ETIMEOUT 0x01, ECRC 0x02,
    EPARITY 0x03, EFRAMING 0x05, EINVRXFRAM 0x13): the codes a frame cut off by the card leaving
    the field shows. Each must reach the driver as CardRemoved (settle on the next tap)."""
    card = VirtualCard.blank(UID)
    virtual.place(card)

    async def go() -> None:
        reader = PN532Reader("reader", port=virtual.port, timeout=0.5)
        await reader.open()
        await reader.select()
        await reader.authenticate(4, KeyType.A, FF, UID)
        virtual.tear_next_write(after_bytes=5, status=status)
        with pytest.raises(CardRemoved):
            await reader.write_block(5, bytes(range(16)))
        await reader.close()

    run(go())
    assert card.block(5) == bytes(range(5)) + bytes(11)


@pytest.mark.parametrize("status", [0x02, 0x13])
def test_a_transaction_torn_with_any_rf_error_is_settled_on_the_next_tap(
        virtual: VirtualPN532, status: int) -> None:
    """Source: UM0701-02 §7.1 (RF error codes 0x02, 0x13 besides 0x01); docs/card-layout.md
    "Reading: the newer consistent copy" — the outcome must not depend on which code."""
    master = b"city-kiosk test master key 32 B!"
    keys = CardKeys(master)
    card = issue_virtual_card(UID, master, 5000, "1000000001")
    virtual.place(card)

    async def go() -> Any:
        reader = PN532Reader("reader", port=virtual.port, timeout=0.5)
        await reader.open()
        try:
            tc = TransitCard(reader, keys, terminal_id=42, clock=lambda: 1_790_000_000)
            virtual.tear_next_write(at_op=3, after_bytes=16, status=status)  # commit record whole
            with pytest.raises(CardRemoved):
                await tc.debit(700, "tx-torn")
            virtual.place(card)
            return await tc.read_balance()
        finally:
            await reader.close()

    settled = run(go())
    assert (settled.balance, settled.seq) == (4300, 1)


# --- item 8: a strict card -----------------------------------------------------------------------


def test_block_0_cannot_change_by_write_nor_by_restore_and_transfer() -> None:
    """Source: MF1S50 §8.6.1 (manufacturer block, read-only after production) and §8.7.3
    ("the read-only condition is not affected by the access bits setting")."""
    card = VirtualCard.blank(UID)
    before = card.block(0)
    card.blocks[1] = bytearray(encode_value(7, 1))
    chip = Chip(card)
    chip.select()
    assert chip.auth(0, "A", FF) == OK
    assert chip.mf(MifareCmd.WRITE, 0, bytes(16))[0] == INVALID_FRAME
    chip.select()
    assert chip.auth(0, "A", FF) == OK
    assert chip.mf(MifareCmd.RESTORE, 1, bytes(4))[0] == OK
    assert chip.mf(MifareCmd.TRANSFER, 0)[0] == INVALID_FRAME
    assert card.block(0) == before


def test_a_trailer_write_applies_each_part_only_where_its_own_permission_allows() -> None:
    """Source: MF1S50 §8.7.2 table 7 (trailer C1C2C3 = 100: key A and key B writable with key B,
    access bits never writable); the Flipper Zero MIFARE Classic emulator
    (lib/nfc/protocols/mifare_classic.c) copies key A, access bits and key B separately."""
    card = _card_with_sector1((0, 0, 0), (1, 0, 0))
    old_access = card.block(7)[6:10]
    chip = Chip(card)
    chip.select()
    assert chip.auth(7, "B", KEY_B) == OK
    new_key_a, new_key_b = bytes.fromhex("a0a1a2a3a4a5"), bytes.fromhex("c0c1c2c3c4c5")
    assert chip.mf(MifareCmd.WRITE, 7, new_key_a + bytes.fromhex("ff078069") + new_key_b)[0] == OK
    assert card.block(7) == new_key_a + old_access + new_key_b  # access bits stayed


def test_a_trailer_write_with_no_permission_at_all_is_refused() -> None:
    """Source: MF1S50 §8.7.2 table 7 (C1C2C3 = 100: key A may write nothing in the trailer);
    Flipper Zero mifare_classic listener ("check if any writing is allowed")."""
    card = _card_with_sector1((0, 0, 0), (1, 0, 0))
    before = card.block(7)
    chip = Chip(card)
    chip.select()
    assert chip.auth(7, "A", FF) == OK
    assert chip.mf(MifareCmd.WRITE, 7, bytes(16))[0] == INVALID_FRAME
    assert card.block(7) == before


def test_auth_with_a_readable_key_b_succeeds_but_every_later_access_is_refused() -> None:
    """Source: MF1S50 §8.7.3, note [1] to tables 7 and 8: where key B may be read it cannot
    serve for authentication; the card refuses any memory access after such an authentication."""
    card = VirtualCard.blank(UID)  # transport configuration: key B readable
    chip = Chip(card)
    chip.select()
    assert chip.auth(4, "B", FF) == OK
    assert chip.mf(MifareCmd.READ, 4)[0] == INVALID_FRAME
    chip.select()
    assert chip.auth(4, "B", FF) == OK
    assert chip.mf(MifareCmd.WRITE, 5, bytes(range(16)))[0] == INVALID_FRAME
    assert card.block(5) == bytes(16)


def test_transfer_only_right_after_increment_decrement_or_restore() -> None:
    """Source: MF1S50 §9 (MIFARE Classic commands: INCREMENT, DECREMENT and RESTORE fill the
    transfer buffer, TRANSFER writes it; the value ops are each followed by a TRANSFER)."""
    card = _card_with_sector1((0, 0, 0), (0, 1, 1))
    chip = Chip(card)
    chip.select()
    assert chip.auth(4, "A", FF) == OK
    assert chip.mf(MifareCmd.DECREMENT, 4, (100).to_bytes(4, "little"))[0] == OK
    assert chip.mf(MifareCmd.READ, 4)[0] == OK  # a command in between empties the buffer
    assert chip.mf(MifareCmd.TRANSFER, 4)[0] == INVALID_FRAME
    assert decode_value(card.block(4))[0] == 1000
    chip.select()
    assert chip.auth(4, "A", FF) == OK
    assert chip.mf(MifareCmd.DECREMENT, 4, (100).to_bytes(4, "little"))[0] == OK
    assert chip.mf(MifareCmd.TRANSFER, 4)[0] == OK
    assert chip.mf(MifareCmd.TRANSFER, 4)[0] == INVALID_FRAME  # one TRANSFER per value op
    assert decode_value(card.block(4))[0] == 900


def test_a_corrupted_host_frame_gets_no_answer_at_all() -> None:
    """Source: UM0701-02 §6.2.1.3 (ACK/NACK): the PN532 acknowledges a frame only when its
    checksums hold; a corrupted frame is dropped silently and the host's ACK timeout resends."""
    v = VirtualPN532(baud=None)
    sent: list[bytes] = []
    v._send = sent.append  # type: ignore[method-assign]
    good = frames.build_command(0x02, b"")
    bad = bytearray(good)
    bad[-2] ^= 0x01  # DCS
    v._receive(bytes(bad))
    assert sent == []
    v._receive(good)
    assert sent[0] == frames.ACK and sent[1] == frames.build_response(0x02, bytes([0x32, 1, 6, 7]))


# --- 7-byte UIDs ---------------------------------------------------------------------------------

UID7 = bytes.fromhex("04112233445566")


def test_a_7_byte_uid_card_is_listed_with_its_7_bytes_and_double_size_atqa() -> None:
    """Source: ISO/IEC 14443-3 anticollision (cascade level 2 for double-size UIDs, ATQA UID-size
    bits: 0x0044); NXP AN10927; UM0701-02 §7.3.5 (InListPassiveTarget answers NFCIDLength
    and the whole UID)."""
    v = VirtualPN532(baud=None)
    v.place(VirtualCard.blank(UID7))
    assert v._dispatch(0x4A, b"\x01\x00") == bytes([1, 1, 0x00, 0x44, 0x08, 7]) + UID7


def test_a_7_byte_uid_card_authenticates_with_the_last_4_uid_bytes(virtual: VirtualPN532) -> None:
    """Source: NXP AN10927 (MIFARE and handling of UIDs): Crypto1 authentication of a 7-byte
    UID card uses the last 4 UID bytes; libnfc nfc-mfclassic.c copies abtUid + szUidLen - 4."""
    master = b"city-kiosk test master key 32 B!"
    card = issue_virtual_card(UID7, master, 1234, "1000000007")
    virtual.place(card)

    async def go() -> Any:
        reader = PN532Reader("reader", port=virtual.port, timeout=0.5)
        await reader.open()
        try:
            info = await reader.select()
            assert info.uid == UID7.hex() and info.card_type == "mifare-classic-1k"
            with pytest.raises(AuthenticationError):  # the first 4 bytes are not the key's salt
                await reader.authenticate(4, KeyType.A, FF, UID7[:4] + bytes(3))
            tc = TransitCard(reader, CardKeys(master), terminal_id=42, clock=lambda: 1_790_000_000)
            return await tc.read_balance()
        finally:
            await reader.close()

    assert run(go()).balance == 1234
