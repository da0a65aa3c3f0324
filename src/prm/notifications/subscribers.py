"""Event handlers of notifications: appointment reminders, confirmations, moves and cancellations
become messages to the patient (templates `appointment_reminder`, `appointment_confirmation`,
`appointment_rescheduled`, `appointment_cancelled`) on the preferred channel with fallback.

The appointment events carry the names, the location's time zone and the local start, so this
module does not import appointments (the two are peers)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_time
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import clock, events
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound, ValidationFailed
from prm.notifications import service
from prm.patients import service as patients

log = structlog.get_logger(__name__)


# Our own wording for the two languages the templates ship in; any other language gets CLDR's full date.
_PATTERNS = {"en": "EEEE d MMMM y, HH:mm", "es": "EEEE d 'de' MMMM 'de' y, HH:mm"}


def _locale(language: str | None) -> Locale:
    try:
        return Locale.parse((language or "en").replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse("en")


def friendly_time(local_start: str | None, language: str | None = None) -> str:
    """An ISO local time as the patient reads it, in their language, whatever the process locale:
    'Tuesday 1 December 2026, 10:30', 'martes 1 de diciembre de 2026, 10:30', 'mardi 1 décembre 2026,
    10:30' (babel's CLDR data; English for an unknown language; the raw text when it does not parse)."""
    if not local_start:
        return ""
    try:
        at = datetime.fromisoformat(local_start)
    except ValueError:
        return local_start
    locale = _locale(language)
    pattern = _PATTERNS.get(locale.language)
    if pattern is not None:
        return str(format_datetime(at, pattern, tzinfo=at.tzinfo, locale=locale))
    return f"{format_date(at, 'full', locale=locale)}, {format_time(at, 'HH:mm', tzinfo=at.tzinfo, locale=locale)}"


def reminder_variables(payload: dict[str, Any], language: str | None = None) -> dict[str, Any]:
    return {
        "service_name": payload.get("service_name") or "",
        "practitioner_name": payload.get("practitioner_name") or "",
        "location_name": payload.get("location_name") or "",
        "when": friendly_time(payload.get("local_start"), language),
        "local_start": payload.get("local_start"),
        "timezone": payload.get("timezone"),
        "offset_minutes": payload.get("offset_minutes"),
    }




@events.subscriber("appointment.reminder_due", name="notifications.send_reminder")
async def send_reminder(session: AsyncSession, event: events.Event) -> None:
    """Send the reminder by the patient's preferred channel (with fallback), purpose `reminders`.

    Idempotent: the message is keyed by the reminder id. A patient who cannot be reached (no
    consent, no address) is logged, not retried.
    """
    payload = event.payload
    patient_id = uuid.UUID(str(payload["patient_id"]))
    try:
        patient = await patients.get(session, event.org_id, patient_id)  # its language dates the message
        comm = await service.send_notification(
            session,
            Principal.system(event.org_id),
            patient_id=patient_id,
            template_key="appointment_reminder",
            variables=reminder_variables(payload, patient.preferred_language),
            purpose="reminders",
            idempotency_key=f"reminder:{payload['reminder_id']}",
            patient=patient,
            look_up_key=False,  # delivered once per event (claimed): a repeat is caught at the insert
        )
    except (Conflict, ValidationFailed, NotFound) as exc:
        log.warning(
            "notifications.reminder_refused", reminder_id=str(payload.get("reminder_id")), code=exc.code
        )
        return
    log.info(
        "notifications.reminder_queued",
        reminder_id=str(payload.get("reminder_id")),
        communication_id=str(comm.id),
        channel=comm.channel,
    )


# event type -> (the organisation setting's notice kind, the template sent)
APPOINTMENT_NOTICES: dict[str, tuple[str, str]] = {
    "appointment.booked": ("booked", "appointment_confirmation"),
    "appointment.rescheduled": ("rescheduled", "appointment_rescheduled"),
    "appointment.cancelled": ("cancelled", "appointment_cancelled"),
}


def notice_variables(payload: dict[str, Any], language: str | None = None) -> dict[str, Any]:
    return {
        "service_name": payload.get("service_name") or "",
        "practitioner_name": payload.get("practitioner_name") or "",
        "location_name": payload.get("location_name") or "",
        "when": friendly_time(payload.get("local_start"), language),
        "previous_when": friendly_time(payload.get("previous_local_start"), language),
        "local_start": payload.get("local_start"),
        "timezone": payload.get("timezone"),
    }


def _started(payload: dict[str, Any]) -> bool:
    try:
        start_at = datetime.fromisoformat(str(payload["start_at"]))
    except (KeyError, ValueError):
        return False
    return start_at <= clock.now()


@events.subscriber("appointment.booked", name="notifications.appointment_booked")
@events.subscriber("appointment.rescheduled", name="notifications.appointment_rescheduled")
@events.subscriber("appointment.cancelled", name="notifications.appointment_cancelled")
async def send_appointment_notice(session: AsyncSession, event: events.Event) -> None:
    """Tell the patient their appointment was booked, moved or cancelled (purpose `care`).

    Nothing is sent when the organisation turned the notice off, when the event says the patient is
    not to be told (a duplicate cancelled by a patient merge) or when the appointment has already
    started (a late delivery). Idempotent: the message is keyed by the event id. A patient who
    cannot be reached (no consented channel, no address) is logged by id, not retried.
    """
    kind, template_key = APPOINTMENT_NOTICES[event.type]
    payload = event.payload
    ids = {"event_id": str(event.id), "appointment_id": str(payload.get("appointment_id"))}
    if payload.get("notify_patient") is False or _started(payload) or not payload.get("local_start"):
        # not to be told (merge duplicate), too late, or an event from before events carried names
        log.info("notifications.appointment_notice_skipped", kind=kind, reason="not_applicable", **ids)
        return
    if not await service.appointment_notice_enabled(session, event.org_id, kind):
        log.info("notifications.appointment_notice_skipped", kind=kind, reason="turned_off", **ids)
        return
    patient_id = uuid.UUID(str(payload["patient_id"]))
    try:
        patient = await patients.get(session, event.org_id, patient_id)  # its language dates the message
        # no savepoint needed: send_notification writes nothing before it has decided, so a refusal
        # leaves nothing to undo (and the message's own insert has its savepoint)
        comm = await service.send_notification(
            session,
            Principal.system(event.org_id),
            patient_id=patient_id,
            template_key=template_key,
            variables=notice_variables(payload, patient.preferred_language),
            purpose="care",
            idempotency_key=f"{event.type}:{event.id}",
            patient=patient,
            look_up_key=False,  # delivered once per event (claimed): a repeat is caught at the insert
        )
    except (Conflict, ValidationFailed, NotFound) as exc:
        log.warning("notifications.appointment_notice_refused", kind=kind, code=exc.code, **ids)
        return
    log.info(
        "notifications.appointment_notice_queued",
        kind=kind,
        communication_id=str(comm.id),
        channel=comm.channel,
        **ids,
    )
