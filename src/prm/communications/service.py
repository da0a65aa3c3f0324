"""Communications: store every message, send outbound ones through the right adapter as a job.

Rules enforced here:
* consent: nothing is sent on a channel or for a purpose the patient opted out of (409
  `consent_refused` with the reason), checked when the message is created and again when it is sent;
* WhatsApp: a free-form message only within 24 h of the patient's last inbound WhatsApp message,
  otherwise an approved template (`content_sid` + variables) is required (422 `whatsapp_window_closed`);
* sending is the job `communications.send`: transient failures (timeouts, 5xx, 429) are retried with
  exponential backoff up to `COMMUNICATION_MAX_ATTEMPTS`, permanent ones fail at once with the
  provider's code and reason.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from prm.adapters import registry as adapters
from prm.adapters.channels import (
    Attachment,
    DeliveryError,
    OutboundCall,
    OutboundEmail,
    OutboundMessage,
    PermanentDeliveryError,
    SendResult,
)
from prm.adapters.sandbox import SandboxChannel
from prm.communications import rules
from prm.communications.models import ChannelConfig, Communication, InboundEvent, SandboxMessage
from prm.communications.schemas import ChannelConfigWrite, CommunicationCreate, CommunicationFilters
from prm.core import audit, clock, jobs
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound, ValidationFailed
from prm.core.pagination import PageParams, paginate
from prm.patients import registry as patient_registry
from prm.patients import service as patients

log = structlog.get_logger(__name__)

SEND_JOB = "communications.send"
PHONE_CHANNELS = ("sms", "whatsapp", "voice")


# --- consent and channel rules -------------------------------------------------------------------


async def require_consent(
    session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, *, channel: str, purpose: str
) -> None:
    """Raise 409 `consent_refused` (with the reason) unless the patient may be contacted so."""
    decision = await patients.consent_allows(session, org_id, patient_id, channel=channel, purpose=purpose)
    if not decision.allowed:
        raise Conflict(
            f"The patient may not be contacted by {channel} for {purpose}: {decision.reason}",
            code="consent_refused",
            reason=decision.reason,
            channel=channel,
            purpose=purpose,
        )


async def last_inbound_at(
    session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, channel: str = "whatsapp"
) -> datetime | None:
    result: datetime | None = await session.scalar(
        select(func.max(Communication.created_at)).where(
            Communication.org_id == org_id,
            Communication.patient_id == patient_id,
            Communication.channel == channel,
            Communication.direction == "inbound",
        )
    )
    return result


async def whatsapp_window_open(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID) -> bool:
    return rules.whatsapp_window_open(await last_inbound_at(session, org_id, patient_id), clock.now())


def address_of(patient: Any, channel: str) -> str | None:
    return patient.primary_email if channel == "email" else patient.primary_phone


def _check_shape(data: CommunicationCreate) -> None:
    """Which fields a channel takes; raises ValidationFailed naming the field."""
    ch = data.channel
    if data.content_sid and ch != "whatsapp":
        raise ValidationFailed.field("content_sid", "templates (Content SID) are for WhatsApp only")
    if data.media_urls and ch not in ("sms", "whatsapp"):
        raise ValidationFailed.field("media_urls", "media is for SMS and WhatsApp; email takes attachments")
    if data.attachments and ch != "email":
        raise ValidationFailed.field("attachments", "attachments are for email only")
    if (data.subject or data.html_body) and ch != "email":
        raise ValidationFailed.field("subject" if data.subject else "html_body", "only email has a subject/HTML")
    if ch == "email" and not data.subject:
        raise ValidationFailed.field("subject", "an email needs a subject")
    if not data.content_sid and not (data.body or "").strip() and not data.media_urls:
        raise ValidationFailed.field("body", "a message needs a body")
    if ch in ("voice", "email") and not (data.body or "").strip():
        raise ValidationFailed.field("body", f"a {ch} message needs a body")


# --- creating and reading ------------------------------------------------------------------------


async def send(
    session: AsyncSession, org_id: uuid.UUID, data: CommunicationCreate, who: Principal | None = None
) -> Communication:
    """Create an outbound message and queue its sending (now, or at `data.send_at`).

    Refuses (nothing written) when the patient is unknown (404), has no address on the channel
    (422), did not consent (409 `consent_refused`), or when a free-form WhatsApp message falls
    outside the 24-hour window (422 `whatsapp_window_closed`). A repeated `idempotency_key` returns
    the first message.
    """
    who = who or Principal.system(org_id)
    if data.idempotency_key:
        existing = await session.scalar(
            select(Communication).where(
                Communication.org_id == org_id, Communication.idempotency_key == data.idempotency_key
            )
        )
        if existing is not None:
            return existing
    _check_shape(data)
    patient = await patients.resolve(session, org_id, data.patient_id)
    to = address_of(patient, data.channel)
    if not to:
        kind = "email address" if data.channel == "email" else "phone number"
        raise ValidationFailed.field("patient_id", f"the patient has no {kind} for {data.channel}", code="no_address")
    await require_consent(session, org_id, patient.id, channel=data.channel, purpose=data.purpose)
    if (
        data.channel == "whatsapp"
        and not data.content_sid
        and not await whatsapp_window_open(session, org_id, patient.id)
    ):
        raise ValidationFailed.field(
            "body",
            "free-form WhatsApp messages are only allowed within 24 hours of the patient's last "
            "message; send an approved template (content_sid and content_variables)",
            code="whatsapp_window_closed",
        )
    now = clock.now()
    config = await channel_config(session, org_id, data.channel)
    if config is not None and not config.enabled:
        raise Conflict(f"The {data.channel} channel is disabled for this organisation", code="channel_disabled")
    comm = Communication(
        id=uuid.uuid4(),
        org_id=org_id,
        patient_id=patient.id,
        conversation_id=data.conversation_id,
        channel=data.channel,
        direction="outbound",
        purpose=data.purpose,
        status="queued",
        to_address=to,
        from_address=_sender(config, data.channel),
        subject=data.subject,
        body=data.body,
        html_body=data.html_body,
        media=[{"url": u, "content_type": None} for u in data.media_urls],
        attachments=[a.model_dump() for a in data.attachments],
        content_sid=data.content_sid,
        content_variables=data.content_variables or None,
        template_key=data.template_key,
        idempotency_key=data.idempotency_key,
        created_by=who.credential,
        send_at=data.send_at,
        queued_at=now,
        attempts=0,
        details={},
    )
    try:
        async with session.begin_nested():
            session.add(comm)
            await session.flush()
    except IntegrityError:
        if not data.idempotency_key:
            raise
        # a concurrent request with the same key won the race: answer with its message
        existing = await session.scalar(
            select(Communication).where(
                Communication.org_id == org_id, Communication.idempotency_key == data.idempotency_key
            )
        )
        if existing is None:
            raise
        return existing
    schedule_at = data.send_at if data.send_at and data.send_at > now else None
    job_id = await jobs.defer(
        session, SEND_JOB, org_id=str(org_id), communication_id=str(comm.id), schedule_at=schedule_at
    )
    comm.details = {"job_id": job_id}
    await audit.record(
        session,
        who,
        "create",
        "communication",
        comm.id,
        patient_id=patient.id,
        details={"channel": comm.channel, "purpose": comm.purpose},
    )
    log.info(
        "communication.queued",
        communication_id=str(comm.id),
        channel=comm.channel,
        scheduled=schedule_at is not None,
    )
    return comm


async def get(
    session: AsyncSession, org_id: uuid.UUID, communication_id: uuid.UUID, who: Principal | None = None
) -> Communication:
    comm = await session.scalar(
        select(Communication).where(Communication.id == communication_id, Communication.org_id == org_id)
    )
    if comm is None:
        raise NotFound("No such communication", code="communication_not_found")
    if who is not None:
        await audit.record(session, who, "read", "communication", comm.id, patient_id=comm.patient_id)
    return comm


async def list_communications(
    session: AsyncSession,
    org_id: uuid.UUID,
    filters: CommunicationFilters,
    paging: PageParams,
    who: Principal | None = None,
) -> tuple[list[Communication], int]:
    stmt = select(Communication).where(Communication.org_id == org_id)
    if filters.patient_id:
        stmt = stmt.where(Communication.patient_id == filters.patient_id)
    if filters.conversation_id:
        stmt = stmt.where(Communication.conversation_id == filters.conversation_id)
    if filters.channel:
        stmt = stmt.where(Communication.channel == filters.channel)
    if filters.status:
        stmt = stmt.where(Communication.status == filters.status)
    if filters.direction:
        stmt = stmt.where(Communication.direction == filters.direction)
    if filters.since:
        stmt = stmt.where(Communication.created_at >= filters.since)
    if filters.until:
        stmt = stmt.where(Communication.created_at < filters.until)
    rows, total = await paginate(session, stmt.order_by(Communication.created_at.desc(), Communication.id), paging)
    if who is not None:
        await audit.record(
            session,
            who,
            "list",
            "communication",
            None,
            patient_id=filters.patient_id,
            details={"count": len(rows), "channel": filters.channel},
        )
    return rows, total


async def cancel(
    session: AsyncSession, org_id: uuid.UUID, communication_id: uuid.UUID, who: Principal
) -> Communication:
    """Cancel a message that has not been sent yet (409 `not_cancellable` otherwise)."""
    comm = await get(session, org_id, communication_id)
    if comm.status != "queued":
        raise Conflict(f"A {comm.status} message can no longer be cancelled", code="not_cancellable")
    job_id = (comm.details or {}).get("job_id")
    if job_id:
        await jobs.cancel_pending(session, int(job_id))
    comm.status = "cancelled"
    comm.failed_at = clock.now()
    await audit.record(session, who, "cancel", "communication", comm.id, patient_id=comm.patient_id)
    return comm


async def record_inbound(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    patient_id: uuid.UUID,
    channel: str,
    body: str | None,
    from_address: str | None,
    to_address: str | None,
    provider: str,
    provider_message_id: str | None,
    media: list[dict[str, Any]] | None = None,
    details: dict[str, Any] | None = None,
) -> Communication:
    """Store a message the patient sent (or a finished call)."""
    now = clock.now()
    comm = Communication(
        id=uuid.uuid4(),
        org_id=org_id,
        patient_id=patient_id,
        channel=channel,
        direction="inbound",
        status="received",
        body=body,
        from_address=from_address,
        to_address=to_address,
        provider=provider,
        provider_message_id=provider_message_id,
        media=media or [],
        attachments=[],
        details=details or {},
        received_at=now,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(comm)
    await session.flush()
    await audit.record(
        session,
        Principal.system(org_id),
        "create",
        "communication",
        comm.id,
        patient_id=patient_id,
        details={"channel": channel, "direction": "inbound"},
    )
    return comm


async def record_outbound_reply(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    patient_id: uuid.UUID,
    channel: str,
    body: str,
    to_address: str,
    from_address: str | None,
    provider: str,
    details: dict[str, Any],
) -> Communication:
    """Store a reply already handed to the provider (e.g. a TwiML acknowledgement)."""
    now = clock.now()
    comm = Communication(
        id=uuid.uuid4(),
        org_id=org_id,
        patient_id=patient_id,
        channel=channel,
        direction="outbound",
        purpose="care",
        status="sent",
        body=body,
        to_address=to_address,
        from_address=from_address,
        provider=provider,
        media=[],
        attachments=[],
        details=details,
        queued_at=now,
        sent_at=now,
        attempts=1,
    )
    session.add(comm)
    await session.flush()
    return comm


async def apply_status(
    session: AsyncSession,
    *,
    provider: str,
    provider_message_id: str,
    status: str,
    error_code: str | None = None,
    error_message: str | None = None,
) -> Communication | None:
    """Apply a provider's delivery report; None when no message has that id."""
    comm = await session.scalar(
        select(Communication)
        .where(Communication.provider == provider, Communication.provider_message_id == provider_message_id)
        .with_for_update()
    )
    if comm is None:
        return None
    ours = rules.from_twilio_status(status) if provider == "twilio" else status
    new = rules.next_status(comm.status, ours or "")
    if new is None:
        return comm
    now = clock.now()
    comm.status = new
    if new == "sent":
        comm.sent_at = comm.sent_at or now
    elif new == "delivered":
        comm.delivered_at = now
    elif new == "read":
        comm.read_at = now
        comm.delivered_at = comm.delivered_at or now
    else:
        comm.failed_at = now
        comm.error_code = error_code or comm.error_code
        comm.error_message = (error_message or comm.error_message or "")[:500] or None
    log.info("communication.status", communication_id=str(comm.id), status=new)
    return comm


# --- sending (the job) ---------------------------------------------------------------------------


def _fail(comm: Communication, code: str | None, reason: str) -> None:
    comm.status = "failed"
    comm.failed_at = clock.now()
    comm.error_code = code
    comm.error_message = reason[:500]
    comm.next_attempt_at = None


@jobs.job(SEND_JOB, retry=True)
async def deliver(session: AsyncSession, *, org_id: str, communication_id: str) -> str:
    """Hand one queued message to its provider; returns the resulting status.

    Idempotent: a message that is no longer `queued` is left alone. Transient errors put it back in
    the queue (a new job at the backoff time) until the attempt limit; permanent ones fail it.
    """
    oid = uuid.UUID(org_id)
    comm = await session.scalar(
        select(Communication)
        .where(Communication.id == uuid.UUID(communication_id), Communication.org_id == oid)
        .with_for_update()
    )
    if comm is None or comm.status != "queued":
        return comm.status if comm else "missing"
    try:
        patient = await patients.get(session, oid, comm.patient_id)
    except NotFound:
        _fail(comm, "patient_not_found", "the patient no longer exists")
        return comm.status
    decision = await patients.consent_allows(
        session, oid, comm.patient_id, channel=comm.channel, purpose=comm.purpose or "care"
    )
    if not decision.allowed:
        _fail(comm, "consent_refused", f"consent withdrawn before sending: {decision.reason}")
        return comm.status
    if (
        comm.channel == "whatsapp"
        and not comm.content_sid
        and not await whatsapp_window_open(session, oid, comm.patient_id)
    ):
        _fail(comm, "whatsapp_window_closed", "the 24-hour WhatsApp window closed before sending")
        return comm.status
    comm.to_address = address_of(patient, comm.channel) or comm.to_address
    settings = adapters.settings()
    comm.status = "sending"
    comm.sending_at = clock.now()
    comm.attempts += 1
    try:
        result = await _dispatch(session, comm)
    except DeliveryError as exc:
        comm.error_code = exc.code
        comm.error_message = exc.reason[:500]
        if exc.transient and comm.attempts < settings.communication_max_attempts:
            comm.status = "queued"
            comm.next_attempt_at = clock.now() + rules.retry_delay(
                comm.attempts,
                base_seconds=settings.communication_retry_base_seconds,
                max_seconds=settings.communication_retry_max_seconds,
            )
            await jobs.defer(
                session,
                SEND_JOB,
                org_id=org_id,
                communication_id=communication_id,
                schedule_at=comm.next_attempt_at,
            )
            log.warning(
                "communication.retry",
                communication_id=communication_id,
                attempt=comm.attempts,
                error_code=exc.code,
            )
        else:
            _fail(comm, exc.code, exc.reason)
            log.warning(
                "communication.failed",
                communication_id=communication_id,
                attempt=comm.attempts,
                error_code=exc.code,
                transient=exc.transient,
            )
        return comm.status
    comm.provider = result.provider
    comm.provider_message_id = result.provider_message_id
    comm.status = result.status if result.status in rules.STATUSES else "sent"
    comm.sent_at = clock.now()
    comm.next_attempt_at = None
    comm.error_code = None
    comm.error_message = None
    log.info("communication.sent", communication_id=communication_id, provider=result.provider)
    if result.provider_message_id:
        await _apply_early_statuses(session, result.provider, result.provider_message_id)
    return comm.status


async def _apply_early_statuses(session: AsyncSession, provider: str, provider_message_id: str) -> None:
    """Apply status callbacks that arrived before this message's id was stored (they were kept)."""
    early = await session.scalars(
        select(InboundEvent)
        .where(
            InboundEvent.provider == provider,
            InboundEvent.kind == "status",
            InboundEvent.outcome == "unmatched",
            # exact ids (one per status word) so the unique index answers, however large the table
            InboundEvent.external_id.in_([f"{provider_message_id}:{word}" for word in rules.TWILIO_STATUS]),
        )
        .order_by(InboundEvent.received_at)
    )
    for event in early:
        status = event.external_id.rsplit(":", 1)[1]
        await apply_status(session, provider=provider, provider_message_id=provider_message_id, status=status)
        event.outcome = "processed"
        event.processed_at = clock.now()


async def _dispatch(session: AsyncSession, comm: Communication) -> SendResult:
    config = await channel_config(session, comm.org_id, comm.channel)
    provider = effective_provider(config, comm.channel)
    to = comm.to_address or ""
    status_callback = f"{adapters.public_base_url()}/webhooks/twilio/status"
    if provider == "sandbox":
        channel: Any = SandboxChannel(_sandbox_recorder(session, comm))
    elif provider == "twilio":
        if comm.channel == "email":
            raise PermanentDeliveryError("Twilio does not send email", code="provider_mismatch")
        channel = adapters.twilio()
    elif provider == "smtp":
        if comm.channel != "email":
            raise PermanentDeliveryError("SMTP only sends email", code="provider_mismatch")
        channel = adapters.smtp()
    else:  # pragma: no cover - the database constraint forbids it
        raise PermanentDeliveryError(f"unknown provider {provider}", code="provider_unknown")
    if comm.channel in ("sms", "whatsapp"):
        return await channel.send_message(
            OutboundMessage(
                channel=comm.channel,
                to=to,
                from_=comm.from_address,
                body=comm.body,
                media_urls=tuple(m["url"] for m in comm.media or []),
                content_sid=comm.content_sid,
                content_variables={k: str(v) for k, v in (comm.content_variables or {}).items()},
                status_callback=status_callback if provider == "twilio" else None,
            )
        )
    if comm.channel == "voice":
        return await channel.place_call(
            OutboundCall(
                to=to,
                from_=comm.from_address,
                say=comm.body or "",
                status_callback=status_callback if provider == "twilio" else None,
            )
        )
    sender = comm.from_address or adapters.settings().smtp_from
    if config is not None and config.sender_name and config.sender:
        sender = f"{config.sender_name} <{config.sender}>"
    return await channel.send_email(
        OutboundEmail(
            to=to,
            from_=sender,
            subject=comm.subject or "",
            text=comm.body or "",
            html=comm.html_body,
            attachments=tuple(
                Attachment(a["filename"], a["content_type"], base64.b64decode(a["content_base64"]))
                for a in comm.attachments or []
            ),
        )
    )


def _sandbox_recorder(session: AsyncSession, comm: Communication) -> Any:
    async def record(channel: str, payload: dict[str, Any]) -> str:
        row = SandboxMessage(
            id=uuid.uuid4(),
            org_id=comm.org_id,
            communication_id=comm.id,
            patient_id=comm.patient_id,
            channel=channel,
            to_address=payload.get("to"),
            payload=payload,
            recorded_at=clock.now(),
        )
        session.add(row)
        await session.flush()
        return row.id.hex

    return record


# --- channel configuration -----------------------------------------------------------------------


async def channel_config(session: AsyncSession, org_id: uuid.UUID, channel: str) -> ChannelConfig | None:
    result: ChannelConfig | None = await session.scalar(
        select(ChannelConfig).where(ChannelConfig.org_id == org_id, ChannelConfig.channel == channel)
    )
    return result


def effective_provider(config: ChannelConfig | None, channel: str) -> str:
    if config is not None and config.provider:
        return config.provider
    return adapters.default_provider(channel)


def _sender(config: ChannelConfig | None, channel: str) -> str | None:
    if config is not None and config.sender:
        return config.sender
    return adapters.settings().smtp_from if channel == "email" else None


async def list_channel_configs(session: AsyncSession, org_id: uuid.UUID) -> list[ChannelConfig]:
    rows = await session.scalars(
        select(ChannelConfig).where(ChannelConfig.org_id == org_id).order_by(ChannelConfig.channel)
    )
    return list(rows)


async def put_channel_config(
    session: AsyncSession, org_id: uuid.UUID, channel: str, data: ChannelConfigWrite, who: Principal
) -> ChannelConfig:
    """Create or replace the configuration of one channel (a secret left out is kept)."""
    if channel not in rules.CHANNELS:
        raise ValidationFailed.field("channel", f"must be one of {', '.join(rules.CHANNELS)}")
    if data.provider == "smtp" and channel != "email":
        raise ValidationFailed.field("provider", "smtp only serves the email channel")
    if data.provider == "twilio" and channel == "email":
        raise ValidationFailed.field("provider", "twilio does not serve the email channel")
    sender = data.sender
    if sender and channel in PHONE_CHANNELS:
        from prm.patients.phones import try_normalise

        sender = try_normalise(sender, adapters.settings().default_phone_region)
        if sender is None:
            raise ValidationFailed.field("sender", "not a valid phone number")
    elif sender and channel == "email" and "@" not in sender:
        raise ValidationFailed.field("sender", "not an email address")
    if data.webhook_secret and channel != "voice":
        raise ValidationFailed.field("webhook_secret", "only the voice channel has a webhook secret")
    if sender and channel != "email":
        taken = await session.scalar(
            select(ChannelConfig.id).where(
                ChannelConfig.channel == channel,
                ChannelConfig.sender == sender,
                ChannelConfig.org_id != org_id,
            )
        )
        if taken is not None:
            raise Conflict("This number is already configured by another organisation", code="sender_taken")
    config = await channel_config(session, org_id, channel)
    if config is None:
        config = ChannelConfig(id=uuid.uuid4(), org_id=org_id, channel=channel)
        session.add(config)
    config.provider = data.provider
    config.sender = sender
    config.sender_name = data.sender_name
    config.enabled = data.enabled
    if data.webhook_secret:
        config.webhook_secret = data.webhook_secret
    config.updated_at = clock.now()
    await session.flush()
    await audit.record(
        session,
        who,
        "update",
        "channel_config",
        config.id,
        details={"channel": channel, "secret_changed": bool(data.webhook_secret)},
    )
    return config


async def org_for_number(session: AsyncSession, channel: str, number: str) -> ChannelConfig | None:
    """The enabled channel configuration whose sender is `number` (inbound routing).

    The configuration of `channel` itself first; else another phone channel with that number (one
    Twilio number often serves SMS, WhatsApp and voice but is configured for one of them only).
    """
    result: ChannelConfig | None = await session.scalar(
        select(ChannelConfig)
        .where(
            ChannelConfig.channel.in_(PHONE_CHANNELS),
            ChannelConfig.sender == number,
            ChannelConfig.enabled.is_(True),
        )
        .order_by((ChannelConfig.channel == channel).desc(), ChannelConfig.created_at)
        .limit(1)
    )
    return result


async def attach_conversation(
    session: AsyncSession, org_id: uuid.UUID, communication_id: uuid.UUID, conversation_id: uuid.UUID
) -> Communication:
    """Link a message to a conversation (for the conversations module)."""
    comm = await get(session, org_id, communication_id)
    comm.conversation_id = conversation_id
    await session.flush()
    return comm


# --- the patient record's extension points -------------------------------------------------------


@patient_registry.on_merge("communications")
async def _move_to_survivor(
    session: AsyncSession, org_id: uuid.UUID, duplicate_id: uuid.UUID, survivor_id: uuid.UUID
) -> int:
    moved = 0
    for model in (Communication, SandboxMessage):
        moved += await patient_registry.reassign_patient(session, model, org_id, duplicate_id, survivor_id)
    return moved


_DIRECTION_WORD = {"inbound": "from", "outbound": "to"}


@patient_registry.timeline_source("communications")
async def _timeline(
    session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, before: datetime | None, limit: int
) -> list[patient_registry.TimelineEntry]:
    stmt = select(Communication).where(Communication.org_id == org_id, Communication.patient_id == patient_id)
    if before is not None:
        stmt = stmt.where(Communication.created_at < before)
    rows = await session.scalars(stmt.order_by(Communication.created_at.desc()).limit(limit))
    return [
        patient_registry.TimelineEntry(
            at=c.created_at,
            kind=f"message.{c.direction}",
            source="communications",
            resource_id=str(c.id),
            summary=f"{c.channel} message {_DIRECTION_WORD[c.direction]} the patient ({c.status})",
            data={"channel": c.channel, "direction": c.direction, "status": c.status, "purpose": c.purpose},
        )
        for c in rows
    ]
