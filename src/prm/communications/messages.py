"""Messages: creating (send), reading, cancelling, recording inbound messages and replies,
and applying provider status callbacks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from psycopg.types.json import Jsonb
from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from prm import context
from prm.communications import rules
from prm.communications.channels import (
    _check_shape,
    _sender,
    address_of,
    channel_config,
    require_consent,
    whatsapp_window_open,
)
from prm.communications.models import Communication, InboundEvent
from prm.communications.schemas import CommunicationCreate, CommunicationFilters
from prm.core import audit, clock, jobs, references
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound, ValidationFailed
from prm.core.pagination import PageParams, matching, paginate
from prm.media import service as media
from prm.patients import service as patients

log = structlog.get_logger(__name__)

SEND_JOB = "communications.send"


# --- creating and reading ------------------------------------------------------------------------


@dataclass(frozen=True)
class Prechecked:
    """What a caller of `send` has already established in this transaction, so `send` does not ask
    the database again (notifications' dispatch, the conversation assistant).

    `patient`: the recipient as `patients.get` / `patients.resolve` returned it (a merged one is
    resolved again); `consent`: the patient may be contacted on the message's channel for its
    purpose; `window`: the WhatsApp window is open (or the message is a template); `new_key`: do not
    look for an earlier message with the idempotency key first (the caller did, or runs once per key:
    a repeat is still caught when the message is inserted); `conversation`: the message's
    conversation is the organisation's.
    """

    patient: Any = None
    consent: bool = False
    window: bool = False
    new_key: bool = False
    conversation: bool = False


async def send(
    session: AsyncSession, who: Principal, data: CommunicationCreate, *, prechecked: Prechecked | None = None,
    created_by: str | None = None, details: dict[str, Any] | None = None,
) -> Communication:
    """Create an outbound message and queue its sending (now, or at `data.send_at`).

    Refuses (nothing written) when the patient or conversation is unknown in the organisation (422
    naming the field), the patient has no address on the channel
    (422), did not consent (409 `consent_refused`), when a free-form WhatsApp message falls
    outside the 24-hour window (422 `whatsapp_window_closed`) or the channel is disabled (409
    `channel_disabled`): callers rely on it (no savepoint around a send that may be refused). A
    repeated `idempotency_key` returns the first message. `created_by` (default: the credential) and
    `details` are stored with it.
    """
    org_id = who.org_id
    known = prechecked or Prechecked()
    if data.idempotency_key and not known.new_key:
        existing = await find_by_idempotency_key(session, org_id, data.idempotency_key)
        if existing is not None:
            return existing
    _check_shape(data)
    patient = known.patient
    if patient is None or patient.merged_into_id is not None or patient.id != data.patient_id:
        try:
            patient = await patients.resolve(session, org_id, data.patient_id)
        except NotFound:
            raise references.unknown("patient_id", "patient") from None
    if not known.conversation:
        await references.require(session, org_id, "conversation", data.conversation_id, field="conversation_id")
    to = address_of(patient, data.channel)
    if not to:
        kind = "email address" if data.channel == "email" else "phone number"
        raise ValidationFailed.field("patient_id", f"the patient has no {kind} for {data.channel}", code="no_address")
    if not known.consent:
        await require_consent(session, org_id, patient.id, channel=data.channel, purpose=data.purpose,
                              patient=patient)
    stored_media = await media.attachable(session, who, data.media_ids, patient_id=patient.id) if data.media_ids else []
    if (
        data.channel == "whatsapp"
        and not data.content_sid
        and not known.window
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
    comm_id = uuid.uuid4()
    values: dict[str, Any] = dict(
        id=comm_id,
        org_id=org_id,
        patient_id=patient.id,
        conversation_id=data.conversation_id,
        channel=data.channel,
        direction="outbound",
        purpose=data.purpose,
        status="queued",
        to_address=to,
        from_address=_sender(config, data.channel, context.of(session).settings),
        subject=data.subject,
        body=data.body,
        html_body=data.html_body,
        media=[{"url": u, "content_type": None} for u in data.media_urls]
        + [{"url": None, "content_type": m.content_type, "media_id": str(m.id)} for m in stored_media],
        attachments=[a.model_dump() for a in data.attachments],
        content_sid=data.content_sid,
        content_variables=data.content_variables or None,
        template_key=data.template_key,
        idempotency_key=data.idempotency_key,
        created_by=created_by or who.credential,
        send_at=data.send_at,
        queued_at=now,
        attempts=0,
    )
    schedule_at = data.send_at if data.send_at and data.send_at > now else None
    if data.idempotency_key:
        inserted = await _insert_keyed(session, values, schedule_at, details)
        if inserted is None:  # the key is taken (a concurrent request won the race, or a repeat): answer with it
            existing = await find_by_idempotency_key(session, org_id, data.idempotency_key)
            if existing is None:  # pragma: no cover - the conflicting row is committed once the insert returns
                raise Conflict("A message with this idempotency key was being created; retry",
                               code="idempotency_in_progress")
            return existing
        comm = inserted
    else:
        comm = Communication(**values, details={})

        def with_job(job_id: int) -> None:  # the row goes in with its job's id (no UPDATE after)
            comm.details = {"job_id": job_id, **(details or {})}

        # no key, no conflict possible: the row and its job go in this flush, one statement each
        jobs.defer_with_flush(session, SEND_JOB, org_id=str(org_id), communication_id=str(comm_id),
                              schedule_at=schedule_at, on_id=with_job)
        session.add(comm)
        await session.flush()
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


_INSERT_KEYED = (
    insert(Communication)
    .on_conflict_do_nothing(index_elements=[Communication.org_id, Communication.idempotency_key],
                            index_where=Communication.idempotency_key.is_not(None))
    .returning(Communication)
)


async def _insert_keyed(session: AsyncSession, values: dict[str, Any], schedule_at: datetime | None,
                        details: dict[str, Any] | None) -> Communication | None:
    """Insert a message with an idempotency key and queue its job, in two statements and no savepoint;
    None (and no job left) when the organisation already has a message with that key. A concurrent
    insert of the same key waits for the other transaction: None once it commits, inserted if it
    rolls back."""
    # the job first: the row carries its id
    job_id = await jobs.defer(session, SEND_JOB, org_id=str(values["org_id"]), communication_id=str(values["id"]),
                              schedule_at=schedule_at)
    assert job_id is not None
    # the values as parameters of a statement built once (an ORM bulk insert of one row): `.values()`
    # would coerce each into the statement, a large part of a notification's CPU
    comm: Communication | None = await session.scalar(
        _INSERT_KEYED, [{**values, "details": {"job_id": job_id, **(details or {})}}])
    if comm is None:
        await jobs.discard(session, job_id)
    return comm


async def get(
    session: AsyncSession, who: Principal, communication_id: uuid.UUID
) -> Communication:
    org_id = who.org_id
    comm = await session.scalar(
        select(Communication).where(Communication.id == communication_id, Communication.org_id == org_id)
    )
    if comm is None:
        raise NotFound("No such communication", code="communication_not_found")
    if who.kind != "system":
        await audit.record(session, who, "read", "communication", comm.id, patient_id=comm.patient_id)
    return comm


async def list_communications(
    session: AsyncSession,
    who: Principal,
    filters: CommunicationFilters,
    paging: PageParams,
) -> tuple[list[Communication], int]:
    org_id = who.org_id
    await references.require(session, org_id, "patient", filters.patient_id, field="patient_id")
    await references.require(session, org_id, "conversation", filters.conversation_id, field="conversation_id")
    stmt = matching(select(Communication).where(Communication.org_id == org_id), Communication,
                    patient_id=filters.patient_id, conversation_id=filters.conversation_id, channel=filters.channel,
                    status=filters.status, direction=filters.direction)
    if filters.since:
        stmt = stmt.where(Communication.created_at >= filters.since)
    if filters.until:
        stmt = stmt.where(Communication.created_at < filters.until)
    rows, total = await paginate(session, stmt.order_by(Communication.created_at.desc(), Communication.id), paging)
    if who.kind != "system":
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
    session: AsyncSession, who: Principal, communication_id: uuid.UUID
) -> Communication:
    """Cancel a message that has not been sent yet (409 `not_cancellable` otherwise)."""
    org_id = who.org_id
    comm = await get(session, Principal.system(org_id), communication_id)
    if comm.status != "queued":
        raise Conflict(f"A {comm.status} message can no longer be cancelled", code="not_cancellable")
    job_id = (comm.details or {}).get("job_id")
    if job_id:
        await jobs.cancel_pending(session, int(job_id))
    comm.status = "cancelled"
    comm.failed_at = clock.now()
    await audit.record(session, who, "cancel", "communication", comm.id, patient_id=comm.patient_id)
    return comm


async def _record(
    session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, channel: str, direction: str, **fields: Any
) -> Communication:
    """Store a message that already happened (received, or handed to the provider) and audit it."""
    comm = Communication(
        id=uuid.uuid4(),
        org_id=org_id,
        patient_id=patient_id,
        channel=channel,
        direction=direction,
        attachments=[],
        **fields,
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
        details={"channel": channel, "direction": direction},
    )
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
    return await _record(
        session,
        org_id,
        patient_id,
        channel,
        "inbound",
        status="received",
        body=body,
        from_address=from_address,
        to_address=to_address,
        provider=provider,
        provider_message_id=provider_message_id,
        media=media or [],
        details=details or {},
        received_at=now,
        attempts=0,
        created_at=now,
        updated_at=now,
    )


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
    return await _record(
        session,
        org_id,
        patient_id,
        channel,
        "outbound",
        purpose="care",
        status="sent",
        body=body,
        to_address=to_address,
        from_address=from_address,
        provider=provider,
        media=[],
        details=details,
        queued_at=now,
        sent_at=now,
        attempts=1,
    )


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


async def attach_conversation(
    session: AsyncSession, org_id: uuid.UUID, communication_id: uuid.UUID, conversation_id: uuid.UUID
) -> Communication:
    """Link a message to a conversation (for the conversations module)."""
    comm = await get(session, Principal.system(org_id), communication_id)
    comm.conversation_id = conversation_id
    await session.flush()
    return comm


# --- inbound provider events (stored once per provider id; the webhooks module processes them) ---


async def claim_inbound_event(
    session: AsyncSession, *, provider: str, external_id: str, kind: str, org_id: uuid.UUID | None = None,
    payload: dict[str, Any] | None = None,
) -> InboundEvent | None:
    """Store the event (with its raw `payload` when it is processed later); None when it was already
    stored (a retried delivery). One statement."""
    event = await session.scalar(
        insert(InboundEvent)
        .values(
            id=uuid.uuid4(),
            provider=provider,
            external_id=external_id,
            kind=kind,
            org_id=org_id,
            outcome="received",
            received_at=clock.now(),
            payload=payload,
        )
        .on_conflict_do_nothing(constraint="uq_inbound_events_provider_external_id")
        .returning(InboundEvent)
    )
    if event is None:
        log.info("webhook.duplicate", provider=provider, kind=kind)
        return None
    return event  # type: ignore[no-any-return]


_STORE_AND_QUEUE = (
    "WITH stored AS (INSERT INTO inbound_events (id, provider, external_id, kind, outcome, received_at, payload) "
    "VALUES (%(id)s, %(provider)s, %(external_id)s, %(kind)s, 'received', %(received_at)s, %(payload)s) "
    "ON CONFLICT ON CONSTRAINT uq_inbound_events_provider_external_id DO NOTHING RETURNING id) "
    "SELECT {defer} FROM stored"
)


async def store_inbound_event(
    session: AsyncSession, *, provider: str, external_id: str, kind: str, payload: dict[str, Any], then: str,
) -> uuid.UUID | None:
    """Store a raw inbound event and queue the job `then(event_id=<its id>)` that processes it, in one
    statement of the caller's transaction; None when the event was stored already (a retried
    delivery): then nothing is written and nothing queued."""
    event_id = uuid.uuid4()
    defer_sql, defer_params = jobs.defer_expression(then, event_id=str(event_id))
    raw = await (await session.connection()).get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    cursor = await driver.execute(
        _STORE_AND_QUEUE.format(defer=defer_sql),
        {"id": event_id, "provider": provider, "external_id": external_id, "kind": kind,
         "received_at": clock.now(), "payload": Jsonb(payload), **defer_params},
    )
    if await cursor.fetchone() is None:
        log.info("webhook.duplicate", provider=provider, kind=kind)
        return None
    jobs.queued(session, [then])
    return event_id


async def pending_inbound_event(session: AsyncSession, event_id: uuid.UUID) -> InboundEvent | None:
    """A stored event still waiting for its processing (locked for this transaction); None when it
    was processed already or is unknown."""
    return await session.scalar(  # type: ignore[no-any-return]
        select(InboundEvent).where(InboundEvent.id == event_id, InboundEvent.outcome == "received",
                                   InboundEvent.payload.is_not(None)).with_for_update()
    )


def finish_inbound_event(event: InboundEvent, outcome: str, communication_id: uuid.UUID | None = None) -> None:
    event.outcome = outcome
    event.processed_at = clock.now()
    event.communication_id = communication_id
    event.payload = None


# --- lookups for the domains above (conversations, notifications) --------------------------------


async def find(session: AsyncSession, org_id: uuid.UUID, communication_id: uuid.UUID) -> Communication | None:
    return await session.scalar(
        select(Communication).where(Communication.id == communication_id, Communication.org_id == org_id)
    )


_BY_IDEMPOTENCY_KEY = select(Communication).where(Communication.org_id == bindparam("org_id"),
                                                  Communication.idempotency_key == bindparam("key"))


async def find_by_idempotency_key(session: AsyncSession, org_id: uuid.UUID, key: str) -> Communication | None:
    # built once (every notification asks it first): a call only binds its values
    return await session.scalar(_BY_IDEMPOTENCY_KEY, {"org_id": org_id, "key": key})


async def of_conversation(
    session: AsyncSession, org_id: uuid.UUID, conversation_id: uuid.UUID, paging: PageParams
) -> tuple[list[Communication], int]:
    """The messages linked to a conversation, newest first (not audited: the caller audits)."""
    stmt = (
        select(Communication)
        .where(Communication.org_id == org_id, Communication.conversation_id == conversation_id)
        .order_by(Communication.created_at.desc(), Communication.id.desc())
    )
    return await paginate(session, stmt, paging)


async def statuses(session: AsyncSession, org_id: uuid.UUID, ids: Any) -> dict[uuid.UUID, str]:
    """The status of each of the organisation's messages among `ids` (a list, or a select of ids)."""
    rows = await session.execute(select(Communication.id, Communication.status)
                                 .where(Communication.org_id == org_id, Communication.id.in_(ids)))
    return {row[0]: str(row[1]) for row in rows.all()}


async def status_counts(session: AsyncSession, org_id: uuid.UUID, ids: Any) -> dict[str, int]:
    """How many of the organisation's messages among `ids` (a select of ids, any size) are in each status."""
    rows = await session.execute(select(Communication.status, func.count())
                                 .where(Communication.org_id == org_id, Communication.id.in_(ids))
                                 .group_by(Communication.status))
    return {str(status): int(n) for status, n in rows.all()}
