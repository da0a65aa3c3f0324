"""Jobs of the integrations domain: deliver one webhook message, call n8n for a run, time a run out."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from prm import context
from prm.core import jobs
from prm.integrations import n8n, outbound


@jobs.job(outbound.DELIVER_JOB, queue="webhooks")
async def deliver_webhook(session: AsyncSession, *, message_id: str, org_id: str | None = None) -> str:
    return await outbound.deliver(session, uuid.UUID(message_id), context.of(session).settings)


@jobs.job(n8n.CALL_JOB, queue="webhooks")
async def n8n_call(session: AsyncSession, *, run_id: str, org_id: str | None = None) -> str:
    return await n8n.call(session, uuid.UUID(run_id), context.of(session).settings)


@jobs.job(n8n.EXPIRE_JOB)
async def n8n_expire(session: AsyncSession, *, run_id: str, org_id: str | None = None) -> str:
    return await n8n.expire(session, uuid.UUID(run_id))
