"""Pydantic models of the municipal-services API (issue 9): look-ups by fee type, settlement
certificates and traffic-zone day permits. Strict like schemas.py: unknown keys are refused,
integers are JSON integers, dates are ISO strings."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, model_validator

from backoffice.schemas import (
    JOURNAL_HEAD_PATTERN,
    MAX_AMOUNT_RIALS,
    MAX_JOURNAL_SEQ,
    TRANSACTION_ID_PATTERN,
    FeeSlipOut,
    PaidAt,
    TerminalRefs,
)

FeeType = Literal["renovation_tax", "business_tax", "waste_charge", "vehicle_tax"]
# a certificate is about a property (its renovation code) or a business (its licence)
CertificateFeeType = Literal["renovation_tax", "business_tax"]


def _date_text(value: Any) -> Any:
    # pydantic's lax date also takes numbers; a permit day is "YYYY-MM-DD"
    if not isinstance(value, str):
        raise ValueError("must be an ISO date string, e.g. 2026-12-01")
    return value


IsoDate = Annotated[dt.date, BeforeValidator(_date_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LookupIn(_Strict):
    fee_type: FeeType
    identifier: StrictStr = Field(min_length=1, max_length=64)


class LookupOut(BaseModel):
    fee_type: str
    identifier_masked: str
    owner_name: str  # masked: identity.mask_name
    slips: list[FeeSlipOut]


class CertificateIn(_Strict):
    fee_type: CertificateFeeType
    identifier: StrictStr = Field(min_length=1, max_length=64)


class CertificateOut(BaseModel):
    certificate_id: str
    fee_type: str
    identifier_masked: str
    owner_name_masked: str
    as_of: str  # ISO 8601 UTC, "Z"
    valid_until: dt.date
    slips_checked: int
    status: str  # "valid" | "expired" (a GET after valid_until)


class PermitIn(_Strict):
    transaction_id: StrictStr = Field(pattern=TRANSACTION_ID_PATTERN)
    plate: StrictStr = Field(min_length=1, max_length=64)
    date: IsoDate
    amount_rials: StrictInt = Field(gt=0, le=MAX_AMOUNT_RIALS)
    paid_at: PaidAt
    terminal: TerminalRefs = Field(default_factory=TerminalRefs)
    journal_seq: StrictInt | None = Field(default=None, ge=1, le=MAX_JOURNAL_SEQ)
    journal_head: StrictStr | None = Field(default=None, pattern=JOURNAL_HEAD_PATTERN)

    @model_validator(mode="after")
    def _anchor_whole(self) -> PermitIn:
        if (self.journal_seq is None) != (self.journal_head is None):
            raise ValueError("journal_seq and journal_head come together or not at all")
        return self

    def canonical(self, plate: str) -> dict[str, Any]:
        """The body as compared for idempotency, with the plate in its canonical spelling."""
        data = self.model_dump(mode="json")
        data["plate"] = plate
        data["paid_at"] = self.paid_at.astimezone(dt.timezone.utc).isoformat()
        if self.journal_seq is None:
            del data["journal_seq"], data["journal_head"]
        return data


class PermitOut(BaseModel):
    permit_id: str
    transaction_id: str
    plate: str
    date: dt.date
    amount_rials: int
    tracking_code: str
    status: str  # "issued"
    issued_at: str  # ISO 8601 UTC, "Z"
    journal_seq: int | None
    journal_head: str | None


class PermitQuoteOut(BaseModel):
    plate: str
    date: dt.date
    price_rials: int
    available: bool
    reason: str  # "" | "date_invalid" | "exists"
    min_date: dt.date
    max_date: dt.date


class PermitCheckOut(BaseModel):
    plate: str
    date: dt.date
    valid: bool
