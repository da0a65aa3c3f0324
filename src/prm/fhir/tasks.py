"""Jobs of the FHIR domain: push one patient's chart to one EHR (a sync run); write a Bulk Data export."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import jobs
from prm.fhir import (
    bulk,
    intake_fhir,  # noqa: F401  (intake's resources: chart, read API, export)
    sync,
)


@jobs.job(sync.SYNC_JOB)
async def sync_patient(session: AsyncSession, *, run_id: str, org_id: str | None = None) -> str:
    return await sync.run(session, uuid.UUID(run_id))


@jobs.job(bulk.EXPORT_JOB)
async def export(session: AsyncSession, *, export_id: str, org_id: str | None = None) -> str:
    return await bulk.run(session, uuid.UUID(export_id))
