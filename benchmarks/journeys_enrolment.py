"""Journeys benchmark: enrolments per second when 10,000 patients match a trigger at once, and the
delay between a wait's due time and its step running, with the worker as a separate process.

    PYTHONPATH=src python benchmarks/journeys_enrolment.py      (JOURNEYS_BENCH_PATIENTS=10000)

Starts a throwaway embedded PostgreSQL (or uses DATABASE_URL), migrates it, then:
1. publishes a `patient.created` trigger for N patients in one transaction (N delivery jobs), starts
   `prm worker` as its own process and prints how fast the instances appear (each enrolment: the
   entry-policy insert, the first stage, the first step run and its job, audit);
2. enrols 200 patients by hand in a journey whose first step waits one minute, and prints p50/p95/
   max of (step started − due time) as the separate worker runs them.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from prm import modules
from prm.app import migrations_dir
from prm.core import embedded
from prm.core import logging as prm_logging
from prm.core.auth import Principal
from prm.core.db import Database
from prm.identity import service as identity
from prm.identity.schemas import OrganisationCreate
from prm.journeys import service
from prm.journeys.schemas import InstanceCreate, JourneyCreate

PATIENTS = int(os.environ.get("JOURNEYS_BENCH_PATIENTS", "10000"))
WAITERS = 200
CONCURRENCY = int(os.environ.get("JOURNEYS_BENCH_CONCURRENCY", "8"))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def prepare() -> str:
    url = os.environ.get("DATABASE_URL") or embedded.start(
        Path(tempfile.mkdtemp(prefix="prm-bench-")) / "pg", throwaway=True
    )
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")
    return url


def start_worker(url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING", "ENVIRONMENT": "development",
           "PRM_DATA_DIR": tempfile.mkdtemp(prefix="prm-bench-data-")}
    return subprocess.Popen([sys.executable, "-m", "prm", "worker", "--concurrency", str(CONCURRENCY)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def setup(db: Database) -> dict[str, Any]:
    async with db.sessionmaker() as s:
        org = await identity.create_organisation(
            s, OrganisationCreate(name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}", timezone="Europe/Madrid"))
        who = Principal.system(org.id)
        triggered = await service.create(s, who, JourneyCreate.model_validate({
            "key": "welcome", "name": "Welcome", "entry_policy": "once_per_patient",
            "definition": {"triggers": [{"event": "patient.created"}],
                           "stages": [{"key": "start", "name": "Start", "entry": "tomorrow"}],
                           "steps": [{"id": "tomorrow", "kind": "wait", "days": 1, "next": "done"},
                                     {"id": "done", "kind": "end"}]}}))
        await service.publish(s, who, triggered.id)
        waiting = await service.create(s, who, JourneyCreate.model_validate({
            "key": "minute", "name": "One minute", "entry_policy": "every_time",
            "definition": {"stages": [{"key": "start", "name": "Start", "entry": "minute"}],
                           "steps": [{"id": "minute", "kind": "wait", "minutes": 1, "next": "done"},
                                     {"id": "done", "kind": "end"}]}}))
        await service.publish(s, who, waiting.id)
        await s.commit()
        return {"org_id": org.id, "triggered": triggered.id, "waiting": waiting.id}


async def publish_triggers(db: Database, org_id: uuid.UUID) -> None:
    """N patients and their `patient.created` events with one delivery job each, in one transaction."""
    async with db.sessionmaker() as s:
        await s.execute(text(
            "INSERT INTO patients (id, org_id, given_name, family_name, source) "
            "SELECT gen_random_uuid(), :org, 'Bench', 'Patient ' || g, 'import' FROM generate_series(1, :n) g"
        ), {"org": org_id, "n": PATIENTS})
        await s.execute(text(
            "INSERT INTO domain_events (id, org_id, type, payload, occurred_at) "
            "SELECT gen_random_uuid(), :org, 'patient.created', jsonb_build_object('patient_id', p.id::text), now() "
            "FROM patients p WHERE p.org_id = :org"
        ), {"org": org_id})
        await s.execute(text(
            "SELECT procrastinate_defer_jobs_v1(ARRAY(SELECT ROW('default', 'events.deliver', 0, NULL, NULL, "
            "jsonb_build_object('org_id', e.org_id::text, 'event_id', e.id::text, 'subscriber', 'journeys.react'), "
            "NULL)::procrastinate_job_to_defer_v1 FROM domain_events e WHERE e.org_id = :org))"
        ), {"org": org_id})
        await s.commit()


async def count(db: Database, sql: str, **params: Any) -> int:
    async with db.sessionmaker() as s:
        return int(await s.scalar(text(sql), params) or 0)


async def enrolment(db: Database, ctx: dict[str, Any], url: str) -> None:
    await publish_triggers(db, ctx["org_id"])
    started = time.perf_counter()
    worker = start_worker(url)
    try:
        done = 0
        while done < PATIENTS:
            await asyncio.sleep(0.5)
            assert worker.poll() is None, (worker.stderr.read() if worker.stderr else b"").decode()[-2000:]
            done = await count(db, "SELECT count(*) FROM journey_instances WHERE journey_id = :j", j=ctx["triggered"])
        wall = time.perf_counter() - started
        async with db.sessionmaker() as s:
            first, last = (await s.execute(text(
                "SELECT min(created_at), max(created_at) FROM journey_instances WHERE journey_id = :j"),
                {"j": ctx["triggered"]})).one()
        busy = (last - first).total_seconds() or 1e-9
        print(f"enrolment: {PATIENTS} patients matched one trigger; worker process, concurrency {CONCURRENCY}")
        print(f"  {PATIENTS / busy:8.1f} enrolments/s between the first and the last instance ({busy:.1f} s)")
        print(f"  {PATIENTS / wall:8.1f} enrolments/s including the worker's start ({wall:.1f} s)")
        duplicates = await count(db, "SELECT count(*) - count(DISTINCT patient_id) FROM journey_instances "
                                     "WHERE journey_id = :j", j=ctx["triggered"])
        print(f"  duplicates: {duplicates}")
        await waits(db, ctx)
    finally:
        worker.terminate()
        worker.wait(timeout=30)


async def waits(db: Database, ctx: dict[str, Any]) -> None:
    who = Principal.system(ctx["org_id"])
    async with db.sessionmaker() as s:
        ids = list((await s.execute(text("SELECT id FROM patients WHERE org_id = :o LIMIT :n"),
                                    {"o": ctx["org_id"], "n": WAITERS})).scalars())
        for patient_id in ids:
            await service.enrol_by_hand(s, who, ctx["waiting"], InstanceCreate(patient_id=patient_id))
        await s.commit()
    ran = 0
    deadline = time.monotonic() + 300
    while ran < len(ids) and time.monotonic() < deadline:
        await asyncio.sleep(1)
        ran = await count(db, "SELECT count(*) FROM journey_step_runs r JOIN journey_instances i "
                              "ON i.id = r.instance_id WHERE i.journey_id = :j AND r.step_id = 'minute' "
                              "AND r.status = 'succeeded'", j=ctx["waiting"])
    async with db.sessionmaker() as s:
        delays = [float(d) for d in (await s.execute(text(
            "SELECT extract(epoch FROM r.finished_at - r.due_at) FROM journey_step_runs r "
            "JOIN journey_instances i ON i.id = r.instance_id WHERE i.journey_id = :j AND r.step_id = 'minute' "
            "AND r.status = 'succeeded'"), {"j": ctx["waiting"]})).scalars()]
    if not delays:
        print("waits: none ran within 5 minutes")
        return
    print(f"waits: {len(delays)} one-minute waits due together, run by the worker process")
    print(f"  delay due → step running: p50 {statistics.median(delays):6.2f} s   p95 {pct(delays, 95):6.2f} s   "
          f"max {max(delays):6.2f} s")


async def main(url: str) -> None:
    prm_logging.configure("WARNING", json=False)
    modules.load()
    db = Database.connect(url, pool_size=5, max_overflow=5)
    try:
        ctx = await setup(db)
        await enrolment(db, ctx, url)
    finally:
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(prepare()))
