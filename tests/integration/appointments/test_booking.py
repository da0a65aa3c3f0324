"""Booking, updating, cancelling and conflicts (the plan's named scheduling tests), against real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import date

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service
from prm.appointments.models import Appointment
from prm.core import clock
from prm.core.audit import AuditEntry
from prm.core.auth import Principal
from prm.core.events import EventRecord

from .conftest import NOW, Clinic, make_patient
from .support import at, book, events_of, principal_for


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
        appt = await book(session, who, clinic, patient.id, at(24, 10))
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
        await book(session, who, clinic, other.id, at(24, 10))
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


async def test_cancel_appointment(session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient) -> None:
    patient = await make_patient(session, clinic.org_id)
    who = principal_for(clinic)
    with clock.frozen(NOW):
        appt = await book(session, who, clinic, patient.id, at(25, 10))
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
            await service.cancel(session, Principal.system(uuid.uuid4()), appt.id, reason="x")
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
        await service.cancel(session, principal_for(clinic), appt.id, reason="moved away")
        r = await client.post(
            "/appointments",
            json={**base, "patient_id": str(luis.id), "start_at": "2026-03-24T09:45:00+01:00"},
        )
        assert r.status_code == 201, r.text
