"""The transit card layer (docs/card-layout.md) through the real driver and the virtual PN532:
value blocks, diversified keys, balance/credit/debit/log, and recovery from a tear at every
write step of credit and debit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from devices.base import InvalidData
from devices.pn532.card_layout import (
    BACKUP,
    MAX_BALANCE_RIALS,
    PRIMARY,
    PURSE_ACCESS,
    BalanceLimit,
    CardBalance,
    CardCorrupt,
    CommitRecord,
    InsufficientBalance,
    LogEntry,
    TransitCard,
    TxType,
    tx_ref_short,
)
from devices.pn532.driver import CardRemoved, PN532Reader
from devices.pn532.keys import CardKeys, KeyType, diversify
from devices.pn532.mifare import (
    AccessBits,
    InvalidValueBlock,
    decode_value,
    encode_value,
)
from devices.pn532.virtual import VirtualCard, VirtualPN532

MASTER = b"city-kiosk test master key 32 B!"
KEYS = CardKeys(MASTER)
UID = bytes.fromhex("04a1b2c3")
NOW = 1_790_000_000


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


def test_personalised_card_holds_no_personal_data_only_purse_and_keys() -> None:
    card = VirtualCard.blank(UID).personalise(MASTER, 5000)
    assert decode_value(card.block(PRIMARY.value_block)) == (5000, 4)
    assert card.block(PRIMARY.record_block) == card.block(BACKUP.record_block)
    assert card.block(7)[10:16] == KEYS.key(UID, 1, KeyType.B)


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
    card = VirtualCard.blank(UID).personalise(MASTER, 5000)
    balance = with_card(virtual, lambda tc: tc.read_balance(), card)
    assert balance == CardBalance(UID.hex(), 5000, 0, "00000000", False)


def test_credit_then_debit_updates_balance_counter_and_log(virtual: VirtualPN532) -> None:
    card = VirtualCard.blank(UID).personalise(MASTER, 5000)

    async def flow(tc: TransitCard) -> tuple[CardBalance, CardBalance, CardBalance, list[LogEntry]]:
        a = await tc.credit(20_000, "tx-topup-1")
        b = await tc.debit(3_500, "tx-trip-1")
        return a, b, await tc.read_balance(), await tc.read_log()

    a, b, c, entries = with_card(virtual, flow, card)
    assert (a.balance, a.seq, b.balance, b.seq) == (25_000, 1, 21_500, 2)
    assert c.balance == 21_500 and c.last_tx_ref == tx_ref_short("tx-trip-1").hex()
    assert [(e.seq, e.tx_type, e.amount, e.terminal, e.at) for e in entries] == [
        (2, TxType.TRIP, 3_500, 42, NOW), (1, TxType.TOPUP, 20_000, 42, NOW)]
    assert decode_value(card.block(BACKUP.value_block))[0] == 21_500


def test_log_is_a_ring_of_the_six_most_recent(virtual: VirtualPN532) -> None:
    card = VirtualCard.blank(UID).personalise(MASTER, 100_000)

    async def flow(tc: TransitCard) -> list[LogEntry]:
        for i in range(8):
            await tc.debit(100 + i, f"trip-{i}")
        return await tc.read_log()

    entries = with_card(virtual, flow, card)
    assert [e.seq for e in entries] == [8, 7, 6, 5, 4, 3]
    assert [e.amount for e in entries] == [107, 106, 105, 104, 103, 102]


def test_retrying_a_credit_with_the_same_reference_never_adds_twice(virtual: VirtualPN532) -> None:
    card = VirtualCard.blank(UID).personalise(MASTER, 0)

    async def flow(tc: TransitCard) -> tuple[int, int]:
        await tc.credit(10_000, "tx-1")
        again = await tc.credit(10_000, "tx-1")
        return again.balance, again.seq

    assert with_card(virtual, flow, card) == (10_000, 1)


def test_debit_more_than_the_balance_is_refused_and_changes_nothing(virtual: VirtualPN532) -> None:
    card = VirtualCard.blank(UID).personalise(MASTER, 1000)
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
    card = VirtualCard.blank(UID).personalise(b"another issuer's master key 32B!", 1000)
    from devices.pn532.driver import AuthenticationError

    async def flow(tc: TransitCard) -> None:
        with pytest.raises(AuthenticationError):
            await tc.read_balance()

    with_card(virtual, flow, card)


def test_both_copies_torn_is_card_corrupt(virtual: VirtualPN532) -> None:
    card = VirtualCard.blank(UID).personalise(MASTER, 1000)
    card.blocks[PRIMARY.value_block][0] ^= 1
    card.blocks[BACKUP.record_block][3] ^= 1

    async def flow(tc: TransitCard) -> None:
        with pytest.raises(CardCorrupt):
            await tc.read_balance()

    with_card(virtual, flow, card)


# --- tears -----------------------------------------------------------------------------------------

# block writes of one transaction, in order: log entry, backup TRANSFER, backup record,
# primary TRANSFER, primary record
WRITE_STEPS = 5
TEAR_BYTES = (0, 5, 16)  # nothing landed, a torn block, the whole block landed but no answer


def _copies_agree(card: VirtualCard) -> tuple[int, int]:
    values = {decode_value(card.block(c.value_block))[0] for c in (PRIMARY, BACKUP)}
    records = {CommitRecord.decode(card.block(c.record_block)) for c in (PRIMARY, BACKUP)}
    assert len(values) == 1 and len(records) == 1, "purse copies still disagree after recovery"
    record = records.pop()
    assert record.balance == values.pop()
    return record.balance, record.seq


@pytest.mark.parametrize("after_bytes", TEAR_BYTES)
@pytest.mark.parametrize("step", range(1, WRITE_STEPS + 1))
@pytest.mark.parametrize("kind", ["credit", "debit"])
def test_card_torn_at_any_write_step_is_settled_on_the_next_tap(
        virtual: VirtualPN532, kind: str, step: int, after_bytes: int) -> None:
    old, amount, ref = 5000, 700, f"tx-{kind}-{step}-{after_bytes}"
    new = old + amount if kind == "credit" else old - amount
    card = VirtualCard.blank(UID).personalise(MASTER, old)
    # the transaction is committed once the backup copy is whole (docs/card-layout.md)
    committed = step > 3 or (step == 3 and after_bytes == 16)

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
    assert settled.balance == (new if committed else old)
    assert settled.seq == (1 if committed else 0)
    if committed:
        assert [(e.seq, e.amount, e.tx_ref) for e in entries] == [(1, amount, tx_ref_short(ref)[:2])]
    else:
        assert entries == []
    assert (retried.balance, retried.seq) == (new, 1)  # the retry lands exactly once
    assert _copies_agree(card) == (new, 1)


@pytest.mark.parametrize("recovery_step", [1, 2])
def test_a_tear_during_recovery_is_recovered_on_the_tap_after(virtual: VirtualPN532,
                                                               recovery_step: int) -> None:
    card = VirtualCard.blank(UID).personalise(MASTER, 5000)

    async def flow(tc: TransitCard) -> CardBalance:
        virtual.tear_next_write(at_op=4, after_bytes=5)  # primary TRANSFER torn
        with pytest.raises(CardRemoved):
            await tc.debit(300, "tx-1")
        virtual.place(card)
        virtual.tear_next_write(at_op=recovery_step, after_bytes=5)  # the repair is torn too
        with pytest.raises(CardRemoved):
            await tc.read_balance()
        virtual.place(card)
        return await tc.read_balance()

    settled = with_card(virtual, flow, card)
    assert (settled.balance, settled.seq, settled.recovered) == (4700, 1, True)
    assert _copies_agree(card) == (4700, 1)
