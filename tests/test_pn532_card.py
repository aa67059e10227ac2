"""The transit card layer (docs/card-layout.md) through the real driver and the virtual PN532:
value blocks, diversified keys, balance/credit/debit/log, and a tear at every write step of
credit and debit read back as the old or the new balance, never between."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from devices.base import InvalidData
from devices.contracts import KeyType
from devices.mifare_classic import (
    AccessBits,
    InvalidValueBlock,
    decode_value,
    encode_value,
)
from devices.pn532.driver import CardRemoved, PN532Reader
from devices.pn532.virtual import VirtualCard, VirtualPN532
from devices.transit_card import (
    BalanceLimit,
    CardBalance,
    CardCorrupt,
    CardProfile,
    InsufficientBalance,
    LogEntry,
    TransitCard,
    TxType,
    tx_ref_short,
)
from devices.transit_card.demo import DEMO_CARD_ISSUED, issue_virtual_card
from devices.transit_card.keys import CardKeys, diversify
from devices.transit_card.layout import COPY_1, COPY_2, MAX_BALANCE_RIALS, PURSE_ACCESS, PurseCopy
from devices.transit_card.records import CommitRecord

MASTER = b"city-kiosk test master key 32 B!"
KEYS = CardKeys(MASTER)
UID = bytes.fromhex("04a1b2c3")
SERIAL = "1234567890"
NOW = 1_790_000_000


def personalised(master: bytes = MASTER, balance: int = 5000) -> VirtualCard:
    return issue_virtual_card(UID, master, balance, SERIAL)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- pure codecs ---------------------------------------------------------------------------------


def test_value_block_layout_is_value_inverse_value_then_address_copies() -> None:
    assert encode_value(1000, 4).hex() == "e8030000" "17fcffff" "e8030000" "04fb04fb"
    assert decode_value(encode_value(-7, 9)) == (-7, 9)


@pytest.mark.parametrize("position", range(1, 12))
def test_a_value_block_torn_at_any_byte_is_detected(position: int) -> None:
    # values whose every byte differs, so each tear position leaves a genuinely mixed block
    old, new = encode_value(0x01020304, 4), encode_value(0x05060708, 4)
    torn = new[:position] + old[position:]
    with pytest.raises(InvalidValueBlock):
        decode_value(torn)


@pytest.mark.parametrize("position", range(12, 16))
def test_a_value_block_with_a_damaged_address_byte_is_detected(position: int) -> None:
    block = bytearray(encode_value(5000, 4))
    block[position] ^= 0x01
    with pytest.raises(InvalidValueBlock):
        decode_value(bytes(block))


def test_access_bits_encode_to_the_datasheet_bytes_and_back() -> None:
    assert AccessBits.decode(bytes.fromhex("ff0780")).encode() == bytes.fromhex("ff0780")
    assert AccessBits.decode(PURSE_ACCESS.encode()) == PURSE_ACCESS
    with pytest.raises(InvalidData):
        AccessBits.decode(bytes.fromhex("ff0781"))


def test_diversified_keys_differ_per_card_sector_and_key_type() -> None:
    keys = {diversify(MASTER, uid, sector, kt)
            for uid in (UID, bytes.fromhex("04a1b2c4")) for sector in (1, 2) for kt in KeyType}
    assert len(keys) == 8 and all(len(k) == 6 for k in keys)
    assert "city-kiosk" not in repr(KEYS)
    with pytest.raises(InvalidData):
        CardKeys(b"short")


def test_commit_record_and_log_entry_round_trip_and_reject_corruption() -> None:
    record = CommitRecord(7, 12_000, tx_ref_short("tx-7"), TxType.TOPUP)
    raw = record.encode()
    assert CommitRecord.decode(raw) == record
    with pytest.raises(InvalidData):
        CommitRecord.decode(raw[:3] + bytes([raw[3] ^ 1]) + raw[4:])
    entry = LogEntry(7, TxType.TRIP, 300, NOW, 42, b"\x01\x02")
    assert LogEntry.decode(entry.encode()) == entry
    assert LogEntry.decode(bytes(16)[:15] + b"\x01") is None


def test_personalised_card_holds_no_personal_data_only_purse_identity_and_keys() -> None:
    card = personalised()
    assert decode_value(card.block(COPY_1.value_block)) == (5000, 4)
    assert card.block(COPY_1.record_block) == card.block(COPY_2.record_block)
    assert card.block(7)[10:16] == KEYS.key(UID, 1, KeyType.B)
    # block 6: magic, version, the serial in BCD, profile, issue date in BCD — nothing personal
    assert card.block(6)[:12].hex() == "4901" "1234567890" "00" "20250321"


# --- through the reader --------------------------------------------------------------------------


@pytest.fixture
def virtual() -> Iterator[VirtualPN532]:
    v = VirtualPN532(baud=None)
    v.start()
    yield v
    v.stop()


def with_card(v: VirtualPN532, fn: Any, card: VirtualCard | None = None) -> Any:
    """Run `fn(transit_card)` with a reader opened on the virtual PN532."""
    if card is not None:
        v.place(card)

    async def go() -> Any:
        reader = PN532Reader("reader", port=v.port, timeout=0.5)
        await reader.open()
        try:
            return await fn(TransitCard(reader, KEYS, terminal_id=42, clock=lambda: NOW))
        finally:
            await reader.close()

    return run(go())


def test_read_balance_of_a_fresh_card(virtual: VirtualPN532) -> None:
    card = personalised()
    balance = with_card(virtual, lambda tc: tc.read_balance(), card)
    assert balance == CardBalance(UID.hex(), 5000, 0, "00000000", SERIAL, CardProfile.REGULAR, DEMO_CARD_ISSUED)


def test_credit_then_debit_updates_balance_counter_and_log(virtual: VirtualPN532) -> None:
    card = personalised()

    async def flow(tc: TransitCard) -> tuple[CardBalance, CardBalance, CardBalance, list[LogEntry]]:
        a = await tc.credit(20_000, "tx-topup-1")
        b = await tc.debit(3_500, "tx-trip-1")
        return a, b, await tc.read_balance(), await tc.read_log()

    a, b, c, entries = with_card(virtual, flow, card)
    assert (a.balance, a.seq, b.balance, b.seq) == (25_000, 1, 21_500, 2)
    assert c.balance == 21_500 and c.last_tx_ref == tx_ref_short("tx-trip-1").hex()
    assert [(e.seq, e.tx_type, e.amount, e.terminal, e.at) for e in entries] == [
        (2, TxType.TRIP, 3_500, 42, NOW), (1, TxType.TOPUP, 20_000, 42, NOW)]
    # one copy per transaction, the older one: the top-up went to copy 2, the trip to copy 1,
    # and copy 2 still holds the state before the trip
    assert _copy(card, COPY_1) == (21_500, 2) and _copy(card, COPY_2) == (25_000, 1)


def test_log_is_a_ring_of_the_six_most_recent(virtual: VirtualPN532) -> None:
    card = personalised(balance=100_000)

    async def flow(tc: TransitCard) -> list[LogEntry]:
        for i in range(8):
            await tc.debit(100 + i, f"trip-{i}")
        return await tc.read_log()

    entries = with_card(virtual, flow, card)
    assert [e.seq for e in entries] == [8, 7, 6, 5, 4, 3]
    assert [e.amount for e in entries] == [107, 106, 105, 104, 103, 102]


def test_retrying_a_credit_with_the_same_reference_never_adds_twice(virtual: VirtualPN532) -> None:
    card = personalised(balance=0)

    async def flow(tc: TransitCard) -> tuple[int, int]:
        await tc.credit(10_000, "tx-1")
        again = await tc.credit(10_000, "tx-1")
        return again.balance, again.seq

    assert with_card(virtual, flow, card) == (10_000, 1)


def test_debit_more_than_the_balance_is_refused_and_changes_nothing(virtual: VirtualPN532) -> None:
    card = personalised(balance=1000)
    before = [card.block(n) for n in range(64)]

    async def flow(tc: TransitCard) -> None:
        with pytest.raises(InsufficientBalance):
            await tc.debit(1001, "tx-2")
        with pytest.raises(BalanceLimit):
            await tc.credit(MAX_BALANCE_RIALS, "tx-3")
        with pytest.raises(InvalidData):
            await tc.credit(0, "tx-4")

    with_card(virtual, flow, card)
    assert [card.block(n) for n in range(64)] == before


def test_card_with_another_issuers_keys_is_refused(virtual: VirtualPN532) -> None:
    card = personalised(b"another issuer's master key 32B!", 1000)
    from devices.pn532.driver import AuthenticationError

    async def flow(tc: TransitCard) -> None:
        with pytest.raises(AuthenticationError):
            await tc.read_balance()

    with_card(virtual, flow, card)


def test_both_copies_torn_is_card_corrupt(virtual: VirtualPN532) -> None:
    card = personalised(balance=1000)
    card.blocks[COPY_1.value_block][0] ^= 1
    card.blocks[COPY_2.record_block][3] ^= 1

    async def flow(tc: TransitCard) -> None:
        with pytest.raises(CardCorrupt):
            await tc.read_balance()

    with_card(virtual, flow, card)


# --- tears -----------------------------------------------------------------------------------------

# block writes of one transaction, in order: log entry, the older copy's TRANSFER, its record
WRITE_STEPS = 3
TEAR_BYTES = (0, 5, 16)  # nothing landed, a torn block, the whole block landed but no answer


def _copy(card: VirtualCard, copy: PurseCopy) -> tuple[int, int]:
    """(balance, counter) of one consistent purse copy (fails on a torn one)."""
    value = decode_value(card.block(copy.value_block))[0]
    record = CommitRecord.decode(card.block(copy.record_block))
    assert record.balance == value, f"{copy.name} is not consistent"
    return record.balance, record.seq


@pytest.mark.parametrize("after_bytes", TEAR_BYTES)
@pytest.mark.parametrize("step", range(1, WRITE_STEPS + 1))
@pytest.mark.parametrize("kind", ["credit", "debit"])
def test_card_torn_at_any_write_step_reads_old_or_new_on_the_next_tap(
        virtual: VirtualPN532, kind: str, step: int, after_bytes: int) -> None:
    old, amount, ref = 5000, 700, f"tx-{kind}-{step}-{after_bytes}"
    new = old + amount if kind == "credit" else old - amount
    card = personalised(balance=old)
    before = card.block(COPY_1.value_block) + card.block(COPY_1.record_block)
    # the transaction is on the card once the written copy's commit record is whole
    committed = step == 3 and after_bytes == 16

    async def flow(tc: TransitCard) -> tuple[CardBalance, list[LogEntry], CardBalance]:
        virtual.tear_next_write(at_op=step, after_bytes=after_bytes)
        with pytest.raises(CardRemoved):
            await (tc.credit if kind == "credit" else tc.debit)(amount, ref)
        assert virtual.card is None
        virtual.place(card)  # the citizen taps again
        settled = await tc.read_balance()
        entries = await tc.read_log()
        retried = await (tc.credit if kind == "credit" else tc.debit)(amount, ref)
        return settled, entries, retried

    settled, entries, retried = with_card(virtual, flow, card)
    assert card.block(COPY_1.value_block) + card.block(COPY_1.record_block) == before  # never written
    assert settled.balance == (new if committed else old)
    assert settled.seq == (1 if committed else 0)
    if committed:
        assert [(e.seq, e.amount, e.tx_ref) for e in entries] == [(1, amount, tx_ref_short(ref)[:2])]
    else:
        assert entries == []
    assert (retried.balance, retried.seq) == (new, 1)  # the retry lands exactly once
    assert _copy(card, COPY_2) == (new, 1) and _copy(card, COPY_1) == (old, 0)


def test_reads_never_write_and_a_second_tear_still_leaves_the_committed_copy(virtual: VirtualPN532) -> None:
    card = personalised()

    async def flow(tc: TransitCard) -> tuple[CardBalance, CardBalance]:
        virtual.tear_next_write(at_op=2, after_bytes=5)  # copy 2's TRANSFER torn
        with pytest.raises(CardRemoved):
            await tc.debit(300, "tx-1")
        virtual.place(card)
        torn = await tc.read_balance()  # reads only: the torn copy stays torn
        assert card.block(COPY_2.value_block)[5:] == encode_value(5000, 4)[5:]
        virtual.tear_next_write(at_op=3, after_bytes=5)  # the next try tears its record
        with pytest.raises(CardRemoved):
            await tc.debit(300, "tx-1")
        virtual.place(card)
        return torn, await tc.debit(300, "tx-1")

    torn, done = with_card(virtual, flow, card)
    assert (torn.balance, torn.seq, torn.torn_copy) == (5000, 0, True)
    assert (done.balance, done.seq, done.torn_copy) == (4700, 1, False)
    assert _copy(card, COPY_2) == (4700, 1) and _copy(card, COPY_1) == (5000, 0)
