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
    """A transit card's account, keyed by the 10-digit serial printed on and stored in the card
    (migration 0004; 0001's schema-only table keyed by UID was never written). `last_counter`
    and `last_balance_rials` are what the card said after the newest recorded load: gates
    debit cards offline, so this is not the card's balance now, only a floor for its counter."""

    __tablename__ = "transit_accounts"

    card_serial: Mapped[str] = mapped_column(String(10), primary_key=True)
    card_uid: Mapped[str] = mapped_column(String(14))  # upper-case hex, 4 or 7 bytes
    last_counter: Mapped[int] = mapped_column(BigInteger)
    last_balance_rials: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="active")
    concession: Mapped[str] = mapped_column(String(32), default="none")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoadKind(enum.StrEnum):
    TOPUP = "topup"
    CARD_SALE = "card_sale"
    PENDING_LOAD = "pending_load"


class TransitLoad(Base):
    """One value load written to a card, as a kiosk posted it (the card ledger). The row is its
    own idempotency record: (kiosk_id, transaction_id) is unique and the request's hash and
    first answer are kept on it."""

    __tablename__ = "transit_loads"
    __table_args__ = (
        UniqueConstraint("kiosk_id", "transaction_id", name="uq_transit_loads_kiosk_transaction"),
        # the database's last word on a replayed counter and on a second application
        UniqueConstraint("card_serial", "counter_after", name="uq_transit_loads_serial_counter"),
        UniqueConstraint("pending_load_id", name="uq_transit_loads_pending_load"),
        UniqueConstraint("tracking_code", name="uq_transit_loads_tracking_code"),
        Index("ix_transit_loads_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.kiosk_id"), index=True)
    transaction_id: Mapped[str] = mapped_column(String(64))
    card_serial: Mapped[str] = mapped_column(ForeignKey("transit_accounts.card_serial"), index=True)
    card_uid: Mapped[str] = mapped_column(String(14))
    counter_before: Mapped[int] = mapped_column(BigInteger)
    counter_after: Mapped[int] = mapped_column(BigInteger)
    amount_rials: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[LoadKind] = mapped_column(_enum(LoadKind, "load_kind"))
    pending_load_id: Mapped[int | None] = mapped_column(ForeignKey("transit_pending_loads.id"))
    # set when the row was written by settling a pending action ("applied")
    settled_action_id: Mapped[int | None] = mapped_column(Integer)
    tracking_code: Mapped[str] = mapped_column(String(32))
    request_sha256: Mapped[str] = mapped_column(String(64))
    response_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class TransitPendingLoad(Base):
    """A top-up paid elsewhere (USSD, the city's app) against a card serial, waiting for the
    card to be tapped at a kiosk. (source, external_ref) is the payer system's own key."""

    __tablename__ = "transit_pending_loads"
    __table_args__ = (
        UniqueConstraint("source", "external_ref", name="uq_transit_pending_loads_source_ref"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    card_serial: Mapped[str] = mapped_column(String(10), index=True)  # the card may be unknown yet
    amount_rials: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(32))
    external_ref: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))  # the integration credential's name
    request_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    applied_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    applied_kiosk_id: Mapped[str | None] = mapped_column(String(64))
    applied_transaction_id: Mapped[str | None] = mapped_column(String(64))


class ActionStatus(enum.StrEnum):
    OPEN = "open"
    APPLIED = "applied"
    ROLLED_BACK = "rolled_back"


class TransitPendingAction(Base):
    """A card write left uncertain (the card was pulled mid-write and not brought back): the
    card's next tap at any kiosk settles it, exactly once."""

    __tablename__ = "transit_pending_actions"
    __table_args__ = (
        UniqueConstraint("kiosk_id", "transaction_id", name="uq_transit_actions_kiosk_transaction"),
        UniqueConstraint("card_serial", "transaction_id", name="uq_transit_actions_serial_transaction"),
        UniqueConstraint("tracking_code", name="uq_transit_actions_tracking_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.kiosk_id"), index=True)
    transaction_id: Mapped[str] = mapped_column(String(64))
    card_serial: Mapped[str] = mapped_column(String(10), index=True)
    card_uid: Mapped[str] = mapped_column(String(14))
    counter_before: Mapped[int] = mapped_column(BigInteger)
    intended_balance: Mapped[int] = mapped_column(BigInteger)
    amount_rials: Mapped[int] = mapped_column(BigInteger)
    # a pending load this write was applying: reserved while the action is open
    pending_load_id: Mapped[int | None] = mapped_column(ForeignKey("transit_pending_loads.id"))
    tracking_code: Mapped[str] = mapped_column(String(32))
    status: Mapped[ActionStatus] = mapped_column(_enum(ActionStatus, "action_status"), default=ActionStatus.OPEN)
    request_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    settled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    settled_kiosk_id: Mapped[str | None] = mapped_column(String(64))
    settled_by_transaction_id: Mapped[str | None] = mapped_column(String(64))
    counter_seen: Mapped[int | None] = mapped_column(BigInteger)
    settle_sha256: Mapped[str | None] = mapped_column(String(64))


class TicketKind(enum.StrEnum):
    SINGLE = "single"
    RETURN = "return"


class Ticket(Base):
    """A QR ticket a kiosk sold; the row is its own idempotency record per (kiosk, tx)."""

    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("ticket_id", name="uq_tickets_ticket_id"),
        UniqueConstraint("kiosk_id", "transaction_id", name="uq_tickets_kiosk_transaction"),
        UniqueConstraint("tracking_code", name="uq_tickets_tracking_code"),
        Index("ix_tickets_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(String(64))
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.kiosk_id"), index=True)
    transaction_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[TicketKind] = mapped_column(_enum(TicketKind, "ticket_kind"))
    trips: Mapped[int] = mapped_column(Integer)
    trips_used: Mapped[int] = mapped_column(Integer, default=0)
    valid_until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    amount_rials: Mapped[int] = mapped_column(BigInteger)
    tracking_code: Mapped[str] = mapped_column(String(32))
    request_sha256: Mapped[str] = mapped_column(String(64))
    response_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class TicketRedemption(Base):
    """One trip of a ticket used at a gate. (ticket, trip_no) unique: a trip is used once."""

    __tablename__ = "ticket_redemptions"
    __table_args__ = (
        UniqueConstraint("ticket_id", "trip_no", name="uq_ticket_redemptions_trip"),
        # a gate's retry of the same scan (its Idempotency-Key) is the same redemption
        UniqueConstraint("gate_client", "request_key", name="uq_ticket_redemptions_gate_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.ticket_id"), index=True)
    trip_no: Mapped[int] = mapped_column(Integer)
    gate_id: Mapped[str] = mapped_column(String(64))
    gate_client: Mapped[str] = mapped_column(String(64))  # the gate credential's name
    request_key: Mapped[str | None] = mapped_column(String(128))
    redeemed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ServiceRole(enum.StrEnum):
    INTEGRATION = "integration"  # USSD / app payment systems: create pending loads, read totals
    GATE = "gate"  # metro/bus gates: redeem QR tickets
    CAMERA = "camera"  # traffic-zone enforcement cameras: check a plate's day permit (issue 9)


class ServiceToken(Base):
    """A credential that is not a kiosk's: an integration or a gate. Stored as SHA-256 only."""

    __tablename__ = "service_tokens"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[ServiceRole] = mapped_column(_enum(ServiceRole, "service_role"))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Setting(Base):
    """Back-office settings every replica reads from the one database (migration 0005): the
    audit HMAC secret, the traffic-zone permit's price and booking horizon."""

    __tablename__ = "backoffice_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class LookupAudit(Base):
    """One look-up of an owner's slips by a kiosk (allowed or refused by a limit). The
    identifier is kept only as HMAC-SHA256 under the server secret: the audit can count and
    link look-ups of one identifier, never say whose it was. These rows are also what the
    look-up limits count (municipal.py), so they are the limits' shared state across replicas."""

    __tablename__ = "lookup_audit"
    __table_args__ = (
        Index("ix_lookup_audit_kiosk_at", "kiosk_id", "created_at"),
        Index("ix_lookup_audit_identifier_at", "identifier_hmac", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.kiosk_id", ondelete="CASCADE"))
    endpoint: Mapped[str] = mapped_column(String(32))  # "lookup" | "certificate" | "fee-slips"
    fee_type: Mapped[str] = mapped_column(String(32))
    identifier_hmac: Mapped[str] = mapped_column(String(64))
    result_count: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[bool] = mapped_column(Boolean, default=False)
    refused_by: Mapped[str | None] = mapped_column(String(16))  # "kiosk" | "identifier"
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Certificate(Base):
    """A settlement certificate (مفاصاحساب): every slip of one fee type of a property or
    business was paid at `as_of`. The row is its own idempotency record per (kiosk, key)."""

    __tablename__ = "certificates"
    __table_args__ = (
        UniqueConstraint("certificate_id", name="uq_certificates_certificate_id"),
        UniqueConstraint("kiosk_id", "request_key", name="uq_certificates_kiosk_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    certificate_id: Mapped[str] = mapped_column(String(32))
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.kiosk_id", ondelete="CASCADE"), index=True)
    request_key: Mapped[str] = mapped_column(String(128))
    request_sha256: Mapped[str] = mapped_column(String(64))
    fee_type: Mapped[str] = mapped_column(String(32))
    identifier_hmac: Mapped[str] = mapped_column(String(64), index=True)
    identifier_masked: Mapped[str] = mapped_column(String(64))
    owner_name_masked: Mapped[str] = mapped_column(String(200))
    slips_checked: Mapped[int] = mapped_column(Integer)
    as_of: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[dt.date] = mapped_column(Date)
    response_json: Mapped[str] = mapped_column(Text)


class TrafficPermit(Base):
    """A traffic-zone day permit (طرح ترافیک) a kiosk sold. (plate, permit_date) unique: the
    database's last word on one permit per plate and day; (kiosk, transaction) unique: the row
    is its own idempotency record."""

    __tablename__ = "traffic_permits"
    __table_args__ = (
        UniqueConstraint("plate", "permit_date", name="uq_traffic_permits_plate_date"),
        UniqueConstraint("kiosk_id", "transaction_id", name="uq_traffic_permits_kiosk_transaction"),
        UniqueConstraint("permit_id", name="uq_traffic_permits_permit_id"),
        UniqueConstraint("tracking_code", name="uq_traffic_permits_tracking_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    permit_id: Mapped[str] = mapped_column(String(32))
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.kiosk_id", ondelete="CASCADE"), index=True)
    transaction_id: Mapped[str] = mapped_column(String(64))
    plate: Mapped[str] = mapped_column(String(64))  # canonical, see identity.canonical_plate
    permit_date: Mapped[dt.date] = mapped_column(Date)
    amount_rials: Mapped[int] = mapped_column(BigInteger)
    paid_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    rrn: Mapped[str] = mapped_column(String(64), default="")
    stan: Mapped[str] = mapped_column(String(32), default="")
    poi_reference: Mapped[str] = mapped_column(String(64), default="")
    masked_pan: Mapped[str] = mapped_column(String(32), default="")
    tracking_code: Mapped[str] = mapped_column(String(32))
    journal_seq: Mapped[int | None] = mapped_column(BigInteger)
    journal_head: Mapped[str | None] = mapped_column(String(64))
    request_sha256: Mapped[str] = mapped_column(String(64))
    response_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


TABLE_NAMES: tuple[str, ...] = (
    "kiosks", "owners", "bills", "payments", "idempotency", "transit_accounts", "transit_pending_loads",
    "transit_loads", "transit_pending_actions", "tickets", "ticket_redemptions", "service_tokens",
    "backoffice_settings", "lookup_audit", "certificates", "traffic_permits",
)
