"""The job table is looked after with procrastinate's own job manager (committed data, real SQL).

* pruning deletes finished jobs older than the retention, failed ones only after their own, longer
  retention, never a job still to run, and not even a periodic task's last job trips on the
  `procrastinate_periodic_defers` foreign key;
* stalled-job recovery puts a dead worker's running jobs back in the queue, and fails one that has
  already been recovered too often; a running job of a live worker is left alone.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import procrastinate
import pytest
from sqlalchemy import text

from prm.core import jobs
from prm.core.db import Database

TASK = "idempotency.purge"  # any registered job: these rows are never run


@pytest.fixture
async def procrastinate_app(db: Database) -> AsyncIterator[procrastinate.App]:
    app = jobs.build_app(db.url)
    async with app.open_async():
        yield app


async def _job(db: Database, *, status: str, hours_ago: float, queue: str = "default",
               attempts: int = 0, worker_id: int | None = None) -> int:
    """A job in `status` whose last event happened `hours_ago` hours ago."""
    async with db.sessionmaker() as s:
        job_id = await jobs.defer(s, TASK)
        assert job_id is not None
        if status == "cancelled":
            await jobs.cancel_pending(s, job_id)
        elif status != "todo":
            await s.execute(text("UPDATE procrastinate_jobs SET status = CAST(:st AS procrastinate_job_status), "
                                 "attempts = :attempts, worker_id = :worker, queue_name = :queue WHERE id = :id"),
                            {"st": status, "attempts": attempts, "worker": worker_id, "queue": queue, "id": job_id})
        await s.execute(text("UPDATE procrastinate_events SET at = now() - make_interval(secs => :secs) "
                             "WHERE job_id = :id"), {"secs": hours_ago * 3600, "id": job_id})
        await s.commit()
    return job_id


async def _states(db: Database, ids: list[int]) -> dict[int, Any]:
    async with db.sessionmaker() as s:
        rows = (await s.execute(text("SELECT id, status::text FROM procrastinate_jobs WHERE id = ANY(:ids)"),
                                {"ids": ids})).all()
    return {i: dict(rows).get(i) for i in ids}  # type: ignore[arg-type]


async def test_prune_deletes_old_finished_jobs_and_keeps_failed_ones_longer(
    db: Database, procrastinate_app: procrastinate.App
) -> None:
    old_success = await _job(db, status="succeeded", hours_ago=2)
    new_success = await _job(db, status="succeeded", hours_ago=0)
    old_cancelled = await _job(db, status="cancelled", hours_ago=2)
    recent_failure = await _job(db, status="failed", hours_ago=2)
    old_failure = await _job(db, status="failed", hours_ago=4)
    waiting = await _job(db, status="todo", hours_ago=10)
    last_periodic = await _job(db, status="succeeded", hours_ago=2)
    async with db.sessionmaker() as s:
        await s.execute(text("INSERT INTO procrastinate_periodic_defers (task_name, defer_timestamp, job_id, "
                             "periodic_id) VALUES (:task, 1, :id, :pid)"),
                        {"task": TASK, "id": last_periodic, "pid": f"test-{uuid.uuid4().hex}"})
        await s.commit()

    await jobs.prune(procrastinate_app.job_manager, retention_hours=1, failed_retention_hours=3)

    assert await _states(db, [old_success, new_success, old_cancelled, recent_failure, old_failure, waiting,
                              last_periodic]) == {
        old_success: None, new_success: "succeeded", old_cancelled: None, recent_failure: "failed",
        old_failure: None, waiting: "todo", last_periodic: None,
    }
    async with db.sessionmaker() as s:  # leave nothing runnable behind in the shared test database
        await s.execute(text("DELETE FROM procrastinate_jobs WHERE id = :id"), {"id": waiting})
        await s.commit()


async def test_recovery_requeues_a_dead_workers_jobs_and_fails_one_recovered_too_often(
    db: Database, procrastinate_app: procrastinate.App
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    manager = procrastinate_app.job_manager
    async with db.sessionmaker() as s:
        dead = (await s.execute(text("INSERT INTO procrastinate_workers (last_heartbeat) "
                                     "VALUES (now() - interval '1 hour') RETURNING id"))).scalar_one()
        alive = (await s.execute(text("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id"))).scalar_one()
        await s.commit()
    interrupted = await _job(db, status="doing", hours_ago=0, queue=queue, worker_id=dead)
    orphan = await _job(db, status="doing", hours_ago=0, queue=queue, worker_id=None)  # worker row pruned
    poison = await _job(db, status="doing", hours_ago=0, queue=queue, worker_id=dead, attempts=7)
    busy = await _job(db, status="doing", hours_ago=0, queue=queue, worker_id=alive)

    listed = await jobs.stalled_jobs(manager, stalled_after_seconds=30, queue=queue)
    assert {j.id for j in listed} == {interrupted, orphan, poison}
    recovered = await jobs.recover_stalled(manager, stalled_after_seconds=30, max_recoveries=8, queue=queue)

    assert sorted(recovered) == sorted([interrupted, orphan])
    assert await _states(db, [interrupted, orphan, poison, busy]) == {
        interrupted: "todo", orphan: "todo", poison: "failed", busy: "doing",
    }
    assert await jobs.recover_stalled(manager, stalled_after_seconds=30, queue=queue) == []
    async with db.sessionmaker() as s:  # leave nothing runnable behind in the shared test database
        await s.execute(text("DELETE FROM procrastinate_jobs WHERE queue_name = :q"), {"q": queue})
        await s.execute(text("DELETE FROM procrastinate_workers WHERE id IN (:a, :b)"), {"a": dead, "b": alive})
        await s.commit()


def test_recovery_cron_runs_at_the_configured_interval() -> None:
    assert jobs.Housekeeping(recovery_interval_seconds=2).recovery_cron == "* * * * * */2"
    assert jobs.Housekeeping(recovery_interval_seconds=60).recovery_cron == "*/1 * * * *"
    assert jobs.Housekeeping(recovery_interval_seconds=600).recovery_cron == "*/10 * * * *"
