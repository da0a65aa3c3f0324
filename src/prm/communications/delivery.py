"""Delivery: the `communications.send` job that sends a stored message through its adapter,
retrying transient failures with backoff and failing permanent ones with the provider's reason."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import bindparam, select
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
from prm.communications.models import Communication, DeliveryAttempt, InboundEvent, SandboxMessage
from prm.core import clock, jobs, rowlock
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


def _reconcile_after(session: AsyncSession) -> timedelta:
    """How old a pending attempt must be before a retry may conclude it is not still in flight."""
    return max(timedelta(seconds=30), timedelta(seconds=3 * context.of(session).settings.twilio_timeout_seconds))


async def _pending_attempt(session: AsyncSession, comm: Communication) -> DeliveryAttempt | None:
    result: DeliveryAttempt | None = await session.scalar(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.communication_id == comm.id, DeliveryAttempt.state == "pending")
        .order_by(DeliveryAttempt.number.desc())
        .limit(1)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result


async def _new_attempt(session: AsyncSession, comm: Communication, provider: str) -> DeliveryAttempt:
    comm.attempts += 1
    comm.status = "sending"
    comm.sending_at = clock.now()
    attempt = DeliveryAttempt(id=uuid.uuid4(), org_id=comm.org_id, communication_id=comm.id, number=comm.attempts,
                              provider=provider, state="pending", started_at=clock.now())
    session.add(attempt)
    await session.flush()
    return attempt


async def _check_still_allowed(session: AsyncSession, comm: Communication) -> bool:
    """Consent, the patient and the WhatsApp window, checked again just before sending."""
    try:
        patient = await patients.get(session, comm.org_id, comm.patient_id)
    except NotFound:
        _fail(comm, "patient_not_found", "the patient no longer exists")
        return False
    # the patient just read, asked for the channel's consent in one statement (a merged one: its survivor's)
    decision = (await patients.consents_allow(session, patient, channels=[comm.channel],
                                              purpose=comm.purpose or "care"))[comm.channel]
    if not decision.allowed:
        _fail(comm, "consent_refused", f"consent withdrawn before sending: {decision.reason}")
        return False
    if (
        comm.channel == "whatsapp"
        and not comm.content_sid
        and not await whatsapp_window_open(session, comm.org_id, comm.patient_id)
    ):
        _fail(comm, "whatsapp_window_closed", "the 24-hour WhatsApp window closed before sending")
        return False
    comm.to_address = address_of(patient, comm.channel) or comm.to_address
    return True


@jobs.job(SEND_JOB, retry=True)
async def deliver(session: AsyncSession, *, org_id: str, communication_id: str) -> str:
    """Hand one queued message to its provider; returns the resulting status.

    The provider boundary is crossed at most once per recorded attempt: the attempt is committed
    (`pending`, message `sending`) before the provider is called and no row lock is held during
    the call; the outcome is recorded afterwards. A retry that finds a pending attempt (the call's
    result was lost: crash, failed commit, read timeout) reconciles it with a provider lookup
    instead of sending again, and resends only when the provider has no trace of it. Transient
    refusals are retried with backoff up to the attempt limit; permanent ones fail the message.
    """
    oid, cid = uuid.UUID(org_id), uuid.UUID(communication_id)
    async with jobs.checkpoint(session):
        comm = await rowlock.lock(session, Communication, cid, org_id=oid)
        if comm is None:
            return rowlock.MISSING
        attempt = await _pending_attempt(session, comm) if comm.status == "sending" else None
        if comm.status == "queued" or (comm.status == "sending" and attempt is None):
            if not await _check_still_allowed(session, comm):
                return comm.status
            try:
                outgoing = await _outgoing(session, comm)
            except DeliveryError as exc:
                _fail(comm, exc.code, exc.reason)
                return comm.status
            attempt = await _new_attempt(session, comm, outgoing.provider)
            reconcile = False
        elif comm.status == "sending" and attempt is not None:
            ready_at = attempt.started_at + _reconcile_after(session)
            if clock.now() < ready_at:  # it may still be in flight in another worker: look later
                await jobs.defer(session, SEND_JOB, org_id=org_id, communication_id=communication_id,
                                 schedule_at=ready_at)
                return comm.status
            try:
                outgoing = await _outgoing(session, comm)
            except DeliveryError as exc:
                attempt.state, attempt.error_code, attempt.finished_at = "refused", exc.code, clock.now()
                _fail(comm, exc.code, exc.reason)
                return comm.status
            reconcile = True
        else:
            return comm.status
        attempt_id, attempt_started_at = attempt.id, attempt.started_at

    if reconcile:
        try:
            found = await _lookup(session, comm, outgoing, since=attempt_started_at)
        except DeliveryError as exc:
            log.warning("communication.lookup_failed", communication_id=communication_id, error_code=exc.code)
            await jobs.defer(session, SEND_JOB, org_id=org_id, communication_id=communication_id,
                             schedule_at=clock.now() + _reconcile_after(session))
            return "sending"
        if found is not None:
            log.warning("communication.reconciled", communication_id=communication_id, outcome="accepted")
            return await _record(session, oid, cid, attempt_id, result=found, reconciled=True)
        log.warning("communication.reconciled", communication_id=communication_id, outcome="lost")
        async with jobs.checkpoint(session):
            comm = await rowlock.lock(session, Communication, cid, org_id=oid)
            lost = await rowlock.lock(session, DeliveryAttempt, attempt_id)
            if (answer := rowlock.idle(comm, "sending")) is not None:
                return answer
            assert comm is not None
            if lost is None or lost.state != "pending":
                return comm.status
            lost.state, lost.reconciled, lost.finished_at = "lost", True, clock.now()
            attempt = await _new_attempt(session, comm, outgoing.provider)
            attempt_id = attempt.id

    try:
        if outgoing.provider == "sandbox":  # the sandbox's outbox is its "provider": durable on its own
            async with jobs.checkpoint(session):
                result = await outgoing.send()
        else:
            result = await outgoing.send()
    except DeliveryError as exc:
        return await _record(session, oid, cid, attempt_id, error=exc)
    return await _record(session, oid, cid, attempt_id, result=result)


# The message and one of its attempts, read afresh and locked in one statement (message first, as
# everywhere else): the outcome of an attempt is written under both locks.
_LOCK_WITH_ATTEMPT = (
    select(Communication, DeliveryAttempt)
    .join(DeliveryAttempt, DeliveryAttempt.communication_id == Communication.id)
    .where(Communication.id == bindparam("cid"), Communication.org_id == bindparam("org"),
           DeliveryAttempt.id == bindparam("aid"))
    .with_for_update()
    .execution_options(populate_existing=True)
)


async def _record(
    session: AsyncSession, org_id: uuid.UUID, communication_id: uuid.UUID, attempt_id: uuid.UUID, *,
    result: SendResult | None = None, error: DeliveryError | None = None, reconciled: bool = False,
) -> str:
    """Write an attempt's outcome (in the job's transaction, committed by the worker)."""
    locked = (await session.execute(_LOCK_WITH_ATTEMPT, {"cid": communication_id, "org": org_id,
                                                         "aid": attempt_id})).one_or_none()
    if locked is None:
        return rowlock.MISSING
    comm, attempt = locked
    if attempt.state != "pending" or comm.status != "sending":  # settled meanwhile by someone else
        return comm.status
    cid = str(communication_id)
    if error is not None and error.uncertain:
        # the provider may have it: keep the attempt pending and reconcile it later
        comm.error_code, comm.error_message = error.code, error.reason[:500]
        await jobs.defer(session, SEND_JOB, org_id=str(org_id), communication_id=cid,
                         schedule_at=attempt.started_at + _reconcile_after(session))
        log.warning("communication.uncertain", communication_id=cid, attempt=attempt.number, error_code=error.code)
        return comm.status
    attempt.reconciled = reconciled
    attempt.finished_at = clock.now()
    if error is not None:
        attempt.state, attempt.error_code = "refused", error.code
        settings = context.of(session).settings
        comm.error_code = error.code
        comm.error_message = error.reason[:500]
        if error.transient and comm.attempts < settings.communication_max_attempts:
            comm.status = "queued"
            comm.next_attempt_at = clock.now() + rules.retry_delay(
                comm.attempts,
                base_seconds=settings.communication_retry_base_seconds,
                max_seconds=settings.communication_retry_max_seconds,
            )
            await jobs.defer(session, SEND_JOB, org_id=str(org_id), communication_id=cid,
                             schedule_at=comm.next_attempt_at)
            log.warning("communication.retry", communication_id=cid, attempt=comm.attempts, error_code=error.code)
        else:
            _fail(comm, error.code, error.reason)
            log.warning("communication.failed", communication_id=cid, attempt=comm.attempts,
                        error_code=error.code, transient=error.transient)
        return comm.status
    assert result is not None
    attempt.state, attempt.provider_message_id = "accepted", result.provider_message_id
    comm.provider = result.provider
    comm.provider_message_id = result.provider_message_id
    comm.status = result.status if result.status in rules.STATUSES else "sent"
    comm.sent_at = clock.now()
    comm.next_attempt_at = None
    comm.error_code = None
    comm.error_message = None
    log.info("communication.sent", communication_id=cid, provider=result.provider, reconciled=reconciled)
    if result.provider_message_id and result.provider == "twilio":  # the only provider with status callbacks
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


@dataclass
class Outgoing:
    """What one attempt hands to its provider: built under the row lock, sent without it."""

    provider: str
    channel: Any
    payload: OutboundMessage | OutboundCall | OutboundEmail

    async def send(self) -> SendResult:
        if isinstance(self.payload, OutboundMessage):
            return cast(SendResult, await self.channel.send_message(self.payload))
        if isinstance(self.payload, OutboundCall):
            return cast(SendResult, await self.channel.place_call(self.payload))
        return cast(SendResult, await self.channel.send_email(self.payload))


async def _outgoing(session: AsyncSession, comm: Communication) -> Outgoing:
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
    payload: OutboundMessage | OutboundCall | OutboundEmail
    if comm.channel in ("sms", "whatsapp"):
        payload = OutboundMessage(
            channel=comm.channel,
            to=to,
            from_=comm.from_address,
            body=comm.body,
            media_urls=await _media_urls(session, comm),
            content_sid=comm.content_sid,
            content_variables={k: str(v) for k, v in (comm.content_variables or {}).items()},
            status_callback=status_callback if provider == "twilio" else None,
        )
    elif comm.channel == "voice":
        payload = OutboundCall(
            to=to,
            from_=comm.from_address,
            say=comm.body or "",
            status_callback=status_callback if provider == "twilio" else None,
        )
    else:
        sender = comm.from_address or adapters.settings.smtp_from
        if config is not None and config.sender_name and config.sender:
            sender = f"{config.sender_name} <{config.sender}>"
        domain = sender.rpartition("@")[2].strip(">") or "prm.invalid"
        payload = OutboundEmail(
            to=to,
            from_=sender,
            subject=comm.subject or "",
            text=comm.body or "",
            html=comm.html_body,
            attachments=tuple(
                Attachment(a["filename"], a["content_type"], base64.b64decode(a["content_base64"]))
                for a in comm.attachments or []
            ),
            message_id=f"<{comm.id}@{domain}>",
        )
    return Outgoing(provider=provider, channel=channel, payload=payload)


async def _lookup(session: AsyncSession, comm: Communication, outgoing: Outgoing, *, since: datetime
                  ) -> SendResult | None:
    """Ask the provider whether it has this message from an attempt started at `since`.

    Twilio: its Messages / Calls list APIs. The sandbox: its outbox. SMTP has no lookup: None, and
    the email is sent again (with the same Message-ID).
    """
    found: SendResult | None = None
    if outgoing.provider == "sandbox":
        row = await session.scalar(
            select(SandboxMessage)
            .where(SandboxMessage.communication_id == comm.id, SandboxMessage.recorded_at >= since)
            .order_by(SandboxMessage.recorded_at)
            .limit(1)
        )
        found = SendResult(provider="sandbox", provider_message_id=f"SB{row.id.hex}") if row else None
    elif outgoing.provider == "twilio" and isinstance(outgoing.payload, OutboundMessage):
        found = await outgoing.channel.find_message(outgoing.payload, since=since)
    elif outgoing.provider == "twilio" and isinstance(outgoing.payload, OutboundCall):
        found = await outgoing.channel.find_call(outgoing.payload, since=since)
    if found is not None and found.provider_message_id:
        # a provider id another message already owns is not this attempt's
        owner = await session.scalar(
            select(Communication.id).where(Communication.provider == found.provider,
                                           Communication.provider_message_id == found.provider_message_id,
                                           Communication.id != comm.id)
        )
        if owner is not None:
            return None
    return found


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
