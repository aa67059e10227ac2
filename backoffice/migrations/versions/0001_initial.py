"""initial back-office schema: kiosks, owners, bills (incl. fee slips), payments,
idempotency, transit_accounts

Revision ID: 0001_initial
Revises:
Create Date: 2025-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kiosks",
        sa.Column("kiosk_id", sa.String(64), primary_key=True),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "owners",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("national_code", sa.String(10), nullable=True),
        sa.Column("renovation_code", sa.String(32), nullable=True),
        sa.Column("plate", sa.String(64), nullable=True),
        sa.Column("business_license", sa.String(32), nullable=True),
        sa.Column("name_fa", sa.String(200), nullable=False),
    )
    for col in ("national_code", "renovation_code", "plate", "business_license"):
        op.create_index(f"ix_owners_{col}", "owners", [col])
    op.create_table(
        "bills",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("bill_id", sa.String(13), nullable=False),
        sa.Column("payment_id", sa.String(13), nullable=False),
        sa.Column("service_type", sa.Integer(), nullable=False),
        sa.Column("company_code", sa.String(3), nullable=False),
        sa.Column("amount_rials", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("payer_name", sa.String(200), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("description_fa", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("owners.id"), nullable=True),
        sa.Column("slip_kind", sa.String(32), nullable=True),
        sa.Column("period_label", sa.String(64), nullable=True),
        sa.UniqueConstraint("bill_id", "payment_id", name="uq_bills_bill_payment"),
    )
    op.create_index("ix_bills_owner_id", "bills", ["owner_id"])
    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("transaction_id", sa.String(64), nullable=False, unique=True),
        sa.Column("kiosk_id", sa.String(64), sa.ForeignKey("kiosks.kiosk_id"), nullable=False),
        sa.Column("bill_id", sa.String(13), nullable=False),
        sa.Column("payment_id", sa.String(13), nullable=False),
        sa.Column("amount_rials", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", sa.DateTime(), nullable=False),
        sa.Column("rrn", sa.String(64), nullable=False),
        sa.Column("stan", sa.String(32), nullable=False),
        sa.Column("poi_reference", sa.String(64), nullable=False),
        sa.Column("masked_pan", sa.String(32), nullable=False),
        sa.Column("tracking_code", sa.String(32), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("bill_id", "payment_id", name="uq_payments_bill_payment"),
    )
    op.create_index("ix_payments_kiosk_id", "payments", ["kiosk_id"])
    op.create_table(
        "idempotency",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kiosk_id", sa.String(64), sa.ForeignKey("kiosks.kiosk_id"), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("kiosk_id", "key", name="uq_idempotency_kiosk_key"),
    )
    op.create_table(
        "transit_accounts",
        sa.Column("card_uid", sa.String(32), primary_key=True),
        sa.Column("balance_rials", sa.BigInteger(), nullable=False),
        sa.Column("pending_load_rials", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("concession", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ("transit_accounts", "idempotency", "payments", "bills", "owners", "kiosks"):
        op.drop_table(table)
