"""Appointment reminders: scheduled at booking, voided on change, fired by the reminder sweep.

A reminder is a row with its due time; the sweep (`fire_due_reminders`, a job every minute) fires
every scheduled reminder that has come due. A booking writes no job per reminder: a clinic's queue
does not fill with jobs months ahead, and moving or cancelling an appointment only voids its rows.
Reminders scheduled before the sweep kept their own job (`job_id`), which fires the same way: a
reminder fires once, whoever gets to it first (`fire_reminder` holds its row lock and checks it)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import state_machine as sm
from prm.appointments.models import (
    Appointment,
    AppointmentChange,
    AppointmentReminder,
    Location,
    Practitioner,
)
from prm.appointments.setup import describe
from prm.core import audit, clock, events, jobs, rowlock
from prm.core import reminder_offsets as reminder_times
from prm.core.auth import Principal
from prm.core.events import Event
from prm.core.reminder_offsets import ReminderOffset
from prm.identity import service as identity

log = structlog.get_logger(__name__)

# --- reminders ----------------------------------------------------------------------------------


async def reminder_offsets(session: AsyncSession, org_id: uuid.UUID) -> list[ReminderOffset]:
    """Largest first: the organisation's own offsets (organisation settings), else the process setting
    REMINDER_OFFSETS ("1d,2h"). `1d` counts local calendar days, `2h`/`30m` absolute time."""
    return list((await identity.organisation_settings(session, org_id)).reminder_offsets)


async def _zone_of(session: AsyncSession, appointment: Appointment) -> ZoneInfo:
    """The appointment's clock: its location's time zone, else its practitioner's."""
    zone = None
    if appointment.location_id is not None:  # usually loaded already (the identity map answers)
        location = await session.get(Location, appointment.location_id)
        zone = location.timezone if location is not None else None
    if zone is None:
        zone = await session.scalar(select(Practitioner.timezone).where(Practitioner.id == appointment.practitioner_id))
    return ZoneInfo(zone or "UTC")


async def _schedule_reminders(session: AsyncSession, appointment: Appointment, *, zone: ZoneInfo | None = None,
                              offsets: Sequence[ReminderOffset] | None = None) -> list[AppointmentReminder]:
    """One reminder row per offset whose moment is still ahead (days counted on the local calendar),
    written with the session's next flush; the sweep fires it. `zone` and `offsets` are read when not given."""
    now = clock.now()
    if zone is None:
        zone = await _zone_of(session, appointment)
    if offsets is None:
        offsets = await reminder_offsets(session, appointment.org_id)
    created = []
    for values in reminder_rows(appointment, zone, offsets, now):
        reminder = AppointmentReminder(**values)
        session.add(reminder)
        created.append(reminder)
    return created


def reminder_rows(appointment: Appointment, zone: ZoneInfo, offsets: Sequence[ReminderOffset],
                  now: datetime) -> list[dict[str, Any]]:
    """The reminder rows of a new or moved appointment: one per offset whose moment is still ahead."""
    rows = []
    for offset in offsets:
        due_at = reminder_times.due_at(appointment.start_at, offset, zone)
        if due_at <= now:
            continue
        rows.append({"id": uuid.uuid4(), "org_id": appointment.org_id, "appointment_id": appointment.id,
                     "offset_minutes": offset.nominal_minutes, "offset": str(offset), "due_at": due_at,
                     "status": "scheduled"})
    return rows


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
        if reminder.job_id is not None:  # scheduled before the sweep, with a job of its own
            await jobs.cancel_pending(session, reminder.job_id)
        reminder.status = "void"
    await session.flush()
    return len(pending)


async def fire_due_reminders(session: AsyncSession, *, now: datetime | None = None, limit: int = 500,
                             org_id: uuid.UUID | None = None) -> int:
    """Fire every scheduled reminder due by `now` (the service clock), oldest first, at most `limit`
    (the next sweep takes the rest), of every organisation or of `org_id`'s; returns how many fired.

    The due rows are claimed with `FOR UPDATE SKIP LOCKED`, so two workers sweeping at once share
    them out. Each fires in a savepoint of its own: one that fails is logged and left scheduled for
    the next sweep, and the others still fire."""
    now = now or clock.now()
    due = (await session.execute(
        select(AppointmentReminder.id, AppointmentReminder.org_id)
        .where(AppointmentReminder.status == "scheduled", AppointmentReminder.due_at <= now,
               *([AppointmentReminder.org_id == org_id] if org_id is not None else []))
        .order_by(AppointmentReminder.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )).all()
    fired = 0
    for reminder_id, org_id in due:
        try:
            async with session.begin_nested():
                fired += await fire_reminder(session, org_id, reminder_id)
        except Exception as exc:  # one reminder's failure must not hold back the others behind it
            log.error("appointments.reminder_failed", reminder_id=str(reminder_id), error=type(exc).__name__)
    return fired


async def fire_reminder(session: AsyncSession, org_id: uuid.UUID, reminder_id: uuid.UUID) -> bool:
    """Publish `appointment.reminder_due` for a scheduled reminder; False when there is nothing to do."""
    reminder = await rowlock.lock(session, AppointmentReminder, reminder_id, org_id=org_id)
    if reminder is None or rowlock.idle(reminder, "scheduled"):
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
