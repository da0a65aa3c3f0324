"""Booking benchmark: HTTP throughput vs the raw-SQL ceiling, a 200-way race, slot computation.

    PYTHONPATH=src python benchmarks/appointments_booking.py

Starts a throwaway embedded PostgreSQL (or uses DATABASE_URL), migrates it, and prints:
1. booking throughput and p50/p95 latency over HTTP (`POST /appointments` through the full app via
   httpx's ASGI transport) with 32 concurrent clients on distinct slots;
2. the same insert done with raw SQL by 32 concurrent psycopg connections (the ceiling);
3. the outcome of a 200-way race for one slot (must be exactly one booking);
4. the time to compute 30 days of slots for 20 practitioners (aim: under 150 ms).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from datetime import time as wall
from pathlib import Path
from typing import Any

import httpx
import psycopg
from alembic import command
from alembic.config import Config

from prm.app import create_app, migrations_dir
from prm.appointments import service, slots
from prm.appointments.models import Appointment
from prm.appointments.schemas import LocationCreate, PractitionerCreate, RuleCreate, ServiceCreate
from prm.core import embedded
from prm.core.db import Database, libpq_url
from prm.identity import service as identity
from prm.identity.schemas import ApiKeyCreate, OrganisationCreate
from prm.patients.models import Patient
from prm.settings import Settings

CLIENTS = 32
PER_CLIENT = 20
RACE = 200
PRACTITIONERS = 20
DAYS = 30


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def line(label: str, count: int, seconds: float, latencies: list[float]) -> str:
    return (
        f"{label:<34} {count:>5} bookings in {seconds:6.2f} s = {count / seconds:7.1f}/s   "
        f"p50 {statistics.median(latencies) * 1000:6.1f} ms   p95 {pct(latencies, 95) * 1000:6.1f} ms"
    )


async def setup(db: Database) -> dict[str, Any]:
    """An organisation, a UTC location open all day, 20 practitioners, one 15-minute service."""
    async with db.sessionmaker() as s:
        org = await identity.create_organisation(
            s, OrganisationCreate(name="Bench", slug=f"bench-{uuid.uuid4().hex[:8]}", timezone="UTC")
        )
        _, key = await identity.create_api_key(s, org.id, ApiKeyCreate(name="bench", role="admin"))
        location = await service.create_location(s, org.id, LocationCreate(name="Main", timezone="UTC"))
        practitioners = []
        for i in range(PRACTITIONERS):
            p = await service.create_practitioner(s, org.id, PractitionerCreate(name=f"Dr {i}"))
            practitioners.append(p)
            for weekday in range(7):
                await service.add_rule(
                    s,
                    org.id,
                    p.id,
                    RuleCreate(location_id=location.id, weekday=weekday, start_time=wall(0), end_time=wall(23, 59)),
                )
        svc = await service.create_service(
            s,
            org.id,
            ServiceCreate(
                name="Visit",
                duration_minutes=15,
                min_notice_minutes=0,
                horizon_days=365,
                practitioner_ids=[p.id for p in practitioners],
            ),
        )
        patients = [Patient(org_id=org.id, given_name="Bench", family_name=str(i)) for i in range(3000)]
        s.add_all(patients)
        await s.commit()
        return {
            "org": org,
            "key": key,
            "location": location,
            "practitioners": practitioners,
            "service": svc,
            "patients": [p.id for p in patients],
        }


async def http_floor(app: Any, ctx: dict[str, Any]) -> None:
    """The same clients doing an authenticated no-op (`GET /auth/me`): the framework's own cost."""
    transport = httpx.ASGITransport(app=app)
    latencies: list[float] = []

    async def client() -> None:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers={"Authorization": f"Bearer {ctx['key']}"}
        ) as http:
            for _ in range(PER_CLIENT):
                t0 = time.perf_counter()
                r = await http.get("/auth/me")
                latencies.append(time.perf_counter() - t0)
                assert r.status_code == 200

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    seconds = time.perf_counter() - t0
    n = CLIENTS * PER_CLIENT
    print(
        f"{'HTTP GET /auth/me (floor: auth only)':<34} {n:>5} requests in {seconds:6.2f} s = {n / seconds:7.1f}/s   "
        f"p50 {statistics.median(latencies) * 1000:6.1f} ms   p95 {pct(latencies, 95) * 1000:6.1f} ms"
    )


async def http_bookings(app: Any, ctx: dict[str, Any], base: datetime) -> None:
    transport = httpx.ASGITransport(app=app)
    latencies: list[float] = []
    patients = iter(ctx["patients"])
    jobs_: list[list[dict[str, str]]] = []
    for c in range(CLIENTS):
        batch = []
        for k in range(PER_CLIENT):
            n = c * PER_CLIENT + k
            practitioner = ctx["practitioners"][n % PRACTITIONERS]
            start = base + timedelta(minutes=15 * (n // PRACTITIONERS))
            batch.append(
                {
                    "patient_id": str(next(patients)),
                    "service_id": str(ctx["service"].id),
                    "practitioner_id": str(practitioner.id),
                    "start_at": start.isoformat(),
                }
            )
        jobs_.append(batch)

    async def client(batch: list[dict[str, str]]) -> None:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers={"Authorization": f"Bearer {ctx['key']}"}
        ) as http:
            for body in batch:
                t0 = time.perf_counter()
                r = await http.post("/appointments", json=body)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 201:
                    raise SystemExit(f"unexpected {r.status_code}: {r.text}")

    t0 = time.perf_counter()
    await asyncio.gather(*(client(b) for b in jobs_))
    print(
        line(f"HTTP POST /appointments ({CLIENTS} clients)", CLIENTS * PER_CLIENT, time.perf_counter() - t0, latencies)
    )
    ctx["patients"] = list(patients)


async def raw_sql_bookings(url: str, ctx: dict[str, Any], base: datetime) -> None:
    latencies: list[float] = []
    patients = iter(ctx["patients"])
    sql = (
        "INSERT INTO appointments (id, org_id, patient_id, practitioner_id, service_id, location_id, start_at, "
        "end_at, blocked_from, blocked_until, status, mode, created_at, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'booked', 'in_person', now(), now())"
    )

    async def worker(c: int) -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            for k in range(PER_CLIENT):
                n = c * PER_CLIENT + k
                start = base + timedelta(minutes=15 * (n // PRACTITIONERS))
                end = start + timedelta(minutes=15)
                t0 = time.perf_counter()
                async with conn.transaction():
                    await conn.execute(
                        sql,
                        (
                            uuid.uuid4(),
                            ctx["org"].id,
                            next(patients),
                            ctx["practitioners"][n % PRACTITIONERS].id,
                            ctx["service"].id,
                            ctx["location"].id,
                            start,
                            end,
                            start,
                            end,
                        ),
                    )
                latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in range(CLIENTS)))
    print(line(f"raw SQL INSERT ({CLIENTS} connections)", CLIENTS * PER_CLIENT, time.perf_counter() - t0, latencies))
    ctx["patients"] = list(patients)


async def race(app: Any, url: str, ctx: dict[str, Any], start: datetime) -> None:
    transport = httpx.ASGITransport(app=app)
    practitioner = ctx["practitioners"][0]
    racers = ctx["patients"][:RACE]

    async def attempt(patient_id: uuid.UUID) -> int:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers={"Authorization": f"Bearer {ctx['key']}"}
        ) as http:
            r = await http.post(
                "/appointments",
                json={
                    "patient_id": str(patient_id),
                    "service_id": str(ctx["service"].id),
                    "practitioner_id": str(practitioner.id),
                    "start_at": start.isoformat(),
                },
            )
            return r.status_code

    t0 = time.perf_counter()
    codes = await asyncio.gather(*(attempt(p) for p in racers))
    seconds = time.perf_counter() - t0
    async with await psycopg.AsyncConnection.connect(url) as conn:
        held = (
            await (
                await conn.execute(
                    "SELECT count(*) FROM appointments WHERE practitioner_id = %s AND start_at = %s",
                    (practitioner.id, start),
                )
            ).fetchone()
        )[0]  # type: ignore[index]
    summary = {code: codes.count(code) for code in sorted(set(codes))}
    verdict = "OK" if held == 1 and summary.get(201) == 1 else "FAILED"
    print(
        f"{RACE}-way race for one slot: responses {summary}, bookings in the database: {held} "
        f"[{verdict}] ({seconds:.2f} s)"
    )
    if verdict != "OK":
        sys.exit(1)


async def slot_computation(db: Database, ctx: dict[str, Any]) -> None:
    # a realistic week: Mon-Fri 09:00-13:00 and 14:00-18:00 in Madrid, with a few bookings each day
    ids = [p.id for p in ctx["practitioners"]]
    rules = [slots.Rule(d, wall(9), wall(13)) for d in range(5)] + [slots.Rule(d, wall(14), wall(18)) for d in range(5)]
    schedules = [slots.Schedule(pid, ctx["location"].id, "Europe/Madrid", rules=rules) for pid in ids]
    times = slots.ServiceTimes(
        duration=timedelta(minutes=30), buffer_after=timedelta(minutes=10), step=timedelta(minutes=15)
    )
    first = datetime.now(UTC).date() + timedelta(days=1)
    busy = {
        pid: [
            (
                datetime.combine(first + timedelta(days=d), wall(10), tzinfo=UTC),
                datetime.combine(first + timedelta(days=d), wall(10, 40), tzinfo=UTC),
            )
            for d in range(DAYS)
        ]
        for pid in ids
    }
    query = slots.Query(first, first + timedelta(days=DAYS - 1), now=datetime.now(UTC), busy=busy)
    runs = []
    for _ in range(7):
        t0 = time.perf_counter()
        found = slots.compute_slots(schedules, times, query)
        runs.append(time.perf_counter() - t0)
    print(
        f"pure slots, {DAYS} days x {PRACTITIONERS} practitioners (Madrid, 2 windows/day): {len(found)} slots, "
        f"median {statistics.median(runs) * 1000:.1f} ms (aim < 150 ms)"
    )
    # the same through the service (database reads included): a realistic clinic stored in the database
    clinic = await realistic_clinic(db, first)
    for label, org_id, service_id in (
        ("Mon-Fri 9-13 & 14-18 Madrid, 1 booking/day", clinic["org_id"], clinic["service_id"]),
        ("stress: open 24 h every day, 640 bookings", ctx["org"].id, ctx["service"].id),
    ):
        runs = []
        async with db.sessionmaker() as s:
            for _ in range(5):
                t0 = time.perf_counter()
                found = await service.available_slots(
                    s, org_id, service_id=service_id, start_date=first, end_date=first + timedelta(days=DAYS - 1)
                )
                runs.append(time.perf_counter() - t0)
        print(
            f"available_slots() incl. DB, {DAYS} days x {PRACTITIONERS} practitioners ({label}): "
            f"{len(found)} slots, median {statistics.median(runs) * 1000:.1f} ms"
        )


async def realistic_clinic(db: Database, first: Any) -> dict[str, Any]:
    """20 practitioners, Mon-Fri 09-13 and 14-18 in Madrid, a 30-minute service, one booking a day each."""
    async with db.sessionmaker() as s:
        org = await identity.create_organisation(
            s, OrganisationCreate(name="Clinic", slug=f"clinic-{uuid.uuid4().hex[:8]}", timezone="Europe/Madrid")
        )
        location = await service.create_location(s, org.id, LocationCreate(name="Centro", timezone="Europe/Madrid"))
        practitioners = []
        for i in range(PRACTITIONERS):
            p = await service.create_practitioner(s, org.id, PractitionerCreate(name=f"Dr {i}"))
            practitioners.append(p)
            for weekday in range(5):
                for a, b in ((wall(9), wall(13)), (wall(14), wall(18))):
                    await service.add_rule(
                        s, org.id, p.id, RuleCreate(location_id=location.id, weekday=weekday, start_time=a, end_time=b)
                    )
        svc = await service.create_service(
            s,
            org.id,
            ServiceCreate(
                name="Cleaning",
                duration_minutes=30,
                buffer_after_minutes=10,
                min_notice_minutes=0,
                practitioner_ids=[p.id for p in practitioners],
            ),
        )
        for i, p in enumerate(practitioners):
            patient = Patient(org_id=org.id, given_name="Clinic", family_name=str(i))
            s.add(patient)
            await s.flush()
            for d in range(DAYS):
                start = datetime.combine(first + timedelta(days=d), wall(10), tzinfo=UTC)
                s.add(
                    Appointment(
                        org_id=org.id,
                        patient_id=patient.id,
                        practitioner_id=p.id,
                        service_id=svc.id,
                        location_id=location.id,
                        start_at=start,
                        end_at=start + timedelta(minutes=30),
                        blocked_from=start,
                        blocked_until=start + timedelta(minutes=40),
                    )
                )
        await s.commit()
        return {"org_id": org.id, "service_id": svc.id}


def prepare() -> str:
    """The database URL, migrated to head (alembic runs its own event loop, so before ours)."""
    url = os.environ.get("DATABASE_URL") or embedded.start(
        Path(tempfile.mkdtemp(prefix="prm-bench-")) / "pg", throwaway=True
    )
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")
    return url


async def main(url: str) -> None:
    settings = Settings(
        _env_file=None,
        environment="test",
        database_url=url,
        run_worker=False,  # type: ignore[call-arg]
        log_level="ERROR",
        secret_key="bench-secret-key-0123456789-abcdefghijklmnop",  # type: ignore[arg-type]
        seed_demo=False,
        prm_data_dir=Path(tempfile.mkdtemp(prefix="prm-bench-data-")),
    )
    db = Database.connect(url, pool_size=40, max_overflow=20)
    app = create_app(settings, database=db)
    ctx = await setup(db)
    base = datetime.combine(datetime.now(UTC).date() + timedelta(days=2), wall(0), tzinfo=UTC)
    await http_floor(app, ctx)
    await http_bookings(app, ctx, base)
    await raw_sql_bookings(libpq_url(url), ctx, base + timedelta(days=3))
    await race(app, libpq_url(url), ctx, base + timedelta(days=6, hours=12))
    await slot_computation(db, ctx)
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(prepare()))
