"""A `prm worker` killed with SIGKILL mid-batch loses no job and sends nothing twice.

A 200-recipient SMS batch (sandbox provider) is started on a test-owned database; the worker is
killed while it works through it. Its running jobs stay `doing`: the operator sees them with
`prm jobs list --stalled` and can retry one with `prm jobs retry`; a new worker recovers the rest by
itself (procrastinate's stalled-job API, from a periodic task). Every recipient is sent exactly once
and the batch completes.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from prm import context
from prm.core.db import Database
from prm.notifications import service as notifications
from prm.notifications.schemas import BatchCreate
from prm.settings import Settings
from tests.e2e.processes import OwnPostgres, prm_env, start_prm, stop_process, wait_until
from tests.fixtures.factories import make_org, make_patient, principal
from tests.fixtures.messaging import new_phone

pytestmark = pytest.mark.slow

RECIPIENTS = 200
BATCH_TASKS = ("notifications.send_batch_item", "communications.send")
# WORKER_NICE=0: these workers share the cores with the rest of the test suite, not with API
# processes; at a lower priority (its database processes too) a loaded machine starved them past
# the timeouts. What is tested here is recovery, not scheduling (test_serve_workers checks that).
FAST_RECOVERY = {"JOB_HEARTBEAT_SECONDS": "1", "JOB_STALLED_AFTER_SECONDS": "3",
                 "JOB_RECOVERY_INTERVAL_SECONDS": "2", "WORKER_CONCURRENCY": "4", "WORKER_NICE": "0"}


async def _create_batch(url: str, settings: Settings) -> tuple[str, str]:
    db = Database.connect(url, pool_size=1, max_overflow=0)
    context.bind(db.sessionmaker, context.Context.build(settings))
    try:
        async with db.sessionmaker() as session:
            org = await make_org(session, name="Fault Clinic")
            patients = [await make_patient(session, org, phone=new_phone()) for _ in range(RECIPIENTS)]
            batch = await notifications.create_batch(
                session, principal(org),
                BatchCreate(template_key="appointment_reminder", channel="sms", purpose="care",
                            variables={"service_name": "Cleaning", "practitioner_name": "Dr Ruiz",
                                       "location_name": "Main St", "when": "Tuesday 10:30"},
                            patient_ids=[p.id for p in patients]),  # type: ignore[attr-defined]
            )
            await session.commit()
            return str(org.id), str(batch.id)
    finally:
        await db.dispose()


def _one(url: str, sql: str, *params: Any) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql, params).fetchone()
        return row if row is None or len(row) > 1 else row[0]


def _cli(url: str, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = prm_env(root, DATABASE_URL=url, LOG_LEVEL="WARNING", **FAST_RECOVERY)
    return subprocess.run([sys.executable, "-m", "prm", *args], env=env, cwd=root, capture_output=True,
                          text=True, timeout=120)


def _state(url: str, org_id: str, batch_id: str) -> str:
    """What a timed-out wait saw: the batch, its messages and every job by task and status."""
    return str(_one(
        url, "SELECT json_build_object("
             "'batch_completed', (SELECT completed_at IS NOT NULL FROM notification_batches WHERE id = %s), "
             "'messages', (SELECT json_object_agg(status, n) FROM (SELECT status::text, count(*) AS n "
             "FROM communications WHERE org_id = %s GROUP BY 1) m), "
             "'outbox', (SELECT count(*) FROM sandbox_outbox WHERE org_id = %s), "
             "'jobs', (SELECT json_agg(j) FROM (SELECT task_name, status::text, attempts, count(*) AS n, "
             "min(id) AS first_id, bool_or(worker_id IS NULL) AS no_worker FROM procrastinate_jobs "
             "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3) j), "
             "'workers', (SELECT json_agg(json_build_object('id', id, 'heartbeat_age', "
             "extract(epoch FROM now() - last_heartbeat))) FROM procrastinate_workers))",
        batch_id, org_id, org_id))


async def test_worker_killed_mid_batch_loses_nothing_and_sends_once(
    app: Any, settings: Settings, own_postgres: OwnPostgres
) -> None:
    url, root = own_postgres.url, own_postgres.root
    org_id, batch_id = await _create_batch(url, settings)
    sent = "SELECT count(*) FROM sandbox_outbox WHERE org_id = %s"
    env = prm_env(root, DATABASE_URL=url, **FAST_RECOVERY)
    first_log, second_log = root / "worker1.log", root / "worker2.log"

    first = start_prm(["worker"], env, first_log, root)
    try:
        wait_until(lambda: _one(url, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded' "
                                     "AND task_name = ANY(%s)", list(BATCH_TASKS)) >= 30,
                   timeout=180, what="the first jobs", logs=[first_log])
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert _one(url, sent, org_id) < RECIPIENTS, "the batch finished before the worker was killed"
    running = _one(url, "SELECT array_agg(id) FROM procrastinate_jobs WHERE status = 'doing' "
                        "AND task_name = ANY(%s)", list(BATCH_TASKS))
    assert running, "no job was running when the worker was killed"

    # The operator's view: the dead worker's jobs are listed as stalled once its heartbeat is old.
    listed = wait_until(lambda: (r := _cli(url, root, "jobs", "list", "--stalled")).returncode == 0
                        and not r.stdout.startswith("0 stalled") and r, timeout=60, what="stalled jobs listed")
    stalled_ids = [int(m) for m in re.findall(r"^\s*(\d+)\s+stalled\s+attempts=", listed.stdout, re.MULTILINE)]
    # every job the dead worker was running (and perhaps one more: a fetch it sent just before it died
    # still commits, in autocommit, after the count above)
    assert set(running) <= set(stalled_ids), listed.stdout
    retried = _cli(url, root, "jobs", "retry", str(stalled_ids[0]))
    assert retried.returncode == 0 and "todo again" in retried.stdout, retried.stdout + retried.stderr
    assert _one(url, "SELECT status::text FROM procrastinate_jobs WHERE id = %s", stalled_ids[0]) == "todo"

    # A new worker recovers the others by itself and finishes the batch.
    second = start_prm(["worker"], env, second_log, root)
    try:
        wait_until(
            lambda: _one(url, "SELECT completed_at IS NOT NULL FROM notification_batches WHERE id = %s", batch_id)
            and _one(url, "SELECT count(*) FROM communications WHERE org_id = %s AND status = 'sent'", org_id)
            == RECIPIENTS
            and _one(url, "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') "
                          "AND task_name = ANY(%s)", list(BATCH_TASKS)) == 0,
            timeout=300, what="the batch to complete", logs=[second_log],
            state=lambda: _state(url, org_id, batch_id))
    finally:
        code = stop_process(second)
    assert code == 0, second_log.read_text()[-3000:]

    total, messages, patients = _one(
        url, "SELECT count(*), count(DISTINCT communication_id), count(DISTINCT patient_id) "
             "FROM sandbox_outbox WHERE org_id = %s", org_id)
    assert (total, messages, patients) == (RECIPIENTS, RECIPIENTS, RECIPIENTS)
    assert _one(url, "SELECT count(*) FROM notification_batch_items WHERE batch_id = %s AND status = 'queued' "
                     "AND communication_id IS NOT NULL", batch_id) == RECIPIENTS
    # the stalled jobs the operator did not retry were recovered by the periodic task: run again, done
    # (a live worker's job may be recovered too when a loaded machine delays its heartbeat: safe, not
    # counted here)
    recovered = _one(url, "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s) AND status = 'succeeded' "
                          "AND attempts >= 2", stalled_ids[1:])
    retried_jobs = _one(url, "SELECT json_agg(json_build_object('id', id, 'task', task_name, 'status', status, "
                             "'attempts', attempts)) FROM procrastinate_jobs WHERE attempts >= 1")
    assert recovered == len(stalled_ids) - 1, (f"the other stalled jobs were not recovered by the periodic task: "
                                               f"{recovered} of {stalled_ids[1:]}; jobs tried again: {retried_jobs}")
    assert _one(url, "SELECT status::text FROM procrastinate_jobs WHERE id = %s", stalled_ids[0]) == "succeeded"
    assert "jobs.stalled_recovered" in second_log.read_text()
