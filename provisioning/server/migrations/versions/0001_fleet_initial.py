"""fleet server: kiosks, enrollment and manager tokens, config layers, counters, commands,
nonces, audit, signing key

Revision ID: 0001_fleet_initial
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_fleet_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_kiosks",
        sa.Column("kiosk_id", sa.String(64), primary_key=True),
        sa.Column("serial", sa.String(64), nullable=False, unique=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("app_version", sa.String(32), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("site", sa.String(64), nullable=True),
        sa.Column("enroll_token_id", sa.Integer(), nullable=True),
        sa.Column("enrolled_at", sa.DateTime(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(), nullable=True),
        sa.Column("heartbeat", sa.JSON(), nullable=True),
        sa.Column("desired_version", sa.BigInteger(), nullable=False),
        sa.Column("desired_hash", sa.String(64), nullable=True),
        sa.Column("reported_version", sa.BigInteger(), nullable=True),
        sa.Column("reported_values", sa.JSON(), nullable=True),
        sa.Column("config_state", sa.String(200), nullable=True),
    )
    op.create_index("ix_fleet_kiosks_site", "fleet_kiosks", ["site"])
    op.create_table(
        "fleet_enroll_tokens",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("site", sa.String(64), nullable=True),
        sa.Column("needs_approval", sa.Boolean(), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
    )
    op.create_table(
        "fleet_manager_tokens",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
    )
    op.create_table(
        "fleet_config_layers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.UniqueConstraint("scope", "target", "revision", name="uq_fleet_layer_rev"),
    )
    counters = op.create_table(
        "fleet_counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    # created here, so two processes never race to insert it
    op.bulk_insert(counters, [{"name": "config", "value": 0}])
    op.create_table(
        "fleet_commands",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kiosk_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
    )
    op.create_index("ix_fleet_commands_kiosk_status", "fleet_commands", ["kiosk_id", "status"])
    op.create_table(
        "fleet_nonces",
        sa.Column("kiosk_id", sa.String(64), primary_key=True),
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_fleet_nonces_seen", "fleet_nonces", ["seen_at"])
    op.create_table(
        "fleet_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(100), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_table(
        "fleet_signing_keys",
        sa.Column("name", sa.String(16), primary_key=True),
        sa.Column("private_b64", sa.String(64), nullable=False),
        sa.Column("public_b64", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ("fleet_signing_keys", "fleet_audit", "fleet_nonces", "fleet_commands", "fleet_counters",
                  "fleet_config_layers", "fleet_manager_tokens", "fleet_enroll_tokens", "fleet_kiosks"):
        op.drop_table(table)
