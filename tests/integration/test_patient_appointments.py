"""Patients and appointments together: a merge carries appointments over, the timeline shows them."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service as appointments
from prm.appointments.models import Appointment
from prm.appointments.schemas import AppointmentCreate
from prm.core import clock
from prm.core.auth import Principal
from prm.identity.models import Organisation
from prm.patients import service as patients
from tests.fixtures.factories import principal
from tests.integration.appointments.conftest import NOW, at_local, build_clinic, make_patient


async def test_merge_moves_appointments_and_timeline_lists_them(
    session: AsyncSession, org: Organisation, client: httpx.AsyncClient
) -> None:
    who = principal(org)
    clinic = await build_clinic(session, org.id)
    survivor = await make_patient(session, org.id, given="Ana")
    duplicate = await make_patient(session, org.id, given="Ana", family="Garcia")
    with clock.frozen(NOW):
        booked = await appointments.book(
            session,
            who,
            AppointmentCreate(
                patient_id=duplicate.id,
                service_id=clinic.cleaning.id,
                practitioner_id=clinic.vega.id,
                start_at=at_local(24, 10),
            ),
        )
        await patients.merge(session, who, survivor.id, duplicate.id)
        moved = await session.scalar(select(Appointment.patient_id).where(Appointment.id == booked.id))
        assert moved == survivor.id
        entries = await patients.timeline(session, who, survivor.id)
        mine = [e for e in entries if e.source == "appointments"]
        assert [e.kind for e in mine] == ["appointment.booked"]
        assert mine[0].resource_id == str(booked.id)
        assert [a.id for a in await appointments.upcoming_for_patient(
            session,
            Principal.system(org.id),
            survivor.id,
        )] == [booked.id]
        # the merged record's history redirects to the survivor's, like the patient API
        r = await client.get(f"/patients/{duplicate.id}/appointments", follow_redirects=False)
        assert r.status_code == 308 and r.headers["location"] == f"/patients/{survivor.id}/appointments"
        r = await client.get(f"/patients/{survivor.id}/appointments")
        assert [a["id"] for a in r.json()["items"]] == [str(booked.id)]
