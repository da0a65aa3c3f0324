"""Domain events: stored in the publisher's transaction, delivered at least once to subscribers.

`publish(session, Event(...))` inserts the event and defers one `events.deliver` job per
subscriber registered for its type (or for `"*"`) whose `only_if` condition holds, all in the
caller's transaction and in one flush: a request that rolls back leaves neither event nor job. A module subscribes with
`@subscriber("appointment.booked", name="journeys.advance_on_booking")` in its own package; the
publisher never imports it. Delivery is at least once, so every handler must be idempotent; a
successful delivery is recorded and a repeated one is skipped as a second line of defence.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from prm.core import clock, jobs
from prm.core.batch import Batch
from prm.core.models import Base

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncSession, "Event"], Awaitable[None]]


class EventRecord(Base):
    __tablename__ = "domain_events"
    __table_args__ = (Index("ix_domain_events_org_type_at", "org_id", "type", "occurred_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    occurred_at: Mapped[datetime]


class EventDelivery(Base):
    __tablename__ = "event_deliveries"

    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("domain_events.id", ondelete="CASCADE"),
                                                primary_key=True)
    subscriber: Mapped[str] = mapped_column(String(150), primary_key=True)
    delivered_at: Mapped[datetime]


@dataclass(frozen=True)
class Event:
    """A fact another module may care about: `<domain>.<past verb>` and a JSON payload."""

    type: str
    org_id: uuid.UUID
    payload: dict[str, Any]
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    occurred_at: datetime = field(default_factory=clock.now)


_subscribers: dict[str, dict[str, Handler]] = {}
_conditions: dict[str, str] = {}


def subscriber(event_type: str, *, name: str, only_if: str | None = None) -> Callable[[Handler], Handler]:
    """Register `handler(session, event)` for `event_type` (`"*"` for every event).

    `only_if`: an SQL condition on `:org_id` (the event's organisation), checked when the event is
    published, in its transaction and in the same statement that queues the deliveries. The
    subscriber gets no job for an event of an organisation where it does not hold (integrations:
    no enabled endpoint or workflow). It must hold whenever the handler could have work to do.
    """
    if only_if is not None:
        _conditions[name] = only_if

    def decorate(handler: Handler) -> Handler:
        existing = _subscribers.setdefault(event_type, {}).get(name)
        if existing is not None and existing is not handler:
            raise RuntimeError(f"subscriber {name!r} registered twice for {event_type!r}")
        _subscribers[event_type][name] = handler
        return handler

    return decorate


def subscribers_for(event_type: str) -> dict[str, Handler]:
    return {**_subscribers.get("*", {}), **_subscribers.get(event_type, {})}


def _row(event: Event) -> dict[str, Any]:
    return {"id": event.id, "org_id": event.org_id, "type": event.type, "payload": event.payload,
            "occurred_at": event.occurred_at}


def _deliveries(event: Event) -> list[dict[str, Any]]:
    return [{"only_if": _conditions.get(name), "org_id": str(event.org_id), "event_id": str(event.id),
             "subscriber": name} for name in subscribers_for(event.type)]


def publish_in(batch: Batch, event: Event) -> Event:
    """`publish` as part of a one-statement write (`prm.core.batch`): the event row and its deliveries."""
    batch.insert(EventRecord, _row(event))
    for delivery in _deliveries(event):
        batch.defer("events.deliver", **delivery)
    log.debug("event.published", event_type=event.type, event_id=str(event.id))
    return event


async def publish(session: AsyncSession, event: Event) -> Event:
    """Store `event` and queue its delivery to every subscriber, in the caller's transaction.

    What the caller added before (history, audit, ...) is flushed first; then the event row and its
    deliveries go in ONE statement (`publish_in`): not an insert and a job statement each."""
    await session.flush()
    batch = Batch()
    publish_in(batch, event)
    await batch.execute(session)
    return event


async def load(session: AsyncSession, event_id: uuid.UUID) -> Event | None:
    row = await session.get(EventRecord, event_id)
    if row is None:
        return None
    return Event(type=row.type, org_id=row.org_id, payload=row.payload, id=row.id, occurred_at=row.occurred_at)


def _handled_types(subscriber: str) -> list[str]:
    """The event types `subscriber` is registered for (`"*"` included)."""
    return [event_type for event_type, named in _subscribers.items() if subscriber in named]


# Claim the delivery and load the event in one statement. The claim is the delivery row itself,
# inserted first: a concurrent duplicate waits on its unique index until this transaction ends, then
# inserts nothing (or claims it, when this one rolled back: a failing handler takes its claim with
# it). The event is returned whether or not it was claimed (`claimed`), so an unknown subscriber or
# a repeated delivery can be told apart from a missing event; a subscriber not registered for the
# event's type claims nothing.
_CLAIM = text(
    "WITH claimed AS ("
    " INSERT INTO event_deliveries (event_id, subscriber, delivered_at)"
    " SELECT id, :subscriber, :now FROM domain_events"
    " WHERE id = :id AND (type = ANY(CAST(:types AS text[])) OR :any_type)"
    " ON CONFLICT DO NOTHING RETURNING event_id)"
    " SELECT e.type, e.org_id, e.payload, e.occurred_at, claimed.event_id IS NOT NULL AS claimed"
    " FROM domain_events AS e LEFT JOIN claimed ON claimed.event_id = e.id WHERE e.id = :id"
)


@jobs.job("events.deliver")
async def deliver(session: AsyncSession, *, event_id: str, subscriber: str, org_id: str | None = None) -> bool:
    """Hand one stored event to one subscriber; False when there was nothing (left) to do.

    The delivery is claimed before the handler runs, in the same transaction (`_CLAIM`): a second
    delivery of the same event to the same subscriber, even a concurrent one, does nothing, and a
    handler that fails leaves it unclaimed for the retry. (So a handler never commits on its own.)
    """
    types = _handled_types(subscriber)
    row = (await session.execute(_CLAIM, {
        "id": uuid.UUID(event_id), "subscriber": subscriber, "now": clock.now(),
        "types": [t for t in types if t != "*"], "any_type": "*" in types,
    })).one_or_none()
    if row is None:
        return False  # the event is gone (its organisation deleted)
    event_type, event_org, payload, occurred_at, claimed = row
    handler = subscribers_for(event_type).get(subscriber)
    if not claimed:
        if handler is None:
            log.warning("event.no_subscriber", event_type=event_type, subscriber=subscriber)
        return False
    assert handler is not None  # claimed: the subscriber is registered for this type (or "*")
    await handler(session, Event(type=event_type, org_id=event_org, payload=payload, id=uuid.UUID(event_id),
                                 occurred_at=occurred_at))
    return True
