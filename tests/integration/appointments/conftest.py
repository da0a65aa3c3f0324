"""A small clinic for scheduling tests: a Madrid location, two practitioners, two services."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service
from prm.appointments.models import Location, Practitioner, Service
from prm.appointments.schemas import LocationCreate, PractitionerCreate, RuleCreate, ServiceCreate
from prm.identity.models import Organisation
from prm.patients.models import Patient

# Monday 2026-03-23, 08:00 UTC (09:00 in Madrid); the spring change is on Sunday 2026-03-29.
NOW = datetime(2026, 3, 23, 8, 0, tzinfo=UTC)


def at_local(day: int, hour: int, minute: int = 0) -> datetime:
    """UTC instant of a Madrid wall-clock time in the week of 2026-03-23 (CET, UTC+1)."""
    return datetime(2026, 3, day, hour - 1, minute, tzinfo=UTC)


async def make_patient(
    session: AsyncSession, org_id: uuid.UUID, *, given: str = "Ana", family: str = "García"
) -> Patient:
    patient = Patient(org_id=org_id, given_name=given, family_name=family, source="api")
    session.add(patient)
    await session.flush()
    return patient


@dataclass
class Clinic:
    org_id: uuid.UUID
    location: Location
    vega: Practitioner
    ruiz: Practitioner
    cleaning: Service  # 30 min, 5 before / 10 after buffers, both practitioners
    checkup: Service  # 60 min, video, Vega only


async def build_clinic(session: AsyncSession, org_id: uuid.UUID) -> Clinic:
    location = await service.create_location(session, org_id, LocationCreate(name="Centro", timezone="Europe/Madrid"))
    vega = await service.create_practitioner(
        session,
        org_id,
        PractitionerCreate(name="Dr Vega", email="vega@example.org", timezone="Europe/Madrid"),
    )
    ruiz = await service.create_practitioner(
        session, org_id, PractitionerCreate(name="Dr Ruiz", timezone="Europe/Madrid")
    )
    for practitioner in (vega, ruiz):
        for weekday in range(5):
            await service.add_rule(
                session,
                org_id,
                practitioner.id,
                RuleCreate(location_id=location.id, weekday=weekday, start_time=time(9), end_time=time(13)),
            )
    cleaning = await service.create_service(
        session,
        org_id,
        ServiceCreate(
            name="Cleaning",
            duration_minutes=30,
            buffer_before_minutes=5,
            buffer_after_minutes=10,
            min_notice_minutes=60,
            horizon_days=60,
            slot_step_minutes=15,
            keywords=["limpieza", "Hygiene"],
            practitioner_ids=[vega.id, ruiz.id],
        ),
    )
    checkup = await service.create_service(
        session,
        org_id,
        ServiceCreate(
            name="Check-up",
            duration_minutes=60,
            mode="video",
            min_notice_minutes=0,
            slot_step_minutes=60,
            practitioner_ids=[vega.id],
        ),
    )
    return Clinic(org_id, location, vega, ruiz, cleaning, checkup)


@pytest.fixture
async def clinic(session: AsyncSession, org: Organisation) -> Clinic:
    return await build_clinic(session, org.id)
