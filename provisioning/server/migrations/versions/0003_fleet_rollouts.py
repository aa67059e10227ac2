"""fleet server: staged rollouts and their per-kiosk actions; signed daily statements

Revision ID: 0003_fleet_rollouts
Revises: 0002_fleet_journal
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_fleet_rollouts"
down_revision = "0002_fleet_journal"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_rollouts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("stages", sa.JSON(), nullable=False),
        sa.Column("action_timeout_s", sa.Integer(), nullable=False),
        sa.Column("max_failure_pct", sa.Integer(), nullable=False),
        sa.Column("window", sa.String(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("failures_accepted", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "fleet_rollout_actions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("kiosk_id", sa.String(64), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.UniqueConstraint("rollout_id", "kiosk_id", name="uq_fleet_rollout_kiosk"),
    )
    op.create_index("ix_fleet_rollout_actions_kiosk", "fleet_rollout_actions", ["kiosk_id", "status"])
    op.create_table(
        "fleet_statements",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fleet_statements")
    op.drop_table("fleet_rollout_actions")
    op.drop_table("fleet_rollouts")
