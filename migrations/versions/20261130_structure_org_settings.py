"""organisation settings: an organisation's own phone region and reminder offsets (NULL follows the
process settings DEFAULT_PHONE_REGION and REMINDER_OFFSETS_MINUTES).

Revision ID: 20261130_structure_org_settings
Revises: 20261130_integrations
Create Date: 2026-11-30 05:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261130_structure_org_settings"
down_revision = "20261130_integrations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("organisations", sa.Column("default_phone_region", sa.String(length=2), nullable=True))
    op.add_column("organisations", sa.Column("reminder_offsets_minutes", sa.String(length=100), nullable=True))


def downgrade() -> None:
    op.drop_column("organisations", "reminder_offsets_minutes")
    op.drop_column("organisations", "default_phone_region")
