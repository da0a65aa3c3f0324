"""platform admin: a flag on users and API keys that alone allows creating organisations
(`platform:admin` scope). Set only by the operator's CLI; an organisation's admin never has it.

Revision ID: 20261130_platform_admin
Revises: 20261130_journeys
Create Date: 2026-11-30 05:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261130_platform_admin"
down_revision = "20261130_journeys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("users", "api_keys"):
        op.add_column(table, sa.Column("is_platform_admin", sa.Boolean(), server_default=sa.text("false"),
                                       nullable=False))


def downgrade() -> None:
    for table in ("users", "api_keys"):
        op.drop_column(table, "is_platform_admin")
