"""Delivery: the `communications.send` job that sends a stored message through its adapter,
retrying transient failures with backoff and failing permanent ones with the provider's reason."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm import context
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
from prm.communications.channels import address_of, channel_config, effective_provider, whatsapp_window_open
from prm.communications.messages import SEND_JOB, apply_status
from prm.communications.models import Communication, InboundEvent, SandboxMessage
from prm.core import clock, jobs
from prm.core.auth import Principal
from prm.core.errors import NotFound, ValidationFailed
from prm.media import service as media
from prm.patients import service as patients

log = structlog.get_logger(__name__)


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
    settings = context.of(session).settings
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


async def _media_urls(session: AsyncSession, comm: Communication) -> tuple[str, ...]:
    """The URLs the provider fetches the media from: given URLs as they are, stored files through a
    signed URL issued now (so a scheduled or retried message never carries an expired one)."""
    stored = [uuid.UUID(m["media_id"]) for m in comm.media or [] if m.get("media_id")]
    signed: dict[str, str] = {}
    if stored:
        try:
            found = await media.provider_urls(session, Principal.system(comm.org_id), stored,
                                              media.MediaStore.from_settings(context.of(session).settings))
        except ValidationFailed:
            raise PermanentDeliveryError("an attached file is no longer available",
                                         code="media_unavailable") from None
        signed = {f["media_id"]: f["url"] for f in found}
    return tuple(signed[m["media_id"]] if m.get("media_id") else m["url"] for m in comm.media or [])


async def _dispatch(session: AsyncSession, comm: Communication) -> SendResult:
    config = await channel_config(session, comm.org_id, comm.channel)
    adapters = context.of(session).adapters
    provider = effective_provider(config, comm.channel, adapters)
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
                media_urls=await _media_urls(session, comm),
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
    sender = comm.from_address or adapters.settings.smtp_from
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
