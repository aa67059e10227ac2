"""Pydantic models of the back-office HTTP API (request bodies and responses).

Request bodies are strict: integers must be JSON integers (not "420000", 1150000.0 or true),
times must be zone-aware ISO 8601 strings inside PAID_AT_WINDOW, and unknown keys are refused."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    model_validator,
)

from kiosk.bills import MAX_AMOUNT_THOUSANDS

# A bill's amount field holds at most 8 digits of thousands of rials (kiosk.bills), so no
# payment can be larger than the largest bill.
MAX_AMOUNT_RIALS = MAX_AMOUNT_THOUSANDS * 1000
# paid_at must fall after this fixed floor (older is a reset clock, not a payment) and no
# later than the server's clock plus this allowance (kiosk clocks drift; queued settlements
# are old, never from the future).
PAID_AT_EARLIEST = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
PAID_AT_MAX_AHEAD = dt.timedelta(days=1)
# the chain head is a SHA-256 in lowercase hex (kiosk journal); seq numbers are SQLite rowids
JOURNAL_HEAD_PATTERN = r"^[0-9a-f]{64}$"
MAX_JOURNAL_SEQ = 2**63 - 1
# what a kiosk transaction id may hold: it is used in URL paths and log lines
TRANSACTION_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"


def _iso_text(value: Any) -> Any:
    # pydantic's lax datetime also takes numbers (Unix seconds); a payment time is a string
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string with a zone, e.g. 2025-11-28T09:15:00Z")
    return value


def _in_window(moment: dt.datetime) -> dt.datetime:
    latest = dt.datetime.now(dt.timezone.utc) + PAID_AT_MAX_AHEAD
    if not PAID_AT_EARLIEST <= moment <= latest:
        raise ValueError(f"must be between {PAID_AT_EARLIEST.date()} and one day after the server's clock")
    return moment


PaidAt = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_in_window)]


class ErrorBody(BaseModel):
    error: str


class BillOut(BaseModel):
    bill_id: str
    payment_id: str
    service_type: int
    company_code: str
    amount_rials: int
    year: int
    period: str
    payer_name: str
    description_fa: str
    status: str
    due_date: dt.date | None


class FeeSlipOut(BaseModel):
    slip_id: int
    kind: str
    bill_id: str
    payment_id: str
    amount_rials: int
    period: str
    due_date: dt.date | None
    description_fa: str
    status: str


class OwnerSlipsOut(BaseModel):
    owner_name: str
    slips: list[FeeSlipOut]


class TerminalRefs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rrn: StrictStr = Field(default="", max_length=64)
    stan: StrictStr = Field(default="", max_length=32)
    poi_reference: StrictStr = Field(default="", max_length=64)
    # checked against kiosk.sensitive.is_masked_pan by the settlement (422 payment.unmasked_pan)
    masked_pan: StrictStr = Field(default="", max_length=32)


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transaction_id: StrictStr = Field(pattern=TRANSACTION_ID_PATTERN)
    bill_id: StrictStr = Field(min_length=1, max_length=13)
    payment_id: StrictStr = Field(min_length=1, max_length=13)
    amount_rials: StrictInt = Field(gt=0, le=MAX_AMOUNT_RIALS)
    paid_at: PaidAt
    terminal: TerminalRefs = Field(default_factory=TerminalRefs)
    # the kiosk journal's tail when this settlement was queued: an outside witness of the chain
    journal_seq: StrictInt | None = Field(default=None, ge=1, le=MAX_JOURNAL_SEQ)
    journal_head: StrictStr | None = Field(default=None, pattern=JOURNAL_HEAD_PATTERN)

    @model_validator(mode="after")
    def _anchor_whole(self) -> PaymentIn:
        if (self.journal_seq is None) != (self.journal_head is None):
            raise ValueError("journal_seq and journal_head come together or not at all")
        return self

    def canonical(self) -> dict[str, Any]:
        """The body as compared for idempotency: absent anchors are left out, so a body posted
        before anchors existed hashes as it did then."""
        data = self.model_dump(mode="json")
        if self.journal_seq is None:
            del data["journal_seq"], data["journal_head"]
        return data


class SettlementOut(BaseModel):
    transaction_id: str
    bill_id: str
    payment_id: str
    amount_rials: int
    tracking_code: str
    status: str
    settled_at: str  # ISO 8601 UTC, "Z"


class JournalAnchorOut(BaseModel):
    transaction_id: str
    journal_seq: int
    journal_head: str
    received_at: str  # ISO 8601 UTC, "Z": when the back-office stored the settlement


class JournalAnchorsOut(BaseModel):
    anchors: list[JournalAnchorOut]


class HealthOut(BaseModel):
    ok: bool
