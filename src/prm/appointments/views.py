"""Read views: appointment lists, a patient's history and upcoming visits, the agenda, `.ics` invites."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import calendar
from prm.appointments.booking import get_appointment
from prm.appointments.models import (
    Appointment,
    Location,
    Practitioner,
    Service,
)
from prm.appointments.setup import get_practitioner
from prm.core import audit, clock, references
from prm.core.auth import Principal
from prm.core.errors import ValidationFailed
from prm.core.pagination import PageParams, paginate
from prm.patients import service as patients_service

# --- views --------------------------------------------------------------------------------------


def _filtered(
    org_id: uuid.UUID,
    *,
    patient_id: uuid.UUID | None = None,
    practitioner_id: uuid.UUID | None = None,
    status: str | None = None,
    start_from: datetime | None = None,
    start_before: datetime | None = None,
) -> Select[Any]:
    stmt = select(Appointment).where(Appointment.org_id == org_id)
    if patient_id is not None:
        stmt = stmt.where(Appointment.patient_id == patient_id)
    if practitioner_id is not None:
        stmt = stmt.where(Appointment.practitioner_id == practitioner_id)
    if status is not None:
        stmt = stmt.where(Appointment.status == status)
    if start_from is not None:
        stmt = stmt.where(Appointment.start_at >= start_from)
    if start_before is not None:
        stmt = stmt.where(Appointment.start_at < start_before)
    return stmt


async def _audit_reads(session: AsyncSession, who: Principal, rows: Iterable[Appointment], view: str) -> None:
    for row in rows:
        await audit.record(
            session, who, "read", "appointment", row.id, patient_id=row.patient_id, details={"view": view}
        )


async def list_appointments(
    session: AsyncSession, who: Principal, *, limit: int, offset: int, **filters: Any
) -> tuple[list[Appointment], int]:
    org_id = who.org_id
    for kind in ("patient", "practitioner"):
        await references.require(session, org_id, kind, filters.get(f"{kind}_id"), field=f"{kind}_id")
    stmt = _filtered(org_id, **filters).order_by(Appointment.start_at, Appointment.id)
    rows, total = await paginate(session, stmt, PageParams(limit=limit, offset=offset))
    await _audit_reads(session, who, rows, "list")
    return rows, total


async def patient_history(
    session: AsyncSession,
    who: Principal,
    patient_id: uuid.UUID,
    *,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Appointment], int]:
    """A patient's appointments, newest first (every status), audited as one read of the record.

    A merged patient answers `PatientMoved` (308 to the survivor), as the patient API does.
    """
    org_id = who.org_id
    patient = await patients_service.get(session, org_id, patient_id)  # NotFound when unknown or deleted
    if patient.merged_into_id is not None:
        survivor = await patients_service.resolve(session, org_id, patient_id)
        raise patients_service.PatientMoved(patient_id, survivor.id)
    stmt = _filtered(org_id, patient_id=patient_id).order_by(Appointment.start_at.desc(), Appointment.id)
    rows, total = await paginate(session, stmt, PageParams(limit=limit, offset=offset))
    await audit.record(
        session,
        who,
        "read",
        "patient_appointments",
        patient_id,
        patient_id=patient_id,
        details={"count": len(rows)},
    )
    return rows, total


async def upcoming_for_patient(
    session: AsyncSession,
    who: Principal,
    patient_id: uuid.UUID,
    *,
    limit: int = 20,
) -> list[Appointment]:
    """The patient's appointments that still hold time and have not started, soonest first."""
    org_id = who.org_id
    rows = list(
        await session.scalars(
            _filtered(org_id, patient_id=patient_id, start_from=clock.now())
            .where(Appointment.status.in_(("booked", "confirmed")))
            .order_by(Appointment.start_at)
            .limit(limit)
        )
    )
    await audit.record(
        session,
        who,
        "read",
        "patient_appointments",
        patient_id,
        patient_id=patient_id,
        details={"view": "upcoming", "count": len(rows)},
    )
    return rows


async def agenda(
    session: AsyncSession,
    who: Principal,
    practitioner_id: uuid.UUID,
    *,
    start_date: date,
    days: int,
) -> tuple[Practitioner, str, list[tuple[Appointment, Service, Location]]]:
    """A practitioner's appointments over `days` local days from `start_date` (their own zone)."""
    org_id = who.org_id
    if not 1 <= days <= 31:
        raise ValidationFailed.field("days", "must be between 1 and 31")
    practitioner = await get_practitioner(session, org_id, practitioner_id)
    tz = ZoneInfo(practitioner.timezone)
    frm = datetime.combine(start_date, time(0), tzinfo=tz).astimezone(UTC)
    until = datetime.combine(start_date + timedelta(days=days), time(0), tzinfo=tz).astimezone(UTC)
    rows = (
        await session.execute(
            select(Appointment, Service, Location)
            .join(Service, Service.id == Appointment.service_id)
            .join(Location, Location.id == Appointment.location_id)
            .where(
                Appointment.org_id == org_id,
                Appointment.practitioner_id == practitioner_id,
                Appointment.start_at >= frm,
                Appointment.start_at < until,
            )
            .order_by(Appointment.start_at)
        )
    ).all()
    entries = [(a, s, loc) for a, s, loc in rows]
    await _audit_reads(session, who, (a for a, _, _ in entries), "agenda")
    return practitioner, practitioner.timezone, entries


async def ics(session: AsyncSession, who: Principal, appointment_id: uuid.UUID) -> bytes:
    """The appointment as an iCalendar document (stable UID, SEQUENCE = reschedules)."""
    appointment = await get_appointment(session, who, appointment_id)
    service = await session.get(Service, appointment.service_id)
    practitioner = await session.get(Practitioner, appointment.practitioner_id)
    location = await session.get(Location, appointment.location_id)
    assert service and practitioner and location
    invite = calendar.Invite(
        appointment_id=appointment.id,
        start_at=appointment.start_at.astimezone(UTC),
        end_at=appointment.end_at.astimezone(UTC),
        status=appointment.status,
        sequence=appointment.sequence,
        summary=f"{service.name} with {practitioner.name}",
        location=location.name,
        timezone=location.timezone,
        mode=appointment.mode,
        stamp=appointment.updated_at or clock.now(),
        organizer_email=practitioner.email,
    )
    return calendar.to_ics(invite)
