"""Scheduling: the published interface of `appointments` (what other domains and routers import).

The code lives in one module per capability: `setup` (practitioners, locations, services,
availability rules and exceptions), `availability` (slot queries), `booking` (book, transition,
reschedule, the guarded write), `reminders` and `views` (agenda, history, `.ics`). This module
re-exports their public functions and keeps the patient record's extension points.

Public functions other modules call (a chat bot, journeys, agents): `list_services`,
`find_services`, `available_slots` (`available_start_times`: compact), `book`, `cancel`, `reschedule`,
`upcoming_for_patient`.
All take the session first and the organisation second, flush and never commit.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import state_machine as sm
from prm.appointments.availability import (
    available_slots,
    available_start_times,
    service_times,
)
from prm.appointments.booking import (
    book,
    cancel,
    event_payload,
    get_appointment,
    reschedule,
    transition,
    update_appointment,
)
from prm.appointments.models import (
    Appointment,
    AppointmentChange,
    Location,
    Practitioner,
    Service,
)
from prm.appointments.reminders import (
    fire_due_reminders,
    fire_reminder,
    history_of,
    reminder_offsets,
    reminders_of,
)
from prm.appointments.setup import (
    MAX_RANGE_DAYS,
    REMINDER_JOB,
    REMINDER_SWEEP,
    _holding,
    add_exception,
    add_rule,
    create_location,
    create_practitioner,
    create_service,
    delete_exception,
    delete_rule,
    describe,
    find_services,
    get_location,
    get_practitioner,
    get_service,
    list_exceptions,
    list_locations,
    list_practitioners,
    list_rules,
    list_services,
    update_location,
    update_practitioner,
    update_service,
)
from prm.appointments.views import (
    agenda,
    ics,
    list_appointments,
    patient_history,
    upcoming_for_patient,
)
from prm.core.auth import Principal
from prm.patients import registry

# --- patient record extension points ------------------------------------------------------------


@registry.on_merge("appointments")
async def move_patient(
    session: AsyncSession, org_id: uuid.UUID, duplicate_id: uuid.UUID, survivor_id: uuid.UUID
) -> int:
    """Patient merge: the duplicate's appointments move to the survivor.

    A duplicate's appointment that overlaps one the survivor already holds is the same visit booked
    twice: it is cancelled (reason recorded) before the move, so the patient constraint holds.
    """
    system = Principal.system(org_id)
    survivor_rows = list(
        await session.scalars(
            select(Appointment).where(Appointment.org_id == org_id, Appointment.patient_id == survivor_id, _holding)
        )
    )
    duplicates = list(
        await session.scalars(
            select(Appointment).where(Appointment.org_id == org_id, Appointment.patient_id == duplicate_id, _holding)
        )
    )
    for row in duplicates:
        if row.status in ("booked", "confirmed") and any(
            s.start_at < row.end_at and row.start_at < s.end_at for s in survivor_rows
        ):
            await transition(
                session,
                system,
                row.id,
                "cancel",
                reason=f"duplicate of an appointment of patient {survivor_id} (patient merge)",
                notify_patient=False,
            )
    result = await session.execute(
        update(Appointment)
        .where(Appointment.org_id == org_id, Appointment.patient_id == duplicate_id)
        .values(patient_id=survivor_id)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@registry.timeline_source("appointments")
async def timeline(
    session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, before: datetime | None, limit: int
) -> list[registry.TimelineEntry]:
    """Timeline entries: one per booking, move and status change of the patient's appointments."""
    stmt = (
        select(AppointmentChange, Appointment, Service.name, Practitioner.name, Location.timezone)
        .join(Appointment, Appointment.id == AppointmentChange.appointment_id)
        .join(Service, Service.id == Appointment.service_id)
        .join(Practitioner, Practitioner.id == Appointment.practitioner_id)
        .join(Location, Location.id == Appointment.location_id)
        .where(AppointmentChange.org_id == org_id, Appointment.patient_id == patient_id)
    )
    if before is not None:
        stmt = stmt.where(AppointmentChange.at < before)
    rows = (
        await session.execute(stmt.order_by(AppointmentChange.at.desc(), AppointmentChange.id.desc()).limit(limit))
    ).all()
    out = []
    for change, appointment, service_name, practitioner_name, zone in rows:
        when = (change.new_start_at or appointment.start_at).astimezone(ZoneInfo(zone))
        out.append(
            registry.TimelineEntry(
                at=change.at,
                kind=sm.EVENTS.get(change.action, f"appointment.{change.action}"),
                source="appointments",
                resource_id=str(appointment.id),
                summary=f"{service_name} with {practitioner_name}, {when:%Y-%m-%d %H:%M} ({zone}): {change.to_status}",
                data={
                    "status": change.to_status,
                    "start_at": appointment.start_at.astimezone(UTC).isoformat(),
                    "action": change.action,
                },
            )
        )
    return out


__all__ = [
    "MAX_RANGE_DAYS",
    "REMINDER_JOB",
    "REMINDER_SWEEP",
    "add_exception",
    "add_rule",
    "agenda",
    "available_slots",
    "available_start_times",
    "book",
    "cancel",
    "create_location",
    "create_practitioner",
    "create_service",
    "delete_exception",
    "delete_rule",
    "describe",
    "event_payload",
    "find_services",
    "fire_due_reminders",
    "fire_reminder",
    "get_appointment",
    "get_location",
    "get_practitioner",
    "get_service",
    "history_of",
    "ics",
    "list_appointments",
    "list_exceptions",
    "list_locations",
    "list_practitioners",
    "list_rules",
    "list_services",
    "move_patient",
    "patient_history",
    "reminder_offsets",
    "reminders_of",
    "reschedule",
    "service_times",
    "timeline",
    "transition",
    "upcoming_for_patient",
    "update_appointment",
    "update_location",
    "update_practitioner",
    "update_service",
]
