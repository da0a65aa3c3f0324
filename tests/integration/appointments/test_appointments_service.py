"""The plan's named scheduling tests, against real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service
from prm.appointments.models import Appointment
from prm.appointments.schemas import AppointmentCreate
from prm.core import clock, jobs
from prm.core.audit import AuditEntry
from prm.core.events import EventRecord
from prm.identity.models import Organisation
from tests.fixtures.factories import principal

from .conftest import NOW, Clinic, make_patient


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """UTC instant of a Madrid wall-clock time in the week of 2026-03-23 (CET, UTC+1)."""
    return datetime(2026, 3, day, hour - 1, minute, tzinfo=UTC)


async def events_of(session: AsyncSession, org_id: uuid.UUID, kind: str) -> list[dict]:
    rows = await session.scalars(
        select(EventRecord)
        .where(EventRecord.org_id == org_id, EventRecord.type == kind)
        .order_by(EventRecord.occurred_at)
    )
    return [r.payload for r in rows]


async def test_get_available_slots(session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient) -> None:
    with clock.frozen(NOW):
        slots = await service.available_slots(
            session,
            clinic.org_id,
            service_id=clinic.cleaning.id,
            start_date=date(2026, 3, 24),
            end_date=date(2026, 3, 24),
            practitioner_id=clinic.vega.id,
        )
        # 09:00-13:00, 30 min, every 15 min: 09:00 ... 12:30
        assert len(slots) == 15
        assert slots[0].start_at == at(24, 9) and slots[0].local_start.isoformat() == "2026-03-24T09:00:00+01:00"
        assert slots[-1].end_at == at(24, 13)
        # over HTTP, both practitioners, across the DST change: Monday 30 March is CEST
        r = await client.get(
            "/slots",
            params={
                "service_id": str(clinic.cleaning.id),
                "start_date": "2026-03-27",
                "end_date": "2026-03-30",
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert {s["practitioner_id"] for s in body} == {str(clinic.vega.id), str(clinic.ruiz.id)}
        monday = [s for s in body if s["local_start"].startswith("2026-03-30")]
        assert monday[0]["local_start"] == "2026-03-30T09:00:00+02:00"
        assert monday[0]["start_at"] == "2026-03-30T07:00:00Z"
        assert not [s for s in body if s["local_start"][:10] in ("2026-03-28", "2026-03-29")]  # weekend
        # minimum notice: today (now 09:00 local) starts at 10:00
        today = await service.available_slots(
            session,
            clinic.org_id,
            service_id=clinic.cleaning.id,
            start_date=date(2026, 3, 23),
            end_date=date(2026, 3, 23),
            practitioner_id=clinic.vega.id,
            limit=2,
        )
        assert [s.start_at for s in today] == [at(23, 10), at(23, 10, 15)]
        # bad ranges name the field
        r = await client.get(
            "/slots",
            params={
                "service_id": str(clinic.cleaning.id),
                "start_date": "2026-03-27",
                "end_date": "2026-03-20",
            },
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "end_date"


async def test_book_appointment(session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient) -> None:
    patient = await make_patient(session, clinic.org_id)
    with clock.frozen(NOW):
        body = {
            "patient_id": str(patient.id),
            "service_id": str(clinic.cleaning.id),
            "practitioner_id": str(clinic.vega.id),
            "start_at": "2026-03-24T10:00:00+01:00",
        }
        r = await client.post("/appointments", json=body, headers={"Idempotency-Key": "book-1"})
        assert r.status_code == 201, r.text
        booked = r.json()
        assert booked["status"] == "booked" and booked["location_id"] == str(clinic.location.id)
        assert booked["start_at"] == "2026-03-24T09:00:00Z" and booked["end_at"] == "2026-03-24T09:30:00Z"
        assert booked["allowed_actions"] == ["confirm", "check_in", "no_show", "cancel", "reschedule"]
        # the same Idempotency-Key replays the first answer instead of booking twice
        again = await client.post("/appointments", json=body, headers={"Idempotency-Key": "book-1"})
        assert again.status_code == 201 and again.json()["id"] == booked["id"]
        assert again.headers.get("idempotent-replayed") == "true"
        count = await session.scalar(
            select(func.count()).select_from(Appointment).where(Appointment.patient_id == patient.id)
        )
        assert count == 1
        # event, history and audit were written in the same transaction
        (payload,) = await events_of(session, clinic.org_id, "appointment.booked")
        assert payload == {
            "appointment_id": booked["id"],
            "patient_id": str(patient.id),
            "practitioner_id": str(clinic.vega.id),
            "service_id": str(clinic.cleaning.id),
            "location_id": str(clinic.location.id),
            "start_at": "2026-03-24T09:00:00+00:00",
            "end_at": "2026-03-24T09:30:00+00:00",
            "status": "booked",
            # names and local time, for subscribers that tell the patient (notifications)
            "service_name": "Cleaning",
            "practitioner_name": "Dr Vega",
            "location_name": "Centro",
            "timezone": "Europe/Madrid",
            "local_start": "2026-03-24T10:00:00+01:00",
        }
        detail = (await client.get(f"/appointments/{booked['id']}")).json()
        assert [h["action"] for h in detail["history"]] == ["book"]
        audited = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.resource_id == booked["id"], AuditEntry.action == "create")
        )
        assert audited == 1
        # outside availability (Saturday, and 08:30 local) is a 422 naming start_at
        for start in ("2026-03-28T10:00:00+01:00", "2026-03-24T08:30:00+01:00", "2026-03-24T12:45:00+01:00"):
            r = await client.post("/appointments", json={**body, "start_at": start})
            assert r.status_code == 422, start
            assert r.json()["code"] == "outside_availability" and r.json()["errors"][0]["field"] == "start_at"
        # too soon and unknown references
        r = await client.post("/appointments", json={**body, "start_at": "2026-03-23T09:30:00+01:00"})
        assert r.status_code == 422 and r.json()["code"] == "too_short_notice"
        r = await client.post("/appointments", json={**body, "patient_id": str(uuid.uuid4())})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "patient_id"
        r = await client.post(
            "/appointments",
            json={**body, "service_id": str(clinic.checkup.id), "practitioner_id": str(clinic.ruiz.id)},
        )
        assert r.status_code == 422 and r.json()["code"] == "service_not_offered"
        r = await client.post("/appointments", json={**body, "start_at": "2026-03-24T10:00:00"})
        assert r.status_code == 422  # a start without an offset is ambiguous


async def test_update_appointment(session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient) -> None:
    patient = await make_patient(session, clinic.org_id)
    who = principal_for(clinic)
    with clock.frozen(NOW):
        appt = await service.book(
            session,
            clinic.org_id,
            AppointmentCreate(
                patient_id=patient.id,
                service_id=clinic.cleaning.id,
                practitioner_id=clinic.vega.id,
                start_at=at(24, 10),
            ),
            who,
        )
        r = await client.patch(f"/appointments/{appt.id}", json={"notes": "sensitive teeth"})
        assert r.status_code == 200 and r.json()["notes"] == "sensitive teeth"
        r = await client.post(f"/appointments/{appt.id}/confirm")
        assert r.status_code == 200 and r.json()["status"] == "confirmed"
        # reschedule: same row, new time, booked again, sequence bumped, history kept
        r = await client.post(
            f"/appointments/{appt.id}/reschedule",
            json={"start_at": "2026-03-25T11:00:00+01:00", "reason": "patient asked"},
        )
        assert r.status_code == 200, r.text
        moved = r.json()
        assert moved["id"] == str(appt.id) and moved["status"] == "booked" and moved["sequence"] == 1
        assert moved["start_at"] == "2026-03-25T10:00:00Z"
        history = (await client.get(f"/appointments/{appt.id}/history")).json()
        assert [h["action"] for h in history] == ["book", "confirm", "reschedule"]
        assert history[2]["old_start_at"] == "2026-03-24T09:00:00Z"
        assert history[2]["new_start_at"] == "2026-03-25T10:00:00Z" and history[2]["reason"] == "patient asked"
        (payload,) = await events_of(session, clinic.org_id, "appointment.rescheduled")
        assert payload["start_at"] == "2026-03-25T10:00:00+00:00"
        assert payload["previous_start_at"] == "2026-03-24T09:00:00+00:00"
        # the old time is free again; moving onto a taken slot is 409 and leaves the appointment as it was
        other = await make_patient(session, clinic.org_id, given="Luis")
        await service.book(
            session,
            clinic.org_id,
            AppointmentCreate(
                patient_id=other.id,
                service_id=clinic.cleaning.id,
                practitioner_id=clinic.vega.id,
                start_at=at(24, 10),
            ),
            who,
        )
        r = await client.post(f"/appointments/{appt.id}/reschedule", json={"start_at": "2026-03-24T10:15:00+01:00"})
        assert r.status_code == 409 and r.json()["code"] == "slot_taken"
        assert (await client.get(f"/appointments/{appt.id}")).json()["start_at"] == "2026-03-25T10:00:00Z"
        # to another practitioner who offers the service
        r = await client.post(
            f"/appointments/{appt.id}/reschedule",
            json={"start_at": "2026-03-24T10:00:00+01:00", "practitioner_id": str(clinic.ruiz.id)},
        )
        assert r.status_code == 200 and r.json()["practitioner_id"] == str(clinic.ruiz.id)
        # full lifecycle; an invalid transition lists the allowed ones
        for path, status in (("check-in", "checked_in"), ("complete", "completed")):
            r = await client.post(f"/appointments/{appt.id}/{path}")
            assert r.status_code == 200 and r.json()["status"] == status
        r = await client.post(f"/appointments/{appt.id}/reschedule", json={"start_at": "2026-03-26T10:00:00+01:00"})
        assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
        assert r.json()["allowed_actions"] == []
        kinds = {e.type for e in await session.scalars(select(EventRecord).where(EventRecord.org_id == clinic.org_id))}
        assert {
            "appointment.booked",
            "appointment.confirmed",
            "appointment.rescheduled",
            "appointment.checked_in",
            "appointment.completed",
        } <= kinds


def principal_for(clinic: Clinic):  # type: ignore[no-untyped-def]
    return principal(Organisation(id=clinic.org_id, name="x", slug="x", timezone="UTC"))


async def test_cancel_appointment(session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient) -> None:
    patient = await make_patient(session, clinic.org_id)
    who = principal_for(clinic)
    with clock.frozen(NOW):
        appt = await service.book(
            session,
            clinic.org_id,
            AppointmentCreate(
                patient_id=patient.id,
                service_id=clinic.cleaning.id,
                practitioner_id=clinic.vega.id,
                start_at=at(25, 10),
            ),
            who,
        )
        r = await client.post(f"/appointments/{appt.id}/cancel", json={"reason": ""})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
        r = await client.post(f"/appointments/{appt.id}/cancel", json={"reason": "feeling better"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "cancelled" and body["cancel_reason"] == "feeling better"
        assert body["cancelled_by"].startswith("api_key:") and body["cancelled_at"] is not None
        (payload,) = await events_of(session, clinic.org_id, "appointment.cancelled")
        assert payload["status"] == "cancelled" and payload["reason"] == "feeling better"
        # the time is free again, for anyone
        slots = await service.available_slots(
            session,
            clinic.org_id,
            service_id=clinic.cleaning.id,
            start_date=date(2026, 3, 25),
            end_date=date(2026, 3, 25),
            practitioner_id=clinic.vega.id,
        )
        assert at(25, 10) in {s.start_at for s in slots}
        # a cancelled appointment cannot be confirmed; the answer lists what is allowed (nothing)
        r = await client.post(f"/appointments/{appt.id}/confirm")
        assert r.status_code == 409
        problem = r.json()
        assert problem["code"] == "invalid_transition" and problem["allowed_actions"] == []
        # cancelling by the public function with another org is a 404
        with pytest.raises(Exception) as err:
            await service.cancel(session, uuid.uuid4(), appt.id, reason="x", who=who)
        assert getattr(err.value, "status", None) == 404


async def test_slot_conflict_detection(session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient) -> None:
    ana = await make_patient(session, clinic.org_id)
    luis = await make_patient(session, clinic.org_id, given="Luis")
    with clock.frozen(NOW):
        base = {"service_id": str(clinic.cleaning.id), "practitioner_id": str(clinic.vega.id)}
        r = await client.post(
            "/appointments", json={**base, "patient_id": str(ana.id), "start_at": "2026-03-24T10:00:00+01:00"}
        )
        assert r.status_code == 201
        # same practitioner, overlapping the appointment or its buffers (09:55-10:40 local): 409 slot_taken
        for start in ("10:00", "10:15", "09:30", "10:35"):
            r = await client.post(
                "/appointments",
                json={**base, "patient_id": str(luis.id), "start_at": f"2026-03-24T{start}:00+01:00"},
            )
            assert r.status_code == 409, start
            assert r.json()["code"] == "slot_taken"
        # just clear of the buffers: fine (09:10-09:55 and 10:40-11:25 blocked)
        r = await client.post(
            "/appointments",
            json={**base, "patient_id": str(luis.id), "start_at": "2026-03-24T10:45:00+01:00"},
        )
        assert r.status_code == 201, r.text
        # the same patient with another practitioner at an overlapping time: 409 patient_overlap
        r = await client.post(
            "/appointments",
            json={
                **base,
                "practitioner_id": str(clinic.ruiz.id),
                "patient_id": str(ana.id),
                "start_at": "2026-03-24T10:15:00+01:00",
            },
        )
        assert r.status_code == 409 and r.json()["code"] == "patient_overlap"
        # the database itself refuses an overlap that skips the service checks
        appt = await session.scalar(select(Appointment).where(Appointment.patient_id == ana.id))
        assert appt is not None
        with pytest.raises(Exception) as err:
            async with session.begin_nested():
                await session.execute(
                    text(
                        "INSERT INTO appointments (id, org_id, patient_id, practitioner_id, service_id, "
                        "location_id, start_at, end_at, blocked_from, blocked_until, status, mode) "
                        "SELECT gen_random_uuid(), org_id, :luis, practitioner_id, service_id, location_id, "
                        "start_at, end_at, blocked_from, blocked_until, 'booked', mode "
                        "FROM appointments WHERE id = :id"
                    ),
                    {"luis": luis.id, "id": appt.id},
                )
        assert "ex_appointments_practitioner_time" in str(err.value)
        # a cancelled appointment no longer holds time
        await service.cancel(session, clinic.org_id, appt.id, reason="moved away", who=principal_for(clinic))
        r = await client.post(
            "/appointments",
            json={**base, "patient_id": str(luis.id), "start_at": "2026-03-24T09:45:00+01:00"},
        )
        assert r.status_code == 201, r.text


async def test_provider_availability(
    session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient, other_org: Organisation, make_client
) -> None:  # type: ignore[no-untyped-def]
    vega, loc = clinic.vega, clinic.location
    base = f"/practitioners/{vega.id}/availability"
    with clock.frozen(NOW):
        # time off on Tuesday 10:00-11:00 local, given without an offset: read in the location's zone
        r = await client.post(
            f"{base}/exceptions",
            json={
                "kind": "time_off",
                "location_id": str(loc.id),
                "start_at": "2026-03-24T10:00:00",
                "end_at": "2026-03-24T11:00:00",
                "reason": "training",
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["start_at"] == "2026-03-24T09:00:00Z"
        # extra hours on Saturday afternoon
        r = await client.post(
            f"{base}/exceptions",
            json={
                "kind": "extra_hours",
                "location_id": str(loc.id),
                "start_at": "2026-03-28T15:00:00+01:00",
                "end_at": "2026-03-28T16:00:00+01:00",
            },
        )
        assert r.status_code == 201
        # extra hours need a location; a rule needs end after start; zones are validated
        r = await client.post(
            f"{base}/exceptions",
            json={
                "kind": "extra_hours",
                "start_at": "2026-03-28T15:00:00Z",
                "end_at": "2026-03-28T16:00:00Z",
            },
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "location_id"
        r = await client.post(
            f"{base}/rules",
            json={"location_id": str(loc.id), "weekday": 5, "start_time": "12:00", "end_time": "09:00"},
        )
        assert r.status_code == 422
        r = await client.post("/locations", json={"name": "Moon", "timezone": "Moon/Crater"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "timezone"

        tuesday = await service.available_slots(
            session,
            clinic.org_id,
            service_id=clinic.cleaning.id,
            start_date=date(2026, 3, 24),
            end_date=date(2026, 3, 24),
            practitioner_id=vega.id,
        )
        local = [s.local_start.strftime("%H:%M") for s in tuesday]
        assert "09:30" in local and "09:45" not in local and "10:45" not in local and "11:00" in local
        saturday = await service.available_slots(
            session,
            clinic.org_id,
            service_id=clinic.cleaning.id,
            start_date=date(2026, 3, 28),
            end_date=date(2026, 3, 28),
        )
        assert [s.local_start.strftime("%H:%M") for s in saturday] == ["15:00", "15:15", "15:30"]
        assert {s.practitioner_id for s in saturday} == {vega.id}
        # booking inside the time off is refused as outside availability
        patient = await make_patient(session, clinic.org_id)
        r = await client.post(
            "/appointments",
            json={
                "patient_id": str(patient.id),
                "service_id": str(clinic.cleaning.id),
                "practitioner_id": str(vega.id),
                "start_at": "2026-03-24T10:15:00+01:00",
            },
        )
        assert r.status_code == 422 and r.json()["code"] == "outside_availability"
        # a new weekly rule (Saturday mornings from April) shows up; removing it takes it away
        r = await client.post(
            f"{base}/rules",
            json={
                "location_id": str(loc.id),
                "weekday": 5,
                "start_time": "09:00",
                "end_time": "10:00",
                "valid_from": "2026-04-01",
            },
        )
        assert r.status_code == 201
        rule_id = r.json()["id"]
        rules = (await client.get(f"{base}/rules")).json()
        assert len(rules) == 6
        april = await service.available_slots(
            session,
            clinic.org_id,
            service_id=clinic.cleaning.id,
            start_date=date(2026, 4, 4),
            end_date=date(2026, 4, 4),
        )
        assert april and april[0].local_start.isoformat() == "2026-04-04T09:00:00+02:00"
        assert (await client.delete(f"{base}/rules/{rule_id}")).status_code == 204
        assert (await client.delete(f"{base}/rules/{rule_id}")).status_code == 404
        assert not await service.available_slots(
            session,
            clinic.org_id,
            service_id=clinic.cleaning.id,
            start_date=date(2026, 4, 4),
            end_date=date(2026, 4, 4),
        )
        exceptions = (await client.get(f"{base}/exceptions")).json()
        assert [e["kind"] for e in exceptions] == ["time_off", "extra_hours"]
        assert (await client.delete(f"{base}/exceptions/{exceptions[0]['id']}")).status_code == 204
        # the horizon (60 days) bounds what is offered
        late = await service.available_slots(
            session,
            clinic.org_id,
            service_id=clinic.cleaning.id,
            start_date=date(2026, 5, 20),
            end_date=date(2026, 5, 29),
        )
        assert late and max(s.start_at for s in late) == NOW + timedelta(days=60)  # Fri 22 May, 10:00 CEST
        # another organisation sees none of it
        stranger = await make_client("admin", for_org=other_org)
        assert (await stranger.get(f"{base}/rules")).status_code == 404
        r = await stranger.get(
            "/slots",
            params={
                "service_id": str(clinic.cleaning.id),
                "start_date": "2026-03-24",
                "end_date": "2026-03-24",
            },
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "service_id"


async def test_patient_appointment_history(
    session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient, other_org: Organisation, make_client
) -> None:  # type: ignore[no-untyped-def]
    patient = await make_patient(session, clinic.org_id)
    who = principal_for(clinic)
    with clock.frozen(NOW):
        made = []
        for day, practitioner in ((24, clinic.vega), (25, clinic.ruiz), (26, clinic.vega)):
            made.append(
                await service.book(
                    session,
                    clinic.org_id,
                    AppointmentCreate(
                        patient_id=patient.id,
                        service_id=clinic.cleaning.id,
                        practitioner_id=practitioner.id,
                        start_at=at(day, 11),
                    ),
                    who,
                )
            )
        await service.cancel(session, clinic.org_id, made[1].id, reason="clash", who=who)
        r = await client.get(f"/patients/{patient.id}/appointments")
        assert r.status_code == 200
        page = r.json()
        assert page["total"] == 3
        assert [a["id"] for a in page["items"]] == [str(made[2].id), str(made[1].id), str(made[0].id)]
        assert [a["status"] for a in page["items"]] == ["booked", "cancelled", "booked"]
        audited = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.patient_id == patient.id, AuditEntry.resource_type == "patient_appointments")
        )
        assert audited == 1
        # upcoming: only time-holding, not yet started, soonest first
        upcoming = await service.upcoming_for_patient(session, clinic.org_id, patient.id)
        assert [a.id for a in upcoming] == [made[0].id, made[2].id]
    with clock.frozen(at(25, 12)):
        assert [a.id for a in await service.upcoming_for_patient(session, clinic.org_id, patient.id)] == [made[2].id]
    # the patient's timeline shows the bookings and the cancellation; other orgs get a 404
    from prm.patients.registry import timeline_sources

    entries = await timeline_sources()["appointments"](session, clinic.org_id, patient.id, None, 10)
    assert sorted(e.kind for e in entries) == ["appointment.booked"] * 3 + ["appointment.cancelled"]
    assert all(e.source == "appointments" for e in entries)
    assert "Cleaning with Dr Ruiz" in next(e.summary for e in entries if e.kind == "appointment.cancelled")
    stranger = await make_client("admin", for_org=other_org)
    assert (await stranger.get(f"/patients/{patient.id}/appointments")).status_code == 404
    assert (await stranger.get(f"/appointments/{made[0].id}")).status_code == 404


async def test_appointment_reminders(session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient) -> None:
    patient = await make_patient(session, clinic.org_id)
    who = principal_for(clinic)
    assert service.reminder_offsets() == [1440, 120]
    with clock.frozen(NOW) as c:
        appt = await service.book(
            session,
            clinic.org_id,
            AppointmentCreate(
                patient_id=patient.id,
                service_id=clinic.cleaning.id,
                practitioner_id=clinic.vega.id,
                start_at=at(25, 10),
            ),
            who,
        )
        reminders = await service.reminders_of(session, appt.id)
        assert [(r.offset_minutes, r.due_at, r.status) for r in reminders] == [
            (1440, at(24, 10), "scheduled"),
            (120, at(25, 8), "scheduled"),
        ]
        # nothing is due yet
        await jobs.run_due(session, names=[service.REMINDER_JOB])
        assert await events_of(session, clinic.org_id, "appointment.reminder_due") == []
        # one minute before the 24 h reminder: still nothing; at it: exactly one event
        c.set(at(24, 10) - timedelta(minutes=1))
        await jobs.run_due(session, names=[service.REMINDER_JOB])
        assert await events_of(session, clinic.org_id, "appointment.reminder_due") == []
        c.set(at(24, 10))
        report = await jobs.run_due(session, names=[service.REMINDER_JOB])
        assert len(report.succeeded) == 1
        (payload,) = await events_of(session, clinic.org_id, "appointment.reminder_due")
        assert payload == {
            "reminder_id": str(reminders[0].id),
            "appointment_id": str(appt.id),
            "patient_id": str(patient.id),
            "offset_minutes": 1440,
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

        # rescheduling voids the pending 2 h reminder (its job is cancelled) and schedules new ones
        moved = await service.reschedule(session, clinic.org_id, appt.id, start_at=at(26, 12), who=who)
        fresh = await service.reminders_of(session, moved.id)
        by_status = sorted((r.status, r.offset_minutes) for r in fresh)
        assert by_status == [("due", 1440), ("scheduled", 120), ("scheduled", 1440), ("void", 120)]
        void = next(r for r in fresh if r.status == "void")
        job_status = await session.scalar(
            text("SELECT status::text FROM procrastinate_jobs WHERE id = :id"), {"id": void.job_id}
        )
        assert job_status == "cancelled"
        # the old 2 h moment passes: nothing is sent for the old time
        c.set(at(25, 8))
        await jobs.run_due(session, names=[service.REMINDER_JOB])
        assert len(await events_of(session, clinic.org_id, "appointment.reminder_due")) == 1
        # cancelling voids what is left; nothing fires afterwards
        await service.cancel(session, clinic.org_id, appt.id, reason="travelling", who=who)
        assert {r.status for r in await service.reminders_of(session, appt.id)} == {"due", "void"}
        c.set(at(26, 12))
        await jobs.run_due(session, names=[service.REMINDER_JOB])
        assert len(await events_of(session, clinic.org_id, "appointment.reminder_due")) == 1
        # a reminder whose moment has already passed at booking time is not created
        late = await service.book(
            session,
            clinic.org_id,
            AppointmentCreate(
                patient_id=patient.id,
                service_id=clinic.checkup.id,
                practitioner_id=clinic.vega.id,
                start_at=at(27, 12),
            ),
            who,
        )
        assert [r.offset_minutes for r in await service.reminders_of(session, late.id)] == [120]


async def test_no_show_only_after_start_and_check_in_ends_reminders(
    session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient
) -> None:
    patient = await make_patient(session, clinic.org_id)
    who = principal_for(clinic)
    with clock.frozen(NOW) as c:
        appt = await service.book(
            session,
            clinic.org_id,
            AppointmentCreate(
                patient_id=patient.id,
                service_id=clinic.cleaning.id,
                practitioner_id=clinic.vega.id,
                start_at=at(25, 10),
            ),
            who,
        )
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
        walk_in = await service.book(
            session,
            clinic.org_id,
            AppointmentCreate(
                patient_id=patient.id,
                service_id=clinic.cleaning.id,
                practitioner_id=clinic.vega.id,
                start_at=at(26, 10),
            ),
            who,
        )
        await service.transition(session, clinic.org_id, walk_in.id, "check_in", who)
        assert {r.status for r in await service.reminders_of(session, walk_in.id)} == {"void"}
