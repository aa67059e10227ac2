"""The City Kiosk transit card as a flow sees it, over any `CardReader` (devices.contracts):
balance with serial and profile, recent trips, tear-proof credit and debit, write plans a flow
journals before writing, the outcome of a plan after a tear, and personalisation of a new card.

Tear-proof writes (docs/card-layout.md): the card keeps two purse copies, each with the
transaction counter in its commit record. A read takes the newer consistent copy; a write
replaces the *other* copy (the older one, or a torn one) with the new state, log entry first.
The copy a read relies on is never being written, so a card pulled at any instant reads as
before or after the transaction, never between; the counters (and the transaction reference
in the commit record) tell which.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devices.base import InvalidData
from devices.contracts import CardInfo, CardReader, KeyType, WrongCard
from devices.mifare_classic import DEFAULT_KEY, VALUE_MAX, encode_value, sector_of, trailer_of
from devices.transit_card.errors import (
    AlreadyOnCard,
    BalanceLimit,
    CardChanged,
    InsufficientBalance,
    OutcomeUnknown,
    PersonaliseFailed,
)
from devices.transit_card.keys import CardKeys
from devices.transit_card.layout import (
    COPY_1,
    COPY_2,
    IDENTITY_BLOCK,
    LOG_BLOCKS,
    LOG_SECTORS,
    MAX_BALANCE_RIALS,
    PURSE_ADDR,
    CopyState,
    PurseCopy,
    copy_state,
    initial_blocks,
    log_slot,
    newer_and_older,
)
from devices.transit_card.records import (
    CardIdentity,
    CardProfile,
    CommitRecord,
    LogEntry,
    TxType,
    tx_ref_short,
)

log = logging.getLogger("devices.transit_card")


class WriteOutcome(enum.StrEnum):
    APPLIED = "applied"
    NOT_APPLIED = "not_applied"


@dataclass(frozen=True)
class CardBalance:
    uid: str
    balance: int
    seq: int  # the card's transaction counter
    last_tx_ref: str  # hex of tx_ref_short of the last committed transaction
    serial: str
    profile: CardProfile
    issued: dt.date
    torn_copy: bool = False  # one purse copy is torn (a write was interrupted); the next write replaces it

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "balance": self.balance, "seq": self.seq, "last_tx_ref": self.last_tx_ref,
                "serial": self.serial, "profile": str(self.profile), "issued": self.issued.isoformat(),
                "torn_copy": self.torn_copy}


@dataclass(frozen=True)
class WritePlan:
    """What a flow journals before a card write: which card, its counter and balance before,
    and the counter and balance the write will leave. `tx_ref` is the kiosk transaction id (the
    card keeps 4 bytes of its SHA-256)."""

    uid: str
    counter_before: int
    balance_before: int
    counter_after: int
    balance_after: int
    tx_ref: str
    tx_type: TxType
    serial: str = ""

    @property
    def amount(self) -> int:
        return abs(self.balance_after - self.balance_before)

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "counter_before": self.counter_before, "balance_before": self.balance_before,
                "counter_after": self.counter_after, "balance_after": self.balance_after,
                "tx_ref": self.tx_ref, "tx_type": self.tx_type.name.lower(), "serial": self.serial}

    @classmethod
    def from_dict(cls, data: Any) -> WritePlan:
        try:
            plan = cls(str(data["uid"]), int(data["counter_before"]), int(data["balance_before"]),
                       int(data["counter_after"]), int(data["balance_after"]), str(data["tx_ref"]),
                       TxType[str(data["tx_type"]).upper()], str(data.get("serial", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidData(f"not a card write plan: {exc}", error_code="badPlan") from exc
        if plan.counter_after != plan.counter_before + 1:
            raise InvalidData("a write plan moves the counter by one", error_code="badPlan")
        return plan


@dataclass(frozen=True)
class _Read:
    """Both purse copies and the raw identity block, as read in one session."""

    newer: CopyState
    older: CopyState
    identity_raw: bytes

    @property
    def record(self) -> CommitRecord:
        assert self.newer.record is not None
        return self.newer.record

    def copies(self) -> tuple[CopyState, CopyState]:
        return self.newer, self.older


class TransitCard:
    """Balance, credit, debit, log and personalisation of the card on `reader`.

    Every call starts a fresh session (select + authenticate), so a card that was lifted and
    put back is handled the same as a new tap. Reads use key A only and never write.
    """

    def __init__(self, reader: CardReader, keys: CardKeys, *, terminal_id: int = 0,
                 clock: Callable[[], float] = time.time, timeout: float = 2.0) -> None:
        self.reader = reader
        self.keys = keys
        self.terminal_id = terminal_id
        self.clock = clock
        self.timeout = timeout
        self._uid = b""
        self._authed: tuple[int, KeyType] | None = None

    # session ---------------------------------------------------------------------------------
    async def _begin(self, expect_uid: str | bytes | None = None) -> CardInfo:
        info = await self.reader.select(timeout=self.timeout)
        self._uid = bytes.fromhex(info.uid)
        self._authed = None
        if expect_uid is not None:
            want = expect_uid.hex() if isinstance(expect_uid, bytes) else expect_uid.lower()
            if info.uid.lower() != want:
                raise WrongCard("another card is on the reader (expected the card it was planned for)",
                                device=self.reader.name)
        return info

    async def _auth(self, sector: int, key_type: KeyType, key: bytes | None = None) -> None:
        if self._authed == (sector, key_type) and key is None:
            return
        self._authed = None
        await self.reader.authenticate(trailer_of(sector), key_type,
                                       key if key is not None else self.keys.key(self._uid, sector, key_type),
                                       self._uid, timeout=self.timeout)
        self._authed = (sector, key_type)

    async def _read_copy(self, copy: PurseCopy) -> CopyState:
        await self._auth(copy.sector, KeyType.A)
        value_raw = await self.reader.read_block(copy.value_block, timeout=self.timeout)
        record_raw = await self.reader.read_block(copy.record_block, timeout=self.timeout)
        state = copy_state(copy, value_raw, record_raw)
        if state.record is None:
            log.info("purse %s is not consistent (torn or never written)", copy.name)
        return state

    async def _read(self) -> _Read:
        first = await self._read_copy(COPY_1)
        identity_raw = await self.reader.read_block(IDENTITY_BLOCK, timeout=self.timeout)  # sector 1, key A
        second = await self._read_copy(COPY_2)
        newer, older = newer_and_older((first, second))
        return _Read(newer, older, identity_raw)

    def _balance(self, record: CommitRecord, read: _Read) -> CardBalance:
        identity = CardIdentity.decode(read.identity_raw)
        return CardBalance(self._uid.hex(), record.balance, record.seq, record.tx_ref.hex(),
                           identity.serial, identity.profile, identity.issued,
                           torn_copy=read.older.record is None)

    async def _read_log(self, record: CommitRecord) -> list[LogEntry]:
        entries: list[LogEntry] = []
        for sector in LOG_SECTORS:
            await self._auth(sector, KeyType.A)
            for block in LOG_BLOCKS:
                if sector_of(block) != sector:
                    continue
                entry = LogEntry.decode(await self.reader.read_block(block, timeout=self.timeout))
                if entry is not None:
                    entries.append(entry)
        window = {(record.seq - k) & 0xFFFF: k for k in range(len(LOG_BLOCKS)) if record.seq - k >= 1}
        committed = [e for e in entries if e.seq in window]
        committed.sort(key=lambda e: window[e.seq])
        # the newest entry must be the committed transaction's own; otherwise its slot was torn
        if committed and committed[0].seq == record.seq & 0xFFFF and committed[0].tx_ref != record.tx_ref[:2]:
            committed = committed[1:]
        return committed

    # reading -----------------------------------------------------------------------------------
    async def read_balance(self) -> CardBalance:
        """Balance, counter, serial and profile of the card on the reader (key A, no writes)."""
        await self._begin()
        read = await self._read()
        return self._balance(read.record, read)

    async def read_log(self) -> list[LogEntry]:
        """Committed entries, newest first (entries of a write that did not commit are left out)."""
        await self._begin()
        read = await self._read()
        return await self._read_log(read.record)

    async def read_card(self) -> tuple[CardBalance, list[LogEntry]]:
        """Balance and recent trips in one session (what a tap shows)."""
        await self._begin()
        read = await self._read()
        return self._balance(read.record, read), await self._read_log(read.record)

    # planned writes ----------------------------------------------------------------------------
    async def plan_credit(self, amount: int, tx_ref: str) -> WritePlan:
        """Read the card and say what crediting `amount` will write. Journal the plan, then
        `apply(plan)`; after a tear, `outcome_of(plan)` tells whether it landed."""
        return await self._plan(amount, tx_ref, TxType.TOPUP)

    async def plan_debit(self, amount: int, tx_ref: str) -> WritePlan:
        return await self._plan(-amount, tx_ref, TxType.TRIP)

    async def _plan(self, delta: int, tx_ref: str, tx_type: TxType) -> WritePlan:
        await self._begin()
        read = await self._read()
        current = read.record
        if current.tx_ref == tx_ref_short(tx_ref) and current.tx_type == tx_type:
            raise AlreadyOnCard(f"transaction already on the card (counter {current.seq})")
        return self._make_plan(current, delta, tx_ref, tx_type, read)

    def _make_plan(self, current: CommitRecord, delta: int, tx_ref: str, tx_type: TxType,
                   read: _Read) -> WritePlan:
        if delta == 0 or abs(delta) > MAX_BALANCE_RIALS:
            raise InvalidData(f"amount must be 1..{MAX_BALANCE_RIALS} rials", error_code="badAmount")
        new_balance = current.balance + delta
        if new_balance < 0:
            raise InsufficientBalance(f"balance {current.balance} is less than {-delta}")
        if new_balance > MAX_BALANCE_RIALS:
            raise BalanceLimit(f"balance would exceed {MAX_BALANCE_RIALS} rials")
        serial = CardIdentity.decode(read.identity_raw).serial
        return WritePlan(self._uid.hex(), current.seq, current.balance, current.seq + 1, new_balance,
                         tx_ref, tx_type, serial)

    async def apply(self, plan: WritePlan) -> CardBalance:
        """Write `plan` to its card. Already applied (a retry): nothing is written. Raises
        WrongCard for another card and CardChanged when the card's counter moved since."""
        await self._begin(plan.uid)
        read = await self._read()
        current = read.record
        if self._is_plans_record(current, plan):
            log.info("planned transaction already on card (counter %d), not applied again", current.seq)
            return self._balance(current, read)
        if (current.seq, current.balance) != (plan.counter_before, plan.balance_before):
            raise CardChanged(f"card counter is {current.seq}, the plan was made at {plan.counter_before}")
        return await self._write(plan, read)

    async def outcome_of(self, plan: WritePlan) -> WriteOutcome:
        """After a tear (or a crash): did the planned write land on the card? Reads only.

        A consistent copy holding the planned counter says it (its transaction reference and
        balance are the plan's, or another transaction took that counter). No copy at that
        counter: a newer copy still at `counter_before` means not applied; a card that moved
        further on is answered from its log (OutcomeUnknown once the log has rolled past)."""
        await self._begin(plan.uid)
        read = await self._read()
        for state in read.copies():
            if state.record is not None and state.record.seq == plan.counter_after:
                return WriteOutcome.APPLIED if self._is_plans_record(state.record, plan) else WriteOutcome.NOT_APPLIED
        current = read.record
        if current.seq == plan.counter_before:
            if current.balance != plan.balance_before:
                raise CardChanged(f"the card holds counter {current.seq} with another balance than planned")
            return WriteOutcome.NOT_APPLIED
        if current.seq < plan.counter_before:
            raise CardChanged(f"card counter {current.seq} is behind the plan's {plan.counter_before}")
        ref = tx_ref_short(plan.tx_ref)[:2]
        for entry in await self._read_log(current):
            if entry.seq == plan.counter_after & 0xFFFF:
                mine = entry.tx_ref == ref and entry.tx_type == plan.tx_type and entry.amount == plan.amount
                return WriteOutcome.APPLIED if mine else WriteOutcome.NOT_APPLIED
        raise OutcomeUnknown(f"card counter {current.seq} is past what its log shows of counter {plan.counter_after}")

    @staticmethod
    def _is_plans_record(record: CommitRecord, plan: WritePlan) -> bool:
        return (record.seq == plan.counter_after and record.tx_ref == tx_ref_short(plan.tx_ref)
                and record.tx_type == plan.tx_type and record.balance == plan.balance_after)

    async def _write(self, plan: WritePlan, read: _Read) -> CardBalance:
        """Log entry, then the older copy's value block, then its commit record (the commit
        point: until that block is whole the newer copy still reads as before)."""
        ref = tx_ref_short(plan.tx_ref)
        new = CommitRecord(plan.counter_after, plan.balance_after, ref, plan.tx_type)
        entry = LogEntry(new.seq, plan.tx_type, plan.amount, int(self.clock()), self.terminal_id, ref[:2])
        target = read.older
        # 1. log first: an entry newer than the committed counter is ignored until it commits
        slot = log_slot(new.seq)
        await self._auth(sector_of(slot), KeyType.B)
        await self.reader.write_block(slot, entry.encode(), timeout=self.timeout)
        # 2. the older copy's value: with the card's value operations when its value block is
        # well formed (the card checks the block and the arithmetic), else a plain write
        copy = target.copy
        await self._auth(copy.sector, KeyType.B)
        delta = None if target.value is None else plan.balance_after - target.value
        if delta is not None and abs(delta) <= VALUE_MAX:
            if delta >= 0:
                await self.reader.increment(copy.value_block, delta, timeout=self.timeout)
            else:
                await self.reader.decrement(copy.value_block, -delta, timeout=self.timeout)
            await self.reader.transfer(copy.value_block, timeout=self.timeout)
        else:
            await self.reader.write_block(copy.value_block, encode_value(plan.balance_after, PURSE_ADDR),
                                          timeout=self.timeout)
        # 3. its commit record: the transaction is on the card once this block is whole
        await self.reader.write_block(copy.record_block, new.encode(), timeout=self.timeout)
        log.info("card transaction committed seq=%d type=%s in %s", new.seq, plan.tx_type.name, copy.name)
        after = _Read(CopyState(copy, new, plan.balance_after), read.newer, read.identity_raw)
        return self._balance(new, after)

    # one-call credit and debit -----------------------------------------------------------------
    async def credit(self, amount: int, tx_ref: str) -> CardBalance:
        """Add `amount` rials. Idempotent by tx_ref: a retry after a torn write never adds twice."""
        return await self._transact(amount, tx_ref, TxType.TOPUP)

    async def debit(self, amount: int, tx_ref: str) -> CardBalance:
        return await self._transact(-amount, tx_ref, TxType.TRIP)

    async def _transact(self, delta: int, tx_ref: str, tx_type: TxType) -> CardBalance:
        await self._begin()
        read = await self._read()
        current = read.record
        if current.tx_ref == tx_ref_short(tx_ref) and current.tx_type == tx_type:
            log.info("transaction already on card (seq %d), not applied again", current.seq)
            return self._balance(current, read)
        plan = self._make_plan(current, delta, tx_ref, tx_type, read)
        return await self._write(plan, read)

    # a new card --------------------------------------------------------------------------------
    async def personalise(self, serial: str, profile: CardProfile | str, initial_balance: int, *,
                          uid: str | bytes | None = None, issued: dt.date | None = None) -> CardBalance:
        """Lay a blank card (transport keys) out as a transit card: both purse copies at
        `initial_balance`, the identity block, an empty log, then each sector's trailer with
        this card's diversified keys. Reads it back with the new keys to verify. A card that is
        not blank refuses the transport key (AuthenticationError)."""
        await self._begin(uid)
        identity = CardIdentity(serial, CardProfile(profile),
                                issued or dt.date.fromtimestamp(self.clock()))
        blocks = initial_blocks(self._uid, self.keys, initial_balance, identity)
        for sector in sorted({sector_of(b) for b in blocks}):
            await self._auth(sector, KeyType.A, DEFAULT_KEY)
            for block, data in blocks.items():
                if sector_of(block) == sector:  # data blocks first, the trailer (sorted last) locks it
                    await self.reader.write_block(block, data, timeout=self.timeout)
        balance = await self.read_balance()  # a fresh session, with the card's new keys
        if (balance.balance, balance.seq, balance.serial, balance.profile) != (initial_balance, 0, serial, identity.profile):
            raise PersonaliseFailed("the card did not read back what was written")
        return balance


async def personalise(reader: CardReader, uid: str | bytes, serial: str, profile: CardProfile | str,
                      initial_balance: int, *, keys: CardKeys, issued: dt.date | None = None,
                      terminal_id: int = 0, clock: Callable[[], float] = time.time,
                      timeout: float = 2.0) -> CardBalance:
    """Personalise the blank card `uid` on `reader` (see TransitCard.personalise); WrongCard if
    another card is on the reader."""
    card = TransitCard(reader, keys, terminal_id=terminal_id, clock=clock, timeout=timeout)
    return await card.personalise(serial, profile, initial_balance, uid=uid, issued=issued)
