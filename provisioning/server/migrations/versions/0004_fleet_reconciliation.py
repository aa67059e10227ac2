"""fleet server: daily reconciliation results against the back-office, one row per (day, kiosk);
journal rows indexed by time (a day's transactions, the hourly chart, the daily statement)

Revision ID: 0004_fleet_reconciliation
Revises: 0003_fleet_rollouts
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_fleet_reconciliation"
down_revision = "0003_fleet_rollouts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_reconciliations",
        sa.Column("day", sa.String(10), primary_key=True),  # YYYY-MM-DD, Tehran
        sa.Column("kiosk_id", sa.String(64), primary_key=True),
        sa.Column("run_at", sa.DateTime(), nullable=False),
        sa.Column("run_by", sa.String(100), nullable=False),
        sa.Column("kiosk_count", sa.Integer(), nullable=False),
        sa.Column("kiosk_rials", sa.BigInteger(), nullable=False),
        sa.Column("backoffice_count", sa.Integer(), nullable=False),
        sa.Column("backoffice_rials", sa.BigInteger(), nullable=False),
        sa.Column("difference_count", sa.Integer(), nullable=False),
        sa.Column("differences", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("ix_fleet_journal_at", "fleet_journal", ["at"])


def downgrade() -> None:
    op.drop_index("ix_fleet_journal_at", table_name="fleet_journal")
    op.drop_table("fleet_reconciliations")
