"""Operator views for an organisation's admins: the audit log, background jobs, domain events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import clock, references
from prm.core.audit import AuditEntry
from prm.core.errors import Conflict, NotFound
from prm.core.events import EventRecord
from prm.core.pagination import PageParams, paginate

JOB_STATES = ("todo", "doing", "succeeded", "failed", "cancelled", "aborting", "aborted")


async def list_audit(
    session: AsyncSession,
    org_id: uuid.UUID,
    params: PageParams,
    *,
    actor_id: uuid.UUID | None = None,
    patient_id: uuid.UUID | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[AuditEntry], int]:
    await references.require(session, org_id, "actor", actor_id, field="actor_id")
    await references.require(session, org_id, "patient", patient_id, field="patient_id")
    stmt = select(AuditEntry).where(AuditEntry.org_id == org_id)
    for column, value in (
        (AuditEntry.actor_id, actor_id),
        (AuditEntry.patient_id, patient_id),
        (AuditEntry.resource_type, resource_type),
        (AuditEntry.resource_id, resource_id),
        (AuditEntry.action, action),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at < until)
    return await paginate(session, stmt.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()), params)


_JOB_COLUMNS = "id, queue_name, task_name, status::text, attempts, scheduled_at, args"


def _job(row: Any) -> dict[str, Any]:
    return {"id": row[0], "queue": row[1], "task": row[2], "status": row[3], "attempts": row[4],
            "scheduled_at": row[5], "args": row[6] or {}}


async def list_jobs(
    session: AsyncSession, org_id: uuid.UUID | None, params: PageParams, *, status: str | None = None,
    task: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Jobs of one organisation (`args.org_id`); `org_id=None` lists every job (CLI only)."""
    where = "WHERE (CAST(:org AS text) IS NULL OR args->>'org_id' = CAST(:org AS text)) " \
            "AND (CAST(:status AS text) IS NULL OR status::text = CAST(:status AS text)) " \
            "AND (CAST(:task AS text) IS NULL OR task_name = CAST(:task AS text))"
    bind = {"org": str(org_id) if org_id else None, "status": status, "task": task}
    total = await session.scalar(text(f"SELECT count(*) FROM procrastinate_jobs {where}"), bind)  # noqa: S608
    rows = (await session.execute(
        text(f"SELECT {_JOB_COLUMNS} FROM procrastinate_jobs {where} ORDER BY id DESC "  # noqa: S608
             "LIMIT :limit OFFSET :offset"),
        {**bind, "limit": params.limit, "offset": params.offset},
    )).all()
    return [_job(r) for r in rows], int(total or 0)


async def retry_job(session: AsyncSession, org_id: uuid.UUID | None, job_id: int) -> dict[str, Any]:
    """Put a failed job back in the queue, to run now."""
    row = (await session.execute(
        text(f"SELECT {_JOB_COLUMNS} FROM procrastinate_jobs WHERE id = :id "  # noqa: S608
             "AND (CAST(:org AS text) IS NULL OR args->>'org_id' = CAST(:org AS text)) FOR UPDATE"),
        {"id": job_id, "org": str(org_id) if org_id else None},
    )).one_or_none()
    if row is None:
        raise NotFound("Job not found")
    if row[3] != "failed":
        raise Conflict(f"Only failed jobs can be retried; this one is {row[3]!r}", code="job_not_failed")
    await session.execute(text("SELECT procrastinate_retry_job_v2(:id, :at, NULL, NULL, NULL)"),
                          {"id": job_id, "at": clock.now()})
    updated = (await session.execute(
        text(f"SELECT {_JOB_COLUMNS} FROM procrastinate_jobs WHERE id = :id"), {"id": job_id}  # noqa: S608
    )).one()
    return _job(updated)


async def list_events(session: AsyncSession, org_id: uuid.UUID, params: PageParams, *,
                      type: str | None = None) -> tuple[list[EventRecord], int]:
    stmt = select(EventRecord).where(EventRecord.org_id == org_id)
    if type:
        stmt = stmt.where(EventRecord.type == type)
    return await paginate(session, stmt.order_by(EventRecord.occurred_at.desc()), params)
