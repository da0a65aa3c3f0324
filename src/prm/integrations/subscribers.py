"""Every domain event goes out to the organisation's webhook endpoints and the n8n workflows mapped
to it: one subscriber, so an event costs one job here whatever is configured."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import events
from prm.integrations import n8n, outbound

# Events about the integrations themselves are not fed back to n8n (a failing workflow must not
# trigger workflows), but endpoints may subscribe to them.
_NOT_FOR_N8N = ("workflow_run.",)


@events.subscriber("*", name="integrations.dispatch")
async def dispatch(session: AsyncSession, event: events.Event) -> None:
    await outbound.fan_out(session, event)
    if not event.type.startswith(_NOT_FOR_N8N):
        await n8n.trigger_on_event(session, event)
