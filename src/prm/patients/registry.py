"""Extension points of the patient record that other modules join, so `patients` never imports them.

* Merge: `@on_merge("appointments")` registers `async def fn(session, org_id, duplicate_id,
  survivor_id) -> int` that moves every row of that module linked to the duplicate onto the
  survivor and returns how many it moved. `merge` in `patients.service` calls them all in the
  merge's transaction.
* Timeline: `@timeline_source("appointments")` registers `async def fn(session, org_id,
  patient_id, before, limit) -> list[TimelineEntry]` returning that module's newest entries for
  the patient that happened strictly before `before` (None: no bound), at most `limit` of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

MergeHandler = Callable[[AsyncSession, uuid.UUID, uuid.UUID, uuid.UUID], Awaitable[int]]
TimelineSource = Callable[[AsyncSession, uuid.UUID, uuid.UUID, datetime | None, int], Awaitable[list["TimelineEntry"]]]


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # e.g. "appointment.booked", "message.inbound", "ticket.opened"
    source: str  # the module: "appointments", "communications", ...
    resource_id: str
    summary: str  # short, human readable, no message bodies
    data: dict[str, Any] = field(default_factory=dict)


_merge_handlers: dict[str, MergeHandler] = {}
_timeline_sources: dict[str, TimelineSource] = {}


def on_merge(module: str) -> Callable[[MergeHandler], MergeHandler]:
    def decorate(fn: MergeHandler) -> MergeHandler:
        _merge_handlers[module] = fn
        return fn

    return decorate


def timeline_source(module: str) -> Callable[[TimelineSource], TimelineSource]:
    def decorate(fn: TimelineSource) -> TimelineSource:
        _timeline_sources[module] = fn
        return fn

    return decorate


async def reassign_patient(
    session: AsyncSession, model: Any, org_id: uuid.UUID, duplicate_id: uuid.UUID, survivor_id: uuid.UUID
) -> int:
    """The usual merge step: point every `model` row of the duplicate at the survivor; returns the count."""
    result = await session.execute(
        update(model)
        .where(model.org_id == org_id, model.patient_id == duplicate_id)
        .values(patient_id=survivor_id)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def reassigning(*models: Any) -> MergeHandler:
    """A merge handler that only reassigns the duplicate's rows of `models` to the survivor."""

    async def move(session: AsyncSession, org_id: uuid.UUID, duplicate_id: uuid.UUID, survivor_id: uuid.UUID) -> int:
        moved = 0
        for model in models:
            moved += await reassign_patient(session, model, org_id, duplicate_id, survivor_id)
        return moved

    return move


async def newest_of_patient(
    session: AsyncSession, model: Any, org_id: uuid.UUID, patient_id: uuid.UUID, before: datetime | None, limit: int,
    *where: Any,
) -> list[Any]:
    """The usual timeline read: the patient's `model` rows created before `before` (and meeting every
    condition in `where`), newest first."""
    stmt = select(model).where(model.org_id == org_id, model.patient_id == patient_id, *where)
    if before is not None:
        stmt = stmt.where(model.created_at < before)
    return list(await session.scalars(stmt.order_by(model.created_at.desc()).limit(limit)))


def rows_on_timeline(
    module: str, model: Any, *, kind: str | Callable[[Any], str], summary: Callable[[Any], str],
    data: Callable[[Any], dict[str, Any]], where: tuple[Any, ...] = (),
) -> TimelineSource:
    """Register the usual timeline source of `module`: one entry per `model` row of the patient (that
    meets `where`), at its `created_at`, newest first; `kind`, `summary` and `data` describe a row."""

    async def source(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, before: datetime | None,
                     limit: int) -> list[TimelineEntry]:
        rows = await newest_of_patient(session, model, org_id, patient_id, before, limit, *where)
        return [TimelineEntry(at=r.created_at, kind=kind(r) if callable(kind) else kind, source=module,
                              resource_id=str(r.id), summary=summary(r), data=data(r)) for r in rows]

    return timeline_source(module)(source)


def merge_handlers() -> dict[str, MergeHandler]:
    return dict(_merge_handlers)


def timeline_sources() -> dict[str, TimelineSource]:
    return dict(_timeline_sources)
