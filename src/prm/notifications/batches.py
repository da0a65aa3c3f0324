"""Batch sends: selecting the recipients, the per-recipient job, progress and the report."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import service as communications
from prm.core import audit, clock, jobs, rowlock
from prm.core.auth import Principal
from prm.core.errors import DomainError, NotFound, ValidationFailed
from prm.core.pagination import PageParams
from prm.notifications import defaults
from prm.notifications.dispatch import send_notification
from prm.notifications.models import (
    NotificationBatch,
    NotificationBatchItem,
    NotificationTemplate,
)
from prm.notifications.schemas import (
    BatchCreate,
)
from prm.patients import registry as patient_registry
from prm.patients import service as patients

log = structlog.get_logger(__name__)
BATCH_ITEM_JOB = "notifications.send_batch_item"


# --- batches ---------------------------------------------------------------------------------------


async def _select_patients(session: AsyncSession, org_id: uuid.UUID, data: BatchCreate) -> list[uuid.UUID]:
    if data.patient_ids is not None:
        wanted = list(dict.fromkeys(data.patient_ids))
        found = set(await patients.active_ids(session, org_id, ids=wanted))
        missing = [str(p) for p in wanted if p not in found]
        if missing:
            raise ValidationFailed.field(
                "patient_ids", f"unknown patient(s): {', '.join(missing[:5])}", code="unknown_patients"
            )
        return wanted
    f = data.filter
    assert f is not None
    return await patients.active_ids(session, org_id, preferred_language=f.preferred_language,
                                     preferred_channel=f.preferred_channel, tags=f.tags or ())


async def create_batch(
    session: AsyncSession, who: Principal, data: BatchCreate
) -> NotificationBatch:
    """Queue one job per recipient (each sent and retried on its own); returns the batch."""
    org_id = who.org_id
    has_template = bool(
        await session.scalar(
            select(func.count())
            .select_from(NotificationTemplate)
            .where(NotificationTemplate.org_id == org_id, NotificationTemplate.key == data.template_key)
        )
    )
    if not has_template and data.template_key not in defaults.template_keys():
        raise ValidationFailed.field(
            "template_key", f"no template {data.template_key!r}", code="template_not_found"
        )
    recipients = await _select_patients(session, org_id, data)
    batch = NotificationBatch(
        id=uuid.uuid4(),
        org_id=org_id,
        template_key=data.template_key,
        channel=data.channel,
        purpose=data.purpose,
        variables=data.variables,
        total=len(recipients),
        created_by=who.credential,
        selection={"patient_ids": len(data.patient_ids)}
        if data.patient_ids is not None
        else {"filter": data.filter.model_dump(exclude_none=True) if data.filter else {}},
    )
    session.add(batch)
    await session.flush()
    items = [
        NotificationBatchItem(
            id=uuid.uuid4(), org_id=org_id, batch_id=batch.id, patient_id=pid, status="pending"
        )
        for pid in recipients
    ]
    session.add_all(items)
    await session.flush()
    for item in items:
        await jobs.defer(session, BATCH_ITEM_JOB, org_id=str(org_id), item_id=str(item.id))
    if not items:
        batch.completed_at = clock.now()
    await audit.record(
        session, who, "create", "notification_batch", batch.id, details={"recipients": len(items)}
    )
    log.info("notifications.batch_queued", batch_id=str(batch.id), recipients=len(items))
    return batch


@jobs.job(BATCH_ITEM_JOB)
async def send_batch_item(session: AsyncSession, *, org_id: str, item_id: str) -> str:
    """Send one recipient's notification of a batch; a refusal is recorded, not retried."""
    oid = uuid.UUID(org_id)
    item = await rowlock.lock(session, NotificationBatchItem, uuid.UUID(item_id), org_id=oid)
    if (answer := rowlock.idle(item, "pending")) is not None:
        return answer
    assert item is not None
    batch = await session.get(NotificationBatch, item.batch_id)
    assert batch is not None
    try:
        # no savepoint: send_notification refuses before it writes anything. The key is not looked up
        # first: the item runs once (locked, still pending); a repeat would be caught at the insert.
        comm = await send_notification(
            session,
            Principal.system(oid),
            patient_id=item.patient_id,
            template_key=batch.template_key,
            variables=batch.variables,
            channel=batch.channel,
            purpose=batch.purpose,
            idempotency_key=f"batch:{batch.id}:{item.patient_id}",
            look_up_key=False,
        )
    except DomainError as exc:
        item.status = "refused"
        item.reason = f"{exc.code}: {exc.detail}"[:200]
    else:
        item.status = "queued"
        item.communication_id = comm.id
    # The batch's row lock orders the items' last step: an item looks at the others only once every
    # item that looked before it has committed, so two items finishing together cannot each see the
    # other still pending and leave the batch incomplete for ever. (A separate statement: one that
    # waits for the lock must read the items after it has it.) The lock also reloads the batch, so
    # `completed_at` is read as committed. One pending item is enough to know, found by the
    # (batch_id, status) index: no count over a large batch while the lock is held.
    batch = await rowlock.lock(session, NotificationBatch, item.batch_id)
    assert batch is not None
    remaining = await session.scalar(
        select(
            exists().where(
                NotificationBatchItem.batch_id == batch.id,
                NotificationBatchItem.status == "pending",
                NotificationBatchItem.id != item.id,
            )
        )
    )
    if not remaining and batch.completed_at is None:
        batch.completed_at = clock.now()
    return item.status


async def get_batch(session: AsyncSession, org_id: uuid.UUID, batch_id: uuid.UUID) -> NotificationBatch:
    batch = await session.scalar(
        select(NotificationBatch).where(NotificationBatch.org_id == org_id, NotificationBatch.id == batch_id)
    )
    if batch is None:
        raise NotFound("No such batch", code="batch_not_found")
    return batch


async def batch_report(session: AsyncSession, org_id: uuid.UUID, batch_id: uuid.UUID) -> dict[str, Any]:
    """Progress and result: recipients per state (the message's status once one exists)."""
    batch = await get_batch(session, org_id, batch_id)
    of_batch = NotificationBatchItem.batch_id == batch.id
    # an item is counted by its message's status once it has one, by its own before (pending, refused)
    rows = await session.execute(
        select(NotificationBatchItem.status, func.count())
        .where(of_batch, NotificationBatchItem.communication_id.is_(None))
        .group_by(NotificationBatchItem.status)
    )
    counts = {str(s): int(n) for s, n in rows.all()}
    sent = select(NotificationBatchItem.communication_id).where(
        of_batch, NotificationBatchItem.communication_id.is_not(None))
    for status, n in (await communications.status_counts(session, org_id, sent)).items():
        counts[status] = counts.get(status, 0) + n
    in_flight = sum(counts.get(s, 0) for s in ("pending", "queued", "sending"))
    return {
        "id": batch.id,
        "template_key": batch.template_key,
        "channel": batch.channel,
        "purpose": batch.purpose,
        "total": batch.total,
        "counts": counts,
        "done": in_flight == 0,
        "created_at": batch.created_at,
        "completed_at": batch.completed_at,
    }


async def batch_items(
    session: AsyncSession, org_id: uuid.UUID, batch_id: uuid.UUID, paging: PageParams
) -> tuple[list[dict[str, Any]], int]:
    batch = await get_batch(session, org_id, batch_id)
    stmt = select(NotificationBatchItem).where(NotificationBatchItem.batch_id == batch.id).order_by(
        NotificationBatchItem.id)
    total = await session.scalar(
        select(func.count())
        .select_from(NotificationBatchItem)
        .where(NotificationBatchItem.batch_id == batch.id)
    )
    items = list(await session.scalars(stmt.limit(paging.limit).offset(paging.offset)))
    sent = await communications.statuses(session, org_id, [i.communication_id for i in items if i.communication_id])
    return [
        {
            "patient_id": i.patient_id,
            "status": i.status,
            "communication_id": i.communication_id,
            "communication_status": sent.get(i.communication_id) if i.communication_id else None,
            "reason": i.reason,
        }
        for i in items
    ], int(total or 0)


@patient_registry.on_merge("notifications")
async def _move_batch_items(
    session: AsyncSession, org_id: uuid.UUID, duplicate_id: uuid.UUID, survivor_id: uuid.UUID
) -> int:
    from sqlalchemy import update

    result = await session.execute(
        update(NotificationBatchItem)
        .where(
            NotificationBatchItem.org_id == org_id,
            NotificationBatchItem.patient_id == duplicate_id,
            ~NotificationBatchItem.batch_id.in_(
                select(NotificationBatchItem.batch_id).where(NotificationBatchItem.patient_id == survivor_id)
            ),
        )
        .values(patient_id=survivor_id)
    )
    return result.rowcount or 0  # type: ignore[attr-defined]
