"""Background jobs of scheduling: a reminder that comes due publishes `appointment.reminder_due`."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service
from prm.core import jobs


@jobs.job(service.REMINDER_JOB)
async def send_reminder(session: AsyncSession, *, org_id: str, reminder_id: str) -> bool:
    """Hand a due reminder to whoever delivers it (notifications subscribes to the event).

    Idempotent: a reminder already fired or voided (cancelled, rescheduled) does nothing.
    """
    return await service.fire_reminder(session, uuid.UUID(org_id), uuid.UUID(reminder_id))
