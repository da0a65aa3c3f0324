"""Bookings under contention, through the real app with committed transactions: many clients booking,
rescheduling and cancelling on the same calendars at once get 201/200/409 only (never a 5xx, never a
deadlock), and the stored appointments never overlap.

Concurrency is bounded below the connection pool (a request waiting for a calendar lock holds its
connection), but wide enough that many requests for overlapping times are in flight together."""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import httpx
import pytest
from sqlalchemy import select, text

from prm.appointments import service
from prm.appointments.booking import lock_key
from prm.appointments.models import Appointment, Practitioner, Service
from prm.appointments.schemas import LocationCreate, PractitionerCreate, RuleCreate, ServiceCreate
from prm.appointments.state_machine import HOLDS_TIME
from prm.core import clock

from .conftest import NOW, make_patient
from .test_double_booking import _cleanup_reminder_jobs

pytestmark = pytest.mark.slow

DAY = datetime(2026, 3, 24, tzinfo=UTC)  # a Tuesday; NOW is the Monday before
IN_FLIGHT = 20  # below the test pool (5 + 20 overflow)


@dataclass
class Calendar:
    vega: Practitioner
    ruiz: Practitioner
    visit: Service  # 30 minutes, no buffers, bookable every 5 minutes


async def _calendar(committed, org_id: uuid.UUID) -> Calendar:  # type: ignore[no-untyped-def]
    async with committed.session() as s:
        location = await service.create_location(s, org_id, LocationCreate(name="Main", timezone="UTC"))
        people = []
        for name in ("Dr Vega", "Dr Ruiz"):
            practitioner = await service.create_practitioner(s, org_id, PractitionerCreate(name=name, timezone="UTC"))
            await service.add_rule(s, org_id, practitioner.id, RuleCreate(
                location_id=location.id, weekday=DAY.weekday(), start_time=time(8), end_time=time(20)))
            people.append(practitioner)
        visit = await service.create_service(s, org_id, ServiceCreate(
            name="Visit", duration_minutes=30, min_notice_minutes=0, slot_step_minutes=5,
            practitioner_ids=[p.id for p in people]))
        await s.commit()
    return Calendar(people[0], people[1], visit)


async def _patients(committed, org_id: uuid.UUID, n: int) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    async with committed.session() as s:
        ids = [(await make_patient(s, org_id, given=f"P{i}")).id for i in range(n)]
        await s.commit()
    return ids


async def _overlapping_pairs(committed, org_id: uuid.UUID) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Pairs of held appointments of one practitioner (or one patient) whose times overlap."""
    async with committed.session() as s:
        rows = await s.execute(text(
            "SELECT a.id::text, b.id::text FROM appointments a JOIN appointments b ON a.id < b.id "
            "AND (a.practitioner_id = b.practitioner_id OR a.patient_id = b.patient_id) "
            "AND tstzrange(a.blocked_from, a.blocked_until) && tstzrange(b.blocked_from, b.blocked_until) "
            "WHERE a.org_id = :org AND b.org_id = :org "
            "AND a.status = ANY(:holding) AND b.status = ANY(:holding)"
        ), {"org": org_id, "holding": list(HOLDS_TIME)})
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def _held(committed, org_id: uuid.UUID) -> list[Appointment]:  # type: ignore[no-untyped-def]
    async with committed.session() as s:
        return list(await s.scalars(select(Appointment).where(
            Appointment.org_id == org_id, Appointment.status.in_(("booked", "confirmed")))))


async def _bounded(calls: list) -> list[httpx.Response]:  # type: ignore[type-arg]
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def run(call):  # type: ignore[no-untyped-def]
        async with gate:
            return await call()

    return list(await asyncio.gather(*(run(c) for c in calls)))


async def _deadlocks(committed) -> int:  # type: ignore[no-untyped-def]
    """PostgreSQL's count of deadlocks detected in this database so far.

    A backend reports its statistics when it exits at the latest: the pool's connections are closed
    first, and the count is read once they are gone (waiting on that condition, not on time)."""
    await committed.db.engine.dispose()
    async with committed.session() as s:
        for _ in range(2000):
            others = await s.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"))
            if not others:
                break
            await asyncio.sleep(0.01)
            await s.commit()
        await s.commit()  # a fresh statistics snapshot
        return int(await s.scalar(text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")))


def _problems(responses: list[httpx.Response], allowed: set[int]) -> list[str]:
    return [f"{r.status_code} {r.text[:200]}" for r in responses if r.status_code not in allowed]


def test_lock_keys_are_stable_signed_64_bit_and_distinct_per_kind() -> None:
    some = uuid.UUID("6f1c1b7e-9a51-4c0e-8a55-1f0e2f0b9d11")
    assert lock_key("practitioner", some) == lock_key("practitioner", uuid.UUID(str(some)))
    assert lock_key("practitioner", some) != lock_key("patient", some)
    keys = [lock_key(kind, uuid.uuid4()) for kind in ("practitioner", "patient") for _ in range(50)]
    assert all(-(2**63) <= k < 2**63 for k in keys) and len(set(keys)) == len(keys)


async def test_staggered_booking_race_answers_201_or_409_and_never_overlaps(committed) -> None:  # type: ignore[no-untyped-def]
    """The issue's reproduction: 200 bookings for one practitioner, start = day 12:00Z + 5 min × (k mod 36),
    30-minute service, 200 different patients (it answered 161 × 500 with ~120 deadlocks per run)."""
    org, key = await committed.org()
    cal = await _calendar(committed, org.id)
    patients = await _patients(committed, org.id, 200)
    starts = [DAY + timedelta(hours=12, minutes=5 * (k % 36)) for k in range(200)]
    client = committed.client(key, timeout=120)
    deadlocks_before = await _deadlocks(committed)
    try:
        with clock.frozen(NOW):
            responses = await _bounded([
                (lambda k=k: client.post("/appointments", json={
                    "patient_id": str(patients[k]), "service_id": str(cal.visit.id),
                    "practitioner_id": str(cal.vega.id), "start_at": starts[k].isoformat()}))
                for k in range(200)
            ])
        assert _problems(responses, {201, 409}) == []
        assert {r.json()["code"] for r in responses if r.status_code == 409} == {"slot_taken"}
        held = await _held(committed, org.id)
        assert await _overlapping_pairs(committed, org.id) == []
        assert len(held) == sum(r.status_code == 201 for r in responses) >= 4  # 4 can cover 12:00-15:25
        assert await _deadlocks(committed) == deadlocks_before  # serialized by the lock, not by deadlock victims
        # serialized, so the winners are a maximal set: every refused start overlaps a winner
        for start in starts:
            assert any(a.start_at < start + timedelta(minutes=30) and start < a.end_at for a in held), start
    finally:
        await _cleanup_reminder_jobs(committed, org.id)


async def test_mixed_book_reschedule_cancel_race_never_5xx_and_never_overlaps(committed) -> None:  # type: ignore[no-untyped-def]
    """Bookings, reschedules (some across the two practitioners, in both directions) and cancellations
    of the same calendars at once."""
    rng = random.Random(20261130)
    org, key = await committed.org()
    cal = await _calendar(committed, org.id)
    existing_patients = await _patients(committed, org.id, 16)
    new_patients = await _patients(committed, org.id, 60)
    client = committed.client(key, timeout=120)
    try:
        with clock.frozen(NOW):
            existing: list[str] = []
            for i, patient_id in enumerate(existing_patients):  # 09:00, 09:30, ... on both calendars
                practitioner = cal.vega if i % 2 == 0 else cal.ruiz
                r = await client.post("/appointments", json={
                    "patient_id": str(patient_id), "service_id": str(cal.visit.id),
                    "practitioner_id": str(practitioner.id),
                    "start_at": (DAY + timedelta(hours=9, minutes=30 * (i // 2))).isoformat()})
                assert r.status_code == 201, r.text
                existing.append(r.json()["id"])

            def some_start() -> str:
                return (DAY + timedelta(hours=9, minutes=5 * rng.randrange(0, 72))).isoformat()

            calls: list[tuple[str, object]] = []
            for k, patient_id in enumerate(new_patients):
                body = {"patient_id": str(patient_id), "service_id": str(cal.visit.id),
                        "practitioner_id": str((cal.vega if k % 2 else cal.ruiz).id), "start_at": some_start()}
                calls.append(("book", lambda body=body: client.post("/appointments", json=body)))
            for appointment_id in existing * 2:  # each moved twice, some to the other practitioner
                body = {"start_at": some_start()}
                if rng.random() < 0.5:
                    body["practitioner_id"] = str(rng.choice((cal.vega, cal.ruiz)).id)
                calls.append(("reschedule", lambda a=appointment_id, body=body: client.post(
                    f"/appointments/{a}/reschedule", json=body)))
            for appointment_id in rng.sample(existing, 8):
                calls.append(("cancel", lambda a=appointment_id: client.post(
                    f"/appointments/{a}/cancel", json={"reason": "race"})))
            rng.shuffle(calls)
            deadlocks_before = await _deadlocks(committed)
            responses = await _bounded([call for _, call in calls])  # type: ignore[misc]

        kinds = [kind for kind, _ in calls]
        by_kind = {kind: [r for k, r in zip(kinds, responses, strict=True) if k == kind] for kind in set(kinds)}
        assert _problems(by_kind["book"], {201, 409}) == []
        assert _problems(by_kind["reschedule"], {200, 409}) == []
        assert _problems(by_kind["cancel"], {200, 409}) == []
        assert any(r.status_code == 201 for r in by_kind["book"])
        assert any(r.status_code == 200 for r in by_kind["reschedule"])
        assert await _overlapping_pairs(committed, org.id) == []
        assert await _deadlocks(committed) == deadlocks_before
        cancelled = {r.json()["id"] for r in by_kind["cancel"] if r.status_code == 200}
        held_ids = {str(a.id) for a in await _held(committed, org.id)}
        assert cancelled and not cancelled & held_ids  # a cancellation is never undone by a racing reschedule
    finally:
        await _cleanup_reminder_jobs(committed, org.id)
