"""fleet server: uploaded kiosk journals and the problems found in them

Revision ID: 0002_fleet_journal
Revises: 0001_fleet_initial
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_fleet_journal"
down_revision = "0001_fleet_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_journal",
        sa.Column("kiosk_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("tx_id", sa.String(100), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("at", sa.Float(precision=53), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("amount_rials", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_fleet_journal_tx", "fleet_journal", ["kiosk_id", "tx_id"])
    op.create_table(
        "fleet_journal_problems",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kiosk_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_fleet_journal_problems_kiosk_id", "fleet_journal_problems", ["kiosk_id"])


def downgrade() -> None:
    op.drop_table("fleet_journal_problems")
    op.drop_table("fleet_journal")
