"""The back-office's tables as SQLAlchemy 2.x typed ORM models (money in integer rials,
timestamps stored as UTC). Alembic migrations in backoffice/migrations create them."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores naive UTC and always returns an aware UTC datetime: SQLite keeps no zone, and
    comparing aware with naive values is an error we do not want to meet at runtime."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; back-office timestamps must be UTC-aware")
        moment: dt.datetime = value
        return moment.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        stored: dt.datetime = value
        return stored.replace(tzinfo=dt.timezone.utc) if stored.tzinfo is None else stored.astimezone(dt.timezone.utc)


class OwnerKind(enum.StrEnum):
    NATIONAL = "national"  # a person, found by national code (+ renovation code of a property)
    PLATE = "plate"  # a vehicle keeper, found by licence plate
    BUSINESS = "business"  # a shop/business, found by licence number


class SlipKind(enum.StrEnum):
    RENOVATION_TAX = "renovation_tax"
    BUSINESS_TAX = "business_tax"
    WASTE_CHARGE = "waste_charge"
    VEHICLE_TAX = "vehicle_tax"


class BillStatus(enum.StrEnum):
    UNPAID = "unpaid"
    PAID = "paid"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # stored as plain VARCHAR + CHECK so adding a kind later is a simple migration on both DBs
    return Enum(cls, name=name, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])


class Base(DeclarativeBase):
    pass


class Kiosk(Base):
    __tablename__ = "kiosks"

    kiosk_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Owner(Base):
    __tablename__ = "owners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[OwnerKind] = mapped_column(_enum(OwnerKind, "owner_kind"))
    national_code: Mapped[str | None] = mapped_column(String(10), index=True)
    renovation_code: Mapped[str | None] = mapped_column(String(32), index=True)
    plate: Mapped[str | None] = mapped_column(String(64), index=True)  # normalised, see identity.py
    business_license: Mapped[str | None] = mapped_column(String(32), index=True)
    name_fa: Mapped[str] = mapped_column(String(200))


class Bill(Base):
    """Every payable bill. A municipal fee slip is a bill with an owner and a slip kind (one
    table, so a bill's paid status lives in exactly one place)."""

    __tablename__ = "bills"
    __table_args__ = (UniqueConstraint("bill_id", "payment_id", name="uq_bills_bill_payment"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bill_id: Mapped[str] = mapped_column(String(13))
    payment_id: Mapped[str] = mapped_column(String(13))
    service_type: Mapped[int] = mapped_column(Integer)
    company_code: Mapped[str] = mapped_column(String(3))
    amount_rials: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[BillStatus] = mapped_column(_enum(BillStatus, "bill_status"), default=BillStatus.UNPAID)
    payer_name: Mapped[str] = mapped_column(String(200))
    due_date: Mapped[dt.date | None] = mapped_column(Date)
    description_fa: Mapped[str] = mapped_column(Text, default="")
    # fee-slip part: null for utility bills that have no municipal owner
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("owners.id"), index=True)
    slip_kind: Mapped[SlipKind | None] = mapped_column(_enum(SlipKind, "slip_kind"))
    period_label: Mapped[str | None] = mapped_column(String(64))


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        # one settlement per bill: the database, not the code, stops a double settlement
        UniqueConstraint("bill_id", "payment_id", name="uq_payments_bill_payment"),
        # kiosks make their own transaction ids: unique per kiosk (migration 0003), so one
        # kiosk's id never collides with, nor reveals, another's
        UniqueConstraint("kiosk_id", "transaction_id", name="uq_payments_kiosk_transaction"),
        Index("ix_payments_kiosk_journal_seq", "kiosk_id", "journal_seq"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(String(64))
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.kiosk_id"), index=True)
    bill_id: Mapped[str] = mapped_column(String(13))
    payment_id: Mapped[str] = mapped_column(String(13))
    amount_rials: Mapped[int] = mapped_column(BigInteger)
    paid_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    rrn: Mapped[str] = mapped_column(String(64), default="")
    stan: Mapped[str] = mapped_column(String(32), default="")
    poi_reference: Mapped[str] = mapped_column(String(64), default="")
    masked_pan: Mapped[str] = mapped_column(String(32), default="")
    tracking_code: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # the kiosk journal's (seq, head hash) when the settlement was queued (migration 0002)
    journal_seq: Mapped[int | None] = mapped_column(BigInteger)
    journal_head: Mapped[str | None] = mapped_column(String(64))


class IdempotencyRecord(Base):
    __tablename__ = "idempotency"
    __table_args__ = (UniqueConstraint("kiosk_id", "key", name="uq_idempotency_kiosk_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.kiosk_id"))
    key: Mapped[str] = mapped_column(String(128))
    request_sha256: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class TransitAccount(Base):
    """Transit card accounts (schema only for now; the transit API comes in a later issue)."""

    __tablename__ = "transit_accounts"

    card_uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    balance_rials: Mapped[int] = mapped_column(BigInteger, default=0)
    pending_load_rials: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")
    concession: Mapped[str] = mapped_column(String(32), default="none")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


TABLE_NAMES: tuple[str, ...] = ("kiosks", "owners", "bills", "payments", "idempotency", "transit_accounts")
