"""What there is to search, read from the domains that own it, cut into chunks.

The one module of `vector` that reads other domains, and only through their published `service`
modules (conversations, communications, tickets). Each function returns `Source`s: a source's
type and id, its patient and channel, and its chunks; `service` stores them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import service as communications
from prm.communications.schemas import CommunicationFilters
from prm.conversations import service as conversations
from prm.core.auth import Principal
from prm.core.errors import NotFound
from prm.core.pagination import MAX_LIMIT, PageParams
from prm.tickets import service as tickets
from prm.vector import chunking

CONVERSATION_CHANNELS = ("whatsapp", "sms")


@dataclass(frozen=True)
class Chunking:
    gap: timedelta = timedelta(minutes=30)
    max_chars: int = 1200


@dataclass
class Source:
    source_type: str
    source_id: uuid.UUID
    patient_id: uuid.UUID | None
    channel: str | None
    occurred_at: datetime
    chunks: list[chunking.Chunk] = field(default_factory=list)
    citation: dict[str, object] = field(default_factory=dict)  # added to every chunk's citation


class NotRoutedYet(Exception):
    """A WhatsApp/SMS message not yet attached to its conversation: try again shortly."""


async def _all_communications(session: AsyncSession, org_id: uuid.UUID, filters: CommunicationFilters) -> list:
    rows: list = []
    offset = 0
    while True:
        page, total = await communications.list_communications(session, Principal.system(org_id), filters,
                                                               PageParams(limit=MAX_LIMIT, offset=offset))
        rows.extend(page)
        offset += len(page)
        if not page or offset >= total:
            return rows


def _speaker(direction: str) -> str:
    return chunking.SPEAKER_LABELS.get(direction, "Clinic")


async def conversation(session: AsyncSession, org_id: uuid.UUID, conversation_id: uuid.UUID,
                       how: Chunking) -> Source | None:
    try:
        conv = await conversations.get(session, org_id, conversation_id)
    except NotFound:
        return None
    messages = await _all_communications(session, org_id, CommunicationFilters(conversation_id=conv.id))
    chunks = chunking.chunk_messages(
        [chunking.Message(id=str(m.id), conversation_id=str(conv.id), at=m.created_at, text=m.body or "",
                          speaker=_speaker(m.direction)) for m in messages],
        gap=how.gap, max_chars=how.max_chars)
    return Source("conversation", conv.id, conv.patient_id, conv.channel, conv.created_at, chunks)


async def communication(session: AsyncSession, org_id: uuid.UUID, communication_id: uuid.UUID,
                        how: Chunking) -> Source | None:
    """The source a stored message belongs to: its conversation, its call transcript, or itself (email)."""
    try:
        comm = await communications.get(session, Principal.system(org_id), communication_id)
    except NotFound:
        return None
    if comm.channel in CONVERSATION_CHANNELS:
        if comm.conversation_id is None:
            if comm.direction == "inbound":
                raise NotRoutedYet(str(comm.id))
            return None  # an outbound message outside any conversation (a reminder): not searchable
        return await conversation(session, org_id, comm.conversation_id, how)
    at = comm.created_at
    if comm.channel == "voice":
        return Source("voice_call", comm.id, comm.patient_id, "voice", at,
                      chunking.chunk_transcript(comm.body or "", max_chars=how.max_chars, at=at))
    text = "\n\n".join(p for p in (comm.subject, comm.body) if p)
    chunks = [chunking.Chunk(text=c.text, ordinal=c.ordinal, occurred_at=at, paragraphs=c.paragraphs)
              for c in chunking.chunk_document(text, max_chars=how.max_chars)]
    return Source("message", comm.id, comm.patient_id, comm.channel, at, chunks)


async def ticket(session: AsyncSession, org_id: uuid.UUID, ticket_id: uuid.UUID, how: Chunking) -> list[Source]:
    """The ticket (subject and description) and each of its comments, internal notes included."""
    try:
        row = await tickets.get(session, Principal.system(org_id), ticket_id)
    except NotFound:
        return []
    text = "\n\n".join(p for p in (row.subject, row.description) if p)
    out = [Source("ticket", row.id, row.patient_id, None, row.created_at,
                  chunking.chunk_document(text, max_chars=how.max_chars))]
    for comment in await tickets.list_comments(session, Principal.system(org_id), row.id):
        out.append(Source("ticket_comment", comment.id, row.patient_id, None, comment.created_at,
                          chunking.chunk_document(comment.body, max_chars=how.max_chars),
                          citation={"ticket_id": str(row.id), "internal": comment.internal}))
    return out


async def of_patient(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID
                     ) -> list[tuple[str, uuid.UUID]]:
    """Every (kind, id) to index for a patient: ("communication", id) and ("ticket", id)."""
    refs: list[tuple[str, uuid.UUID]] = []
    seen_conversations: set[uuid.UUID] = set()
    for comm in await _all_communications(session, org_id, CommunicationFilters(patient_id=patient_id)):
        if comm.conversation_id is not None:
            if comm.conversation_id in seen_conversations:
                continue
            seen_conversations.add(comm.conversation_id)
        elif comm.channel in CONVERSATION_CHANNELS:
            continue
        refs.append(("communication", comm.id))
    offset = 0
    while True:
        page, total = await tickets.list_tickets(session, Principal.system(org_id),
                                                 tickets.TicketFilters(patient_id=patient_id),
                                                 PageParams(limit=MAX_LIMIT, offset=offset))
        refs.extend(("ticket", t.id) for t in page)
        offset += len(page)
        if not page or offset >= total:
            return refs
