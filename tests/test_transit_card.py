"""The transit card format over the CardReader contract (issue 8, "First" and items 2, 3, 4, 9):
a second reader implementation runs the same TransitCard; the identity block; personalisation
through a reader; write plans and their outcome after a tear at every write step; virtual cards
that persist across a restart. Sources and byte layouts in docs/card-layout.md."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devices.base import CommandTimeout, DeviceState, InvalidData
from devices.contracts import (
    AccessDenied,
    AuthenticationError,
    CardInfo,
    CardReader,
    CardRemoved,
    KeyType,
    NoCard,
    WrongCard,
)
from devices.mifare_classic import MifareCmd, auth_command, decode_value
from devices.mifare_classic_virtual import Answer, CardFileError, VirtualCard, VirtualField, load_cards
from devices.pn532.driver import PN532Reader
from devices.pn532.virtual import VirtualPN532
from devices.transit_card import (
    AlreadyOnCard,
    CardBalance,
    CardChanged,
    CardIdentity,
    CardKeys,
    CardProfile,
    IdentityCorrupt,
    OutcomeUnknown,
    TransitCard,
    TxType,
    WriteOutcome,
    WritePlan,
    demo_keys,
    personalise,
)
from devices.transit_card.demo import DEMO_CARD_SERIAL, DEMO_CARD_UID, issue_virtual_card
from devices.transit_card.layout import COPY_1, COPY_2, IDENTITY_BLOCK, PurseCopy
from devices.transit_card.records import CommitRecord

MASTER = b"city-kiosk test master key 32 B!"
KEYS = CardKeys(MASTER)
UID = bytes.fromhex("04a1b2c3")
UID7 = bytes.fromhex("04112233445566")
SERIAL = "1234567890"
ISSUED = dt.date(2025, 9, 23)
NOW = 1_790_000_000


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- a second CardReader: straight onto the virtual card model, no PN532, no frames -------------


class DirectReader(CardReader):
    """The smallest honest CardReader: each contract call is one command to the virtual card
    (devices/mifare_classic_virtual.py), its answer mapped to the contract's typed errors. It
    shares nothing with the PN532 driver; if TransitCard needed anything beyond the contract,
    it would fail here."""

    def __init__(self, field: VirtualField) -> None:
        super().__init__("direct")
        self.field = field
        self.calls: list[str] = []

    async def _open(self) -> None:
        return None

    def _info(self, card: VirtualCard) -> CardInfo:
        return CardInfo(card.uid.hex(), card.atqa.hex(), card.sak)

    def _do(self, name: str, cmd: int, block: int, payload: bytes = b"") -> bytes:
        self.calls.append(name)
        reply = self.field.command(cmd, bytes([block]) + payload)
        if reply.answer is Answer.OK:
            return reply.data
        if reply.answer is Answer.AUTH_FAILED:
            raise AuthenticationError(f"card refused the key for block {block}", device=self.name)
        if reply.answer is Answer.NAK:
            raise AccessDenied(f"card refused {name} on block {block}", device=self.name)
        raise CardRemoved(f"card left during {name} on block {block}", device=self.name)

    async def card_present(self) -> CardInfo | None:
        return None if self.field.card is None else self._info(self.field.card)

    async def wait_for_card(self, *, timeout: float = 30.0) -> CardInfo:
        card = await self.card_present()
        if card is None:
            raise CommandTimeout("no card", device=self.name)
        return card

    async def select(self, *, timeout: float | None = None) -> CardInfo:
        self.calls.append("select")
        card = self.field.select()
        if card is None:
            raise NoCard("no card on the reader", device=self.name)
        return self._info(card)

    async def authenticate(self, block: int, key_type: KeyType, key: bytes, uid: bytes,
                           *, timeout: float | None = None) -> None:
        self._do("authenticate", auth_command(key_type), block, key + uid[-4:])

    async def read_block(self, block: int, *, timeout: float | None = None) -> bytes:
        return self._do("read", MifareCmd.READ, block)

    async def write_block(self, block: int, data: bytes, *, timeout: float | None = None) -> None:
        self._do("write", MifareCmd.WRITE, block, data)

    async def increment(self, block: int, amount: int, *, timeout: float | None = None) -> None:
        self._do("increment", MifareCmd.INCREMENT, block, amount.to_bytes(4, "little"))

    async def decrement(self, block: int, amount: int, *, timeout: float | None = None) -> None:
        self._do("decrement", MifareCmd.DECREMENT, block, amount.to_bytes(4, "little"))

    async def restore(self, block: int, *, timeout: float | None = None) -> None:
        self._do("restore", MifareCmd.RESTORE, block, bytes(4))

    async def transfer(self, block: int, *, timeout: float | None = None) -> None:
        self._do("transfer", MifareCmd.TRANSFER, block)

    async def halt(self, *, timeout: float | None = None) -> None:
        self.calls.append("halt")
        self.field.reset_session()


def direct(field: VirtualField, fn: Callable[[TransitCard], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        reader = DirectReader(field)
        await reader.open()
        assert reader.state == DeviceState.ONLINE
        return await fn(TransitCard(reader, KEYS, terminal_id=42, clock=lambda: NOW))

    return run(go())


@pytest.fixture
def virtual() -> Iterator[VirtualPN532]:
    v = VirtualPN532(baud=None)
    v.start()
    yield v
    v.stop()


def via_pn532(v: VirtualPN532, fn: Callable[[TransitCard], Awaitable[Any]], keys: CardKeys = KEYS) -> Any:
    async def go() -> Any:
        reader = PN532Reader("reader", port=v.port, timeout=0.5)
        await reader.open()
        try:
            return await fn(TransitCard(reader, keys, terminal_id=42, clock=lambda: NOW))
        finally:
            await reader.close()

    return run(go())


def issued_card(uid: bytes = UID, balance: int = 5000, profile: CardProfile = CardProfile.REGULAR) -> VirtualCard:
    return issue_virtual_card(uid, MASTER, balance, SERIAL, profile, ISSUED)


def blocks(card: VirtualCard) -> list[bytes]:
    return [card.block(n) for n in range(64)]


def copy_of(card: VirtualCard, copy: PurseCopy) -> tuple[int, int] | None:
    """(balance, counter) of a consistent purse copy, None for a torn one."""
    try:
        value = decode_value(card.block(copy.value_block))[0]
        record = CommitRecord.decode(card.block(copy.record_block))
    except InvalidData:
        return None
    return (record.balance, record.seq) if record.balance == value else None


async def _session(tc: TransitCard) -> tuple[CardBalance, CardBalance, CardBalance, Any]:
    personalised = await tc.personalise(SERIAL, CardProfile.STUDENT, 10_000, issued=ISSUED)
    credited = await tc.credit(20_000, "tx-topup")
    plan = await tc.plan_debit(3_500, "tx-trip")
    debited = await tc.apply(plan)
    return personalised, credited, debited, await tc.read_card()


def test_transit_card_runs_unchanged_over_a_second_reader_and_leaves_the_same_card(virtual: VirtualPN532) -> None:
    field = VirtualField()
    by_direct = VirtualCard.blank(UID)
    field.place(by_direct)
    by_pn532 = VirtualCard.blank(UID)
    virtual.place(by_pn532)

    direct_result = direct(field, _session)
    pn532_result = via_pn532(virtual, _session)

    personalised, credited, debited, (balance, entries) = direct_result
    assert (personalised.balance, personalised.serial, personalised.profile) == (10_000, SERIAL, CardProfile.STUDENT)
    assert (credited.balance, credited.seq, debited.balance, debited.seq) == (30_000, 1, 26_500, 2)
    assert balance == debited and balance.issued == ISSUED
    assert [(e.seq, e.tx_type, e.amount) for e in entries] == [(2, TxType.TRIP, 3_500), (1, TxType.TOPUP, 20_000)]
    # the two readers did the same to the card, byte for byte, and told the same story
    assert direct_result == pn532_result
    assert blocks(by_direct) == blocks(by_pn532)


def test_the_pn532_driver_implements_every_card_operation_of_the_contract() -> None:
    needed = {"wait_for_card", "card_present", "select", "authenticate", "read_block", "write_block",
              "increment", "decrement", "restore", "transfer", "halt"}
    assert needed <= CardReader.__abstractmethods__
    assert not PN532Reader.__abstractmethods__ and not DirectReader.__abstractmethods__


def test_card_errors_are_the_contracts_and_still_importable_from_the_driver() -> None:
    from devices.pn532 import driver

    for error in (AuthenticationError, AccessDenied, NoCard, CardRemoved):
        assert getattr(driver, error.__name__) is error
        assert error.__module__ == "devices.contracts"


# --- identity block ----------------------------------------------------------------------------


def test_identity_block_round_trips_serial_profile_and_issue_date() -> None:
    for profile in CardProfile:
        identity = CardIdentity("0012345678", profile, ISSUED)
        raw = identity.encode()
        assert len(raw) == 16 and raw[2:7].hex() == "0012345678" and raw[8:12].hex() == "20250923"
        assert CardIdentity.decode(raw) == identity
    assert CardProfile.SENIOR.concession and CardProfile.STUDENT.concession and not CardProfile.REGULAR.concession


@pytest.mark.parametrize("position", range(16))
def test_an_identity_block_with_any_byte_changed_is_refused(position: int) -> None:
    raw = bytearray(CardIdentity(SERIAL, CardProfile.SENIOR, ISSUED).encode())
    raw[position] ^= 0x10
    with pytest.raises(IdentityCorrupt):
        CardIdentity.decode(bytes(raw))


@pytest.mark.parametrize("serial", ["123456789", "12345678901", "12345abcde", "١٢٣٤٥٦٧٨٩٠", ""])
def test_a_card_serial_is_exactly_ten_decimal_digits(serial: str) -> None:
    with pytest.raises(InvalidData):
        CardIdentity(serial, CardProfile.REGULAR, ISSUED)


def test_read_balance_returns_serial_and_profile_and_refuses_a_damaged_identity() -> None:
    card = issued_card(profile=CardProfile.SENIOR)
    field = VirtualField()
    field.place(card)
    balance = direct(field, lambda tc: tc.read_balance())
    assert (balance.serial, balance.profile, balance.issued, balance.balance) == (SERIAL, CardProfile.SENIOR, ISSUED, 5000)
    card.blocks[IDENTITY_BLOCK][4] ^= 0x01  # one serial digit changed, CRC not
    with pytest.raises(IdentityCorrupt):
        direct(field, lambda tc: tc.read_balance())


# --- personalisation through a reader ----------------------------------------------------------


@pytest.mark.parametrize("uid", [UID, UID7], ids=["4-byte", "7-byte"])
def test_personalise_a_blank_card_then_read_it_with_its_own_diversified_keys(virtual: VirtualPN532, uid: bytes) -> None:
    card = VirtualCard.blank(uid)
    virtual.place(card)

    async def go(tc: TransitCard) -> tuple[CardBalance, CardBalance]:
        done = await personalise(tc.reader, uid.hex(), SERIAL, "senior", 75_000, keys=KEYS, issued=ISSUED)
        return done, await tc.read_balance()

    done, again = via_pn532(virtual, go)
    assert done == again
    assert (again.uid, again.balance, again.seq, again.serial, again.profile) == (uid.hex(), 75_000, 0, SERIAL, CardProfile.SENIOR)
    assert blocks(card) == blocks(issue_virtual_card(uid, MASTER, 75_000, SERIAL, "senior", ISSUED))
    assert card.block(7)[10:16] == KEYS.key(uid, 1, KeyType.B)  # transport keys are gone


def test_personalise_refuses_another_card_and_a_card_that_is_not_blank() -> None:
    field = VirtualField()
    field.place(VirtualCard.blank(UID))

    async def other_uid(tc: TransitCard) -> None:
        await tc.personalise(SERIAL, CardProfile.REGULAR, 1000, uid="0badcafe")

    with pytest.raises(WrongCard):
        direct(field, other_uid)
    assert blocks(field.card) == blocks(VirtualCard.blank(UID))  # nothing written

    field.place(issued_card())
    before = blocks(field.card)
    with pytest.raises(AuthenticationError):  # already issued: the transport key opens nothing
        direct(field, lambda tc: tc.personalise(SERIAL, CardProfile.REGULAR, 1000))
    assert blocks(field.card) == before


# --- write plans and their outcome after a tear (item 2) ---------------------------------------

# block writes of one planned write: log entry, the older copy's value (TRANSFER), its record
WRITE_STEPS = 3
TEAR_BYTES = (0, 5, 16)


@pytest.mark.parametrize("after_bytes", TEAR_BYTES)
@pytest.mark.parametrize("step", range(1, WRITE_STEPS + 1))
@pytest.mark.parametrize("kind", ["credit", "debit"])
def test_outcome_of_a_plan_torn_at_any_write_step_says_whether_it_landed(
        virtual: VirtualPN532, kind: str, step: int, after_bytes: int) -> None:
    card = issued_card(balance=5000)
    virtual.place(card)
    landed = step == 3 and after_bytes == 16  # the commit record whole

    async def go(tc: TransitCard) -> tuple[WritePlan, WriteOutcome, CardBalance, CardBalance, WriteOutcome]:
        # the card was used once already, so the copies differ and the write goes to the older
        await tc.credit(1_000, "tx-earlier")
        plan = await (tc.plan_credit(700, "tx-1") if kind == "credit" else tc.plan_debit(700, "tx-1"))
        plan = WritePlan.from_dict(json.loads(json.dumps(plan.to_dict())))  # as journaled
        virtual.tear_next_write(at_op=step, after_bytes=after_bytes)
        with pytest.raises(CardRemoved):
            await tc.apply(plan)
        virtual.place(card)  # the same card, placed again
        outcome = await tc.outcome_of(plan)
        reread = await tc.read_balance()
        finished = await tc.apply(plan)  # roll forward; a no-op when it had landed
        return plan, outcome, reread, finished, await tc.outcome_of(plan)

    plan, outcome, reread, finished, final = via_pn532(virtual, go)
    after = 6000 + 700 if kind == "credit" else 6000 - 700
    assert (plan.uid, plan.counter_before, plan.balance_before, plan.counter_after, plan.balance_after) == (
        UID.hex(), 1, 6000, 2, after)
    assert plan.serial == SERIAL and plan.tx_type == (TxType.TOPUP if kind == "credit" else TxType.TRIP)
    assert outcome == (WriteOutcome.APPLIED if landed else WriteOutcome.NOT_APPLIED)
    # the re-read shows the newer consistent copy: exactly what the outcome said
    assert (reread.balance, reread.seq) == ((after, 2) if landed else (6000, 1))
    assert (finished.balance, finished.seq, final) == (after, 2, WriteOutcome.APPLIED)
    # copy 1 held the older state (counter 0) and took the write; copy 2 was never touched
    assert copy_of(card, COPY_1) == (after, 2) and copy_of(card, COPY_2) == (6000, 1)


def test_applying_a_plan_that_already_landed_writes_nothing() -> None:
    field = VirtualField()
    field.place(issued_card())

    async def go(tc: TransitCard) -> tuple[list[str], CardBalance]:
        plan = await tc.plan_credit(500, "tx-1")
        await tc.apply(plan)
        assert isinstance(tc.reader, DirectReader)
        tc.reader.calls.clear()
        again = await tc.apply(plan)
        return tc.reader.calls, again

    calls, again = direct(field, go)
    assert (again.balance, again.seq) == (5500, 1)
    assert "write" not in calls and "transfer" not in calls
    with pytest.raises(AlreadyOnCard):
        direct(field, lambda tc: tc.plan_credit(500, "tx-1"))


def test_outcome_of_a_plan_after_the_card_moved_on_comes_from_its_copies_then_its_log() -> None:
    field = VirtualField()
    card = issued_card(balance=100_000)
    field.place(card)

    async def go(tc: TransitCard) -> list[Any]:
        landed = await tc.plan_credit(1_000, "tx-landed")
        await tc.apply(landed)
        field.tear_next_write(at_op=2, after_bytes=16)  # value landed, record not: not applied
        torn = await tc.plan_debit(300, "tx-torn")
        with pytest.raises(CardRemoved):
            await tc.apply(torn)
        field.place(card)
        seen = [await tc.outcome_of(landed), await tc.outcome_of(torn)]
        await tc.debit(200, "tx-other")  # takes the counter the torn plan had planned for
        seen += [await tc.outcome_of(landed), await tc.outcome_of(torn)]
        for i in range(3):  # now only the log still shows counters 1 and 2
            await tc.debit(10, f"tx-later-{i}")
        seen += [await tc.outcome_of(landed), await tc.outcome_of(torn)]
        with pytest.raises(CardChanged):
            await tc.apply(torn)
        for i in range(6):  # the log rolls past them
            await tc.debit(10, f"tx-much-later-{i}")
        with pytest.raises(OutcomeUnknown):
            await tc.outcome_of(landed)
        return seen

    A, N = WriteOutcome.APPLIED, WriteOutcome.NOT_APPLIED
    assert direct(field, go) == [A, N, A, N, A, N]


def test_outcome_of_asks_the_planned_card_only() -> None:
    field = VirtualField()
    field.place(issued_card())
    plan = direct(field, lambda tc: tc.plan_credit(500, "tx-1"))
    field.place(issue_virtual_card(bytes.fromhex("0badcafe"), MASTER, 5000, "5555555555"))
    with pytest.raises(WrongCard):
        direct(field, lambda tc: tc.outcome_of(plan))
    with pytest.raises(WrongCard):
        direct(field, lambda tc: tc.apply(plan))


def test_a_journaled_plan_that_does_not_read_back_is_refused() -> None:
    good = WritePlan("04a1b2c3", 3, 100, 4, 600, "tx-1", TxType.TOPUP, SERIAL).to_dict()
    assert WritePlan.from_dict(good).amount == 500
    for broken in ({**good, "counter_after": 9}, {**good, "tx_type": "gift"}, {k: v for k, v in good.items() if k != "uid"}):
        with pytest.raises(InvalidData):
            WritePlan.from_dict(broken)


# --- virtual cards persist (item 9) ------------------------------------------------------------


def test_cards_survive_a_restart_of_the_virtual_reader_torn_write_included(tmp_path: Path) -> None:
    path = tmp_path / "cards.json"
    first = VirtualPN532(baud=None, cards_path=path)
    first.start()
    card4, card7 = issued_card(), issued_card(UID7, 9_000)
    first.place(card7)
    first.place(card4)
    try:
        plan = via_pn532(first, lambda tc: tc.plan_credit(2_500, "tx-1"))
        first.tear_next_write(at_op=3, after_bytes=16)  # landed, but no answer: UNCERTAIN

        async def tear(tc: TransitCard) -> None:
            with pytest.raises(CardRemoved):
                await tc.apply(plan)

        via_pn532(first, tear)
    finally:
        first.stop()  # a crash: nothing is saved on the way out that was not saved already
    image4 = blocks(card4)

    second = VirtualPN532(baud=None, cards_path=path)
    second.start()
    try:
        assert set(second.cards) == {UID.hex(), UID7.hex()} and second.card is None  # the tear took it out
        assert blocks(second.cards[UID.hex()]) == image4
        second.place_uid(UID.hex())
        assert via_pn532(second, lambda tc: tc.outcome_of(plan)) == WriteOutcome.APPLIED
        assert via_pn532(second, lambda tc: tc.read_balance()).balance == 7_500
        second.place_uid(UID7.hex())
        assert via_pn532(second, lambda tc: tc.read_balance()).balance == 9_000
    finally:
        second.stop()
    assert load_cards(path)[1] == UID7.hex()  # the card left in the field is remembered


def test_a_cards_file_that_is_not_ours_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "cards.json"
    path.write_text(json.dumps({"format": "something else", "cards": []}))
    with pytest.raises(CardFileError):
        VirtualField(path)
    path.write_text(json.dumps({"format": "city-kiosk/virtual-mifare-classic-cards", "version": 1,
                                "in_field": None, "cards": [{"uid": "04a1b2c3", "atqa": "0004", "sak": 8,
                                                             "blocks": ["00" * 16] * 63}]}))
    with pytest.raises(CardFileError):
        VirtualField(path)


def _sim(cards: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen([sys.executable, "-m", "kiosk.cli", "sim", "pn532", "--baud", "0",
                             "--cards", str(cards), *extra], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_kiosk_sim_pn532_with_cards_meets_the_same_card_after_a_restart(tmp_path: Path) -> None:
    cards = tmp_path / "cards.json"
    proc, info = _sim(cards, "--profile", "student")
    try:
        assert info["card"] == {"uid": DEMO_CARD_UID, "serial": DEMO_CARD_SERIAL, "profile": "student",
                                "balance_rials": 250_000, "counter": 0}

        async def top_up() -> CardBalance:
            reader = PN532Reader("reader", port=info["device"])
            await reader.open()
            try:
                return await TransitCard(reader, demo_keys()).credit(50_000, "tx-sim-1")
            finally:
                await reader.close()

        assert run(top_up()).balance == 300_000
    finally:
        _stop(proc)
    proc, info = _sim(cards, "--balance", "1")  # a kept card keeps its own balance
    _stop(proc)
    assert info["card"]["balance_rials"] == 300_000 and info["card"]["counter"] == 1


def test_the_back_office_seeds_its_demo_pending_load_for_the_demo_card() -> None:
    """The demo card (devices) and the back-office's demo pending load name one serial; the
    back-office may not import devices, so the value is written twice and checked here."""
    from backoffice.seed import DEMO_CARD_SERIAL as SEEDED
    from devices.transit_card.demo import DEMO_CARD_SERIAL

    assert SEEDED == DEMO_CARD_SERIAL
