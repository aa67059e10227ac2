"""transit: card accounts by serial, the load ledger, pending loads, pending actions, QR
tickets and their redemptions, and service credentials (integrations, gates)

0001 created `transit_accounts` keyed by card UID as a placeholder; no code ever wrote it. The
account is keyed by the card's 10-digit serial now. An empty placeholder is dropped; one that
somebody filled by hand is kept, renamed `transit_accounts_0003`, so no row is lost.

Revision ID: 0004_transit
Revises: 0003_payment_tx_per_kiosk
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_transit"
down_revision = "0003_payment_tx_per_kiosk"
branch_labels = None
depends_on = None

KEPT_PLACEHOLDER = "transit_accounts_0003"


def _placeholder_rows() -> int:
    return int(op.get_bind().execute(sa.text("SELECT count(*) FROM transit_accounts")).scalar_one())


def _create_placeholder(name: str) -> None:
    """0001's transit_accounts, column for column (for downgrade)."""
    op.create_table(
        name,
        sa.Column("card_uid", sa.String(32), primary_key=True),
        sa.Column("balance_rials", sa.BigInteger(), nullable=False),
        sa.Column("pending_load_rials", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("concession", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def upgrade() -> None:
    if _placeholder_rows():
        op.rename_table("transit_accounts", KEPT_PLACEHOLDER)
    else:
        op.drop_table("transit_accounts")

    op.create_table(
        "service_tokens",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("token_sha256", name="uq_service_tokens_token_sha256"),
    )
    op.create_table(
        "transit_accounts",
        sa.Column("card_serial", sa.String(10), primary_key=True),
        sa.Column("card_uid", sa.String(14), nullable=False),
        sa.Column("last_counter", sa.BigInteger(), nullable=False),
        sa.Column("last_balance_rials", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("concession", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "transit_pending_loads",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("card_serial", sa.String(10), nullable=False),
        sa.Column("amount_rials", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("external_ref", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("applied_at", sa.DateTime(), nullable=True),
        sa.Column("applied_kiosk_id", sa.String(64), nullable=True),
        sa.Column("applied_transaction_id", sa.String(64), nullable=True),
        sa.UniqueConstraint("source", "external_ref", name="uq_transit_pending_loads_source_ref"),
    )
    op.create_index("ix_transit_pending_loads_card_serial", "transit_pending_loads", ["card_serial"])
    op.create_table(
        "transit_loads",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kiosk_id", sa.String(64), sa.ForeignKey("kiosks.kiosk_id"), nullable=False),
        sa.Column("transaction_id", sa.String(64), nullable=False),
        sa.Column("card_serial", sa.String(10), sa.ForeignKey("transit_accounts.card_serial"), nullable=False),
        sa.Column("card_uid", sa.String(14), nullable=False),
        sa.Column("counter_before", sa.BigInteger(), nullable=False),
        sa.Column("counter_after", sa.BigInteger(), nullable=False),
        sa.Column("amount_rials", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("pending_load_id", sa.Integer(), sa.ForeignKey("transit_pending_loads.id"), nullable=True),
        sa.Column("settled_action_id", sa.Integer(), nullable=True),
        sa.Column("tracking_code", sa.String(32), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("response_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("kiosk_id", "transaction_id", name="uq_transit_loads_kiosk_transaction"),
        sa.UniqueConstraint("card_serial", "counter_after", name="uq_transit_loads_serial_counter"),
        sa.UniqueConstraint("pending_load_id", name="uq_transit_loads_pending_load"),
        sa.UniqueConstraint("tracking_code", name="uq_transit_loads_tracking_code"),
    )
    op.create_index("ix_transit_loads_kiosk_id", "transit_loads", ["kiosk_id"])
    op.create_index("ix_transit_loads_card_serial", "transit_loads", ["card_serial"])
    op.create_index("ix_transit_loads_created_at", "transit_loads", ["created_at"])
    op.create_table(
        "transit_pending_actions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kiosk_id", sa.String(64), sa.ForeignKey("kiosks.kiosk_id"), nullable=False),
        sa.Column("transaction_id", sa.String(64), nullable=False),
        sa.Column("card_serial", sa.String(10), nullable=False),
        sa.Column("card_uid", sa.String(14), nullable=False),
        sa.Column("counter_before", sa.BigInteger(), nullable=False),
        sa.Column("intended_balance", sa.BigInteger(), nullable=False),
        sa.Column("amount_rials", sa.BigInteger(), nullable=False),
        sa.Column("pending_load_id", sa.Integer(), sa.ForeignKey("transit_pending_loads.id"), nullable=True),
        sa.Column("tracking_code", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("settled_at", sa.DateTime(), nullable=True),
        sa.Column("settled_kiosk_id", sa.String(64), nullable=True),
        sa.Column("settled_by_transaction_id", sa.String(64), nullable=True),
        sa.Column("counter_seen", sa.BigInteger(), nullable=True),
        sa.Column("settle_sha256", sa.String(64), nullable=True),
        sa.UniqueConstraint("kiosk_id", "transaction_id", name="uq_transit_actions_kiosk_transaction"),
        sa.UniqueConstraint("card_serial", "transaction_id", name="uq_transit_actions_serial_transaction"),
        sa.UniqueConstraint("tracking_code", name="uq_transit_actions_tracking_code"),
    )
    op.create_index("ix_transit_pending_actions_kiosk_id", "transit_pending_actions", ["kiosk_id"])
    op.create_index("ix_transit_pending_actions_card_serial", "transit_pending_actions", ["card_serial"])
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.String(64), nullable=False),
        sa.Column("kiosk_id", sa.String(64), sa.ForeignKey("kiosks.kiosk_id"), nullable=False),
        sa.Column("transaction_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("trips", sa.Integer(), nullable=False),
        sa.Column("trips_used", sa.Integer(), nullable=False),
        sa.Column("valid_until", sa.DateTime(), nullable=False),
        sa.Column("amount_rials", sa.BigInteger(), nullable=False),
        sa.Column("tracking_code", sa.String(32), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("response_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("ticket_id", name="uq_tickets_ticket_id"),
        sa.UniqueConstraint("kiosk_id", "transaction_id", name="uq_tickets_kiosk_transaction"),
        sa.UniqueConstraint("tracking_code", name="uq_tickets_tracking_code"),
    )
    op.create_index("ix_tickets_kiosk_id", "tickets", ["kiosk_id"])
    op.create_index("ix_tickets_created_at", "tickets", ["created_at"])
    op.create_table(
        "ticket_redemptions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.String(64), sa.ForeignKey("tickets.ticket_id"), nullable=False),
        sa.Column("trip_no", sa.Integer(), nullable=False),
        sa.Column("gate_id", sa.String(64), nullable=False),
        sa.Column("gate_client", sa.String(64), nullable=False),
        sa.Column("request_key", sa.String(128), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("ticket_id", "trip_no", name="uq_ticket_redemptions_trip"),
        sa.UniqueConstraint("gate_client", "request_key", name="uq_ticket_redemptions_gate_key"),
    )
    op.create_index("ix_ticket_redemptions_ticket_id", "ticket_redemptions", ["ticket_id"])


def downgrade() -> None:
    for table in ("ticket_redemptions", "tickets", "transit_pending_actions", "transit_loads",
                  "transit_pending_loads", "transit_accounts", "service_tokens"):
        op.drop_table(table)
    if KEPT_PLACEHOLDER in sa.inspect(op.get_bind()).get_table_names():
        op.rename_table(KEPT_PLACEHOLDER, "transit_accounts")
    else:
        _create_placeholder("transit_accounts")
