"""The card sale kind: a new transit card (خرید کارت بلیت جدید), bought with a bank card,
personalised in the machine and handed over (docs/card-sale.md).

Journal states and what each holds:
  CREATED      CardSaleOrder: the card's serial (allocated before paying, so the signed
               receipt carries it), profile, card price and the initial value chosen
  PAYING/PAID  the shared money path; the dispenser moves a blank card to the read position
               only after PAID
  FULFILLING   the personalisation plan (SalePlan: the blank card's UID, serial, profile,
               initial balance), journaled before anything is written to the card
  UNCERTAIN    the card is personalised and verified and is being handed over (journaled
               before the eject): from here only the read position can say whether the
               citizen has it
  FULFILLED    the card was ejected; in the same commit the back-office's card_sale load is
               queued (it binds serial and UID, counter 0 → 0 as personalisation leaves it)
  POSTED       the back-office recorded it (tracking code)
  COMPLETED    receipt issued (or recovery finished it)
  REVERSING    the card was not handed over (jam, failed or torn personalisation, failed
               eject, a crash before the eject): journaled *before* the card is captured to
               the reject bin, then the payment goes back

Never both, never neither: the money goes back exactly when the card did not leave the
machine; a card that left is recorded at the back-office and never reversed. A card that
never left may be personalised and hold value: it sits in the reject bin, and its serial has
no account at the back-office, so the value never reaches a citizen.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import weakref
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from devices.base import DeviceError, InvalidData
from devices.contracts import CardDispenser, CardReader
from devices.transit_card import CardKeys
from kiosk.backoffice_client import (
    BackofficeClient,
    BackofficeUnavailable,
    LoadNotFound,
    LoadPost,
    LoadRecord,
)
from kiosk.errors import KioskError
from kiosk.journal import OPEN_STATES, OutboxItem, Transaction, TxState
from kiosk.receipts import ReceiptData
from kiosk.services.base import InvalidOrder, Order, Posted, TransactionKind, fixed_at_paid

if TYPE_CHECKING:
    from kiosk.money_path import MoneyPath, SettleResult

log = logging.getLogger("kiosk.transit.card_sale")

#: the card's price (its deposit), charged with every new card on top of the value chosen
CARD_PRICE_RIALS = 100_000
#: the initial values a citizen chooses from (0: the card is bought without value)
VALUE_PRESETS_RIALS = (0, 100_000, 200_000, 500_000)
#: the profile a kiosk sells: concession cards (65+, students) are issued at an office
SALE_PROFILE = "regular"
#: the counter personalisation leaves on a card (docs/card-layout.md: 0 after personalisation)
FRESH_COUNTER = 0
#: the outbox kind of the back-office's card_sale load
CARD_SALE_LOAD = "card_sale_load"
#: the serial counter file in the data dir
SERIALS_FILE = "card-serials.json"
SERIALS_FORMAT = "city-kiosk/card-serials"
MAX_SALE_NUMBER = 999_999


class SerialsExhausted(KioskError):
    """This kiosk has used every sale number of its serial range: an operator assigns it a new
    kiosk number (settings.extra["card_serial_kiosk_number"])."""

    key = "card_sale.serials_exhausted"
    fa = "شماره سریال کارت جدید در این کیوسک تمام شده است؛ لطفاً از کیوسک دیگری استفاده کنید."
    en = "This kiosk has no new card serial numbers left; please use another kiosk."


class SerialsUnreadable(KioskError):
    """The serial counter file is damaged: no serial is handed out that could repeat one."""

    key = "card_sale.serials_unreadable"
    fa = "شمارنده سریال کارت‌های این کیوسک خوانا نیست؛ تکنسین بررسی می‌کند."
    en = "This kiosk's card serial counter cannot be read; a technician will check it."


# --- the order and the personalisation plan ---------------------------------------------------
@dataclass(frozen=True)
class CardSaleOrder(Order):
    card_serial: str
    card_profile: str
    card_price_rials: int
    initial_balance: int
    kiosk_id: str = ""

    @property
    def total_rials(self) -> int:
        return self.card_price_rials + self.initial_balance

    def to_journal(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_journal(cls, data: Mapping[str, Any]) -> CardSaleOrder:
        try:
            order = cls(str(data["card_serial"]), str(data.get("card_profile", SALE_PROFILE)),
                        int(data["card_price_rials"]), int(data["initial_balance"]), str(data.get("kiosk_id") or ""))
        except (KeyError, TypeError, ValueError):
            raise InvalidOrder("not a card sale order", tx=str(data.get("tx_id", ""))) from None
        if not is_serial(order.card_serial) or order.card_price_rials <= 0 or order.initial_balance < 0:
            raise InvalidOrder("not a card sale order", tx=str(data.get("tx_id", "")))
        return order


@dataclass(frozen=True)
class SalePlan:
    """What FULFILLING journals before the card is written: which blank card (its UID, read
    at the read position) becomes which transit card."""

    uid: str
    serial: str
    profile: str
    initial_balance: int
    card_price_rials: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SalePlan:
        try:
            plan = cls(str(data["uid"]).lower(), str(data["serial"]), str(data["profile"]),
                       int(data["initial_balance"]), int(data["card_price_rials"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidData(f"not a card sale plan: {exc}", error_code="badPlan") from exc
        if len(plan.uid) not in (8, 14) or not is_serial(plan.serial):
            raise InvalidData("not a card sale plan: uid or serial", error_code="badPlan")
        return plan


def sale_plan(tx: Transaction) -> SalePlan | None:
    """The personalisation plan FULFILLING journaled, or None (the card was not planned)."""
    for entry in tx.entries:
        if entry.state == TxState.FULFILLING and "sale_plan" in entry.data:
            return SalePlan.from_dict(entry.data["sale_plan"])
    return None


def load_payload(tx: Transaction, plan: SalePlan) -> dict[str, Any]:
    """The card_sale load: the amount is what the citizen paid (price + value), the balance
    what the card holds; the counter stays where personalisation left it."""
    return LoadPost(tx.tx_id, plan.serial, plan.uid, FRESH_COUNTER, FRESH_COUNTER,
                    plan.card_price_rials + plan.initial_balance, plan.initial_balance, "card_sale").to_dict()


# --- serials ----------------------------------------------------------------------------------
def luhn_digit(digits: str) -> str:
    """The Luhn check digit of `digits` (a serial typed for a USSD or app top-up is checked)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def is_serial(text: str) -> bool:
    return len(text) == 10 and text.isascii() and text.isdigit()


def kiosk_serial_number(settings: Any) -> int:
    """The kiosk's 3-digit part of the serials it issues: `card_serial_kiosk_number` in the
    settings' extra (0..999, assigned per kiosk by the operator, unique among kiosks); a kiosk
    without one derives it from its id (demo and development only: two ids may share it)."""
    raw = getattr(settings, "extra", {}).get("card_serial_kiosk_number")
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 999:
        return raw
    return int.from_bytes(hashlib.sha256(str(settings.kiosk_id).encode()).digest()[:4], "big") % 1000


def allocate_serial(data_dir: Path, kiosk_number: int) -> str:
    """A new card serial: kiosk number (3 digits) · this kiosk's sale number (6 digits) · Luhn
    check digit. The sale number comes from a counter in the data dir, advanced (fsync) before
    it is used, so a number is handed out once even if the sale is then cancelled or the kiosk
    crashes; the back-office refuses a second sale of a serial it knows (card_already_sold)."""
    path = data_dir / SERIALS_FILE
    nxt = 1
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != SERIALS_FORMAT:
                raise ValueError("not a serial counter file")
            nxt = int(data["next"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SerialsUnreadable(f"{path}: {exc}") from exc
    if not 1 <= nxt <= MAX_SALE_NUMBER:
        raise SerialsExhausted(f"sale number {nxt} is past {MAX_SALE_NUMBER}")
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(json.dumps({"format": SERIALS_FORMAT, "next": nxt + 1}))
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
    body = f"{kiosk_number:03d}{nxt:06d}"
    return body + luhn_digit(body)


# --- the machine: dispenser and reader, as recovery reaches them ---------------------------------
@dataclass
class SaleDevices:
    """The dispenser, the reader at its read position and the card keys of one kiosk, looked
    up per call (a reconnected device is picked up). `lock` is held by whoever moves a card:
    the flow for a whole sale, recovery while it settles an interrupted one."""

    dispenser: Callable[[], CardDispenser | None]
    reader: Callable[[], CardReader | None]
    keys: Callable[[], CardKeys | None]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_ATTACHED: weakref.WeakKeyDictionary[Any, SaleDevices] = weakref.WeakKeyDictionary()


def attach_devices(ctx: Any) -> SaleDevices:
    """Give this kiosk's money path (`ctx.money`) its dispenser and reader, so recovery can ask
    the read position about a sale interrupted at the hand-over. Idempotent; the card sale
    flow calls it, and a context should call it once it has opened its devices."""
    found = _ATTACHED.get(ctx.money)
    if found is None:
        found = SaleDevices(lambda: ctx.devices.first(CardDispenser), lambda: ctx.devices.first(CardReader),
                            lambda: ctx.transit_keys)
        _ATTACHED[ctx.money] = found
    return found


def attached(money: Any) -> SaleDevices | None:
    return _ATTACHED.get(money)


async def card_at_read_position(devices: SaleDevices, uid: str, *, polls: int = 3) -> bool | None:
    """Is the card `uid` still in the reader's field at the read position? True or False when
    the reader answered; None when it cannot say (no reader, or it failed every poll)."""
    reader = devices.reader()
    if reader is None:
        return None
    answered = False
    for _ in range(polls):
        try:
            info = await reader.card_present()
        except DeviceError as exc:
            log.warning("read position not readable: %s", exc)
            await asyncio.sleep(0.1)
            continue
        answered = True
        if info is not None and info.uid.lower() == uid.lower():
            return True
        await asyncio.sleep(0.05)
    return False if answered else None


CAPTURED, NO_CARD, NOT_CAPTURED = "captured", "no_card", "not_captured"


async def capture_card(devices: SaleDevices | None, tx_id: str = "") -> str:
    """Capture the card at the read position to the reject bin: CAPTURED, NO_CARD (none
    there), or NOT_CAPTURED (no dispenser, a jam, a full bin: the card stays inside for a
    technician, and the next sale captures it before it dispenses)."""
    dispenser = devices.dispenser() if devices is not None else None
    if dispenser is None:
        return NOT_CAPTURED
    try:
        await dispenser.capture()
    except InvalidData:
        return NO_CARD  # the contract's answer to a capture with no card at the read position
    except DeviceError as exc:
        log.error("card not captured (%s): it stays in the dispenser for a technician", exc, extra={"tx": tx_id})
        return NOT_CAPTURED
    log.info("card captured to the reject bin", extra={"tx": tx_id})
    return CAPTURED


async def give_back(money: MoneyPath, tx_id: str, devices: SaleDevices | None, reason: str) -> SettleResult:
    """The card did not leave the machine: journal REVERSING (the decision, before the card
    moves, so a crash after the capture is never read as a hand-over), capture the card, and
    send the reversal (REVERSED, REFUND_PENDING, or REVERSAL_PENDING for recovery to retry)."""
    if money.journal.state_of(tx_id) != TxState.REVERSING:
        await money.writer.append(tx_id, TxState.REVERSING, {"reason": reason})
    await capture_card(devices, tx_id)
    return await money.reverse(tx_id, reason, ask_backoffice=False)


async def queue_sale_load(money: MoneyPath, tx: Transaction, plan: SalePlan, **data: Any) -> OutboxItem:
    """FULFILLED (the card was handed over) with the card_sale load queued, one commit."""
    item_id = await money.writer.outbox_enqueue(
        tx.tx_id, CARD_SALE_LOAD, load_payload(tx, plan), idempotency_key=tx.tx_id,
        with_state=(TxState.FULFILLED, {"balance_after": plan.initial_balance, "counter_after": FRESH_COUNTER,
                                        "card_uid": plan.uid, **data}),
        anchor=True)
    return money.journal.outbox_item(item_id)


# --- the kind -----------------------------------------------------------------------------------
class CardSaleKind(TransactionKind):
    name: ClassVar[str] = "card_sale"
    outbox_kind: ClassVar[str] = CARD_SALE_LOAD
    order_type: ClassVar[type[Order]] = CardSaleOrder
    # none: once the card is in a citizen's hands a refused load is an operator's, never a
    # reason to give the money back (retried and alerted by the money path)
    refusals: ClassVar[tuple[type[BaseException], ...]] = ()

    def post_payload(self, tx: Transaction, *, paid_at: str) -> dict[str, Any]:
        plan = sale_plan(tx)
        if plan is None:
            raise InvalidOrder("a card sale is posted only after its card is handed over", tx=tx.tx_id)
        return load_payload(tx, plan)

    def post(self, backoffice: BackofficeClient, payload: Mapping[str, Any], *, idempotency_key: str,
             outbox_kind: str = CARD_SALE_LOAD) -> Posted:
        return backoffice.post_load(LoadPost.from_dict(payload), idempotency_key=idempotency_key)

    def find_posted(self, backoffice: BackofficeClient, tx_id: str) -> Posted | None:
        try:
            return backoffice.load_status(tx_id)
        except LoadNotFound:
            return None

    def posted_from_json(self, data: Mapping[str, Any]) -> Posted:
        return LoadRecord.from_json(data)

    def ack_states(self, posted: Posted, outbox_kind: str) -> list[tuple[TxState, dict[str, Any] | None]]:
        return [(TxState.POSTED, {"tracking_code": posted.tracking_code})]

    async def resume(self, money: MoneyPath, tx: Transaction) -> SettleResult | str:
        """After a restart the citizen is gone. A queued load is posted. A sale planned
        (FULFILLING) never reached the hand-over: the card is inside → money back, card to the
        bin. A sale at the hand-over (UNCERTAIN) asks the read position: the card still there
        → money back, card to the bin; gone → it was ejected: the load is queued and posted.
        Before giving money back the back-office is asked (a journal cut after the post)."""
        devices = attached(money)
        if devices is not None and devices.dispenser() is None:
            devices = None  # a kiosk without its dispenser cannot move a card: it does not guess
        if devices is None or devices.lock.locked():
            if tx.state == TxState.UNCERTAIN and not money.pending_posts(tx.tx_id):
                return "dispenser_needed" if devices is None else "dispenser_busy"
            return await self.resume_with(money, tx, None)
        async with devices.lock:
            return await self.resume_with(money, tx, devices)

    async def resume_with(self, money: MoneyPath, tx: Transaction, devices: SaleDevices | None
                          ) -> SettleResult | str:
        """`resume` with the dispenser lock held (or no devices at all)."""
        items = money.pending_posts(tx.tx_id)
        if items:
            return await money.settle(items[0])
        if tx.state == TxState.FULFILLED:
            return "left_open"  # FULFILLED with nothing queued: acknowledged rows say the rest
        plan = sale_plan(tx)
        if tx.state == TxState.UNCERTAIN and plan is not None:
            # the hand-over: only the read position can say whether the citizen has the card
            if devices is None:
                return "dispenser_needed"
            here = await card_at_read_position(devices, plan.uid)
            if here is None:
                return "read_position_unknown"
            if not here:  # ejected: the sale is done; its load is posted (idempotent by key)
                item = await queue_sale_load(money, tx, plan, handed_over="recovery: card not at the read position")
                return await money.settle(item)
            what = "personalised, never handed over"
        elif plan is None:
            what = "not planned"  # FULFILLING without a plan is no row this kind writes
        elif devices is not None and await card_at_read_position(devices, plan.uid):
            what = await _describe(devices, plan)
        else:
            what = "planned, never handed over"
        # the card never left the machine: before its money goes back, ask whether the
        # back-office holds the sale (a journal cut back after the post)
        try:
            found = await money.find_settlement(tx.tx_id)
        except BackofficeUnavailable:
            return "backoffice_unreachable"
        if found is not None:
            return await money.journal_settled(tx.tx_id, found)
        return await give_back(money, tx.tx_id, devices, f"recovery: card {what}")

    def receipt_data(self, tx: Transaction, *, kiosk_id: str, pending: bool) -> ReceiptData:
        paid, fixed = fixed_at_paid(tx)
        return ReceiptData(
            tx_id=tx.tx_id,
            kiosk_id=kiosk_id,
            kind="transit_card_sale",
            amount_rials=paid.amount_rials,
            at=dt.datetime.fromtimestamp(int(paid.at), dt.timezone.utc),
            bill_id=str(fixed.get("card_serial", "")),
            payment_id="",
            service_label_fa="خرید کارت بلیت جدید",
            service_label_en="New transit card",
            tracking_code=tx.data.get("tracking_code", ""),
            rrn=fixed.get("rrn", ""),
            stan=fixed.get("stan", ""),
            masked_pan=fixed.get("masked_pan", ""),
            status="pending_settlement" if pending else "paid",
            journal_seq=paid.seq,
            journal_hash=paid.hash,
        )


async def _describe(devices: SaleDevices, plan: SalePlan) -> str:
    """What the card left at the read position holds, for the journal (it is captured either
    way): personalised as planned, or not (blank, torn)."""
    from devices.transit_card import TransitCard  # the card format, only when a card is there

    reader, keys = devices.reader(), devices.keys()
    if reader is None or keys is None:
        return "at the read position, not read"
    try:
        seen = await TransitCard(reader, keys).read_balance()
    except (DeviceError, KioskError) as exc:
        return f"at the read position, not personalised ({type(exc).__name__})"
    if (seen.uid, seen.serial) == (plan.uid, plan.serial):
        return "personalised, never handed over"
    return "at the read position, not as planned"


async def settle_open_sales(money: MoneyPath, devices: SaleDevices) -> bool:
    """Before a new sale moves a card (the dispenser lock held): finish every open card sale
    no one is working on (an interrupted hand-over is decided by the read position), then
    capture any card left at the read position — one whose sale was reversed, or that a crash
    left there before it was planned. False when the read position is not free for a new
    sale: a hand-over still undecided (its card is the evidence, never captured blind), or a
    card that could not be captured."""
    undecided = False
    for tx in money.journal.open_transactions():
        if tx.kind != CARD_SALE.name or money.is_claimed(tx.tx_id):
            continue
        if tx.state not in (TxState.FULFILLING, TxState.UNCERTAIN, TxState.FULFILLED):
            continue  # PAYING / PAID / REVERSING are the money path's (recovery): no card question
        with money.claimed(tx.tx_id):
            current = money.journal.get(tx.tx_id)
            if current.state in OPEN_STATES:
                said = await CARD_SALE.resume_with(money, current, devices)
                log.info("open card sale %s resumed before a new sale: %s", tx.tx_id, said, extra={"tx": tx.tx_id})
            undecided |= money.journal.state_of(tx.tx_id) == TxState.UNCERTAIN
    if undecided:
        log.error("a card hand-over is still undecided: no new sale until it is")
        return False
    left = await capture_card(devices)
    if left == CAPTURED:
        log.warning("a card left at the read position was captured before a new sale")
    return left != NOT_CAPTURED


CARD_SALE = CardSaleKind()
