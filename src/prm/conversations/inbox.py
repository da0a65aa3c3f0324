"""The staff inbox: finding and opening conversations, lists, history, and staff actions
(reply, mark read, assign, change status, hand back to the bot, wake snoozed ones)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select, text
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import rules as communication_rules
from prm.communications import service as communications
from prm.communications.schemas import CommunicationCreate
from prm.conversations import assistant
from prm.conversations.models import CHANNELS, Conversation
from prm.core import audit, clock, events, references
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound, ValidationFailed
from prm.core.events import Event
from prm.core.pagination import PageParams, matching, paginate
from prm.identity import service as identity
from prm.media import service as media
from prm.patients import service as patients

if TYPE_CHECKING:
    from prm.communications.models import Communication

HANDOFF_CATEGORY = "conversations"


references.resolver("conversation")(references.in_organisation(Conversation))


def window_open(conversation: Conversation) -> bool:
    return conversation.channel == "whatsapp" and communication_rules.whatsapp_window_open(
        conversation.last_inbound_at, clock.now()
    )


# --- finding and opening -------------------------------------------------------------------------


async def get(
    session: AsyncSession, org_id: uuid.UUID, conversation_id: uuid.UUID, *, for_update: bool = False
) -> Conversation:
    stmt = select(Conversation).where(Conversation.id == conversation_id, Conversation.org_id == org_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    conversation = await session.scalar(stmt)
    if conversation is None:
        raise NotFound(f"Conversation {conversation_id} not found", code="conversation_not_found")
    return conversation


async def open_for(
    session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, channel: str
) -> Conversation:
    """The patient's conversation on `channel` that is not closed — created if none — locked FOR UPDATE.

    Concurrent callers race on the partial unique index; the loser's insert does nothing and it
    then waits for the row lock held by the winner.
    """
    if channel not in CHANNELS:
        raise ValidationFailed.field("channel", f"conversations are on {', '.join(CHANNELS)}")
    stmt = (
        select(Conversation)
        .where(
            Conversation.org_id == org_id,
            Conversation.patient_id == patient_id,
            Conversation.channel == channel,
            Conversation.status != "closed",
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    conversation = await session.scalar(stmt)
    if conversation is not None:
        return conversation
    now = clock.now()
    await session.execute(
        insert(Conversation)
        .values(
            id=uuid.uuid4(),
            org_id=org_id,
            patient_id=patient_id,
            channel=channel,
            status="open",
            bot_active=True,
            bot_state=assistant.IDLE,
            bot_context={},
            unread_count=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(
            index_elements=["org_id", "patient_id", "channel"],
            # a literal, as in the index: with a bound parameter PostgreSQL cannot match the partial
            # index once psycopg prepares the statement (its generic plan), and the insert fails
            index_where=text("status <> 'closed'"),
        )
    )
    conversation = await session.scalar(stmt)
    if conversation is None:  # pragma: no cover - closed between insert and select
        raise Conflict("The conversation changed while it was being opened; retry", code="conversation_race")
    return conversation


async def create(
    session: AsyncSession, who: Principal, patient_id: uuid.UUID, channel: str
) -> Conversation:
    """Staff open (or find) the conversation with a patient on a channel."""
    org_id = who.org_id
    try:
        patient = await patients.resolve(session, org_id, patient_id)
    except NotFound:
        raise ValidationFailed.field(
            "patient_id", "no such patient in this organisation", code="patient_not_found"
        ) from None
    conversation = await open_for(session, org_id, patient.id, channel)
    await audit.record(session, who, "create", "conversation", conversation.id, patient_id=patient.id)
    return conversation


@dataclass
class ConversationFilters:
    status: list[str] | None = None
    channel: str | None = None
    assignee_id: uuid.UUID | None = None
    unassigned: bool | None = None
    unread: bool | None = None
    patient_id: uuid.UUID | None = None
    bot_active: bool | None = None


def _filtered(org_id: uuid.UUID, f: ConversationFilters) -> Select[Any]:
    stmt = matching(select(Conversation).where(Conversation.org_id == org_id), Conversation,
                    channel=f.channel, assignee_id=f.assignee_id, patient_id=f.patient_id)
    if f.status:
        stmt = stmt.where(Conversation.status.in_(f.status))
    if f.unassigned is not None:
        stmt = stmt.where(
            Conversation.assignee_id.is_(None) if f.unassigned else Conversation.assignee_id.is_not(None)
        )
    if f.unread is not None:
        stmt = stmt.where(Conversation.unread_count > 0 if f.unread else Conversation.unread_count == 0)
    if f.bot_active is not None:
        stmt = stmt.where(Conversation.bot_active.is_(f.bot_active))
    return stmt.order_by(
        Conversation.last_message_at.desc().nulls_last(), Conversation.created_at.desc(), Conversation.id
    )


async def list_conversations(
    session: AsyncSession, who: Principal, filters: ConversationFilters, paging: PageParams
) -> tuple[list[Conversation], int]:
    org_id = who.org_id
    await references.require(session, org_id, "user", filters.assignee_id, field="assignee_id")
    await references.require(session, org_id, "patient", filters.patient_id, field="patient_id")
    rows, total = await paginate(session, _filtered(org_id, filters), paging)
    for c in rows:
        await audit.record(
            session, who, "read", "conversation", c.id, patient_id=c.patient_id, details={"view": "inbox"}
        )
    return rows, total


async def read(
    session: AsyncSession, who: Principal, conversation_id: uuid.UUID
) -> Conversation:
    org_id = who.org_id
    conversation = await get(session, org_id, conversation_id)
    await audit.record(
        session, who, "read", "conversation", conversation.id, patient_id=conversation.patient_id
    )
    return conversation


async def history(
    session: AsyncSession, who: Principal, conversation_id: uuid.UUID, paging: PageParams
) -> tuple[list[Communication], int]:
    """The conversation's messages, newest first, one page at a time."""
    org_id = who.org_id
    conversation = await get(session, org_id, conversation_id)
    rows, total = await communications.of_conversation(session, org_id, conversation.id, paging)
    await audit.record(
        session,
        who,
        "read",
        "conversation_messages",
        conversation.id,
        patient_id=conversation.patient_id,
        details={"count": len(rows)},
    )
    return rows, total


# --- staff actions -------------------------------------------------------------------------------


async def _locked(session: AsyncSession, who: Principal, conversation_id: uuid.UUID, *,
                  closed: str | None = None) -> Conversation:
    """The conversation, locked for the change; with `closed`, a closed one is a 409 saying so."""
    conversation = await get(session, who.org_id, conversation_id, for_update=True)
    if closed is not None and conversation.status == "closed":
        raise Conflict(closed, code="conversation_closed")
    return conversation


async def _changed(session: AsyncSession, who: Principal, conversation: Conversation, details: dict[str, Any], *,
                   action: str = "update") -> Conversation:
    """Write the change and its audit entry."""
    await session.flush()
    await audit.record(session, who, action, "conversation", conversation.id, patient_id=conversation.patient_id,
                       details=details)
    return conversation


async def add_message(session: AsyncSession, conversation: Conversation, comm: Communication) -> None:
    """Attach a stored message to the conversation and keep its counters in step."""
    comm.conversation_id = conversation.id
    at = comm.created_at or clock.now()
    if conversation.last_message_at is not None and at <= conversation.last_message_at:
        # Messages are attached under the conversation's row lock, one after another; keep their
        # timestamps strictly increasing in that order so the history has one well-defined order
        # (two messages stored in the same microsecond would otherwise tie).
        at = conversation.last_message_at + timedelta(microseconds=1)
        comm.created_at = at
    conversation.last_message_at = at
    if comm.direction == "inbound":
        conversation.last_inbound_at = at
        conversation.unread_count += 1
        if conversation.status in ("pending", "snoozed"):  # the patient wrote: it needs attention again
            conversation.status, conversation.snoozed_until = "open", None
    else:
        conversation.last_outbound_at = at
    if comm.media:  # its stored attachments belong to the conversation too
        await media.link_conversation(session, comm.org_id, message_id=comm.id, conversation_id=conversation.id)
    await session.flush()
    await events.publish(session, Event(type="conversation.message_added", org_id=conversation.org_id, payload={
        "conversation_id": str(conversation.id), "communication_id": str(comm.id),
        "patient_id": str(conversation.patient_id), "channel": conversation.channel, "direction": comm.direction,
    }))


async def reply(
    session: AsyncSession, who: Principal, conversation_id: uuid.UUID, body: str
) -> Communication:
    """A staff reply, sent through communications. A person replying takes over from the assistant."""
    conversation = await _locked(session, who, conversation_id,
                                 closed="The conversation is closed; open a new one to write to the patient")
    comm = await communications.send(
        session,
        who,
        CommunicationCreate(
            patient_id=conversation.patient_id,
            channel=conversation.channel,  # type: ignore[arg-type]
            body=body,
            conversation_id=conversation.id,
        ),
    )
    await add_message(session, conversation, comm)
    conversation.bot_active = False
    conversation.unread_count = 0
    if conversation.assignee_id is None and who.user_id is not None:
        conversation.assignee_id = who.user_id
    await session.flush()
    return comm


async def mark_read(
    session: AsyncSession, who: Principal, conversation_id: uuid.UUID
) -> Conversation:
    conversation = await _locked(session, who, conversation_id)
    conversation.unread_count = 0
    return await _changed(session, who, conversation, {"marked_read": True}, action="read")


async def assign(
    session: AsyncSession,
    who: Principal,
    conversation_id: uuid.UUID,
    assignee_id: uuid.UUID | None,
) -> Conversation:
    org_id = who.org_id
    conversation = await _locked(session, who, conversation_id)
    if assignee_id is not None:
        await identity.require_active_user(session, org_id, assignee_id, field="assignee_id")
        conversation.bot_active = False  # a person has it now
    previous = conversation.assignee_id
    conversation.assignee_id = assignee_id
    await _changed(session, who, conversation, {"assignee_id": str(assignee_id) if assignee_id else None})
    if previous != assignee_id:
        await events.publish(
            session,
            Event(
                type="conversation.assigned",
                org_id=org_id,
                payload={
                    "conversation_id": str(conversation.id),
                    "assignee_id": str(assignee_id) if assignee_id else None,
                    "previous_assignee_id": str(previous) if previous else None,
                },
            ),
        )
    return conversation


async def change_status(
    session: AsyncSession,
    who: Principal,
    conversation_id: uuid.UUID,
    status: str,
    *,
    snoozed_until: datetime | None = None,
) -> Conversation:
    conversation = await _locked(
        session, who, conversation_id,
        closed=None if status == "closed" else "A closed conversation stays closed; the patient's next message "
                                               "opens a new one")
    if status == "snoozed":
        if snoozed_until is None or snoozed_until <= clock.now():
            raise ValidationFailed.field("snoozed_until", "snoozing needs a time in the future")
        conversation.snoozed_until = snoozed_until
    else:
        conversation.snoozed_until = None
    previous = conversation.status
    conversation.status = status
    if status == "closed":
        conversation.closed_at = clock.now()
        conversation.bot_state, conversation.bot_context = assistant.IDLE, {}
    return await _changed(session, who, conversation, {"status": [previous, status]})


async def hand_back_to_bot(
    session: AsyncSession, who: Principal, conversation_id: uuid.UUID
) -> Conversation:
    """The assistant answers again, starting fresh; the conversation is unassigned."""
    conversation = await _locked(session, who, conversation_id, closed="The conversation is closed")
    conversation.bot_active = True
    conversation.bot_state, conversation.bot_context = assistant.IDLE, {}
    conversation.handoff_reason = None
    conversation.assignee_id = None
    return await _changed(session, who, conversation, {"bot_active": True})


async def wake_snoozed(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Snoozed conversations whose time has come are open again."""
    result = await session.execute(
        sql_update(Conversation)
        .where(Conversation.status == "snoozed", Conversation.snoozed_until <= (now or clock.now()))
        .values(status="open", snoozed_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
