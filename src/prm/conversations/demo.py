"""Demo data: the demo WhatsApp messages gathered into conversations for the staff inbox."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from prm.conversations import service
from prm.conversations.models import CHANNELS


async def seed(session: AsyncSession, org: Any, context: dict[str, Any]) -> None:
    """Attach the demo messages (`context["communications"]`) to their conversations, oldest first."""
    conversations = {}
    for comm in sorted(context.get("communications", []), key=lambda c: c.created_at):
        if comm.conversation_id is not None or comm.channel not in CHANNELS:
            continue
        conversation = await service.open_for(session, org.id, comm.patient_id, comm.channel)
        await service.add_message(session, conversation, comm)
        conversations[conversation.id] = conversation
    context["conversations"] = list(conversations.values())
