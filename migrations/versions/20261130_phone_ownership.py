"""phone ownership: a phone number belongs to one organisation whatever the channel.

`uq_channel_configs_channel_sender` only kept two organisations from sharing a number on the same
channel: organisation B could configure A's SMS number for WhatsApp, and inbound messages to it
could then be stored in B. An exclusion constraint now refuses two rows with the same phone sender
and different organisations (one organisation may still use its number on several channels).

Revision ID: 20261130_phone_ownership
Revises: 20261130_platform_admin
Create Date: 2026-11-30 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261130_phone_ownership"
down_revision = "20261130_platform_admin"
branch_labels = None
depends_on = None

CONSTRAINT = "ex_channel_configs_number_one_org"


def upgrade() -> None:
    shared = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM (SELECT sender FROM channel_configs WHERE sender IS NOT NULL AND channel <> 'email' "
        "GROUP BY sender HAVING count(DISTINCT org_id) > 1) AS s")).scalar_one()
    if shared:
        raise RuntimeError(
            f"{shared} phone number(s) are configured by more than one organisation in channel_configs; "
            "decide which organisation owns each number and clear the sender of the others' phone "
            "channels (PUT /communications/channels/{channel}) before migrating"
        )
    op.execute(
        f"ALTER TABLE channel_configs ADD CONSTRAINT {CONSTRAINT} EXCLUDE USING gist "
        "(sender WITH =, org_id WITH <>) WHERE (sender IS NOT NULL AND channel <> 'email')"
    )


def downgrade() -> None:
    op.execute(f"ALTER TABLE channel_configs DROP CONSTRAINT {CONSTRAINT}")
