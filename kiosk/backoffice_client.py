"""The kiosk's client for the municipal back-office HTTP API: typed results, typed errors a
citizen can act on, and bounded retries with back-off on idempotent calls only.

Only an answer that carries the back-office's own error code is a refusal. Anything else — a
proxy's bare 404, an HTML page, a malformed body — is BackofficeUnavailable (try again later):
it must never make the kiosk reverse a payment."""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, ClassVar, Mapping, TypeVar
from urllib.parse import unquote_plus

import requests

from kiosk.errors import KioskError
from kiosk.fee_types import FEE_TYPES
from kiosk.sensitive import mask_national_code

log = logging.getLogger("kiosk.backoffice")

T = TypeVar("T")

API = "/api/v1"


# --- values -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BillInfo:
    bill_id: str
    payment_id: str
    service_type: int
    company_code: str
    amount_rials: int
    year: int
    period: str
    payer_name: str
    description_fa: str
    status: str  # "unpaid" | "paid"
    due_date: dt.date | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BillInfo:
        return cls(
            bill_id=str(data["bill_id"]), payment_id=str(data["payment_id"]),
            service_type=int(data["service_type"]), company_code=str(data["company_code"]),
            amount_rials=int(data["amount_rials"]), year=int(data["year"]), period=str(data["period"]),
            payer_name=str(data.get("payer_name", "")), description_fa=str(data.get("description_fa", "")),
            status=str(data["status"]), due_date=_date(data.get("due_date")),
        )


@dataclass(frozen=True)
class FeeSlip:
    slip_id: int
    kind: str  # renovation_tax | business_tax | waste_charge | vehicle_tax
    bill_id: str
    payment_id: str
    amount_rials: int
    period: str
    due_date: dt.date | None
    description_fa: str
    status: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeeSlip:
        return cls(
            slip_id=int(data["slip_id"]), kind=str(data["kind"]), bill_id=str(data["bill_id"]),
            payment_id=str(data["payment_id"]), amount_rials=int(data["amount_rials"]),
            period=str(data.get("period", "")), due_date=_date(data.get("due_date")),
            description_fa=str(data.get("description_fa", "")), status=str(data["status"]),
        )


@dataclass(frozen=True)
class OwnerSlips:
    owner_name: str  # masked by the back-office ("ع*** ر***"): what the slip holder sees
    slips: tuple[FeeSlip, ...]
    fee_type: str = ""  # lookup_slips() only
    identifier_masked: str = ""  # lookup_slips() only

    @property
    def unpaid(self) -> tuple[FeeSlip, ...]:
        return tuple(s for s in self.slips if s.status == "unpaid")


@dataclass(frozen=True)
class PaymentPost:
    """A settlement to post: what was paid for, and the terminal's references (masked PAN only)."""

    transaction_id: str
    bill_id: str
    payment_id: str
    amount_rials: int
    paid_at: str  # ISO 8601 UTC
    rrn: str = ""
    stan: str = ""
    poi_reference: str = ""
    masked_pan: str = ""
    # the journal's tail (seq, head hash) when this settlement was queued; the back-office
    # keeps them as an outside witness of the chain (see journal_anchors())
    journal_seq: int | None = None
    journal_head: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "transaction_id": self.transaction_id, "bill_id": self.bill_id, "payment_id": self.payment_id,
            "amount_rials": self.amount_rials, "paid_at": self.paid_at,
            "terminal": {"rrn": self.rrn, "stan": self.stan, "poi_reference": self.poi_reference,
                         "masked_pan": self.masked_pan},
        }
        if self.journal_seq is not None:  # absent, not null: the body hashes as before anchors
            data["journal_seq"], data["journal_head"] = self.journal_seq, self.journal_head
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PaymentPost:
        """From `to_dict()`'s shape (terminal refs nested) or a flat one; the journal's
        anchor keys (`journal_seq`, `journal_head`) are read at the top level."""
        terminal = data.get("terminal") or data
        seq, head = data.get("journal_seq"), data.get("journal_head")
        return cls(
            transaction_id=str(data["transaction_id"]), bill_id=str(data["bill_id"]),
            payment_id=str(data["payment_id"]), amount_rials=int(data["amount_rials"]),
            paid_at=str(data["paid_at"]),
            **{k: str(terminal.get(k) or "") for k in ("rrn", "stan", "poi_reference", "masked_pan")},
            journal_seq=None if seq is None else int(seq), journal_head=None if head is None else str(head),
        )


@dataclass(frozen=True)
class Settlement:
    transaction_id: str
    bill_id: str
    payment_id: str
    amount_rials: int
    tracking_code: str
    status: str  # "settled"
    settled_at: str  # ISO 8601 UTC

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Settlement:
        return cls(
            transaction_id=str(data["transaction_id"]), bill_id=str(data["bill_id"]),
            payment_id=str(data["payment_id"]), amount_rials=int(data["amount_rials"]),
            tracking_code=str(data["tracking_code"]), status=str(data["status"]),
            settled_at=str(data["settled_at"]),
        )


@dataclass(frozen=True)
class JournalAnchor:
    """A settlement's journal anchor as the back-office stored it."""

    transaction_id: str
    journal_seq: int
    journal_head: str  # 64 lowercase hex
    received_at: str  # ISO 8601 UTC: when the back-office stored the settlement

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JournalAnchor:
        return cls(transaction_id=str(data["transaction_id"]), journal_seq=int(data["journal_seq"]),
                   journal_head=str(data["journal_head"]), received_at=str(data["received_at"]))


def _date(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(str(value)) if value else None


# --- errors -------------------------------------------------------------------------------------
class BackofficeError(KioskError):
    """Base of the back-office client's errors."""


class BillNotFound(BackofficeError):
    key = "bill.not_found"
    fa = "این قبض در سامانه شهرداری پیدا نشد. لطفاً شناسه‌ها را بررسی کنید یا فیش جدید بگیرید."
    en = "This bill was not found at the municipality. Please check the ids or get a new slip."
    money = "none"


class OwnerNotFound(BackofficeError):
    key = "owner.not_found"
    fa = "فیشی با این مشخصات پیدا نشد. لطفاً کد وارد شده را بررسی کنید."
    en = "No fee slips were found for these details. Please check what you entered."
    money = "none"


class BillAlreadyPaid(BackofficeError):
    key = "bill.already_paid"
    fa = "این قبض قبلاً پرداخت شده است و نیازی به پرداخت دوباره نیست."
    en = "This bill has already been paid; there is nothing to pay."
    money = "none"


class AmountMismatch(BackofficeError):
    key = "payment.amount_mismatch"
    fa = "مبلغ این فیش با مبلغ ثبت‌شده در شهرداری ({expected_rials} ریال) یکی نیست. لطفاً فیش جدید دریافت کنید."
    en = ("The amount on this slip differs from the municipality's record ({expected_rials} rials). "
          "Please get a new slip.")
    money = "none"

    def __init__(self, detail: str = "", *, expected_rials: int, **context: Any) -> None:
        super().__init__(detail, expected_rials=expected_rials, **context)
        self.expected_rials = expected_rials


class PaymentNotFound(BackofficeError):
    """The back-office itself answered that it holds no payment of this kiosk with this
    transaction id (its `payment.not_found` code; never inferred from a bare 404)."""

    key = "payment.not_found"
    fa = "پرداختی با این شماره تراکنش در سامانه شهرداری ثبت نشده است."
    en = "The municipality's system has no payment recorded under this transaction."
    money = "none"


class BackofficeUnavailable(BackofficeError):
    key = "backoffice.unavailable"
    fa = "ارتباط با سامانه شهرداری برقرار نشد. از شما مبلغی کسر نشده است؛ لطفاً کمی بعد دوباره تلاش کنید."
    en = "The municipality's system cannot be reached. You have not been charged; please try again shortly."
    money = "not_charged"

    def __init__(self, detail: str = "", *, attempts: int = 0, **context: Any) -> None:
        super().__init__(detail, attempts=attempts, **context)
        self.attempts = attempts


class SettlementPending(BackofficeUnavailable):
    """A payment post that could not reach the back-office: the money is taken and the kiosk
    keeps the settlement queued until it is delivered (same idempotency key)."""

    fa = "پرداخت شما انجام شد و ثبت آن در سامانه شهرداری به‌زودی تکمیل می‌شود. رسید خود را نگه دارید."
    en = "Your payment went through; it will be recorded at the municipality shortly. Keep your receipt."
    money = "charged_pending"


class BackofficeRejected(BackofficeError):
    key = "backoffice.rejected"
    fa = "سامانه شهرداری این درخواست را نپذیرفت. لطفاً با پشتیبانی تماس بگیرید."
    en = "The municipality's system refused this request. Please contact support."
    money = "none"

    def __init__(self, detail: str = "", *, status: int, error_code: str, **context: Any) -> None:
        super().__init__(detail, status=status, error_code=error_code, **context)
        self.status = status
        self.error_code = error_code


# --- transit values (issue 8) -------------------------------------------------------------------
@dataclass(frozen=True)
class LoadPost:
    """A value load written to a transit card, as posted to the card's ledger."""

    transaction_id: str
    card_serial: str  # 10 digits
    card_uid: str  # hex, 8 or 14 characters
    counter_before: int
    counter_after: int
    amount_rials: int
    balance_after: int
    kind: str  # "topup" | "card_sale" | "pending_load"
    pending_load_id: int | None = None  # with kind "pending_load" only

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.pending_load_id is None:
            del data["pending_load_id"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadPost:
        pending = data.get("pending_load_id")
        return cls(
            transaction_id=str(data["transaction_id"]), card_serial=str(data["card_serial"]),
            card_uid=str(data["card_uid"]), counter_before=int(data["counter_before"]),
            counter_after=int(data["counter_after"]), amount_rials=int(data["amount_rials"]),
            balance_after=int(data["balance_after"]), kind=str(data["kind"]),
            pending_load_id=None if pending is None else int(pending),
        )


@dataclass(frozen=True)
class LoadRecord:
    """A load as the back-office recorded it (its tracking code goes on the receipt)."""

    transaction_id: str
    card_serial: str
    card_uid: str
    counter_before: int
    counter_after: int
    amount_rials: int
    balance_after: int
    kind: str
    pending_load_id: int | None
    tracking_code: str
    status: str  # "recorded"
    recorded_at: str  # ISO 8601 UTC

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoadRecord:
        pending = data.get("pending_load_id")
        return cls(
            transaction_id=str(data["transaction_id"]), card_serial=str(data["card_serial"]),
            card_uid=str(data["card_uid"]), counter_before=int(data["counter_before"]),
            counter_after=int(data["counter_after"]), amount_rials=int(data["amount_rials"]),
            balance_after=int(data["balance_after"]), kind=str(data["kind"]),
            pending_load_id=None if pending is None else int(pending), tracking_code=str(data["tracking_code"]),
            status=str(data["status"]), recorded_at=str(data["recorded_at"]),
        )


@dataclass(frozen=True)
class CardLoad:
    """One of a card's recent loads, as its account lists them."""

    transaction_id: str
    kind: str
    amount_rials: int
    counter_after: int
    balance_after: int
    recorded_at: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CardLoad:
        return cls(transaction_id=str(data["transaction_id"]), kind=str(data["kind"]),
                   amount_rials=int(data["amount_rials"]), counter_after=int(data["counter_after"]),
                   balance_after=int(data["balance_after"]), recorded_at=str(data["recorded_at"]))


@dataclass(frozen=True)
class PendingLoad:
    """A top-up paid elsewhere (USSD, the app) waiting to be written to the card."""

    pending_load_id: int
    card_serial: str
    amount_rials: int
    source: str
    external_ref: str
    status: str  # "pending" | "reserved" (an open pending action holds it) | "applied"
    created_at: str
    applied_at: str | None
    applied_by_transaction_id: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PendingLoad:
        applied_at, applied_by = data.get("applied_at"), data.get("applied_by_transaction_id")
        return cls(
            pending_load_id=int(data["pending_load_id"]), card_serial=str(data["card_serial"]),
            amount_rials=int(data["amount_rials"]), source=str(data["source"]),
            external_ref=str(data["external_ref"]), status=str(data["status"]), created_at=str(data["created_at"]),
            applied_at=None if applied_at is None else str(applied_at),
            applied_by_transaction_id=None if applied_by is None else str(applied_by),
        )


@dataclass(frozen=True)
class PendingActionPost:
    """An uncertain card write whose card did not come back: the card's next tap at any
    kiosk settles it (see settle_pending_action)."""

    transaction_id: str
    card_serial: str
    card_uid: str
    counter_before: int
    intended_balance: int
    amount_rials: int
    tracking_code: str | None = None  # the back-office makes one when None
    pending_load_id: int | None = None  # the write was applying this pending load

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingActionPost:
        code, pending = data.get("tracking_code"), data.get("pending_load_id")
        return cls(
            transaction_id=str(data["transaction_id"]), card_serial=str(data["card_serial"]),
            card_uid=str(data["card_uid"]), counter_before=int(data["counter_before"]),
            intended_balance=int(data["intended_balance"]), amount_rials=int(data["amount_rials"]),
            tracking_code=None if code is None else str(code),
            pending_load_id=None if pending is None else int(pending),
        )


@dataclass(frozen=True)
class PendingAction:
    transaction_id: str
    card_serial: str
    card_uid: str
    counter_before: int
    intended_balance: int
    amount_rials: int
    pending_load_id: int | None
    tracking_code: str
    status: str  # "open" | "applied" | "rolled_back"
    created_at: str
    settled_at: str | None
    counter_seen: int | None
    settled_by_transaction_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PendingAction:
        def opt(key: str, conv: Callable[[Any], T]) -> T | None:
            value = data.get(key)
            return None if value is None else conv(value)

        return cls(
            transaction_id=str(data["transaction_id"]), card_serial=str(data["card_serial"]),
            card_uid=str(data["card_uid"]), counter_before=int(data["counter_before"]),
            intended_balance=int(data["intended_balance"]), amount_rials=int(data["amount_rials"]),
            pending_load_id=opt("pending_load_id", int), tracking_code=str(data["tracking_code"]),
            status=str(data["status"]), created_at=str(data["created_at"]), settled_at=opt("settled_at", str),
            counter_seen=opt("counter_seen", int), settled_by_transaction_id=opt("settled_by_transaction_id", str),
        )


@dataclass(frozen=True)
class CardAccount:
    """What the back-office holds for a card serial. `known` is False for a serial with no
    recorded load (it may still have pending loads); last_* are then None."""

    card_serial: str
    known: bool
    card_uid: str | None
    last_counter: int | None
    last_balance: int | None
    concession: str
    loads: tuple[CardLoad, ...]  # newest first
    pending_loads: tuple[PendingLoad, ...]  # not applied yet
    pending_actions: tuple[PendingAction, ...]  # open

    @property
    def collectable(self) -> tuple[PendingLoad, ...]:
        """Pending loads a kiosk may apply now (not held by an open pending action)."""
        return tuple(p for p in self.pending_loads if p.status == "pending")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CardAccount:
        counter, balance, uid = data.get("last_counter"), data.get("last_balance"), data.get("card_uid")
        known = data["known"]
        if not isinstance(known, bool):
            raise TypeError("known is not a boolean")
        return cls(
            card_serial=str(data["card_serial"]), known=known, card_uid=None if uid is None else str(uid),
            last_counter=None if counter is None else int(counter),
            last_balance=None if balance is None else int(balance), concession=str(data.get("concession", "none")),
            loads=tuple(CardLoad.from_json(x) for x in data["loads"]),
            pending_loads=tuple(PendingLoad.from_json(x) for x in data["pending_loads"]),
            pending_actions=tuple(PendingAction.from_json(x) for x in data["pending_actions"]),
        )


@dataclass(frozen=True)
class TicketPost:
    ticket_id: str
    transaction_id: str
    kind: str  # "single" | "return"
    trips: int  # 1 | 2
    valid_until: str  # ISO 8601 with a zone
    amount_rials: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TicketPost:
        return cls(ticket_id=str(data["ticket_id"]), transaction_id=str(data["transaction_id"]),
                   kind=str(data["kind"]), trips=int(data["trips"]), valid_until=str(data["valid_until"]),
                   amount_rials=int(data["amount_rials"]))


@dataclass(frozen=True)
class TicketRecord:
    ticket_id: str
    transaction_id: str
    kind: str
    trips: int
    trips_used: int
    valid_until: str  # ISO 8601 UTC
    amount_rials: int
    tracking_code: str
    status: str  # "issued"
    issued_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TicketRecord:
        return cls(
            ticket_id=str(data["ticket_id"]), transaction_id=str(data["transaction_id"]), kind=str(data["kind"]),
            trips=int(data["trips"]), trips_used=int(data["trips_used"]), valid_until=str(data["valid_until"]),
            amount_rials=int(data["amount_rials"]), tracking_code=str(data["tracking_code"]),
            status=str(data["status"]), issued_at=str(data["issued_at"]),
        )


# --- transit errors (issue 8) -------------------------------------------------------------------
def _json_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("not a JSON integer")
    return value


def _json_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a JSON string")
    return value


class TransitPostPending(BackofficeUnavailable):
    """A transit post (load, pending action, settlement, ticket) that could not reach the
    back-office: what it records has happened; keep it queued (same idempotency key)."""

    key = "transit.post_pending"
    fa = "تراکنش شما انجام شد و ثبت آن در سامانه به‌زودی تکمیل می‌شود. رسید خود را نگه دارید."
    en = "Your transaction went through; it will be recorded shortly. Keep your receipt."
    money = "charged_pending"


class TransitError(BackofficeError):
    """A transit or ticket answer of the back-office's own. `fields` are the extra values its
    body carries (read strictly: a body without them is not the back-office's)."""

    fields: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    def __init__(self, detail: str = "", **context: Any) -> None:
        super().__init__(detail, **context)
        for name in self.fields:
            setattr(self, name, context.get(name))


class TransitRefused(TransitError):
    """A definite refusal of a transit post: nothing was recorded, and a retry of the same
    post is refused again. What the citizen is owed is the flow's to decide."""

    key = "transit.refused"
    fa = "سامانه بلیت این درخواست را نپذیرفت. لطفاً با پشتیبانی تماس بگیرید."
    en = "The transit system refused this request. Please contact support."


class LoadReplayRefused(TransitRefused):
    """A load claiming a card counter another load already holds, or a counter step no card
    write makes (a write moves it by one): a replayed or forged load, or a card restored from
    an old copy. `last_counter` is the highest recorded (0: none yet)."""

    key = "transit.counter_replay"
    fa = "سامانه بلیت این شارژ را نپذیرفت: شمارنده کارت با شارژهای ثبت‌شده جور نیست. لطفاً با پشتیبانی تماس بگیرید."
    en = ("The transit system refused this load: the card's counter does not fit its recorded loads. "
          "Please contact support.")
    fields = {"last_counter": _json_int}
    last_counter: int


class CardMismatch(TransitRefused):
    key = "transit.card_mismatch"
    fa = "این کارت با کارت ثبت‌شده برای این شماره سریال یکی نیست. لطفاً با پشتیبانی تماس بگیرید."
    en = "This card does not match the card registered under its serial number. Please contact support."


class BalanceMismatch(TransitRefused):
    key = "transit.balance_mismatch"
    fa = "موجودی کارت با سوابق سامانه بلیت ({expected_balance} ریال پس از این شارژ) یکی نیست. لطفاً با پشتیبانی تماس بگیرید."
    en = ("The card's balance does not match the transit system's records ({expected_balance} rials after "
          "this load). Please contact support.")
    fields = {"expected_balance": _json_int}
    expected_balance: int


class CardAlreadySold(TransitRefused):
    key = "transit.card_already_sold"
    fa = "این کارت قبلاً فروخته و ثبت شده است."
    en = "This card has already been sold and registered."


class PendingLoadNotFound(TransitRefused):
    key = "transit.pending_load_not_found"
    fa = "شارژ در انتظاری با این مشخصات برای این کارت پیدا نشد."
    en = "No pending top-up with these details was found for this card."


class PendingLoadAlreadyApplied(TransitRefused):
    key = "transit.pending_load_applied"
    fa = "این شارژ قبلاً روی کارت اعمال شده است (تراکنش {applied_by_transaction_id})."
    en = "This top-up was already applied to the card (transaction {applied_by_transaction_id})."
    fields = {"pending_load_id": _json_int, "applied_by_transaction_id": _json_str}
    pending_load_id: int
    applied_by_transaction_id: str


class PendingLoadAmountMismatch(TransitRefused):
    key = "transit.amount_mismatch"
    fa = "مبلغ با شارژ در انتظار ({expected_rials} ریال) یکی نیست."
    en = "The amount differs from the pending top-up ({expected_rials} rials)."
    fields = {"expected_rials": _json_int}
    expected_rials: int


class PendingActionOpen(TransitRefused):
    """The card has an uncertain write on record: settle it before writing anything else."""

    key = "transit.pending_action_open"
    fa = "برای این کارت یک عملیات نیمه‌تمام ثبت است که باید اول تکمیل شود."
    en = "This card has an unfinished operation on record that must be completed first."
    fields = {"transaction_id": _json_str, "counter_before": _json_int}
    transaction_id: str
    counter_before: int


class LoadAlreadyRecorded(TransitRefused):
    key = "transit.load_recorded"
    fa = "شارژ این تراکنش قبلاً در سامانه بلیت ثبت شده است."
    en = "This transaction's load is already recorded by the transit system."


class PendingActionNotFound(TransitRefused):
    key = "transit.pending_action_not_found"
    fa = "عملیات نیمه‌تمامی با این شماره برای این کارت ثبت نشده است."
    en = "No unfinished operation with this number is recorded for this card."


class PendingActionAlreadySettled(TransitRefused):
    key = "transit.pending_action_settled"
    fa = "این عملیات نیمه‌تمام قبلاً تکمیل شده است."
    en = "This unfinished operation was already settled ({outcome}, transaction {settled_by_transaction_id})."
    fields = {"outcome": _json_str, "settled_by_transaction_id": _json_str}
    outcome: str
    settled_by_transaction_id: str


class TicketDuplicate(TransitRefused):
    key = "ticket.duplicate_id"
    fa = "شناسه این بلیت قبلاً برای بلیت دیگری ثبت شده است."
    en = "This ticket id is already recorded for another ticket."


class LoadNotFound(TransitError):
    """The back-office itself answered that it holds no load of this kiosk under this
    transaction id (`transit.load_not_found`; never inferred from a bare 404)."""

    key = "transit.load_not_found"
    fa = "شارژی با این شماره تراکنش در سامانه بلیت ثبت نشده است."
    en = "The transit system has no load recorded under this transaction."


class TicketNotFound(TransitError):
    """The back-office's own `ticket.not_found` (never a bare 404)."""

    key = "ticket.not_found"
    fa = "بلیتی با این شناسه در سامانه ثبت نشده است."
    en = "No ticket with this id is recorded."


_TRANSIT_ERRORS: dict[str, type[TransitError]] = {cls.key: cls for cls in (
    LoadReplayRefused, CardMismatch, BalanceMismatch, CardAlreadySold, PendingLoadNotFound,
    PendingLoadAlreadyApplied, PendingLoadAmountMismatch, PendingActionOpen, LoadAlreadyRecorded,
    PendingActionNotFound, PendingActionAlreadySettled, TicketDuplicate, LoadNotFound, TicketNotFound)}


# --- municipal services (issue 9) ---------------------------------------------------------------
#: the fee types a settlement certificate is issued for (a property, a business): kiosk.fee_types
#: says which fee types there are and which are certifiable, for the screens and this client alike
CERTIFICATE_FEE_TYPES = tuple(name for name, fee in FEE_TYPES.items() if fee.certifiable)


@dataclass(frozen=True)
class Certificate:
    """A settlement certificate (مفاصاحساب): every slip of `fee_type` was paid at `as_of`."""

    certificate_id: str
    fee_type: str
    identifier_masked: str
    owner_name_masked: str
    as_of: str  # ISO 8601 UTC
    valid_until: dt.date
    slips_checked: int
    status: str = "valid"  # "valid" | "expired"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["valid_until"] = self.valid_until.isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Certificate:
        until = _date(data["valid_until"])
        if until is None:
            raise ValueError("a certificate without valid_until")
        return cls(certificate_id=str(data["certificate_id"]), fee_type=str(data["fee_type"]),
                   identifier_masked=str(data["identifier_masked"]),
                   owner_name_masked=str(data["owner_name_masked"]), as_of=str(data["as_of"]),
                   valid_until=until, slips_checked=int(data["slips_checked"]),
                   status=str(data.get("status", "valid")))


@dataclass(frozen=True)
class PermitQuote:
    """The traffic-zone permit's price for a plate and day, and whether it can be bought:
    `reason` is "" (available), "date_invalid" (outside min_date..max_date) or "exists"."""

    plate: str  # canonical spelling ("22 ب 365 ایران 10")
    date: dt.date
    price_rials: int
    available: bool
    reason: str
    min_date: dt.date
    max_date: dt.date

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PermitQuote:
        available = data["available"]
        if not isinstance(available, bool):
            raise TypeError("available is not a boolean")
        day, first, last = (_date(data[k]) for k in ("date", "min_date", "max_date"))
        if day is None or first is None or last is None:
            raise ValueError("a quote without its dates")
        return cls(plate=str(data["plate"]), date=day, price_rials=int(data["price_rials"]), available=available,
                   reason=str(data.get("reason", "")), min_date=first, max_date=last)


@dataclass(frozen=True)
class PermitPost:
    """A traffic-zone day permit to record: the plate, the Tehran day, what was paid, and the
    terminal's references (masked PAN only). `date` may be given as a date; it is kept as
    its ISO text so the post is plain JSON for the outbox."""

    transaction_id: str
    plate: str
    date: str  # ISO date of the Tehran day the permit is for
    amount_rials: int
    paid_at: str  # ISO 8601 UTC
    rrn: str = ""
    stan: str = ""
    poi_reference: str = ""
    masked_pan: str = ""
    journal_seq: int | None = None
    journal_head: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.date, dt.date):
            object.__setattr__(self, "date", self.date.isoformat())

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "transaction_id": self.transaction_id, "plate": self.plate, "date": self.date,
            "amount_rials": self.amount_rials, "paid_at": self.paid_at,
            "terminal": {"rrn": self.rrn, "stan": self.stan, "poi_reference": self.poi_reference,
                         "masked_pan": self.masked_pan},
        }
        if self.journal_seq is not None:  # absent, not null, as PaymentPost
            data["journal_seq"], data["journal_head"] = self.journal_seq, self.journal_head
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PermitPost:
        """From `to_dict()`'s shape (terminal refs nested) or a flat one."""
        terminal = data.get("terminal") or data
        seq, head = data.get("journal_seq"), data.get("journal_head")
        return cls(
            transaction_id=str(data["transaction_id"]), plate=str(data["plate"]), date=str(data["date"]),
            amount_rials=int(data["amount_rials"]), paid_at=str(data["paid_at"]),
            **{k: str(terminal.get(k) or "") for k in ("rrn", "stan", "poi_reference", "masked_pan")},
            journal_seq=None if seq is None else int(seq), journal_head=None if head is None else str(head),
        )


@dataclass(frozen=True)
class PermitRecord:
    """A permit as the back-office recorded it (its tracking code goes on the receipt)."""

    permit_id: str
    transaction_id: str
    plate: str
    date: str  # ISO date
    amount_rials: int
    tracking_code: str
    status: str  # "issued"
    issued_at: str  # ISO 8601 UTC
    journal_seq: int | None = None
    journal_head: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PermitRecord:
        seq, head = data.get("journal_seq"), data.get("journal_head")
        return cls(permit_id=str(data["permit_id"]), transaction_id=str(data["transaction_id"]),
                   plate=str(data["plate"]), date=str(data["date"]), amount_rials=int(data["amount_rials"]),
                   tracking_code=str(data["tracking_code"]), status=str(data["status"]),
                   issued_at=str(data["issued_at"]), journal_seq=None if seq is None else int(seq),
                   journal_head=None if head is None else str(head))


def _slips(value: Any) -> tuple[FeeSlip, ...]:
    if not isinstance(value, list):
        raise TypeError("slips is not a list")
    return tuple(FeeSlip.from_json(s) for s in value)


def _iso_date(value: Any) -> dt.date:
    return dt.date.fromisoformat(_json_str(value))


class MunicipalError(BackofficeError):
    """A municipal-services answer of the back-office's own (issue 9). `fields` are the extra
    values its body carries (read strictly: a body without them is not the back-office's)."""

    fields: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    def __init__(self, detail: str = "", **context: Any) -> None:
        super().__init__(detail, **context)
        for name in self.fields:
            setattr(self, name, context.get(name))


class LookupLimited(MunicipalError):
    """Too many look-ups: by this kiosk, or of this identifier across all kiosks (a guard
    against enumerating citizens). `retry_after_s`: when one more will be allowed."""

    key = "lookup.rate_limited"
    fa = ("تعداد استعلام‌ها از حد مجاز گذشته است. لطفاً حدود {wait_minutes} دقیقه دیگر دوباره تلاش کنید. "
          "اگر فیش کاغذی دارید، می‌توانید همین حالا آن را با شناسه قبض و شناسه پرداخت بپردازید.")
    en = ("Too many look-ups were made just now. Please try again in about {wait_minutes} minute(s). "
          "If you have the paper slip, you can pay it now with its bill id and payment id.")
    fields = {"retry_after_s": _json_int}
    retry_after_s: int

    def __init__(self, detail: str = "", *, retry_after_s: int, **context: Any) -> None:
        context.setdefault("wait_minutes", max(1, -(-int(retry_after_s) // 60)))
        super().__init__(detail, retry_after_s=int(retry_after_s), **context)


class IdentifierInvalid(MunicipalError):
    key = "lookup.identifier_invalid"
    fa = "کد واردشده درست نیست. لطفاً آن را دوباره از روی فیش یا مدرک خود وارد کنید."
    en = "The code you entered is not valid. Please enter it again from your slip or document."


class OutstandingSlips(MunicipalError):
    """No certificate: these slips are unpaid. The kiosk can offer to pay them."""

    key = "certificate.outstanding"
    fa = "برای صدور مفاصاحساب ابتدا باید فیش‌های پرداخت‌نشده ({count} فیش) پرداخت شوند."
    en = "A settlement certificate needs the unpaid slips ({count}) to be paid first."
    fields = {"slips": _slips}
    slips: tuple[FeeSlip, ...]

    def __init__(self, detail: str = "", *, slips: tuple[FeeSlip, ...] = (), **context: Any) -> None:
        context.setdefault("count", len(slips))
        super().__init__(detail, slips=tuple(slips), **context)


class CertificateNotFound(MunicipalError):
    key = "certificate.not_found"
    fa = "مفاصاحسابی با این شماره در سامانه شهرداری ثبت نشده است."
    en = "No settlement certificate with this number is recorded at the municipality."


class PermitRefused(MunicipalError):
    """A definite refusal of a permit post: nothing was recorded, a retry is refused again."""

    key = "permit.refused"
    fa = "سامانه طرح ترافیک این درخواست را نپذیرفت. لطفاً با پشتیبانی تماس بگیرید."
    en = "The traffic-zone system refused this request. Please contact support."


class PermitExists(PermitRefused):
    key = "permit.exists"
    fa = "این پلاک برای این روز مجوز طرح ترافیک دارد و نیازی به خرید دوباره نیست."
    en = "This plate already holds a traffic-zone permit for this day; there is nothing to buy."


class PermitDateInvalid(PermitRefused):
    key = "permit.date_invalid"
    fa = "مجوز طرح ترافیک را فقط برای روزهای {min_date} تا {max_date} می‌توان خرید. لطفاً روز دیگری انتخاب کنید."
    en = "A traffic-zone permit can be bought only for {min_date} to {max_date}. Please choose another day."
    fields = {"min_date": _iso_date, "max_date": _iso_date}
    min_date: dt.date
    max_date: dt.date


class PermitAmountMismatch(PermitRefused):
    key = "permit.amount_mismatch"
    fa = "بهای مجوز طرح ترافیک تغییر کرده است ({expected_rials} ریال). لطفاً دوباره استعلام بگیرید."
    en = "The traffic-zone permit's price has changed ({expected_rials} rials). Please ask for a new quote."
    fields = {"expected_rials": _json_int}
    expected_rials: int


class PlateInvalid(PermitRefused):
    key = "plate.invalid"
    fa = "شماره پلاک درست نیست: دو رقم، یک حرف، سه رقم و دو رقم کد شهر. لطفاً دوباره وارد کنید."
    en = "The plate number is not valid: two digits, a letter, three digits and the two-digit region. Please re-enter it."


class PermitNotFound(MunicipalError):
    """The back-office's own `permit.not_found` for this kiosk's transaction (never a bare 404)."""

    key = "permit.not_found"
    fa = "مجوز طرح ترافیکی با این شماره تراکنش ثبت نشده است."
    en = "No traffic-zone permit is recorded under this transaction."


class PermitPostPending(SettlementPending):
    """A permit post that could not reach the back-office: paid; keep it queued (same key)."""

    key = "permit.post_pending"
    fa = "پرداخت شما انجام شد و ثبت مجوز طرح ترافیک به‌زودی تکمیل می‌شود. رسید خود را نگه دارید."
    en = "Your payment went through; the traffic-zone permit will be recorded shortly. Keep your receipt."


_MUNICIPAL_ERRORS: dict[str, type[MunicipalError]] = {cls.key: cls for cls in (
    LookupLimited, IdentifierInvalid, OutstandingSlips, CertificateNotFound, PermitExists, PermitDateInvalid,
    PermitAmountMismatch, PlateInvalid, PermitNotFound)}


_RETRYABLE_EXC = (requests.ConnectionError, requests.Timeout)

# the value up to the next parameter, percent-encoded Persian digits included
_NATIONAL_IN_URL = re.compile(r"(national_code=)([^&\s\"']+)")
_PLATE_IN_URL = re.compile(r"(plate=)([^&\s\"']+)")


def _masked_param(match: re.Match[str]) -> str:
    return match.group(1) + mask_national_code(unquote_plus(match.group(2)))


class _MaskNationalCodeInUrls(logging.Filter):
    """urllib3 logs every request line at DEBUG, query string included; the fee-slip query
    carries a national code, which must never reach a log in full."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "national_code=" in text:
            text = _NATIONAL_IN_URL.sub(_masked_param, text)
            record.msg, record.args = text, None
        if "plate=" in text:  # a permit quote's plate: hidden whole
            record.msg, record.args = _PLATE_IN_URL.sub(r"\1***", text), None
        return True


_URLLIB3_LOG = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _MaskNationalCodeInUrls) for f in _URLLIB3_LOG.filters):
    _URLLIB3_LOG.addFilter(_MaskNationalCodeInUrls())


# --- client -------------------------------------------------------------------------------------
@dataclass
class _Attempts:
    """Per-client counters, for tests and the health view."""

    requests: int = 0
    retries: int = 0
    last_error: str = ""


class BackofficeClient:
    """Blocking client (run it in an executor). Every call is retried at most `retries` times
    after the first attempt — on connection errors, timeouts and 5xx only, never on a 4xx."""

    RETRY_STATUSES: ClassVar[frozenset[int]] = frozenset(range(500, 600))

    def __init__(self, base_url: str, token: str, *, connect_timeout: float = 2.0, read_timeout: float = 8.0,
                 retries: int = 3, backoff: float = 0.2, max_backoff: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stats = _Attempts()
        self._session = requests.Session()
        self._session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})

    # --- API ------------------------------------------------------------------------------------
    def lookup_bill(self, bill_id: str, payment_id: str) -> BillInfo:
        resp = self._call("GET", f"{API}/bills/{bill_id}/{payment_id}")
        if resp.status_code == 200:
            return self._parse(resp, BillInfo.from_json)
        raise self._refusal(resp, bill_id=bill_id)

    def fee_slips(self, *, national_code: str | None = None, renovation_code: str | None = None,
                  plate: str | None = None, business_license: str | None = None) -> OwnerSlips:
        params = {k: v for k, v in (("national_code", national_code), ("renovation_code", renovation_code),
                                    ("plate", plate), ("business_license", business_license)) if v}
        who = mask_national_code(national_code) if national_code else ("plate" if plate else "business")
        resp = self._call("GET", f"{API}/fee-slips", params=params, log_as=f"fee-slips for {who}")
        if resp.status_code == 200:
            return self._parse(resp, lambda data: OwnerSlips(
                str(data["owner_name"]), tuple(FeeSlip.from_json(s) for s in data["slips"])))
        raise self._municipal_refusal(resp)

    def post_payment(self, post: PaymentPost, *, idempotency_key: str) -> Settlement:
        """Safe to retry: the back-office answers a repeated key with the first answer.

        A refusal of this payment (BillNotFound, BillAlreadyPaid, AmountMismatch) is raised
        only on the back-office's own error code; an answer that is not the back-office's
        (a proxy's bare 404, an HTML page) is SettlementPending: keep it queued."""
        try:
            resp = self._call("POST", f"{API}/payments", json=post.to_dict(),
                              headers={"Idempotency-Key": idempotency_key}, tx=post.transaction_id)
            if resp.status_code in (200, 201):
                return self._parse(resp, Settlement.from_json)
            raise self._refusal(resp, bill_id=post.bill_id, tx=post.transaction_id)
        except SettlementPending:
            raise
        except BackofficeUnavailable as exc:
            raise SettlementPending(exc.detail, attempts=exc.attempts) from exc

    def payment_status(self, transaction_id: str) -> Settlement:
        """This kiosk's settled payment for `transaction_id` (status and tracking code).

        Raises PaymentNotFound only when the back-office answers its own `payment.not_found`
        (it answers so for another kiosk's payment too); BackofficeUnavailable when it cannot
        be asked or the answer is not its own (a proxy's bare 404): ask again later."""
        resp = self._call("GET", f"{API}/payments/{transaction_id}", tx=transaction_id)
        if resp.status_code == 200:
            return self._parse(resp, Settlement.from_json)
        raise self._refusal(resp, tx=transaction_id)

    def journal_anchors(self, after_seq: int = 0) -> list[JournalAnchor]:
        """Every journal anchor the back-office holds for this kiosk with seq > `after_seq`,
        in seq order (fetched page by page)."""
        anchors: list[JournalAnchor] = []
        while True:
            resp = self._call("GET", f"{API}/journal-anchors", params={"after_seq": after_seq})
            if resp.status_code != 200:
                raise self._refusal(resp)
            page = self._parse(resp, lambda data: [JournalAnchor.from_json(a) for a in data["anchors"]])
            if not page:
                return anchors
            seqs = [after_seq] + [a.journal_seq for a in page]
            if page[0].journal_seq <= after_seq or any(b < a for a, b in zip(seqs, seqs[1:])):
                # not in seq order after `after_seq`: not the back-office's contract, and paging
                # on would loop; the caller cannot compare anything against such a list
                raise BackofficeUnavailable("journal anchors out of order", attempts=1)
            anchors.extend(page)
            after_seq = page[-1].journal_seq

    # --- transit (issue 8) ----------------------------------------------------------------------
    def post_load(self, post: LoadPost, *, idempotency_key: str) -> LoadRecord:
        """Record a load written to a card (the key is the kiosk transaction id). Safe to
        retry: the same post answers the first record. Refusals are TransitRefused subclasses
        (LoadReplayRefused, PendingLoadAlreadyApplied, PendingActionOpen, …), raised only on
        the back-office's own code; anything else is TransitPostPending: keep it queued."""
        return self._transit_post(f"{API}/transit/loads", post.to_dict(), idempotency_key,
                                  post.transaction_id, LoadRecord.from_json)

    def load_status(self, transaction_id: str) -> LoadRecord:
        """This kiosk's recorded load for `transaction_id`. LoadNotFound only on the
        back-office's own answer (also for another kiosk's load); BackofficeUnavailable when
        it cannot say."""
        resp = self._call("GET", f"{API}/transit/loads/{transaction_id}", tx=transaction_id)
        if resp.status_code == 200:
            return self._parse(resp, LoadRecord.from_json)
        raise self._transit_refusal(resp)

    def card_account(self, card_serial: str) -> CardAccount:
        """The card's account: last recorded counter and balance, recent loads, pending loads
        to collect, open pending actions to settle. An unknown serial is an empty account."""
        resp = self._call("GET", f"{API}/transit/cards/{card_serial}")
        if resp.status_code == 200:
            return self._parse(resp, CardAccount.from_json)
        raise self._transit_refusal(resp)

    def post_pending_action(self, post: PendingActionPost, *, idempotency_key: str) -> PendingAction:
        """Record an uncertain write whose card did not come back (key: the transaction id)."""
        return self._transit_post(f"{API}/transit/pending-actions", post.to_dict(), idempotency_key,
                                  post.transaction_id, PendingAction.from_json)

    def settle_pending_action(self, transaction_id: str, *, card_serial: str, outcome: str, counter_seen: int,
                              settled_by_transaction_id: str,
                              written: tuple[int, int] | None = None) -> PendingAction:
        """Settle an open pending action: outcome "applied" (the value is on the card; the
        back-office records the load) or "rolled_back" (it is not and will not be). Exactly
        once: the same settlement again answers the settled action, another one raises
        PendingActionAlreadySettled. `written`: the card had moved on, and the value was
        credited at (counter before, balance after) instead of where the action planned it."""
        body: dict[str, Any] = {"card_serial": card_serial, "outcome": outcome, "counter_seen": counter_seen,
                                "settled_by_transaction_id": settled_by_transaction_id}
        if written is not None:  # (counter before, balance after) where the value was credited
            body["written_counter_before"], body["written_balance_after"] = written
        return self._transit_post(f"{API}/transit/pending-actions/{transaction_id}/settle", body,
                                  settled_by_transaction_id, settled_by_transaction_id, PendingAction.from_json)

    def post_ticket(self, post: TicketPost, *, idempotency_key: str) -> TicketRecord:
        """Record a sold QR ticket (key: the transaction id); TicketDuplicate when another sale
        holds its ticket id."""
        return self._transit_post(f"{API}/tickets", post.to_dict(), idempotency_key, post.transaction_id,
                                  TicketRecord.from_json)

    def ticket_status(self, ticket_id: str) -> TicketRecord:
        """This kiosk's ticket with the trips used so far; TicketNotFound on the back-office's
        own answer only."""
        resp = self._call("GET", f"{API}/tickets/{ticket_id}")
        if resp.status_code == 200:
            return self._parse(resp, TicketRecord.from_json)
        raise self._transit_refusal(resp)

    def _transit_post(self, path: str, body: dict[str, Any], idempotency_key: str, tx: str,
                      build: Callable[[Any], T]) -> T:
        try:
            resp = self._call("POST", path, json=body, headers={"Idempotency-Key": idempotency_key}, tx=tx)
            if resp.status_code in (200, 201):
                return self._parse(resp, build)
            raise self._transit_refusal(resp)
        except TransitPostPending:
            raise
        except BackofficeUnavailable as exc:
            raise TransitPostPending(exc.detail, attempts=exc.attempts) from exc

    @classmethod
    def _transit_refusal(cls, resp: requests.Response) -> BackofficeError:
        """A transit code as its typed error (with the values its body must carry); any other
        answer as the fee calls read it (_refusal: no code of ours → BackofficeUnavailable)."""
        code = cls._error_code(resp)
        kind = _TRANSIT_ERRORS.get(code)
        if kind is None:
            return cls._refusal(resp)
        try:
            body = resp.json()
            values = {name: conv(body[name]) for name, conv in kind.fields.items()}
        except (ValueError, KeyError, TypeError):
            return BackofficeUnavailable(f"{code} without its values", attempts=1)
        return kind(f"back-office answered HTTP {resp.status_code} {code}", **values)

    # --- municipal services (issue 9) ------------------------------------------------------------
    def lookup_slips(self, fee_type: str, identifier: str) -> OwnerSlips:
        """The owner's slips of `fee_type` (renovation_tax: renovation code, business_tax:
        business licence, waste_charge: national code, vehicle_tax: plate), unpaid first, with
        the payer's name masked. Raises OwnerNotFound, IdentifierInvalid, LookupLimited
        (retry_after_s), BackofficeUnavailable; ValueError for an unknown fee type."""
        if fee_type not in FEE_TYPES:
            raise ValueError(f"unknown fee type {fee_type!r} (one of {', '.join(FEE_TYPES)})")
        # a POST: the identifier stays out of the URL (and out of any proxy's access log)
        resp = self._call("POST", f"{API}/lookups", json={"fee_type": fee_type, "identifier": identifier},
                          log_as=f"look-up of {fee_type}")
        if resp.status_code == 200:
            return self._parse(resp, lambda data: OwnerSlips(
                str(data["owner_name"]), tuple(FeeSlip.from_json(s) for s in data["slips"]),
                fee_type=str(data["fee_type"]), identifier_masked=str(data["identifier_masked"])))
        raise self._municipal_refusal(resp)

    def request_certificate(self, fee_type: str, identifier: str, *, idempotency_key: str) -> Certificate:
        """A settlement certificate for a property (renovation_tax, renovation code) or a
        business (business_tax, licence) whose slips are all paid. Raises OutstandingSlips
        (.slips: what to pay first), OwnerNotFound, IdentifierInvalid, LookupLimited. The same
        key answers the same certificate."""
        if fee_type not in CERTIFICATE_FEE_TYPES:
            raise ValueError(f"no certificate for fee type {fee_type!r} (one of {', '.join(CERTIFICATE_FEE_TYPES)})")
        resp = self._call("POST", f"{API}/certificates", json={"fee_type": fee_type, "identifier": identifier},
                          headers={"Idempotency-Key": idempotency_key}, log_as=f"certificate for {fee_type}")
        if resp.status_code in (200, 201):
            return self._parse(resp, Certificate.from_json)
        raise self._municipal_refusal(resp)

    def certificate_status(self, certificate_id: str) -> Certificate:
        """A certificate by its id (any kiosk may check one); CertificateNotFound otherwise."""
        resp = self._call("GET", f"{API}/certificates/{certificate_id}")
        if resp.status_code == 200:
            return self._parse(resp, Certificate.from_json)
        raise self._municipal_refusal(resp)

    def permit_quote(self, plate: str, date: dt.date) -> PermitQuote:
        """The traffic-zone day permit's price for `plate` on the Tehran day `date`, whether it
        can be bought (and why not), and the days that can be bought. PlateInvalid for a plate
        that is not two digits, a letter, three digits and the region."""
        resp = self._call("GET", f"{API}/traffic-permits/quote", params={"plate": plate, "date": date.isoformat()},
                          log_as="traffic-permit quote")
        if resp.status_code == 200:
            return self._parse(resp, PermitQuote.from_json)
        raise self._municipal_refusal(resp)

    def post_permit(self, post: PermitPost, *, idempotency_key: str) -> PermitRecord:
        """Record a paid permit (the key is the kiosk transaction id). Safe to retry: the same
        post answers the first record. Refusals are PermitRefused (PermitExists,
        PermitDateInvalid, PermitAmountMismatch, PlateInvalid), raised only on the
        back-office's own code; anything else is PermitPostPending: keep it queued."""
        try:
            resp = self._call("POST", f"{API}/traffic-permits", json=post.to_dict(),
                              headers={"Idempotency-Key": idempotency_key}, tx=post.transaction_id)
            if resp.status_code in (200, 201):
                return self._parse(resp, PermitRecord.from_json)
            raise self._municipal_refusal(resp)
        except PermitPostPending:
            raise
        except BackofficeUnavailable as exc:
            raise PermitPostPending(exc.detail, attempts=exc.attempts) from exc

    def permit_status(self, transaction_id: str) -> PermitRecord:
        """This kiosk's recorded permit for `transaction_id`. PermitNotFound only on the
        back-office's own answer (also for another kiosk's permit); BackofficeUnavailable when
        it cannot say."""
        resp = self._call("GET", f"{API}/traffic-permits/{transaction_id}", tx=transaction_id)
        if resp.status_code == 200:
            return self._parse(resp, PermitRecord.from_json)
        raise self._municipal_refusal(resp)

    @classmethod
    def _municipal_refusal(cls, resp: requests.Response) -> BackofficeError:
        """A municipal code as its typed error (with the values its body must carry); any other
        answer as the fee calls read it (_refusal)."""
        code = cls._error_code(resp)
        kind = _MUNICIPAL_ERRORS.get(code)
        if kind is None:
            return cls._refusal(resp)
        try:
            body = resp.json()
            values = {name: conv(body[name]) for name, conv in kind.fields.items()}
        except (ValueError, KeyError, TypeError):
            return BackofficeUnavailable(f"{code} without its values", attempts=1)
        return kind(f"back-office answered HTTP {resp.status_code} {code}", **values)

    def health(self) -> bool:
        try:
            resp = self._session.get(self.base_url + "/healthz", timeout=self.timeout)
        except requests.RequestException as exc:
            log.info("back-office health check failed: %s", type(exc).__name__)
            return False
        try:
            return resp.status_code == 200 and bool(resp.json().get("ok"))
        except (ValueError, AttributeError):  # not our JSON: a proxy or captive page
            return False

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> BackofficeClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- plumbing -------------------------------------------------------------------------------
    def _delay(self, retry: int) -> float:
        # exponential with jitter, so a fleet coming back online does not retry in lock-step
        base = min(self.max_backoff, self.backoff * 2**retry)
        return float(base * random.uniform(0.5, 1.5))

    def _call(self, method: str, path: str, *, tx: str | None = None, log_as: str | None = None,
              **kwargs: Any) -> requests.Response:
        """One logical call with retries; returns a response below 500, or raises
        BackofficeUnavailable once retries are exhausted."""
        what = log_as or f"{method} {path}"
        extra = {"tx": tx} if tx else {}
        last = ""
        attempts = 0
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                time.sleep(self._delay(attempt - 1))
            attempts += 1
            self.stats.requests += 1
            try:
                resp = self._session.request(method, self.base_url + path, timeout=self.timeout, **kwargs)
            except _RETRYABLE_EXC as exc:
                last = type(exc).__name__
                log.warning("back-office %s: %s (attempt %d)", what, last, attempts, extra=extra)
                continue
            if resp.status_code in self.RETRY_STATUSES:
                last = f"HTTP {resp.status_code}"
                log.warning("back-office %s: %s (attempt %d)", what, last, attempts, extra=extra)
                resp.close()
                continue
            return resp
        self.stats.last_error = last
        raise BackofficeUnavailable(f"back-office unreachable after {attempts} attempts ({last})", attempts=attempts)

    @staticmethod
    def _parse(resp: requests.Response, build: Callable[[Any], T]) -> T:
        """`build(resp.json())`; an answer that is not the expected JSON is not the
        back-office's (a proxy, a captive portal): BackofficeUnavailable, try later."""
        try:
            return build(resp.json())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackofficeUnavailable(f"malformed answer to HTTP {resp.status_code}: {type(exc).__name__}",
                                        attempts=1) from exc

    @staticmethod
    def _error_code(resp: requests.Response) -> str:
        """The back-office's own error code, or "" when the body does not carry one."""
        try:
            body = resp.json()
        except ValueError:
            return ""
        code = body.get("error") if isinstance(body, dict) else None
        return code if isinstance(code, str) else ""

    @classmethod
    def _refusal(cls, resp: requests.Response, **context: Any) -> BackofficeError:
        code = cls._error_code(resp)
        context = {k: v for k, v in context.items() if k != "tx"}
        if not code:
            # Not the back-office speaking (a proxy's 404 page, a gateway's 403): no refusal
            # of anything can be read from it. Try again later; never reverse on it.
            return BackofficeUnavailable(f"HTTP {resp.status_code} without a back-office error code",
                                         attempts=1, status=resp.status_code)
        if code == "bill.not_found":
            return BillNotFound(f"bill not found ({resp.status_code})", **context)
        if code == "payment.not_found":
            return PaymentNotFound("payment not found")
        if code == "owner.not_found":
            return OwnerNotFound("owner not found")
        if code == "bill.already_paid":
            return BillAlreadyPaid("bill already paid", **context)
        if code == "payment.amount_mismatch":
            try:
                expected = int(resp.json()["expected_rials"])
            except (ValueError, KeyError, TypeError):
                return BackofficeUnavailable("amount mismatch without the expected amount", attempts=1)
            return AmountMismatch("amount differs from the bill", expected_rials=expected, **context)
        return BackofficeRejected(f"back-office refused: HTTP {resp.status_code} {code}",
                                  status=resp.status_code, error_code=code)
