"""The preamble of every job that works on one row: lock it, read it afresh, and stop when there is
nothing left to do (the row is gone, or another worker settled it meanwhile).

    item = await rowlock.lock(session, BatchItem, item_id, org_id=org_id)
    if (answer := rowlock.idle(item, "pending")) is not None:
        return answer  # "missing", or the status the row already has

The lock (`SELECT … FOR UPDATE`) lasts until the job's transaction ends, so two workers given the
same job (a retry, a redelivery) do its work once; `populate_existing` re-reads a row the session
may already hold, as another worker may have changed it since.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

MISSING = "missing"


async def lock(session: AsyncSession, model: type[T], row_id: uuid.UUID, *,
               org_id: uuid.UUID | None = None) -> T | None:
    """The row with this id (of this organisation, when given), locked until the transaction ends."""
    table: Any = model
    stmt = select(table).where(table.id == row_id)
    if org_id is not None:
        stmt = stmt.where(table.org_id == org_id)
    row: T | None = await session.scalar(stmt.with_for_update().execution_options(populate_existing=True))
    return row


def idle(row: Any, *statuses: str) -> str | None:
    """None when the job has work to do (the row exists and its status is one of `statuses`);
    otherwise what the job answers: `missing`, or the row's status as it found it."""
    if row is None:
        return MISSING
    return None if row.status in statuses else str(row.status)
