"""reminder sweep (issue #19): reminders are fired by a sweep every minute instead of one queued job
each, so a booking writes no job per reminder. The sweep reads the scheduled reminders by due time
through a partial index, built with CREATE INDEX CONCURRENTLY outside the migration's transaction
(bookings go on writing reminders while it builds; a leftover of an interrupted build is dropped
first). Reminders scheduled before keep their jobs, which fire them as before (once: whoever comes
first holds the reminder's row lock and marks it due).

Revision ID: 20261130_reminder_sweep
Revises: 20261130_name_search_ranking
Create Date: 2026-11-30 14:30:00
"""

from __future__ import annotations

from alembic import op

revision = "20261130_reminder_sweep"
down_revision = "20261130_name_search_ranking"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_appointment_reminders_due")
        op.execute("CREATE INDEX CONCURRENTLY ix_appointment_reminders_due ON appointment_reminders (due_at) "
                   "WHERE status = 'scheduled'")


def downgrade() -> None:
    # the reminders scheduled meanwhile have no job of their own: downgrading the code stops them
    # (they stay scheduled); re-queue them with one job each before running older code
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_appointment_reminders_due")
