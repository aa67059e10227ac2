"""a transaction id is unique per kiosk, not across kiosks

Kiosks make their own transaction ids. With one id space for all kiosks, a post from kiosk B
that reused kiosk A's id was answered `payment.duplicate_transaction`, which told B that A's
payment exists; and two kiosks that happened to pick the same id could not both settle.

Revision ID: 0003_payment_tx_per_kiosk
Revises: 0002_journal_anchors
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_payment_tx_per_kiosk"
down_revision = "0002_journal_anchors"
branch_labels = None
depends_on = None

# 0001 declared these unique constraints without names: SQLite keeps them unnamed, PostgreSQL
# named them itself. On SQLite, batch mode names reflected constraints by this convention.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _unique_name(columns: list[str]) -> str | None:
    for uc in sa.inspect(op.get_bind()).get_unique_constraints("payments"):
        if uc["column_names"] == columns:
            return uc["name"]
    return None


def _swap(drop: list[str], drop_default: str, add: list[str], add_name: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("payments", recreate="always", naming_convention=_NAMING) as batch:
            batch.drop_constraint(_unique_name(drop) or drop_default, type_="unique")
            batch.create_unique_constraint(add_name, add)
    else:
        op.drop_constraint(_unique_name(drop) or drop_default, "payments", type_="unique")
        op.create_unique_constraint(add_name, "payments", add)


def upgrade() -> None:
    _swap(["transaction_id"], "uq_payments_transaction_id",
          ["kiosk_id", "transaction_id"], "uq_payments_kiosk_transaction")


def downgrade() -> None:
    _swap(["kiosk_id", "transaction_id"], "uq_payments_kiosk_transaction",
          ["transaction_id"], "uq_payments_transaction_id")
