"""Reading the sandbox outbox: what the `sandbox` provider would have delivered.

Other modules' tests use `outbox(session, org_id, patient_id=...)` to assert that a message went out.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications.models import SandboxMessage
from prm.core import references
from prm.core.pagination import PageParams, paginate


async def outbox(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    patient_id: uuid.UUID | None = None,
    channel: str | None = None,
    limit: int = 100,
) -> list[SandboxMessage]:
    """The newest sandbox deliveries of `org_id` (oldest first), optionally for one patient/channel."""
    rows, _ = await page(
        session, org_id, patient_id=patient_id, channel=channel, paging=PageParams(limit=limit, offset=0)
    )
    return list(reversed(rows))


async def page(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    patient_id: uuid.UUID | None,
    channel: str | None,
    paging: PageParams,
) -> tuple[list[SandboxMessage], int]:
    await references.require(session, org_id, "patient", patient_id, field="patient_id")
    stmt = select(SandboxMessage).where(SandboxMessage.org_id == org_id)
    if patient_id is not None:
        stmt = stmt.where(SandboxMessage.patient_id == patient_id)
    if channel is not None:
        stmt = stmt.where(SandboxMessage.channel == channel)
    return await paginate(session, stmt.order_by(SandboxMessage.recorded_at.desc(), SandboxMessage.id.desc()), paging)
