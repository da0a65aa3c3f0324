"""Event handlers of conversations: every inbound WhatsApp/SMS message is routed into its conversation."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from prm.conversations import service
from prm.core import events


@events.subscriber("message.received", name="conversations.route")
async def route_message(session: AsyncSession, event: events.Event) -> None:
    """Attach the message to the patient's open conversation (row-locked) and let the assistant answer.

    Idempotent: a message already attached to a conversation is skipped.
    """
    await service.route_inbound(session, event.org_id, uuid.UUID(str(event.payload["communication_id"])))
