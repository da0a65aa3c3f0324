"""notification settings: per organisation, which automatic appointment notices go out
(booked, rescheduled, cancelled; NULL follows the APPOINTMENT_NOTIFICATIONS setting).

Revision ID: 20261125_0006
Revises: 20261125_0005
Create Date: 2026-11-25 15:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261125_0006"
down_revision = "20261125_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_settings",
        sa.Column("appointment_booked", sa.Boolean(), nullable=True),
        sa.Column("appointment_rescheduled", sa.Boolean(), nullable=True),
        sa.Column("appointment_cancelled", sa.Boolean(), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name=op.f("fk_notification_settings_org_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_settings")),
        sa.UniqueConstraint("org_id", name="uq_notification_settings_org"),
    )
    op.create_index(op.f("ix_notification_settings_org_id"), "notification_settings", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_notification_settings_org_id"), table_name="notification_settings")
    op.drop_table("notification_settings")
