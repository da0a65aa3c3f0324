"""Outbound event webhooks: endpoints an organisation registers, one message per event and
endpoint, delivered with Standard Webhooks signatures, retried on a schedule, logged per attempt.

Delivery is at least once: a receiver deduplicates on `webhook-id` (the message id, the same on
every attempt and redelivery). Each attempt is signed afresh (the timestamp is part of the
signature). A 2xx is delivered; 410 disables the endpoint; anything else is retried on
`payloads.RETRY_SCHEDULE_SECONDS` (honouring `Retry-After`) and, when the schedule is spent, the
message fails and counts against the endpoint, which is disabled — and the organisation told by a
ticket — after `OUTBOUND_WEBHOOK_DISABLE_AFTER` consecutive failed messages.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from prm.core import audit, clock, events, jobs, rowlock
from prm.core.auth import Principal
from prm.core.errors import NotFound, ValidationFailed
from prm.core.events import EventRecord
from prm.core.pagination import PageParams, paginate
from prm.integrations import calls, payloads
from prm.integrations.calls import checked_url, new_secret
from prm.integrations.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from prm.integrations.schemas import EndpointCreate, EndpointUpdate
from prm.settings import Settings
from prm.tickets import service as tickets
from prm.tickets.schemas import TicketCreate

log = structlog.get_logger(__name__)

DELIVER_JOB = "integrations.deliver_webhook"
def message_header_id(message_id: uuid.UUID) -> str:
    return f"msg_{message_id.hex}"


def signature_header(endpoint: WebhookEndpoint, msg_id: str, at: datetime, body: str) -> str:
    """`v1,<sig>` with the current secret, plus one with the previous secret during a rotation."""
    signatures = [Webhook(endpoint.secret).sign(msg_id, at, body)]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and \
            endpoint.previous_secret_expires_at > clock.now():
        signatures.append(Webhook(endpoint.previous_secret).sign(msg_id, at, body))
    return " ".join(signatures)




# --- endpoints ---------------------------------------------------------------------------------


async def create_endpoint(session: AsyncSession, who: Principal, data: EndpointCreate,
                          settings: Settings) -> WebhookEndpoint:
    await checked_url(data.url, settings)
    endpoint = WebhookEndpoint(id=uuid.uuid4(), org_id=who.org_id, url=data.url, description=data.description,
                               event_types=data.event_types, secret=new_secret())
    session.add(endpoint)
    await session.flush()
    await audit.record(session, who, "create", "webhook_endpoint", endpoint.id)
    return endpoint


async def get_endpoint(session: AsyncSession, who: Principal, endpoint_id: uuid.UUID,
                       *, for_update: bool = False) -> WebhookEndpoint:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.org_id == who.org_id)
    if for_update:
        stmt = stmt.with_for_update()
    endpoint = await session.scalar(stmt)
    if endpoint is None:
        raise NotFound("No such webhook endpoint", code="webhook_endpoint_not_found")
    return endpoint


async def list_endpoints(session: AsyncSession, who: Principal) -> list[WebhookEndpoint]:
    rows = await session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.org_id == who.org_id).order_by(WebhookEndpoint.created_at)
    )
    return list(rows)


async def update_endpoint(session: AsyncSession, who: Principal, endpoint_id: uuid.UUID, data: EndpointUpdate,
                          settings: Settings) -> WebhookEndpoint:
    endpoint = await get_endpoint(session, who, endpoint_id, for_update=True)
    changes = data.model_dump(exclude_unset=True)
    for name in ("url", "event_types", "enabled"):
        if name in changes and changes[name] is None:
            raise ValidationFailed.field(name, "may not be null")
    if "url" in changes:
        endpoint.url = await checked_url(changes["url"], settings)
    if "description" in changes:
        endpoint.description = changes["description"]
    if "event_types" in changes:
        endpoint.event_types = changes["event_types"]
    if "enabled" in changes:
        endpoint.enabled = changes["enabled"]
        if endpoint.enabled:
            endpoint.disabled_reason, endpoint.disabled_at, endpoint.consecutive_failures = None, None, 0
        elif endpoint.disabled_at is None:
            endpoint.disabled_reason, endpoint.disabled_at = "disabled by staff", clock.now()
    await session.flush()
    await audit.record(session, who, "update", "webhook_endpoint", endpoint.id, details={"fields": sorted(changes)})
    return endpoint


async def delete_endpoint(session: AsyncSession, who: Principal, endpoint_id: uuid.UUID) -> None:
    endpoint = await get_endpoint(session, who, endpoint_id, for_update=True)
    await session.delete(endpoint)
    await session.flush()
    await audit.record(session, who, "delete", "webhook_endpoint", endpoint_id)


async def rotate_secret(session: AsyncSession, who: Principal, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """A new secret; the old one still signs (as a second signature) for 24 hours."""
    endpoint = await get_endpoint(session, who, endpoint_id, for_update=True)
    calls.rotate(endpoint)
    await session.flush()
    await audit.record(session, who, "rotate_secret", "webhook_endpoint", endpoint.id)
    return endpoint


# --- messages ----------------------------------------------------------------------------------


async def _enqueue(session: AsyncSession, endpoint: WebhookEndpoint, *, event_id: uuid.UUID | None,
                   event_type: str, payload: dict[str, Any], occurred_at: datetime) -> uuid.UUID | None:
    """A message for (endpoint, event) and its delivery job; None when it already existed."""
    message_id = uuid.uuid4()
    inserted = await session.scalar(
        insert(WebhookMessage)
        .values(id=message_id, org_id=endpoint.org_id, endpoint_id=endpoint.id, event_id=event_id,
                event_type=event_type, payload=payloads.thin(payload), occurred_at=occurred_at,
                status="pending", attempts=0, created_at=clock.now())
        .on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"])
        .returning(WebhookMessage.id)
    )
    if inserted is None:
        return None
    await jobs.defer(session, DELIVER_JOB, org_id=str(endpoint.org_id), message_id=str(message_id))
    return message_id


async def fan_out(session: AsyncSession, event: events.Event) -> int:
    """One message per enabled endpoint of the event's organisation that subscribed to its type."""
    endpoints = await session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.org_id == event.org_id, WebhookEndpoint.enabled.is_(True))
    )
    queued = 0
    for endpoint in endpoints:
        if payloads.wants(endpoint.event_types, event.type):
            queued += await _enqueue(session, endpoint, event_id=event.id, event_type=event.type,
                                     payload=event.payload, occurred_at=event.occurred_at) is not None
    return queued


async def send_test(session: AsyncSession, who: Principal, endpoint_id: uuid.UUID) -> WebhookMessage:
    endpoint = await get_endpoint(session, who, endpoint_id)
    message_id = await _enqueue(session, endpoint, event_id=uuid.uuid4(), event_type="webhook.test",
                                payload={"endpoint_id": str(endpoint.id)}, occurred_at=clock.now())
    assert message_id is not None
    return await get_message(session, who, message_id)


async def get_message(session: AsyncSession, who: Principal, message_id: uuid.UUID) -> WebhookMessage:
    message = await session.scalar(
        select(WebhookMessage).where(WebhookMessage.id == message_id, WebhookMessage.org_id == who.org_id)
    )
    if message is None:
        raise NotFound("No such webhook message", code="webhook_message_not_found")
    return message


async def list_messages(session: AsyncSession, who: Principal, endpoint_id: uuid.UUID, paging: PageParams,
                        *, status: str | None = None) -> tuple[list[WebhookMessage], int]:
    await get_endpoint(session, who, endpoint_id)
    stmt = select(WebhookMessage).where(WebhookMessage.org_id == who.org_id, WebhookMessage.endpoint_id == endpoint_id)
    if status is not None:
        stmt = stmt.where(WebhookMessage.status == status)
    return await paginate(session, stmt.order_by(WebhookMessage.created_at.desc(), WebhookMessage.id), paging)


async def attempts_of(session: AsyncSession, who: Principal, message_id: uuid.UUID) -> list[WebhookAttempt]:
    await get_message(session, who, message_id)
    rows = await session.scalars(
        select(WebhookAttempt).where(WebhookAttempt.message_id == message_id).order_by(WebhookAttempt.id)
    )
    return list(rows)


async def redeliver(session: AsyncSession, who: Principal, message_id: uuid.UUID) -> WebhookMessage:
    """Send a message again (same `webhook-id`), whatever its state; the endpoint must be enabled."""
    message = await get_message(session, who, message_id)
    endpoint = await get_endpoint(session, who, message.endpoint_id)
    if not endpoint.enabled:
        raise ValidationFailed.field("endpoint_id", "the endpoint is disabled; enable it first",
                                     code="endpoint_disabled")
    message.status, message.next_attempt_at = "pending", None
    await jobs.defer(session, DELIVER_JOB, org_id=str(who.org_id), message_id=str(message.id))
    await audit.record(session, who, "redeliver", "webhook_message", message.id)
    return message


async def replay(session: AsyncSession, who: Principal, endpoint_id: uuid.UUID, since: datetime,
                 *, limit: int = 1000) -> int:
    """Queue again every event since `since` that the endpoint subscribes to (up to `limit`)."""
    endpoint = await get_endpoint(session, who, endpoint_id)
    if not endpoint.enabled:
        raise ValidationFailed.field("endpoint_id", "the endpoint is disabled; enable it first",
                                     code="endpoint_disabled")
    rows = await session.scalars(
        select(EventRecord).where(EventRecord.org_id == who.org_id, EventRecord.occurred_at >= since)
        .order_by(EventRecord.occurred_at, EventRecord.id).limit(limit * 4)
    )
    queued = 0
    for record in rows:
        if queued >= limit:
            break
        if not payloads.wants(endpoint.event_types, record.type):
            continue
        if await _enqueue(session, endpoint, event_id=record.id, event_type=record.type, payload=record.payload,
                          occurred_at=record.occurred_at) is None:
            message = await session.scalar(select(WebhookMessage).where(
                WebhookMessage.endpoint_id == endpoint.id, WebhookMessage.event_id == record.id))
            assert message is not None
            message.status, message.next_attempt_at = "pending", None
            await jobs.defer(session, DELIVER_JOB, org_id=str(who.org_id), message_id=str(message.id))
        queued += 1
    await audit.record(session, who, "replay", "webhook_endpoint", endpoint.id, details={"queued": queued})
    return queued


# --- delivery ----------------------------------------------------------------------------------


def body_of(message: WebhookMessage) -> str:
    return json.dumps({"type": message.event_type, "timestamp": message.occurred_at.isoformat(),
                       "data": message.payload}, separators=(",", ":"), default=str)


async def _disable(session: AsyncSession, endpoint: WebhookEndpoint, reason: str) -> None:
    endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = False, reason, clock.now()
    system = Principal.system(endpoint.org_id)
    await tickets.create(
        session,
        system,
        TicketCreate(subject="Webhook endpoint disabled",
                     description=f"Deliveries to webhook endpoint {endpoint.id} stopped: {reason}. "
                                 "Fix the receiver, then enable the endpoint and replay the missed events.",
                     category="integrations", priority="high"),
        source="system",
    )
    await events.publish(session, events.Event(
        type="webhook_endpoint.disabled", org_id=endpoint.org_id,
        payload={"endpoint_id": str(endpoint.id), "reason": reason}))
    log.warning("webhooks.endpoint_disabled", endpoint_id=str(endpoint.id), reason=reason)


async def deliver(session: AsyncSession, message_id: uuid.UUID, settings: Settings) -> str:
    """One attempt at delivering a pending message; returns what happened."""
    message = await rowlock.lock(session, WebhookMessage, message_id)
    if message is None or rowlock.idle(message, "pending"):
        return "nothing_to_do"
    if message.next_attempt_at is not None and message.next_attempt_at > clock.now() + timedelta(seconds=1):
        return "not_due"
    endpoint = await session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.id == message.endpoint_id)
                                    .with_for_update())
    if endpoint is None or not endpoint.enabled:
        message.status = "failed"
        return "endpoint_disabled"
    body = body_of(message)
    msg_id = message_header_id(message.id)
    # The signature's timestamp is wall-clock time: receivers compare it with their own clocks.
    signed_at = datetime.now(UTC)
    headers = {"content-type": "application/json", "user-agent": "prm-webhooks/1",
               "webhook-id": msg_id, "webhook-timestamp": str(int(signed_at.timestamp())),
               "webhook-signature": signature_header(endpoint, msg_id, signed_at, body)}
    attempt = await calls.post_once(endpoint.url, body.encode(), headers,
                                    timeout_seconds=settings.outbound_webhook_timeout_seconds, settings=settings)
    status_code = attempt.status_code
    message.attempts += 1
    message.last_status_code = status_code
    session.add(WebhookAttempt(org_id=message.org_id, message_id=message.id, attempted_at=clock.now(),
                               status_code=status_code, duration_ms=attempt.duration_ms, succeeded=attempt.ok,
                               error=attempt.error, response_excerpt=attempt.excerpt))
    if attempt.ok:
        message.status, message.delivered_at, message.next_attempt_at = "delivered", clock.now(), None
        endpoint.consecutive_failures = 0
        return "delivered"
    if status_code == 410:
        message.status, message.next_attempt_at = "failed", None
        await _disable(session, endpoint, "the receiver answered 410 Gone")
        return "gone"
    delay = payloads.next_delay(message.attempts, attempt.retry_after)
    if delay is None:
        message.status, message.next_attempt_at = "failed", None
        endpoint.consecutive_failures += 1
        if endpoint.consecutive_failures >= settings.outbound_webhook_disable_after:
            await _disable(session, endpoint,
                           f"{endpoint.consecutive_failures} consecutive events could not be delivered")
        return "failed"
    message.next_attempt_at = clock.now() + timedelta(seconds=delay)
    await jobs.defer(session, DELIVER_JOB, schedule_at=message.next_attempt_at, org_id=str(message.org_id),
                     message_id=str(message.id))
    return "retry_scheduled"
