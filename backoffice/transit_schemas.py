"""Pydantic models of the transit and ticket API (issue 8). Strict like schemas.py: integers
are JSON integers, strings are strings, unknown keys are refused, and a body that cannot be a
card operation (a counter that does not advance, a kind without its pending load) is a
422 request.invalid naming the field. Refusals that depend on what the back-office holds
(a replayed counter, an applied pending load) are typed ApiErrors in transit.py/tickets.py."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, model_validator

from backoffice.schemas import PAID_AT_EARLIEST, TRANSACTION_ID_PATTERN, _iso_text

# the serial printed on the card and stored in its identity block: 10 decimal digits
CARD_SERIAL_PATTERN = r"^[0-9]{10}$"
# MIFARE UIDs are 4 or 7 bytes; stored upper-case
CARD_UID_PATTERN = r"^(?:[0-9A-Fa-f]{8}|[0-9A-Fa-f]{14})$"
# the card's commit record holds seq as u32 and the balance as a value block's signed i32
MAX_COUNTER = 2**32 - 1
MAX_BALANCE_RIALS = 2**31 - 1
# one load, pending load or ticket: a sanity bound well above any fare or top-up
# (10,000,000 toman); the kiosk's configured limits are far lower
MAX_TRANSIT_AMOUNT_RIALS = 100_000_000
# a ticket is valid for at most this long from the server's clock
MAX_TICKET_VALIDITY = dt.timedelta(days=366)
SOURCE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,31}$"
TRACKING_CODE_PATTERN = r"^[A-Za-z0-9-]{4,32}$"
MAX_PENDING_LOAD_ID = 2**31 - 1
TRIPS_OF_KIND = {"single": 1, "return": 2}

TxId = Annotated[StrictStr, Field(pattern=TRANSACTION_ID_PATTERN)]
Serial = Annotated[StrictStr, Field(pattern=CARD_SERIAL_PATTERN)]
CardUid = Annotated[StrictStr, Field(pattern=CARD_UID_PATTERN), AfterValidator(str.upper)]
Counter = Annotated[StrictInt, Field(ge=0, le=MAX_COUNTER)]
Balance = Annotated[StrictInt, Field(ge=0, le=MAX_BALANCE_RIALS)]
Amount = Annotated[StrictInt, Field(gt=0, le=MAX_TRANSIT_AMOUNT_RIALS)]
PendingLoadId = Annotated[StrictInt, Field(ge=1, le=MAX_PENDING_LOAD_ID)]
LoadKindName = Literal["topup", "card_sale", "pending_load"]


def _until_in_window(moment: dt.datetime) -> dt.datetime:
    latest = dt.datetime.now(dt.timezone.utc) + MAX_TICKET_VALIDITY
    if not PAID_AT_EARLIEST <= moment <= latest:
        raise ValueError(f"must be between {PAID_AT_EARLIEST.date()} and {MAX_TICKET_VALIDITY.days} days "
                         "after the server's clock")
    return moment


ValidUntil = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_until_in_window)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def canonical(self) -> dict[str, Any]:
        """The body as compared for idempotency (normalised: UIDs upper-case, times UTC)."""
        return self.model_dump(mode="json")


# --- requests -------------------------------------------------------------------------------------
class LoadIn(_Strict):
    transaction_id: TxId
    card_serial: Serial
    card_uid: CardUid
    counter_before: Counter
    counter_after: Counter
    amount_rials: Amount
    balance_after: Balance
    kind: LoadKindName
    pending_load_id: PendingLoadId | None = None

    @model_validator(mode="after")
    def _a_card_operation(self) -> LoadIn:
        # a sold card may be handed over at the counter personalisation left it at
        if self.counter_after < self.counter_before or (
                self.counter_after == self.counter_before and self.kind != "card_sale"):
            raise ValueError("counter_after must be greater than counter_before")
        if (self.kind == "pending_load") != (self.pending_load_id is not None):
            raise ValueError("pending_load_id comes with kind 'pending_load' and only with it")
        if self.kind != "card_sale" and self.balance_after < self.amount_rials:
            raise ValueError("balance_after cannot be less than the amount loaded")
        return self


class PendingLoadIn(_Strict):
    card_serial: Serial
    amount_rials: Amount
    source: StrictStr = Field(pattern=SOURCE_PATTERN)  # "ussd", "app", …
    external_ref: StrictStr = Field(pattern=TRANSACTION_ID_PATTERN)  # the payer system's own id


class PendingActionIn(_Strict):
    transaction_id: TxId
    card_serial: Serial
    card_uid: CardUid
    counter_before: Annotated[StrictInt, Field(ge=0, le=MAX_COUNTER - 1)]
    intended_balance: Balance
    amount_rials: Amount
    tracking_code: StrictStr | None = Field(default=None, pattern=TRACKING_CODE_PATTERN)
    # the write was applying this pending load: it stays reserved until the action is settled
    pending_load_id: PendingLoadId | None = None

    @model_validator(mode="after")
    def _balance_holds_amount(self) -> PendingActionIn:
        if self.intended_balance < self.amount_rials:
            raise ValueError("intended_balance cannot be less than the amount")
        return self


class SettleIn(_Strict):
    card_serial: Serial  # the card in hand: an action is settled only against its own card
    outcome: Literal["applied", "rolled_back"]
    counter_seen: Counter
    settled_by_transaction_id: TxId
    # "applied" somewhere else than planned: the card had moved on (another write took the
    # planned counter), so the settling kiosk credited the amount at the card's counter then
    written_counter_before: Counter | None = None
    written_balance_after: Balance | None = None

    @model_validator(mode="after")
    def _written_together(self) -> SettleIn:
        if (self.written_counter_before is None) != (self.written_balance_after is None):
            raise ValueError("written_counter_before and written_balance_after go together")
        if self.written_counter_before is not None and self.outcome != "applied":
            raise ValueError("only an applied action was written")
        return self


class TicketIn(_Strict):
    ticket_id: StrictStr = Field(pattern=TRANSACTION_ID_PATTERN)
    transaction_id: TxId
    kind: Literal["single", "return"]
    trips: StrictInt = Field(ge=1, le=2)
    valid_until: ValidUntil
    amount_rials: Amount

    @model_validator(mode="after")
    def _trips_of_kind(self) -> TicketIn:
        if self.trips != TRIPS_OF_KIND[self.kind]:
            raise ValueError(f"a {self.kind} ticket has {TRIPS_OF_KIND[self.kind]} trip(s)")
        return self

    def canonical(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["valid_until"] = self.valid_until.astimezone(dt.timezone.utc).isoformat()
        return data


class RedeemIn(_Strict):
    gate_id: StrictStr = Field(pattern=TRANSACTION_ID_PATTERN)


# --- responses ------------------------------------------------------------------------------------
class LoadOut(BaseModel):
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
    recorded_at: str  # ISO 8601 UTC, "Z"


class CardLoadOut(BaseModel):
    transaction_id: str
    kind: str
    amount_rials: int
    counter_after: int
    balance_after: int
    recorded_at: str


class PendingLoadOut(BaseModel):
    pending_load_id: int
    card_serial: str
    amount_rials: int
    source: str
    external_ref: str
    status: str  # "pending" | "reserved" (an open pending action holds it) | "applied"
    created_at: str
    applied_at: str | None
    applied_by_transaction_id: str | None


class PendingActionOut(BaseModel):
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


class CardAccountOut(BaseModel):
    card_serial: str
    known: bool  # False: no load recorded for this serial yet (it may still have pending loads)
    card_uid: str | None
    last_counter: int | None
    last_balance: int | None
    concession: str
    loads: list[CardLoadOut]  # newest first, at most RECENT_LOADS
    pending_loads: list[PendingLoadOut]  # not applied yet, oldest first
    pending_actions: list[PendingActionOut]  # open, oldest first


class TicketOut(BaseModel):
    ticket_id: str
    transaction_id: str
    kind: str
    trips: int
    trips_used: int
    valid_until: str
    amount_rials: int
    tracking_code: str
    status: str  # "issued"
    issued_at: str


class RedemptionOut(BaseModel):
    ticket_id: str
    trip_no: int
    trips: int
    trips_left: int
    gate_id: str
    redeemed_at: str


class KindTotalOut(BaseModel):
    count: int
    rials: int


class KioskTotalsOut(BaseModel):
    kiosk_id: str
    loads_count: int
    loads_rials: int
    loads_by_kind: dict[str, KindTotalOut]
    tickets_count: int
    tickets_rials: int


class DailyTotalsOut(BaseModel):
    date: dt.date
    timezone: str
    kiosks: list[KioskTotalsOut]
