"""payments keep the kiosk journal's anchor (journal_seq, journal_head)

Revision ID: 0002_journal_anchors
Revises: 0001_initial
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_journal_anchors"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: payments settled before anchors existed, and kiosks that do not send them
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("journal_seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("journal_head", sa.String(64), nullable=True))
    op.create_index("ix_payments_kiosk_journal_seq", "payments", ["kiosk_id", "journal_seq"])


def downgrade() -> None:
    op.drop_index("ix_payments_kiosk_journal_seq", table_name="payments")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("journal_head")
        batch.drop_column("journal_seq")
