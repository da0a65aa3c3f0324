"""Processing inbound provider events.

Every event is first stored under a unique `(provider, external_id)`; a retried delivery finds it
there and is acknowledged without being processed again. The sender is matched to a patient by
phone (an unknown number creates a provisional patient) and the organisation by the receiving number.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import rules
from prm.communications import service as communications
from prm.core import clock, db, events
from prm.core.auth import Principal
from prm.core.errors import BadRequest, PermissionDenied
from prm.identity import service as identity
from prm.media import service as media
from prm.patients import service as patients
from prm.webhooks import twilio_inbound, voice_agents
from prm.webhooks.schemas import VoiceAgentCall

if TYPE_CHECKING:
    from prm.communications.models import InboundEvent

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Outcome:
    status: str  # processed, duplicate, unroutable, ignored
    communication_id: uuid.UUID | None = None
    reply: str | None = None  # a text to answer with (TwiML <Message>)


_claim = communications.claim_inbound_event  # the inbound-event table is communications'


def _done(event: InboundEvent, outcome: str, communication_id: uuid.UUID | None = None) -> Outcome:
    communications.finish_inbound_event(event, outcome, communication_id)
    return Outcome(outcome, communication_id)


async def _patient_for(session: AsyncSession, org_id: uuid.UUID, phone: str, source: str) -> Any:
    patient = await patients.find_by_phone(session, org_id, phone)
    if patient is None:
        patient = await patients.create_provisional(session, org_id, phone=phone, source=source)
        log.info("webhook.provisional_patient", patient_id=str(patient.id), channel=source)
    return patient


PROCESS_MESSAGE_JOB = "webhooks.process_twilio_message"


def _parse_message(params: dict[str, str]) -> twilio_inbound.InboundMessage:
    try:
        return twilio_inbound.parse_message(params)
    except twilio_inbound.MalformedPayload as exc:
        raise BadRequest(
            f"Malformed Twilio message: {exc.field} {exc.message}", code="malformed_webhook", field=exc.field
        ) from None


async def receive_twilio_message(session: AsyncSession, params: dict[str, str]) -> Outcome:
    """An inbound SMS or WhatsApp message (already signature-checked), processed in this request."""
    msg = _parse_message(params)
    event = await _claim(session, provider="twilio", external_id=msg.message_sid, kind="message")
    if event is None:
        return Outcome("duplicate")
    return await _process_message(session, event, msg)


async def accept_twilio_message(session: AsyncSession, params: dict[str, str], *,
                                standalone: bool = False) -> Outcome:
    """The fast path (WEBHOOK_INGEST=deferred): check the payload, store the raw event and queue one
    job that processes it (patient, communication, media, consent, event), then answer at once.

    A retried delivery is recognised as before (the event's unique provider id) and queues nothing.
    A STOP/START keyword is still processed here: its acknowledgement is this answer's TwiML.

    `standalone=True` (the webhook's own request, which writes nothing else): storing and queueing is
    ONE statement, atomic by itself, so it runs as its own transaction, without the `BEGIN` and
    `COMMIT` round trips (`prm.core.db.autocommit`), as a booking's does.
    """
    msg = _parse_message(params)
    if rules.keyword(msg.body) is not None:
        return await receive_twilio_message(session, params)
    if standalone:
        await db.autocommit(session)
    event_id = await communications.store_inbound_event(
        session, provider="twilio", external_id=msg.message_sid, kind="message", payload=params,
        then=PROCESS_MESSAGE_JOB)
    return Outcome("duplicate" if event_id is None else "received")


async def process_stored_twilio_message(session: AsyncSession, event_id: uuid.UUID) -> Outcome | None:
    """Process an event stored by `accept_twilio_message` (the job); None when it was already done.

    Idempotent: the event is locked and must still be waiting, so a job run twice processes once.
    """
    event = await communications.pending_inbound_event(session, event_id)
    if event is None:
        return None
    assert event.payload is not None
    return await _process_message(session, event, twilio_inbound.parse_message(event.payload))


async def _process_message(session: AsyncSession, event: InboundEvent, msg: twilio_inbound.InboundMessage
                           ) -> Outcome:
    config = await communications.org_for_number(session, msg.channel, msg.to_number)
    if config is None:
        log.warning("webhook.unroutable", channel=msg.channel)
        return _done(event, "unroutable")
    org_id = config.org_id
    event.org_id = org_id
    patient = await _patient_for(session, org_id, msg.from_number, msg.channel)
    comm = await communications.record_inbound(
        session,
        org_id,
        patient_id=patient.id,
        channel=msg.channel,
        body=msg.body,
        from_address=msg.from_number,
        to_address=msg.to_number,
        provider="twilio",
        provider_message_id=msg.message_sid,
        media=[{"url": m.url, "content_type": m.content_type} for m in msg.media],
        details={"num_media": len(msg.media)},
    )
    if msg.media:  # kept as our own media: downloaded from Twilio, verified and stored by a job
        await media.attach_inbound(
            session, Principal.system(org_id), message_id=comm.id, patient_id=patient.id, source=msg.channel,
            provider="twilio", provider_message_id=msg.message_sid,
            attachments=[media.Attachment(url=m.url, content_type=m.content_type) for m in msg.media],
        )
    keyword = rules.keyword(msg.body)
    if keyword is not None:
        await patients.set_consent(
            session,
            Principal.system(org_id),
            patient.id,
            channel=msg.channel,
            purpose=None,
            granted=keyword == "start",
            source=f"keyword:{msg.body.strip().upper()[:20]}",
        )
        ack = rules.ACKNOWLEDGEMENTS[keyword]
        await communications.record_outbound_reply(
            session,
            org_id,
            patient_id=patient.id,
            channel=msg.channel,
            body=ack,
            to_address=msg.from_number,
            from_address=msg.to_number,
            provider="twilio",
            details={
                "kind": "consent_acknowledgement",
                "keyword": keyword,
                "delivered_via": "twiml",
                "in_reply_to": str(comm.id),
            },
        )
        comm.details = {**comm.details, "keyword": keyword}
        log.info("webhook.consent_keyword", communication_id=str(comm.id), keyword=keyword)
        outcome = _done(event, "processed", comm.id)
        return Outcome(outcome.status, comm.id, reply=ack)
    await events.publish(
        session,
        events.Event(
            type="message.received",
            org_id=org_id,
            payload={
                "communication_id": str(comm.id),
                "patient_id": str(patient.id),
                "channel": msg.channel,
                "org_id": str(org_id),
            },
        ),
    )
    return _done(event, "processed", comm.id)


async def receive_twilio_status(session: AsyncSession, params: dict[str, str]) -> Outcome:
    """A delivery report for a message (or call) we sent."""
    try:
        update = twilio_inbound.parse_status(params)
    except twilio_inbound.MalformedPayload as exc:
        raise BadRequest(
            f"Malformed Twilio status callback: {exc.field} {exc.message}",
            code="malformed_webhook",
            field=exc.field,
        ) from None
    event = await _claim(session, provider="twilio", external_id=f"{update.message_sid}:{update.status}", kind="status")
    if event is None:
        return Outcome("duplicate")
    comm = await communications.apply_status(
        session,
        provider="twilio",
        provider_message_id=update.message_sid,
        status=update.status,
        error_code=update.error_code,
        error_message=update.error_message,
    )
    if comm is None:  # possibly before the sending job committed the id: kept, applied by that job
        return _done(event, "unmatched")
    event.org_id = comm.org_id
    return _done(event, "processed", comm.id)


async def voice_agent_secret(session: AsyncSession, org_id: uuid.UUID) -> str | None:
    return await communications.webhook_secret(session, org_id, "voice")


async def receive_voice_call(
    session: AsyncSession, org_id: uuid.UUID, raw_body: bytes, signature: str | None
) -> Outcome:
    """A finished voice-agent call: HMAC-checked, stored as a voice communication, event published."""
    secret = await voice_agent_secret(session, org_id)
    if not twilio_inbound.hmac_valid(secret, raw_body, signature):
        raise PermissionDenied("Missing or invalid signature", code="invalid_signature")
    try:
        call = VoiceAgentCall.model_validate_json(raw_body)
    except ValidationError as exc:
        raise BadRequest(
            "Malformed voice-agent payload",
            code="malformed_webhook",
            errors=[
                {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")} for e in exc.errors()
            ],
        ) from None
    return await _record_call(session, org_id, "voice_agent", f"{org_id}:{call.call_id}", call, "completed")


async def receive_voice_event(
    session: AsyncSession, org_id: uuid.UUID, provider: str, raw_body: bytes, headers: Mapping[str, str]
) -> Outcome:
    """A Retell or Vapi webhook (`voice_agents.py`): the signature checked on the raw body, then stored
    once per (provider, call id, event); the event that ends a call is recorded like any finished
    call (communication, `voice_call.completed`), the others are acknowledged (`ignored`). The work
    that follows (intake, booking, confirmations) runs in the subscribers' jobs, so the answer is fast."""
    secret = await voice_agent_secret(session, org_id)
    if not voice_agents.signature_valid(provider, secret, raw_body, headers, clock.now()):
        raise PermissionDenied("Missing or invalid signature", code="invalid_signature")
    try:
        event_name, call = voice_agents.parse(provider, raw_body)
    except voice_agents.Malformed as exc:
        raise BadRequest(f"Malformed {provider} payload: {exc.field} {exc.message}", code="malformed_webhook",
                         field=exc.field) from None
    call_id = voice_agents.call_id_of(provider, raw_body)
    if call is None:
        event = await _claim(session, provider=provider, external_id=f"{org_id}:{call_id}:{event_name}"[:255],
                             kind=f"voice_{event_name}"[:32], org_id=org_id)
        if event is None:
            return Outcome("duplicate")
        return _done(event, "ignored")
    return await _record_call(session, org_id, provider, f"{org_id}:{call.call_id}", call, event_name)


async def _record_call(session: AsyncSession, org_id: uuid.UUID, provider: str, call_key: str,
                       call: VoiceAgentCall, event_name: str) -> Outcome:
    caller = patients.try_normalise(call.caller, (await identity.organisation_settings(session, org_id)).phone_region)
    if caller is None:
        raise BadRequest("caller: not a phone number", code="malformed_webhook", field="caller")
    external_id = call_key if provider == "voice_agent" else f"{call_key}:{event_name}"
    event = await _claim(session, provider=provider, external_id=external_id[:255], kind="voice_call", org_id=org_id)
    if event is None:
        return Outcome("duplicate")
    patient = await _patient_for(session, org_id, caller, "voice")
    comm = await communications.record_inbound(
        session,
        org_id,
        patient_id=patient.id,
        channel="voice",
        body=call.transcript,
        from_address=caller,
        to_address=call.callee,
        provider=provider,
        provider_message_id=call_key,
        details={
            "call_id": call.call_id,
            "event": event_name,
            "extracted": call.extracted,
            "duration_seconds": call.duration_seconds,
            "recording_url": call.recording_url,
            "language": call.language,
            "started_at": call.started_at.isoformat() if call.started_at else None,
            "ended_at": call.ended_at.isoformat() if call.ended_at else None,
        },
    )
    if call.recording_url:  # copied into our own storage by media's fetch job (verified, deduplicated)
        await media.attach_inbound(
            session, Principal.system(org_id), message_id=comm.id, patient_id=patient.id, source="voice",
            provider=provider, provider_message_id=call_key,
            attachments=[media.Attachment(url=call.recording_url,
                                          content_type=voice_agents.recording_type(call.recording_url))],
        )
    await events.publish(
        session,
        events.Event(
            type="voice_call.completed",
            org_id=org_id,
            payload={
                "communication_id": str(comm.id),
                "patient_id": str(patient.id),
                "channel": "voice",
                "org_id": str(org_id),
                "provider": provider,
                "call_id": call.call_id,
                "extracted": call.extracted,
            },
        ),
    )
    return _done(event, "processed", comm.id)
