"""throughput: an inbound provider event keeps its raw payload until a job has processed it (the
signed-webhook fast path answers once the event and its job are stored).

Revision ID: 20261130_throughput
Revises: 20261130_intake
Create Date: 2026-11-30 09:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20261130_throughput"
down_revision = "20261130_intake"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("inbound_events", sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column("inbound_events", "payload")
