"""Pydantic models of the back-office HTTP API (request bodies and responses)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


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

    rrn: str = Field(default="", max_length=64)
    stan: str = Field(default="", max_length=32)
    poi_reference: str = Field(default="", max_length=64)
    masked_pan: str = Field(default="", max_length=32)


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transaction_id: str = Field(min_length=1, max_length=64)
    bill_id: str = Field(min_length=1, max_length=13)
    payment_id: str = Field(min_length=1, max_length=13)
    amount_rials: int = Field(gt=0)
    paid_at: dt.datetime
    terminal: TerminalRefs = Field(default_factory=TerminalRefs)


class SettlementOut(BaseModel):
    transaction_id: str
    bill_id: str
    payment_id: str
    amount_rials: int
    tracking_code: str
    status: str
    settled_at: str  # ISO 8601 UTC, "Z"


class HealthOut(BaseModel):
    ok: bool
