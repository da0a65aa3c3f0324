"""Background jobs of inbound webhooks: a message stored by the fast path is processed here."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import jobs
from prm.webhooks import service


@jobs.job(service.PROCESS_MESSAGE_JOB)
async def process_twilio_message(session: AsyncSession, *, event_id: str) -> str | None:
    """Match the sender, record the communication, apply media and publish `message.received`;
    the outcome (`processed`, `unroutable`), or None when the event was processed already."""
    outcome = await service.process_stored_twilio_message(session, uuid.UUID(event_id))
    return outcome.status if outcome is not None else None
