"""Admin API: audit log, background jobs (list, retry failed), domain events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from prm.admin import service
from prm.admin.schemas import AuditEntryRead, EventRead, JobRead
from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.fields import MAX_INT64
from prm.core.pagination import Page, Paging

router = APIRouter(prefix="/admin", tags=["admin"])

JobState = Literal["todo", "doing", "succeeded", "failed", "cancelled", "aborting", "aborted"]


@router.get("/audit", response_model=Page[AuditEntryRead], summary="The audit log, newest first")
async def audit_log(
    session: Session,
    paging: Paging,
    actor_id: uuid.UUID | None = None,
    patient_id: uuid.UUID | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    action: str | None = None,
    since: Annotated[datetime | None, Query(description="inclusive lower bound")] = None,
    until: Annotated[datetime | None, Query(description="exclusive upper bound")] = None,
    who: Principal = Requires("audit:read"),
) -> Page[AuditEntryRead]:
    rows, total = await service.list_audit(
        session, who.org_id, paging, actor_id=actor_id, patient_id=patient_id, resource_type=resource_type,
        resource_id=resource_id, action=action, since=since, until=until,
    )
    return Page(items=[AuditEntryRead.model_validate(r) for r in rows], total=total,
                limit=paging.limit, offset=paging.offset)


@router.get("/jobs", response_model=Page[JobRead], summary="Background jobs of this organisation")
async def jobs(session: Session, paging: Paging, status: JobState | None = None, task: str | None = None,
               who: Principal = Requires("jobs:admin")) -> Page[JobRead]:
    rows, total = await service.list_jobs(session, who.org_id, paging, status=status, task=task)
    return Page(items=[JobRead(**r) for r in rows], total=total, limit=paging.limit, offset=paging.offset)


@router.post("/jobs/{job_id}/retry", response_model=JobRead, summary="Retry a failed job now")
async def retry_job(job_id: Annotated[int, Path(ge=1, le=MAX_INT64)], session: Session,
                    who: Principal = Requires("jobs:admin")) -> JobRead:
    return JobRead(**await service.retry_job(session, who.org_id, job_id))


@router.get("/events", response_model=Page[EventRead], summary="Domain events, newest first")
async def events(session: Session, paging: Paging, type: str | None = None,
                 who: Principal = Requires("admin")) -> Page[EventRead]:
    rows, total = await service.list_events(session, who.org_id, paging, type=type)
    return Page(items=[EventRead.model_validate(r) for r in rows], total=total,
                limit=paging.limit, offset=paging.offset)
