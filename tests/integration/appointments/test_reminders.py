"""Appointment reminders (the plan's named scheduling tests), against real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service
from prm.core import clock

from .conftest import NOW, Clinic, make_patient
from .support import at, book, events_of, principal_for


async def test_appointment_reminders(session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient) -> None:
    patient = await make_patient(session, clinic.org_id)
    who = principal_for(clinic)
    assert [str(o) for o in await service.reminder_offsets(session, clinic.org_id)] == ["1d", "2h"]
    with clock.frozen(NOW) as c:
        appt = await book(session, who, clinic, patient.id, at(25, 10))
        reminders = await service.reminders_of(session, appt.id)
        assert [(r.offset, r.offset_minutes, r.due_at, r.status) for r in reminders] == [
            ("1d", 1440, at(24, 10), "scheduled"),
            ("2h", 120, at(25, 8), "scheduled"),
        ]
        # nothing is due yet
        assert await service.fire_due_reminders(session, org_id=clinic.org_id) == 0
        assert await events_of(session, clinic.org_id, "appointment.reminder_due") == []
        # one minute before the 24 h reminder: still nothing; at it: exactly one event
        c.set(at(24, 10) - timedelta(minutes=1))
        assert await service.fire_due_reminders(session, org_id=clinic.org_id) == 0
        assert await events_of(session, clinic.org_id, "appointment.reminder_due") == []
        c.set(at(24, 10))
        assert await service.fire_due_reminders(session, org_id=clinic.org_id) == 1
        (payload,) = await events_of(session, clinic.org_id, "appointment.reminder_due")
        assert payload == {
            "reminder_id": str(reminders[0].id),
            "appointment_id": str(appt.id),
            "patient_id": str(patient.id),
            "offset_minutes": 1440,
            "offset": "1d",
            "start_at": "2026-03-25T09:00:00+00:00",
            "local_start": "2026-03-25T10:00:00+01:00",
            "timezone": "Europe/Madrid",
            "service_name": "Cleaning",
            "practitioner_name": "Dr Vega",
            "location_name": "Centro",
        }
        await session.refresh(reminders[0])
        assert reminders[0].status == "due" and reminders[0].fired_at == at(24, 10)
        # the handler is idempotent: firing the same reminder again does nothing
        assert await service.fire_reminder(session, clinic.org_id, reminders[0].id) is False

        # rescheduling voids the pending 2 h reminder and schedules new ones
        moved = await service.reschedule(session, who, appt.id, start_at=at(26, 12))
        fresh = await service.reminders_of(session, moved.id)
        by_status = sorted((r.status, r.offset_minutes) for r in fresh)
        assert by_status == [("due", 1440), ("scheduled", 120), ("scheduled", 1440), ("void", 120)]
        void = next(r for r in fresh if r.status == "void")
        assert void.job_id is None  # a reminder has no job of its own: the sweep fires it when due
        # the old 2 h moment passes: nothing is sent for the old time
        c.set(at(25, 8))
        assert await service.fire_due_reminders(session, org_id=clinic.org_id) == 0
        assert len(await events_of(session, clinic.org_id, "appointment.reminder_due")) == 1
        # cancelling voids what is left; nothing fires afterwards
        await service.cancel(session, who, appt.id, reason="travelling")
        assert {r.status for r in await service.reminders_of(session, appt.id)} == {"due", "void"}
        c.set(at(26, 12))
        assert await service.fire_due_reminders(session, org_id=clinic.org_id) == 0
        assert len(await events_of(session, clinic.org_id, "appointment.reminder_due")) == 1
        # a reminder whose moment has already passed at booking time is not created
        late = await book(session, who, clinic, patient.id, at(27, 12), service=clinic.checkup)
        assert [r.offset_minutes for r in await service.reminders_of(session, late.id)] == [120]


async def test_no_show_only_after_start_and_check_in_ends_reminders(
    session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient
) -> None:
    patient = await make_patient(session, clinic.org_id)
    who = principal_for(clinic)
    with clock.frozen(NOW) as c:
        appt = await book(session, who, clinic, patient.id, at(25, 10))
        r = await client.post(f"/appointments/{appt.id}/no-show")
        assert r.status_code == 409 and r.json()["code"] == "not_started"
        assert "no_show" in r.json()["allowed_actions"]
        c.set(at(25, 10, 20))
        r = await client.post(f"/appointments/{appt.id}/no-show")
        assert r.status_code == 200 and r.json()["status"] == "no_show" and r.json()["no_show_at"]
        (payload,) = await events_of(session, clinic.org_id, "appointment.no_show")
        assert payload["status"] == "no_show"
        # checking in voids reminders still pending (the patient is here)
        c.set(NOW)
        walk_in = await book(session, who, clinic, patient.id, at(26, 10))
        await service.transition(session, who, walk_in.id, "check_in")
        assert {r.status for r in await service.reminders_of(session, walk_in.id)} == {"void"}


async def test_day_offsets_follow_the_local_calendar_across_dst_and_organisations_choose_their_own(
    session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient
) -> None:
    """Madrid moves to summer time on Sunday 29 March 2026. "2 days before" Monday 30 March 10:00 CEST
    is Saturday 28 March 10:00 CET: 47 hours of real time, not 48."""
    r = await client.get("/admin/organisation/settings")
    assert r.status_code == 200 and r.json()["effective_reminder_offsets"] == "1d,2h"
    r = await client.patch("/admin/organisation/settings", json={"reminder_offsets_minutes": "90, 2D"})
    assert r.status_code == 200, r.text
    assert (r.json()["reminder_offsets_minutes"], r.json()["effective_reminder_offsets"]) == ("2d,90m", "2d,90m")
    bad = await client.patch("/admin/organisation/settings", json={"reminder_offsets_minutes": "1 week"})
    assert bad.status_code == 422 and "reminder_offsets_minutes" in bad.text

    patient = await make_patient(session, clinic.org_id)
    with clock.frozen(NOW):
        r = await client.post("/appointments", json={
            "patient_id": str(patient.id), "service_id": str(clinic.cleaning.id),
            "practitioner_id": str(clinic.vega.id), "start_at": "2026-03-30T10:00:00+02:00"})
        assert r.status_code == 201, r.text
        reminders = await service.reminders_of(session, uuid.UUID(r.json()["id"]))
    assert [(x.offset, x.offset_minutes, x.due_at) for x in reminders] == [
        ("2d", 2880, datetime(2026, 3, 28, 9, 0, tzinfo=UTC)),  # 10:00 CET, the same wall-clock time
        ("90m", 90, datetime(2026, 3, 30, 6, 30, tzinfo=UTC)),  # absolute
    ]
    # back to the service default for appointments booked from now on
    r = await client.patch("/admin/organisation/settings", json={"reminder_offsets_minutes": None})
    assert r.json()["effective_reminder_offsets"] == "1d,2h"
