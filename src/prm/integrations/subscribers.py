"""Every domain event goes out to the organisation's webhook endpoints and the n8n workflows mapped
to it: one subscriber, so an event costs one job here whatever is configured."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import events
from prm.integrations import n8n, outbound

# Events about the integrations themselves are not fed back to n8n (a failing workflow must not
# trigger workflows), but endpoints may subscribe to them.
_NOT_FOR_N8N = ("workflow_run.",)


# No job at all for an event of an organisation with nothing to send it to (most events of most
# clinics): checked in the publishing transaction, so an endpoint or workflow enabled before the
# event is published always gets it.
_CONFIGURED = ("EXISTS (SELECT 1 FROM webhook_endpoints WHERE org_id = :org_id AND enabled) "
               "OR EXISTS (SELECT 1 FROM n8n_integrations WHERE org_id = :org_id AND enabled)")


@events.subscriber("*", name="integrations.dispatch", only_if=_CONFIGURED)
async def dispatch(session: AsyncSession, event: events.Event) -> None:
    await outbound.fan_out(session, event)
    if not event.type.startswith(_NOT_FOR_N8N):
        await n8n.trigger_on_event(session, event)
