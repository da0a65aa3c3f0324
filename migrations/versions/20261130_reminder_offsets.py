"""reminder offsets with units: `appointment_reminders.offset` ("1d" local calendar days, "2h"/"30m"
absolute; NULL on rows made before). The organisation's own offsets are `organisations.reminder_offsets_minutes`
(20261130_structure_org_settings), which now also takes units.

Revision ID: 20261130_reminder_offsets
Revises: 20261130_media
Create Date: 2026-11-30 06:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261130_reminder_offsets"
down_revision = "20261130_media"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("appointment_reminders", sa.Column("offset", sa.String(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column("appointment_reminders", "offset")
