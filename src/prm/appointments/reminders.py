"""Appointment reminders: scheduled at booking, voided on change, fired by the reminder job."""

from __future__ import annotations

import uuid
from datetime import UTC
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import state_machine as sm
from prm.appointments.models import (
    Appointment,
    AppointmentChange,
    AppointmentReminder,
    AppointmentSettings,
    Location,
    Practitioner,
)
from prm.appointments.setup import REMINDER_JOB, describe
from prm.core import audit, clock, events, jobs
from prm.core import reminder_offsets as reminder_times
from prm.core.auth import Principal
from prm.core.errors import ValidationFailed
from prm.core.events import Event
from prm.core.reminder_offsets import ReminderOffset
from prm.settings import get_settings

# --- reminders ----------------------------------------------------------------------------------


def reminder_offsets(spec: str | None = None) -> list[ReminderOffset]:
    """The offsets of `spec` (an organisation's choice), else of REMINDER_OFFSETS ("1d,2h"), largest first."""
    return reminder_times.parse(spec if spec is not None else get_settings().reminder_offsets)


async def organisation_reminder_offsets(session: AsyncSession, org_id: uuid.UUID) -> str | None:
    """The organisation's own REMINDER_OFFSETS, or None when it follows the process setting."""
    return await session.scalar(
        select(AppointmentSettings.reminder_offsets).where(AppointmentSettings.org_id == org_id)
    )


async def set_organisation_reminder_offsets(
    session: AsyncSession, org_id: uuid.UUID, spec: str | None, who: Principal
) -> str | None:
    """Set (or clear with None) the organisation's reminder offsets; 422 naming the field when invalid.
    Appointments booked from now on use them; reminders already scheduled are kept."""
    if spec is not None:
        try:
            spec = reminder_times.normalise(spec)
        except ValueError as exc:
            raise ValidationFailed.field("reminder_offsets", str(exc), code="invalid_reminder_offsets") from None
    row = await session.scalar(select(AppointmentSettings).where(AppointmentSettings.org_id == org_id))
    if row is None:
        row = AppointmentSettings(id=uuid.uuid4(), org_id=org_id)
        session.add(row)
    row.reminder_offsets = spec
    row.updated_at = clock.now()
    await session.flush()
    await audit.record(session, who, "update", "appointment_settings", row.id, details={"reminder_offsets": spec})
    return spec


async def _zone_of(session: AsyncSession, appointment: Appointment) -> ZoneInfo:
    """The appointment's clock: its location's time zone, else its practitioner's."""
    zone = None
    if appointment.location_id is not None:
        zone = await session.scalar(select(Location.timezone).where(Location.id == appointment.location_id))
    if zone is None:
        zone = await session.scalar(select(Practitioner.timezone).where(Practitioner.id == appointment.practitioner_id))
    return ZoneInfo(zone or "UTC")


async def _schedule_reminders(session: AsyncSession, appointment: Appointment) -> list[AppointmentReminder]:
    """One reminder row + job per offset whose moment is still ahead (days counted on the local calendar)."""
    now = clock.now()
    zone = await _zone_of(session, appointment)
    offsets = reminder_offsets(await organisation_reminder_offsets(session, appointment.org_id))
    created = []
    for offset in offsets:
        due_at = reminder_times.due_at(appointment.start_at, offset, zone)
        if due_at <= now:
            continue
        reminder_id = uuid.uuid4()
        # the job goes first (the reminder row only carries its id), in the same transaction
        job_id = await jobs.defer(
            session, REMINDER_JOB, schedule_at=due_at, org_id=str(appointment.org_id), reminder_id=str(reminder_id)
        )
        reminder = AppointmentReminder(
            id=reminder_id,
            org_id=appointment.org_id,
            appointment_id=appointment.id,
            offset_minutes=offset.nominal_minutes,
            offset=str(offset),
            due_at=due_at,
            status="scheduled",
            job_id=job_id,
        )
        session.add(reminder)
        created.append(reminder)
    await session.flush()
    return created


async def _void_reminders(session: AsyncSession, appointment: Appointment) -> int:
    pending = list(
        await session.scalars(
            select(AppointmentReminder).where(
                AppointmentReminder.appointment_id == appointment.id,
                AppointmentReminder.status == "scheduled",
            )
        )
    )
    for reminder in pending:
        if reminder.job_id is not None:
            await jobs.cancel_pending(session, reminder.job_id)
        reminder.status = "void"
    await session.flush()
    return len(pending)


async def fire_reminder(session: AsyncSession, org_id: uuid.UUID, reminder_id: uuid.UUID) -> bool:
    """Publish `appointment.reminder_due` for a scheduled reminder; False when there is nothing to do."""
    reminder = (
        await session.execute(
            select(AppointmentReminder)
            .where(AppointmentReminder.id == reminder_id, AppointmentReminder.org_id == org_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if reminder is None or reminder.status != "scheduled":
        return False
    appointment = await session.get(Appointment, reminder.appointment_id)
    assert appointment is not None
    if appointment.status not in sm.REMINDABLE:
        reminder.status = "void"
        return False
    reminder.status = "due"
    reminder.fired_at = clock.now()
    await audit.record(
        session,
        Principal.system(org_id),
        "remind",
        "appointment",
        appointment.id,
        patient_id=appointment.patient_id,
        details={"reminder_id": str(reminder.id), "offset_minutes": reminder.offset_minutes},
    )
    await session.flush()
    await events.publish(
        session,
        Event(
            type="appointment.reminder_due",
            org_id=org_id,
            payload={
                "reminder_id": str(reminder.id),
                "appointment_id": str(appointment.id),
                "patient_id": str(appointment.patient_id),
                "offset_minutes": reminder.offset_minutes,
                "offset": reminder.offset or f"{reminder.offset_minutes}m",
                "start_at": appointment.start_at.astimezone(UTC).isoformat(),
                **await describe(session, appointment),
            },
        ),
    )
    return True


async def reminders_of(session: AsyncSession, appointment_id: uuid.UUID) -> list[AppointmentReminder]:
    return list(
        await session.scalars(
            select(AppointmentReminder)
            .where(AppointmentReminder.appointment_id == appointment_id)
            .order_by(AppointmentReminder.due_at, AppointmentReminder.created_at)
        )
    )


async def history_of(session: AsyncSession, appointment_id: uuid.UUID) -> list[AppointmentChange]:
    return list(
        await session.scalars(
            select(AppointmentChange)
            .where(AppointmentChange.appointment_id == appointment_id)
            .order_by(AppointmentChange.id)
        )
    )
