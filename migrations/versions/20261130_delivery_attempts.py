"""delivery attempts: every hand-over of a message to its provider, recorded before the call, so a
retry reconciles an uncertain attempt instead of sending again.

Revision ID: 20261130_delivery_attempts
Revises: 20261130_phone_ownership
Create Date: 2026-11-30 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261130_delivery_attempts"
down_revision = "20261130_phone_ownership"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_attempts",
        sa.Column("communication_id", sa.UUID(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("reconciled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.CheckConstraint("state IN ('pending', 'accepted', 'refused', 'lost')", name=op.f("ck_delivery_attempts_state")),
        sa.ForeignKeyConstraint(["communication_id"], ["communications.id"],
                                name=op.f("fk_delivery_attempts_communication_id_communications"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"],
                                name=op.f("fk_delivery_attempts_org_id_organisations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
        sa.UniqueConstraint("communication_id", "number", name="uq_delivery_attempts_communication_number"),
    )
    op.create_index(op.f("ix_delivery_attempts_org_id"), "delivery_attempts", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_delivery_attempts_org_id"), table_name="delivery_attempts")
    op.drop_table("delivery_attempts")
