"""complete the notification batches that a race left open.

Two items of a batch finishing at the same moment could each count the other as still pending, so
neither marked the batch complete (fixed in `notifications.batches.send_batch_item`, which now takes
the batch's row lock before counting). Every batch with no pending item left is marked complete here,
at the time of the last message it queued (or of its last change when it queued none).

Revision ID: 20261130_batch_completion
Revises: 20261130_job_wakeups
Create Date: 2026-11-30 23:10:00
"""

from __future__ import annotations

from alembic import op

revision = "20261130_batch_completion"
down_revision = "20261130_job_wakeups"
branch_labels = None
depends_on = None

COMPLETE_FINISHED_BATCHES = """
UPDATE notification_batches AS b
SET completed_at = COALESCE(
    (SELECT max(c.created_at) FROM notification_batch_items AS i
     JOIN communications AS c ON c.id = i.communication_id WHERE i.batch_id = b.id),
    b.updated_at)
WHERE b.completed_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM notification_batch_items AS i WHERE i.batch_id = b.id AND i.status = 'pending')
"""


def upgrade() -> None:
    op.execute(COMPLETE_FINISHED_BATCHES)


def downgrade() -> None:
    """Nothing to undo: a batch with no pending item is complete under either revision."""
