"""Journeys learn of what happens to patients through domain events (they never are imported by the
modules that publish them): enrol on triggers, advance stages, resume waits, apply exit rules."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import events
from prm.journeys import service
from prm.journeys.steps import EVENT_TYPES

HANDLED = (*EVENT_TYPES, "patient.deleted")


async def react(session: AsyncSession, event: events.Event) -> None:
    await service.react(session, event)


for _event_type in HANDLED:
    events.subscriber(_event_type, name="journeys.react")(react)
