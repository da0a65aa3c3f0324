"""coalesced job wake-ups (issue #19): no NOTIFY inside the transactions that queue jobs.

procrastinate's trigger `procrastinate_jobs_notify_queue_job_inserted_v1` sent two `pg_notify` for
every job row inserted with status 'todo'. PostgreSQL serialises the commit of every transaction that
sent a notification on one cluster-wide lock (the notification queue's), and signals every listening
backend at each such commit: a booking or a signed webhook, which each queue a job, paid that lock,
the trigger's PL/pgSQL and the listener's wake-up on every request (a third of a booking's database
CPU in `benchmarks/throughput.py`). The trigger is dropped; the process whose transaction queued jobs
wakes the workers after the commit, with one NOTIFY on procrastinate's own channels sent outside that
transaction and coalesced per process (`prm.core.jobs.Waker`), and the workers also poll
(`WORKER_POLL_SECONDS`) for jobs queued by anything that does not wake them.

The trigger function stays (procrastinate's schema owns it); the downgrade puts the trigger back as
procrastinate's schema defines it.

Revision ID: 20261130_job_wakeups
Revises: 20261130_name_search_prefixes
Create Date: 2026-11-30 16:30:00
"""

from __future__ import annotations

from alembic import op

revision = "20261130_job_wakeups"
down_revision = "20261130_name_search_prefixes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS procrastinate_jobs_notify_queue_job_inserted_v1 ON procrastinate_jobs")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS procrastinate_jobs_notify_queue_job_inserted_v1 ON procrastinate_jobs")
    op.execute(
        "CREATE TRIGGER procrastinate_jobs_notify_queue_job_inserted_v1 AFTER INSERT ON procrastinate_jobs "
        "FOR EACH ROW WHEN ((new.status = 'todo'::procrastinate_job_status)) "
        "EXECUTE PROCEDURE procrastinate_notify_queue_job_inserted_v1()"
    )
