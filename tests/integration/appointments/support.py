"""Helpers shared by the scheduling service tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service as appointments
from prm.appointments.models import Appointment, Practitioner, Service
from prm.appointments.schemas import AppointmentCreate
from prm.core.auth import Principal
from prm.core.events import EventRecord
from prm.identity.models import Organisation
from tests.fixtures.factories import principal

from .conftest import Clinic


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


def principal_for(clinic: Clinic):  # type: ignore[no-untyped-def]
    return principal(Organisation(id=clinic.org_id, name="x", slug="x", timezone="UTC"))


def booking(
    clinic: Clinic,
    patient_id: uuid.UUID,
    start_at: datetime,
    *,
    service: Service | None = None,
    practitioner: Practitioner | None = None,
) -> AppointmentCreate:
    """The request to book `service` (default: the cleaning) with `practitioner` (default: Dr Vega)."""
    return AppointmentCreate(
        patient_id=patient_id,
        service_id=(service or clinic.cleaning).id,
        practitioner_id=(practitioner or clinic.vega).id,
        start_at=start_at,
    )


async def book(
    session: AsyncSession,
    who: Principal,
    clinic: Clinic,
    patient_id: uuid.UUID,
    start_at: datetime,
    *,
    service: Service | None = None,
    practitioner: Practitioner | None = None,
) -> Appointment:
    """Book through the scheduling service, as the API does (see `booking` for the defaults)."""
    return await appointments.book(
        session, who, booking(clinic, patient_id, start_at, service=service, practitioner=practitioner)
    )
