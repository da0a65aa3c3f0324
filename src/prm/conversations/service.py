"""Conversations: routing inbound messages, the booking assistant's executor, and the staff inbox.

Inbound messages are routed and answered by the assistant in `flows` (see its docstring: row
lock per conversation, handoff to a person); staff work the inbox in `inbox`.

The code lives in one module per capability; this module is the published interface and
re-exports them, and keeps the patient record's extension points: `inbox` (finding, opening and
listing conversations; staff actions) and `flows` (inbound routing and the assistant's executor).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from prm.conversations import assistant
from prm.conversations.flows import (
    SLOT_CHUNK_DAYS,
    policy,
    route_inbound,
    run_assistant,
)
from prm.conversations.handover import hand_to_staff, store_offer
from prm.conversations.inbox import (
    HANDOFF_CATEGORY,
    ConversationFilters,
    add_message,
    assign,
    change_status,
    create,
    get,
    hand_back_to_bot,
    history,
    list_conversations,
    mark_read,
    open_for,
    read,
    reply,
    wake_snoozed,
    window_open,
)
from prm.conversations.models import Conversation
from prm.core import clock
from prm.media import service as media
from prm.patients.registry import (
    on_merge,
    reassign_patient,
    rows_on_timeline,
)
from prm.tickets import service as tickets

# --- the patient record's extension points ---------------------------------------------------------


@tickets.conversation_lookup
async def _conversation_exists(session: AsyncSession, org_id: uuid.UUID, conversation_id: uuid.UUID) -> bool:
    """For tickets (a lower layer) linking a ticket to a conversation of the organisation."""
    found = await session.scalar(
        select(Conversation.id).where(Conversation.id == conversation_id, Conversation.org_id == org_id)
    )
    return found is not None


@on_merge("conversations")
async def move_to_survivor(
    session: AsyncSession, org_id: uuid.UUID, duplicate_id: uuid.UUID, survivor_id: uuid.UUID
) -> int:
    """Move the duplicate's conversations; where both have one open on a channel, the duplicate's closes."""
    open_channels = set(
        await session.scalars(
            select(Conversation.channel).where(
                Conversation.org_id == org_id,
                Conversation.patient_id == survivor_id,
                Conversation.status != "closed",
            )
        )
    )
    if open_channels:
        await session.execute(
            sql_update(Conversation)
            .where(
                Conversation.org_id == org_id,
                Conversation.patient_id == duplicate_id,
                Conversation.status != "closed",
                Conversation.channel.in_(open_channels),
            )
            .values(status="closed", closed_at=clock.now(), bot_state=assistant.IDLE, bot_context={})
            .execution_options(synchronize_session=False)
        )
    return await reassign_patient(session, Conversation, org_id, duplicate_id, survivor_id)


timeline = rows_on_timeline(
    "conversations", Conversation, kind="conversation.opened", summary=lambda c: f"Conversation on {c.channel}",
    data=lambda c: {"status": c.status, "channel": c.channel, "bot_active": c.bot_active},
)


@media.link_target("conversation")
async def media_link(session: AsyncSession, org_id: uuid.UUID, conversation_id: uuid.UUID) -> media.LinkTarget | None:
    """A file attached to a conversation belongs to the conversation's patient."""
    patient_id = await session.scalar(
        select(Conversation.patient_id).where(Conversation.org_id == org_id, Conversation.id == conversation_id)
    )
    return None if patient_id is None else media.LinkTarget(patient_id=patient_id, conversation_id=conversation_id)

__all__ = [
    "HANDOFF_CATEGORY",
    "SLOT_CHUNK_DAYS",
    "ConversationFilters",
    "add_message",
    "assign",
    "change_status",
    "create",
    "get",
    "hand_back_to_bot",
    "hand_to_staff",
    "history",
    "list_conversations",
    "mark_read",
    "media_link",
    "move_to_survivor",
    "open_for",
    "policy",
    "read",
    "reply",
    "route_inbound",
    "run_assistant",
    "store_offer",
    "timeline",
    "wake_snoozed",
    "window_open",
]
