"""The fleet server's tables (SQLAlchemy 2 typed ORM); migrations/versions creates them."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from backoffice.models import UTCDateTime, utcnow

__all__ = ["utcnow", "Base", "Role", "KioskStatus", "CommandStatus", "Kiosk", "EnrollToken",
           "ManagerToken", "ConfigLayer", "Counter", "Command", "Nonce", "AuditEntry", "SigningKey",
           "JournalRow", "JournalProblem", "Rollout", "RolloutAction", "Statement"]


class Base(DeclarativeBase):
    pass


class Role(enum.StrEnum):
    VIEWER = "viewer"  # reads everything
    OPERATOR = "operator"  # + accepts/rejects enrollments, sends commands
    ADMIN = "admin"  # + tokens, revocation, configuration

    @property
    def rank(self) -> int:
        return ("viewer", "operator", "admin").index(self.value)


class KioskStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REVOKED = "revoked"


class CommandStatus(enum.StrEnum):
    QUEUED = "queued"
    RECEIVED = "received"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


class Kiosk(Base):
    __tablename__ = "fleet_kiosks"
    kiosk_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    model: Mapped[str] = mapped_column(String(64), nullable=False)
    app_version: Mapped[str] = mapped_column(String(32), nullable=False)
    public_key: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    site: Mapped[str | None] = mapped_column(String(64), nullable=True)
    enroll_token_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    enrolled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    desired_version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    desired_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reported_version: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reported_values: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    config_state: Mapped[str | None] = mapped_column(String(200), nullable=True)


class EnrollToken(Base):
    __tablename__ = "fleet_enroll_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_sha256: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    label: Mapped[str] = mapped_column(String(100), nullable=False)
    site: Mapped[str | None] = mapped_column(String(64), nullable=True)
    needs_approval: Mapped[bool] = mapped_column(Boolean, nullable=False)
    max_uses: Mapped[int] = mapped_column(Integer, nullable=False)
    uses: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)


class ManagerToken(Base):
    __tablename__ = "fleet_manager_tokens"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)


class ConfigLayer(Base):
    """One pushed layer; the newest revision of a (scope, target) is the one in force."""

    __tablename__ = "fleet_config_layers"
    __table_args__ = (UniqueConstraint("scope", "target", "revision", name="uq_fleet_layer_rev"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(8), nullable=False)
    target: Mapped[str] = mapped_column(String(64), nullable=False)
    revision: Mapped[int] = mapped_column(BigInteger, nullable=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)


class Counter(Base):
    __tablename__ = "fleet_counters"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, nullable=False)


class Command(Base):
    __tablename__ = "fleet_commands"
    __table_args__ = (Index("ix_fleet_commands_kiosk_status", "kiosk_id", "status"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kiosk_id: Mapped[str] = mapped_column(String(64), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    args: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)


class Nonce(Base):
    __tablename__ = "fleet_nonces"
    __table_args__ = (Index("ix_fleet_nonces_seen", "seen_at"),)
    kiosk_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class AuditEntry(Base):
    __tablename__ = "fleet_audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    actor: Mapped[str] = mapped_column(String(100), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[str] = mapped_column(String(100), nullable=False)
    outcome: Mapped[str] = mapped_column(String(64), nullable=False)  # "ok" or an error code
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)


class SigningKey(Base):
    """The fleet's Ed25519 document key (one row, "fleet"), shared by every server process."""

    __tablename__ = "fleet_signing_keys"
    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    private_b64: Mapped[str] = mapped_column(String(64), nullable=False)
    public_b64: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class JournalRow(Base):
    """A kiosk's journal row as uploaded: the columns of its journal table, byte for byte."""

    __tablename__ = "fleet_journal"
    __table_args__ = (Index("ix_fleet_journal_tx", "kiosk_id", "tx_id"),)
    kiosk_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    tx_id: Mapped[str] = mapped_column(String(100), nullable=False)
    state: Mapped[str] = mapped_column(String(32), nullable=False)
    at: Mapped[float] = mapped_column(Float(precision=53), nullable=False)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    amount_rials: Mapped[int] = mapped_column(BigInteger, nullable=False)
    data: Mapped[str] = mapped_column(Text, nullable=False)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class JournalProblem(Base):
    """A batch the server refused because the chain did not hold (gap, fork, rewrite, edit,
    reorder, illegal move): kept for the managers, with the kiosk's alert."""

    __tablename__ = "fleet_journal_problems"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kiosk_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    detail: Mapped[str] = mapped_column(Text, nullable=False)


class Rollout(Base):
    """A configuration layer rolled out stage by stage (issue 11, item 4)."""

    __tablename__ = "fleet_rollouts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(8), nullable=False)
    target: Mapped[str] = mapped_column(String(64), nullable=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    stages: Mapped[list[int]] = mapped_column(JSON, nullable=False)  # cumulative percentages, last 100
    action_timeout_s: Mapped[int] = mapped_column(Integer, nullable=False)
    max_failure_pct: Mapped[int] = mapped_column(Integer, nullable=False)
    window: Mapped[str | None] = mapped_column(String(16), nullable=True)  # "HH:MM-HH:MM" Tehran time
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # running paused halted completed aborted
    stage: Mapped[int] = mapped_column(Integer, nullable=False)  # the stage started last (-1: none yet)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: failures a manager accepted by resuming a halted rollout (they no longer count)
    failures_accepted: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class RolloutAction(Base):
    """One kiosk's part in a rollout: waiting, active (its stage started), then done, failed
    (the kiosk refused the configuration) or timed_out (it stayed silent)."""

    __tablename__ = "fleet_rollout_actions"
    __table_args__ = (UniqueConstraint("rollout_id", "kiosk_id", name="uq_fleet_rollout_kiosk"),
                      Index("ix_fleet_rollout_actions_kiosk", "kiosk_id", "status"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(Integer, nullable=False)
    kiosk_id: Mapped[str] = mapped_column(String(64), nullable=False)
    stage: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class Statement(Base):
    """The signed daily statement of every kiosk's journal head (issued once per day)."""

    __tablename__ = "fleet_statements"
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, Tehran
    document: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
