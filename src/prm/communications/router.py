"""HTTP API of communications: send, list, read, cancel; channel configuration; the sandbox outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from prm.communications import rules, sandbox, service
from prm.communications.models import ChannelConfig, Communication
from prm.communications.schemas import (
    Channel,
    ChannelConfigRead,
    ChannelConfigWrite,
    CommunicationCreate,
    CommunicationFilters,
    CommunicationRead,
    Direction,
    MediaRead,
    SandboxMessageRead,
    Status,
)
from prm.context import AppContext, Context, get_context
from prm.core import audit
from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.pagination import Page, Paging
from prm.media import service as media

router = APIRouter(prefix="/communications", tags=["communications"])


async def _reads(session: Session, who: Principal, request: Request,
                 rows: list[Communication]) -> list[CommunicationRead]:
    """Messages as read models; received attachments point at our stored copies (signed URLs), not the
    provider's."""
    stored = await media.urls_for_messages(session, who, [r.id for r in rows if r.media],
                                           media.MediaStore.from_settings(get_context(request).settings))
    reads = []
    for row in rows:
        read = CommunicationRead.model_validate(row)
        if row.id in stored:
            read = read.model_copy(update={"media": [MediaRead.model_validate(m) for m in stored[row.id]]})
        reads.append(read)
    return reads


@router.post(
    "",
    status_code=201,
    response_model=CommunicationRead,
    summary="Send a message to a patient",
    description="Queues an SMS, WhatsApp message, email or voice call, now or at `send_at`. Refused "
    "with 409 `consent_refused` when the patient opted out of the channel or purpose, "
    "and with 422 `whatsapp_window_closed` for a free-form WhatsApp message more than "
    "24 hours after the patient's last message (send a template instead).",
)
async def create(
    body: CommunicationCreate, session: Session, who: Principal = Requires("communications:write")
) -> CommunicationRead:
    comm = await service.send(session, who, body)
    return CommunicationRead.model_validate(comm)


@router.get(
    "",
    response_model=Page[CommunicationRead],
    summary="List messages",
    description="Newest first; filter by patient, channel, status, direction and time.",
)
async def list_(
    request: Request,
    session: Session,
    paging: Paging,
    patient_id: uuid.UUID | None = None,
    conversation_id: uuid.UUID | None = None,
    channel: Channel | None = None,
    status: Status | None = None,
    direction: Direction | None = None,
    since: Annotated[datetime | None, Query(description="Created at or after")] = None,
    until: Annotated[datetime | None, Query(description="Created before")] = None,
    who: Principal = Requires("communications:read"),
) -> Page[CommunicationRead]:
    filters = CommunicationFilters(
        patient_id=patient_id,
        conversation_id=conversation_id,
        channel=channel,
        status=status,
        direction=direction,
        since=since,
        until=until,
    )
    rows, total = await service.list_communications(session, who, filters, paging)
    return Page(
        items=await _reads(session, who, request, list(rows)),
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get(
    "/sandbox/outbox",
    response_model=Page[SandboxMessageRead],
    summary="Sandbox outbox",
    description="Every payload the `sandbox` provider recorded instead of delivering (development).",
)
async def sandbox_outbox(
    session: Session,
    paging: Paging,
    patient_id: uuid.UUID | None = None,
    channel: Channel | None = None,
    who: Principal = Requires("communications:read"),
) -> Page[SandboxMessageRead]:
    rows, total = await sandbox.page(session, who.org_id, patient_id=patient_id, channel=channel, paging=paging)
    await audit.record(
        session, who, "list", "sandbox_outbox", None, patient_id=patient_id, details={"count": len(rows)}
    )
    return Page(
        items=[SandboxMessageRead.model_validate(r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


def _config_read(channel: str, config: ChannelConfig | None, ctx: Context) -> ChannelConfigRead:
    return ChannelConfigRead(
        channel=channel,  # type: ignore[arg-type]
        provider=config.provider if config else None,
        effective_provider=service.effective_provider(config, channel, ctx.adapters),
        sender=config.sender if config else None,
        sender_name=config.sender_name if config else None,
        has_webhook_secret=bool(config and config.webhook_secret),
        enabled=config.enabled if config else True,
        updated_at=config.updated_at if config else None,
    )


@router.get(
    "/channels",
    response_model=list[ChannelConfigRead],
    summary="Channel configuration",
    description="Provider and sender of each channel for this organisation. Secrets are never returned.",
)
async def channels(session: Session, ctx: AppContext, who: Principal = Requires("admin")) -> list[ChannelConfigRead]:
    configs = {c.channel: c for c in await service.list_channel_configs(session, who.org_id)}
    return [_config_read(ch, configs.get(ch), ctx) for ch in rules.CHANNELS]


@router.put(
    "/channels/{channel}",
    response_model=ChannelConfigRead,
    summary="Configure a channel",
    description="Sets the provider, the sender number or address and (voice) the voice-agent webhook "
    "secret. The secret is write-only; leaving it out keeps the current one.",
)
async def put_channel(
    body: ChannelConfigWrite,
    session: Session,
    ctx: AppContext,
    channel: Annotated[Channel, Path(description="sms, whatsapp, email or voice")],
    who: Principal = Requires("admin"),
) -> ChannelConfigRead:
    config = await service.put_channel_config(session, who, channel, body)
    return _config_read(channel, config, ctx)


@router.get("/{communication_id}", response_model=CommunicationRead, summary="Read a message")
async def read(
    communication_id: uuid.UUID, request: Request, session: Session,
    who: Principal = Requires("communications:read"),
) -> CommunicationRead:
    [message] = await _reads(session, who, request, [await service.get(session, who, communication_id)])
    return message


@router.post(
    "/{communication_id}/cancel",
    response_model=CommunicationRead,
    summary="Cancel a queued message",
    description="Only a message that has not been handed to a provider yet (409 otherwise).",
)
async def cancel(
    communication_id: uuid.UUID, session: Session, who: Principal = Requires("communications:write")
) -> CommunicationRead:
    return CommunicationRead.model_validate(await service.cancel(session, who, communication_id))
