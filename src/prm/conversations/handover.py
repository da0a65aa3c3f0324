"""What automations (n8n workflows, journeys) may do to a conversation from outside the inbox:
store an offer of slots the patient can pick from, and hand the conversation to staff."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.conversations import assistant
from prm.conversations.models import Conversation
from prm.core import events
from prm.core.auth import Principal
from prm.core.errors import NotFound


async def _locked(session: AsyncSession, org_id: uuid.UUID, conversation_id: uuid.UUID) -> Conversation:
    conversation = await session.scalar(
        select(Conversation).where(Conversation.id == conversation_id, Conversation.org_id == org_id)
        .with_for_update().execution_options(populate_existing=True))
    if conversation is None:
        raise NotFound(f"Conversation {conversation_id} not found", code="conversation_not_found")
    return conversation


async def store_offer(session: AsyncSession, org_id: uuid.UUID, conversation_id: uuid.UUID,
                      offer: dict[str, Any]) -> None:
    """Keep an automation's offer of slots on the conversation (`bot_context.external_offer`)."""
    conversation = await _locked(session, org_id, conversation_id)
    conversation.bot_context = {**(conversation.bot_context or {}), "external_offer": offer}
    await session.flush()


async def hand_to_staff(session: AsyncSession,
    who: Principal,
    conversation_id: uuid.UUID,
    *,
    reason: str = "automation_failed") -> None:
    """Turn the assistant off and leave the conversation open for a person."""
    org_id = who.org_id
    conversation = await _locked(session, org_id, conversation_id)
    conversation.bot_active = False
    conversation.bot_state, conversation.bot_context = assistant.HANDOFF, {"handoff_reason": reason}
    conversation.handoff_reason = reason[:32]
    if conversation.status != "closed":
        conversation.status = "open"
    await session.flush()
    await events.publish(session, events.Event(
        type="conversation.handed_off", org_id=org_id,
        payload={"conversation_id": str(conversation.id), "patient_id": str(conversation.patient_id),
                 "reason": reason, "by": who.credential}))
