"""The staff inbox: conversations with patients, their history, replies, assignment, status, the bot."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from prm.context import get_context
from prm.conversations import service
from prm.conversations.models import Conversation
from prm.conversations.schemas import (
    Channel,
    ConversationAssign,
    ConversationCreate,
    ConversationDetail,
    ConversationRead,
    ConversationStatusChange,
    MessageRead,
    ReplyCreate,
    Status,
)
from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.pagination import Page, Paging
from prm.media import service as media

router = APIRouter(prefix="/conversations", tags=["conversations"])


def _read(conversation: Conversation) -> ConversationRead:
    return ConversationRead.model_validate(conversation).model_copy(
        update={"whatsapp_window_open": service.window_open(conversation)}
    )


def _detail(conversation: Conversation) -> ConversationDetail:
    return ConversationDetail.model_validate(conversation).model_copy(
        update={"whatsapp_window_open": service.window_open(conversation)}
    )


@router.get(
    "",
    response_model=Page[ConversationRead],
    summary="The inbox: conversations with filters",
    description="Most recent activity first. `unread=true` lists conversations with inbound messages "
    "no one has read; `bot_active=false` those a person has taken over.",
)
async def list_conversations(
    session: Session,
    paging: Paging,
    status: Annotated[list[Status] | None, Query(description="One or more statuses")] = None,
    channel: Channel | None = None,
    assignee_id: uuid.UUID | None = None,
    unassigned: bool | None = None,
    unread: bool | None = None,
    patient_id: uuid.UUID | None = None,
    bot_active: bool | None = None,
    who: Principal = Requires("conversations:read"),
) -> Page[ConversationRead]:
    filters = service.ConversationFilters(
        status=list(status) if status else None,
        channel=channel,
        assignee_id=assignee_id,
        unassigned=unassigned,
        unread=unread,
        patient_id=patient_id,
        bot_active=bot_active,
    )
    rows, total = await service.list_conversations(session, who, filters, paging)
    return Page[ConversationRead](
        items=[_read(c) for c in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.post(
    "",
    status_code=201,
    response_model=ConversationDetail,
    summary="Open (or find) the conversation with a patient on a channel",
)
async def create_conversation(
    body: ConversationCreate, session: Session, who: Principal = Requires("conversations:write")
) -> ConversationDetail:
    return _detail(await service.create(session, who, body.patient_id, body.channel))


@router.get(
    "/{conversation_id}",
    response_model=ConversationDetail,
    summary="A conversation with the assistant's state",
)
async def get_conversation(
    conversation_id: uuid.UUID, session: Session, who: Principal = Requires("conversations:read")
) -> ConversationDetail:
    return _detail(await service.read(session, who, conversation_id))


@router.get(
    "/{conversation_id}/messages",
    response_model=Page[MessageRead],
    summary="The conversation's messages, newest first",
)
async def list_messages(
    conversation_id: uuid.UUID,
    request: Request,
    session: Session,
    paging: Paging,
    who: Principal = Requires("conversations:read"),
) -> Page[MessageRead]:
    rows, total = await service.history(session, who, conversation_id, paging)
    # received attachments point at our stored copies (signed URLs), not the provider's
    stored = await media.urls_for_messages(session, who, [m.id for m in rows if m.media],
                                           media.MediaStore.from_settings(get_context(request).settings))
    return Page[MessageRead](
        items=[MessageRead.model_validate(m).model_copy(update={"media": stored[m.id]}) if m.id in stored
               else MessageRead.model_validate(m) for m in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post(
    "/{conversation_id}/messages",
    status_code=201,
    response_model=MessageRead,
    summary="Reply to the patient (a person replying takes over from the assistant)",
    description="Sent through communications: consent and WhatsApp's 24-hour rule apply (409 / 422).",
)
async def reply(
    conversation_id: uuid.UUID,
    body: ReplyCreate,
    session: Session,
    who: Principal = Requires("conversations:write"),
) -> MessageRead:
    return MessageRead.model_validate(
        await service.reply(session, who, conversation_id, body.body)
    )


@router.post("/{conversation_id}/read", response_model=ConversationRead, summary="Mark the conversation read")
async def mark_read(
    conversation_id: uuid.UUID, session: Session, who: Principal = Requires("conversations:write")
) -> ConversationRead:
    return _read(await service.mark_read(session, who, conversation_id))


@router.post(
    "/{conversation_id}/assign",
    response_model=ConversationRead,
    summary="Assign to a staff member (silences the assistant) or unassign",
)
async def assign(
    conversation_id: uuid.UUID,
    body: ConversationAssign,
    session: Session,
    who: Principal = Requires("conversations:write"),
) -> ConversationRead:
    return _read(await service.assign(session, who, conversation_id, body.assignee_id))


@router.post(
    "/{conversation_id}/status",
    response_model=ConversationRead,
    summary="Change the status: open, pending, snoozed (until a time) or closed",
)
async def change_status(
    conversation_id: uuid.UUID,
    body: ConversationStatusChange,
    session: Session,
    who: Principal = Requires("conversations:write"),
) -> ConversationRead:
    return _read(
        await service.change_status(
            session,
            who,
            conversation_id,
            body.status,
            snoozed_until=body.snoozed_until,
        )
    )


@router.post(
    "/{conversation_id}/bot",
    response_model=ConversationRead,
    summary="Hand the conversation back to the booking assistant",
)
async def hand_back_to_bot(
    conversation_id: uuid.UUID, session: Session, who: Principal = Requires("conversations:write")
) -> ConversationRead:
    return _read(await service.hand_back_to_bot(session, who, conversation_id))
