"""Event handlers of notifications: appointment reminders become `appointment_reminder` messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import events
from prm.core.errors import Conflict, NotFound, ValidationFailed
from prm.notifications import service

log = structlog.get_logger(__name__)


def friendly_time(local_start: str | None) -> str:
    """'Tuesday 1 December 2026, 10:30' from an ISO local time (the raw text when it does not parse)."""
    if not local_start:
        return ""
    try:
        at = datetime.fromisoformat(local_start)
    except ValueError:
        return local_start
    return f"{at:%A} {at.day} {at:%B %Y}, {at:%H:%M}"


def reminder_variables(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "service_name": payload.get("service_name") or "",
        "practitioner_name": payload.get("practitioner_name") or "",
        "location_name": payload.get("location_name") or "",
        "when": friendly_time(payload.get("local_start")),
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
    try:
        comm = await service.send_notification(
            session,
            event.org_id,
            patient_id=uuid.UUID(str(payload["patient_id"])),
            template_key="appointment_reminder",
            variables=reminder_variables(payload),
            purpose="reminders",
            idempotency_key=f"reminder:{payload['reminder_id']}",
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
