"""Real concurrent, committed transactions racing for one slot: exactly one booking survives."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from prm.appointments import service
from prm.appointments.models import Appointment, AppointmentReminder
from prm.core import clock, jobs

from .conftest import NOW, build_clinic, make_patient

RACERS = 24


async def _cleanup_reminder_jobs(committed, org_id) -> None:  # type: ignore[no-untyped-def]
    """Committed reminder jobs must not fire in later tests that move the clock."""
    async with committed.session() as s:
        for job_id in await s.scalars(
            select(AppointmentReminder.job_id).where(AppointmentReminder.org_id == org_id)
        ):
            if job_id is not None:
                await jobs.cancel_pending(s, job_id)
        await s.commit()


@pytest.mark.slow
async def test_double_booking_prevention(committed) -> None:  # type: ignore[no-untyped-def]
    org, key = await committed.org()
    async with committed.session() as s:
        clinic = await build_clinic(s, org.id)
        patients = [await make_patient(s, org.id, given=f"P{i}") for i in range(RACERS)]
        await s.commit()
    start = "2026-03-24T10:00:00+01:00"
    try:
        with clock.frozen(NOW):
            clients = [committed.client(key) for _ in range(RACERS)]

            async def attempt(i: int):  # type: ignore[no-untyped-def]
                return await clients[i].post(
                    "/appointments",
                    json={
                        "patient_id": str(patients[i].id),
                        "service_id": str(clinic.cleaning.id),
                        "practitioner_id": str(clinic.vega.id),
                        "start_at": start,
                    },
                )

            responses = await asyncio.gather(*(attempt(i) for i in range(RACERS)))
            codes = sorted(r.status_code for r in responses)
            assert codes == [201] + [409] * (RACERS - 1), [
                r.text for r in responses if r.status_code not in (201, 409)
            ]
            assert {r.json()["code"] for r in responses if r.status_code == 409} == {"slot_taken"}
            async with committed.session() as s:
                held = await s.scalar(
                    select(func.count())
                    .select_from(Appointment)
                    .where(
                        Appointment.org_id == org.id,
                        Appointment.practitioner_id == clinic.vega.id,
                        Appointment.start_at == datetime(2026, 3, 24, 9, tzinfo=UTC),
                    )
                )
                assert held == 1

            # one patient racing for two practitioners at the same time: one wins, one is patient_overlap
            one = patients[-1]

            async def book_with(practitioner_id, i):  # type: ignore[no-untyped-def]
                return await clients[i].post(
                    "/appointments",
                    json={
                        "patient_id": str(one.id),
                        "service_id": str(clinic.cleaning.id),
                        "practitioner_id": str(practitioner_id),
                        "start_at": "2026-03-25T11:00:00+01:00",
                    },
                )

            pair = await asyncio.gather(book_with(clinic.vega.id, 0), book_with(clinic.ruiz.id, 1))
            assert sorted(r.status_code for r in pair) == [201, 409]
            assert next(r for r in pair if r.status_code == 409).json()["code"] == "patient_overlap"
            async with committed.session() as s:
                mine = await s.scalar(
                    select(func.count())
                    .select_from(Appointment)
                    .where(Appointment.patient_id == one.id, Appointment.status.in_(("booked", "confirmed")))
                )
                assert mine == 1
                # the public function sees the same truth
                assert len(await service.upcoming_for_patient(s, org.id, one.id)) == 1
                await s.commit()
    finally:
        await _cleanup_reminder_jobs(committed, org.id)
