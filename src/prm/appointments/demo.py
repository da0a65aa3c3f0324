"""Demo data: one clinic location, two practitioners, two services with weekly hours, a few bookings."""

from __future__ import annotations

import uuid
from datetime import time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service
from prm.appointments.models import Location
from prm.appointments.schemas import (
    AppointmentCreate,
    LocationCreate,
    PractitionerCreate,
    RuleCreate,
    ServiceCreate,
)
from prm.core import clock
from prm.core.auth import Principal
from prm.core.errors import DomainError

LOCATION_NAME = "Clínica Centro"
HOURS = ((time(9), time(14)), (time(15), time(18)))


async def seed(session: AsyncSession, org: Any, context: dict[str, Any]) -> None:
    existing = await session.scalar(select(Location).where(Location.org_id == org.id, Location.name == LOCATION_NAME))
    if existing is not None:
        return
    zone = getattr(org, "timezone", None) or "Europe/Madrid"
    location = await service.create_location(
        session, org.id, LocationCreate(name=LOCATION_NAME, address="Calle Mayor 1", timezone=zone)
    )
    vega = await service.create_practitioner(
        session, org.id, PractitionerCreate(name="Dr Elena Vega", title="Dentist", timezone=zone)
    )
    ruiz = await service.create_practitioner(
        session, org.id, PractitionerCreate(name="Dr Marco Ruiz", title="Hygienist", timezone=zone)
    )
    for practitioner in (vega, ruiz):
        for weekday in range(5):
            for start, end in HOURS:
                await service.add_rule(
                    session,
                    org.id,
                    practitioner.id,
                    RuleCreate(location_id=location.id, weekday=weekday, start_time=start, end_time=end),
                )
    cleaning = await service.create_service(
        session,
        org.id,
        ServiceCreate(
            name="Dental cleaning",
            duration_minutes=30,
            buffer_after_minutes=10,
            keywords=["cleaning", "limpieza", "hygiene", "scale and polish"],
            practitioner_ids=[vega.id, ruiz.id],
        ),
    )
    checkup = await service.create_service(
        session,
        org.id,
        ServiceCreate(
            name="Check-up (video)",
            duration_minutes=20,
            mode="video",
            slot_step_minutes=20,
            keywords=["check-up", "checkup", "revision", "consultation"],
            practitioner_ids=[vega.id],
        ),
    )
    context.update(locations=[location], practitioners=[vega, ruiz], services=[cleaning, checkup])

    who = Principal.system(org.id)
    today = clock.now().date()
    booked = []
    patients = list(context.get("patients") or [])[:4]
    for i, patient in enumerate(patients):
        chosen = cleaning if i % 2 == 0 else checkup
        found = await service.available_slots(
            session,
            org.id,
            service_id=chosen.id,
            start_date=today + timedelta(days=1 + i),
            end_date=today + timedelta(days=8 + i),
            limit=1,
        )
        if not found:
            continue
        patient_id = patient if isinstance(patient, uuid.UUID) else patient.id
        try:
            booked.append(
                await service.book(
                    session,
                    who,
                    AppointmentCreate(
                        patient_id=patient_id,
                        service_id=chosen.id,
                        practitioner_id=found[0].practitioner_id,
                        location_id=found[0].location_id,
                        start_at=found[0].start_at,
                        source="demo",
                    ),
                )
            )
        except DomainError:  # a demo patient that cannot be booked is simply skipped
            continue
    context["appointments"] = booked
