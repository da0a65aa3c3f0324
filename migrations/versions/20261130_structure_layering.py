"""layering: no foreign key from a lower layer's table to a higher one's. `communications` and `tickets`
keep `conversation_id` (indexed) without a foreign key to `conversations`; the conversations module
owns the link (it sets it and never deletes a conversation).

Revision ID: 20261130_structure_layering
Revises: 20261130_agents
Create Date: 2026-11-30 06:25:00
"""

from __future__ import annotations

from alembic import op

revision = "20261130_structure_layering"
down_revision = "20261130_agents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("fk_communications_conversation_id_conversations", "communications", type_="foreignkey")
    op.drop_constraint("fk_tickets_conversation_id_conversations", "tickets", type_="foreignkey")


def downgrade() -> None:
    op.execute(
        "UPDATE communications SET conversation_id = NULL WHERE conversation_id IS NOT NULL "
        "AND conversation_id NOT IN (SELECT id FROM conversations)"
    )
    op.execute(
        "UPDATE tickets SET conversation_id = NULL WHERE conversation_id IS NOT NULL "
        "AND conversation_id NOT IN (SELECT id FROM conversations)"
    )
    op.create_foreign_key(
        "fk_tickets_conversation_id_conversations", "tickets", "conversations", ["conversation_id"], ["id"],
        ondelete="SET NULL",
    )
    op.create_foreign_key(
        "fk_communications_conversation_id_conversations", "communications", "conversations",
        ["conversation_id"], ["id"], ondelete="SET NULL",
    )
