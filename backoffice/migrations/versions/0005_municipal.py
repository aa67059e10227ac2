"""municipal services (issue 9): back-office settings (the audit HMAC secret, the traffic-zone
permit's price and horizon), the look-up audit that also carries the look-up limits, settlement
certificates and traffic-zone day permits; camera credentials are a new service role (the
role column is a plain string, nothing to migrate)

The audit secret is made here, once per database, so every replica on the database hashes an
identifier to the same value and nobody has to hand it to them.

Revision ID: 0005_municipal
Revises: 0004_transit
Create Date: 2026-11-30
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0005_municipal"
down_revision = "0004_transit"
branch_labels = None
depends_on = None

# the defaults a fresh database starts with (backoffice settings set … changes them)
DEFAULT_PERMIT_PRICE_RIALS = 1_200_000
DEFAULT_PERMIT_HORIZON_DAYS = 7


def upgrade() -> None:
    settings = op.create_table(
        "backoffice_settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.bulk_insert(settings, [
        {"key": "audit.hmac_secret", "value": secrets.token_hex(32)},
        {"key": "traffic_permit.price_rials", "value": str(DEFAULT_PERMIT_PRICE_RIALS)},
        {"key": "traffic_permit.horizon_days", "value": str(DEFAULT_PERMIT_HORIZON_DAYS)},
    ])
    op.create_table(
        "lookup_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kiosk_id", sa.String(64), sa.ForeignKey("kiosks.kiosk_id", ondelete="CASCADE"), nullable=False),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("fee_type", sa.String(32), nullable=False),
        sa.Column("identifier_hmac", sa.String(64), nullable=False),
        sa.Column("result_count", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Boolean(), nullable=False),
        sa.Column("refused_by", sa.String(16), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_lookup_audit_kiosk_at", "lookup_audit", ["kiosk_id", "created_at"])
    op.create_index("ix_lookup_audit_identifier_at", "lookup_audit", ["identifier_hmac", "created_at"])
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("certificate_id", sa.String(32), nullable=False),
        sa.Column("kiosk_id", sa.String(64), sa.ForeignKey("kiosks.kiosk_id", ondelete="CASCADE"), nullable=False),
        sa.Column("request_key", sa.String(128), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("fee_type", sa.String(32), nullable=False),
        sa.Column("identifier_hmac", sa.String(64), nullable=False),
        sa.Column("identifier_masked", sa.String(64), nullable=False),
        sa.Column("owner_name_masked", sa.String(200), nullable=False),
        sa.Column("slips_checked", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("response_json", sa.Text(), nullable=False),
        sa.UniqueConstraint("certificate_id", name="uq_certificates_certificate_id"),
        sa.UniqueConstraint("kiosk_id", "request_key", name="uq_certificates_kiosk_key"),
    )
    op.create_index("ix_certificates_kiosk_id", "certificates", ["kiosk_id"])
    op.create_index("ix_certificates_identifier_hmac", "certificates", ["identifier_hmac"])
    op.create_table(
        "traffic_permits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("permit_id", sa.String(32), nullable=False),
        sa.Column("kiosk_id", sa.String(64), sa.ForeignKey("kiosks.kiosk_id", ondelete="CASCADE"), nullable=False),
        sa.Column("transaction_id", sa.String(64), nullable=False),
        sa.Column("plate", sa.String(64), nullable=False),
        sa.Column("permit_date", sa.Date(), nullable=False),
        sa.Column("amount_rials", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", sa.DateTime(), nullable=False),
        sa.Column("rrn", sa.String(64), nullable=False),
        sa.Column("stan", sa.String(32), nullable=False),
        sa.Column("poi_reference", sa.String(64), nullable=False),
        sa.Column("masked_pan", sa.String(32), nullable=False),
        sa.Column("tracking_code", sa.String(32), nullable=False),
        sa.Column("journal_seq", sa.BigInteger(), nullable=True),
        sa.Column("journal_head", sa.String(64), nullable=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("response_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("plate", "permit_date", name="uq_traffic_permits_plate_date"),
        sa.UniqueConstraint("kiosk_id", "transaction_id", name="uq_traffic_permits_kiosk_transaction"),
        sa.UniqueConstraint("permit_id", name="uq_traffic_permits_permit_id"),
        sa.UniqueConstraint("tracking_code", name="uq_traffic_permits_tracking_code"),
    )
    op.create_index("ix_traffic_permits_kiosk_id", "traffic_permits", ["kiosk_id"])


def downgrade() -> None:
    op.drop_table("traffic_permits")
    op.drop_table("certificates")
    op.drop_table("lookup_audit")
    op.drop_table("backoffice_settings")
