"""Journeys' background jobs: one run of one step."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import jobs
from prm.journeys import service


@jobs.job(service.RUN_STEP_JOB)
async def run_step(session: AsyncSession, *, org_id: str, run_id: str) -> str:
    """Execute a scheduled step run (a no-op when it already ran or its instance is no longer active)."""
    return await service.run_step(session, uuid.UUID(org_id), uuid.UUID(run_id))
