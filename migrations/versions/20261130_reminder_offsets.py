"""reminder offsets with units: `appointment_reminders.offset` ("1d" local days, "2h"/"30m" absolute) and
per-organisation `appointment_settings.reminder_offsets` (NULL follows REMINDER_OFFSETS).

Revision ID: 20261130_reminder_offsets
Revises: 20261130_integrations
Create Date: 2026-11-30 06:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261130_reminder_offsets"
down_revision = "20261130_integrations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("appointment_reminders", sa.Column("offset", sa.String(length=16), nullable=True))
    op.create_table(
        "appointment_settings",
        sa.Column("reminder_offsets", sa.String(length=200), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name=op.f("fk_appointment_settings_org_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointment_settings")),
        sa.UniqueConstraint("org_id", name="uq_appointment_settings_org"),
    )
    op.create_index(op.f("ix_appointment_settings_org_id"), "appointment_settings", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_appointment_settings_org_id"), table_name="appointment_settings")
    op.drop_table("appointment_settings")
    op.drop_column("appointment_reminders", "offset")
