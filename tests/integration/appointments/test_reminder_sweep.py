"""The reminder sweep (`fire_due_reminders`, every minute) with committed transactions: a booking
queues no job per reminder; two sweeps at once fire each due reminder exactly once; one reminder that
fails to fire holds back no other; a reminder scheduled before the sweep (with its own job) fires once,
whoever comes first."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, text

from prm.appointments import reminders
from prm.appointments import service as appointments
from prm.appointments.models import AppointmentReminder
from prm.core import clock, jobs
from prm.core.events import EventRecord

from .conftest import NOW, build_clinic, make_patient
from .support import at
from .test_double_booking import _cleanup_reminder_jobs

pytestmark = pytest.mark.slow
DAY_BEFORE = at(24, 23)  # every 1-day reminder is due, no 2-hour one


async def _booked(committed: Any, patients: int) -> tuple[Any, Any, list[uuid.UUID]]:
    """A committed clinic with one booking per patient (Wednesday 25 March, two an hour), through the API;
    their 1-day reminders are due on the 24th, their 2-hour ones on the 25th."""
    org, key = await committed.org()
    async with committed.session() as s:
        clinic = await build_clinic(s, org.id)
        people = [(await make_patient(s, org.id, given=f"R{i}")).id for i in range(patients)]
        await s.commit()
    client = committed.client(key)
    booked = []
    with clock.frozen(NOW):
        for i, patient in enumerate(people):
            vet = clinic.vega if i % 2 == 0 else clinic.ruiz
            r = await client.post("/appointments", json={
                "patient_id": str(patient), "service_id": str(clinic.cleaning.id),
                "practitioner_id": str(vet.id), "start_at": at(25, 9 + i // 2).isoformat()})
            assert r.status_code == 201, r.text
            booked.append(uuid.UUID(r.json()["id"]))
    return org, clinic, booked


async def _reminder_events(committed: Any, org_id: uuid.UUID) -> list[str]:
    async with committed.session() as s:
        return [str(p["reminder_id"]) for p in await s.scalars(
            select(EventRecord.payload).where(EventRecord.org_id == org_id,
                                              EventRecord.type == "appointment.reminder_due"))]


async def test_two_sweeps_at_once_fire_each_due_reminder_once(committed: Any) -> None:
    org, _, booked = await _booked(committed, 4)
    try:
        async with committed.session() as s:
            reminders = (await s.execute(select(AppointmentReminder.id, AppointmentReminder.job_id)
                                         .where(AppointmentReminder.org_id == org.id))).all()
            queued = await s.scalar(text("SELECT count(*) FROM procrastinate_jobs WHERE args->>'org_id' = :o "
                                         "AND task_name = :t"), {"o": str(org.id), "t": appointments.REMINDER_JOB})
        assert len(reminders) == 2 * len(booked) and all(job is None for _, job in reminders)
        assert queued == 0  # no job per reminder: the sweep fires them

        async def sweep() -> int:
            async with committed.session() as s:
                fired = await appointments.fire_due_reminders(s, org_id=org.id)
                await asyncio.sleep(0.2)  # hold the claimed rows while the other sweep runs
                await s.commit()
                return fired

        with clock.frozen(DAY_BEFORE):
            counts = await asyncio.gather(sweep(), sweep(), sweep())
        assert sorted(counts)[-1] >= 1 and sum(counts) == len(booked)
        fired = await _reminder_events(committed, org.id)
        assert len(fired) == len(set(fired)) == len(booked)
        with clock.frozen(DAY_BEFORE):  # nothing left to fire
            async with committed.session() as s:
                assert await appointments.fire_due_reminders(s, org_id=org.id) == 0
    finally:
        await _cleanup_reminder_jobs(committed, org.id)


async def test_a_reminder_that_fails_holds_back_no_other(committed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    org, _, booked = await _booked(committed, 3)
    try:
        async with committed.session() as s:
            broken = await s.scalar(select(AppointmentReminder.id).where(
                AppointmentReminder.appointment_id == booked[0], AppointmentReminder.offset == "1d"))
        original = reminders.fire_reminder

        async def fire(session: Any, org_id: uuid.UUID, reminder_id: uuid.UUID) -> bool:
            if reminder_id == broken:
                await session.execute(text("SELECT 1/0"))  # a database error inside its savepoint
            return await original(session, org_id, reminder_id)

        monkeypatch.setattr(reminders, "fire_reminder", fire)
        with clock.frozen(DAY_BEFORE):
            async with committed.session() as s:
                assert await appointments.fire_due_reminders(s, org_id=org.id) == len(booked) - 1
                await s.commit()
        async with committed.session() as s:
            assert await s.scalar(select(AppointmentReminder.status).where(AppointmentReminder.id == broken)) \
                == "scheduled"  # left for the next sweep
        monkeypatch.setattr(reminders, "fire_reminder", original)
        with clock.frozen(DAY_BEFORE):
            async with committed.session() as s:
                assert await appointments.fire_due_reminders(s, org_id=org.id) == 1
                await s.commit()
        assert len(set(await _reminder_events(committed, org.id))) == len(booked)
    finally:
        await _cleanup_reminder_jobs(committed, org.id)


async def test_a_reminder_with_its_own_job_fires_once(committed: Any) -> None:
    """A reminder scheduled before the sweep kept its job: the job and the sweep, run at once, fire it once."""
    org, _, booked = await _booked(committed, 1)
    try:
        async with committed.session() as s:
            reminder = await s.scalar(select(AppointmentReminder).where(
                AppointmentReminder.appointment_id == booked[0], AppointmentReminder.offset == "1d"))
            assert reminder is not None
            job_id = await jobs.defer(s, appointments.REMINDER_JOB, schedule_at=reminder.due_at,
                                      org_id=str(org.id), reminder_id=str(reminder.id))
            reminder.job_id = job_id
            await s.commit()

        async def by_job() -> None:
            async with committed.session() as s:
                report = await jobs.run_due(s, names=[appointments.REMINDER_JOB])
                assert report.succeeded and not report.failed
                await s.commit()

        async def by_sweep() -> int:
            async with committed.session() as s:
                fired = await appointments.fire_due_reminders(s, org_id=org.id)
                await s.commit()
                return fired

        with clock.frozen(DAY_BEFORE):
            _, swept = await asyncio.gather(by_job(), by_sweep())
        assert swept in (0, 1)
        async with committed.session() as s:
            await jobs.run_due(s, names=[appointments.REMINDER_JOB])
            await s.commit()
            events = await s.scalar(select(func.count()).select_from(EventRecord).where(
                EventRecord.org_id == org.id, EventRecord.type == "appointment.reminder_due"))
        assert events == 1
    finally:
        await _cleanup_reminder_jobs(committed, org.id)
