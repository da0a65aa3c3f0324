"""Background jobs of scheduling: reminders that come due publish `appointment.reminder_due`."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service
from prm.core import jobs


@jobs.job(service.REMINDER_JOB)
async def send_reminder(session: AsyncSession, *, org_id: str, reminder_id: str) -> bool:
    """Hand a due reminder to whoever delivers it (notifications subscribes to the event): the job of
    a reminder scheduled before the sweep (newer ones have none; the sweep fires them).

    Idempotent: a reminder already fired or voided (cancelled, rescheduled) does nothing.
    """
    return await service.fire_reminder(session, uuid.UUID(org_id), uuid.UUID(reminder_id))


@jobs.job(service.REMINDER_SWEEP, periodic="* * * * *", catch_up=True)
async def send_due_reminders(session: AsyncSession, **_: Any) -> int:
    """Every minute: fire every scheduled reminder that has come due (`fire_due_reminders`); `run_due`
    (tests, `prm jobs run-due`) runs it too."""
    return await service.fire_due_reminders(session)
