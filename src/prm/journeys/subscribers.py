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


# No delivery job for an organisation where no journey can react: none live (published, not retired)
# and no patient still in one (checked in the statement that publishes the event). So a journey
# published later does not enrol patients for what happened before it was live.
ANY_JOURNEY = ("EXISTS (SELECT 1 FROM journeys WHERE org_id = :org_id AND retired_at IS NULL "
               "AND active_version IS NOT NULL) "
               "OR EXISTS (SELECT 1 FROM journey_instances WHERE org_id = :org_id AND status = 'active')")

for _event_type in HANDLED:
    events.subscriber(_event_type, name="journeys.react", only_if=ANY_JOURNEY)(react)
