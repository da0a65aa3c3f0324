"""Intake records: upsert by the client's item id, soft delete, list.

The upsert is one statement, `INSERT ... ON CONFLICT (session_id, client_item_id) DO UPDATE`, on
the unique constraint `uq_intake_records_session_item`: the same item sent twice is one record
(updated, its `revision` +1 only when the data changed), and concurrent upserts of the same item
cannot make two. An item keeps its type: sending another type for it is 409
`record_type_mismatch`. Upserting a deleted item brings it back (the client's latest word wins).
Answers (`type: answer`) are validated against the questionnaire version the session started with.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, literal_column, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import audit, clock
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound, ValidationFailed
from prm.intake import rules
from prm.intake.models import IntakeRecord, IntakeSession, QuestionnaireVersion
from prm.intake.schemas import RecordItem
from prm.intake.sessions import bump, for_write, get, live_records


async def questionnaire_items(session: AsyncSession, row: IntakeSession) -> list[dict[str, Any]] | None:
    """The items of the questionnaire version the session answers (None without a questionnaire)."""
    if row.questionnaire_id is None or row.questionnaire_version is None:
        return None
    items = await session.scalar(select(QuestionnaireVersion.items).where(
        QuestionnaireVersion.questionnaire_id == row.questionnaire_id,
        QuestionnaireVersion.version == row.questionnaire_version))
    return list(items or [])


def _validated(items: list[dict[str, Any]] | None, record: RecordItem, prefix: str
               ) -> tuple[dict[str, Any], list[rules.Problem]]:
    data, problems = rules.record_data(record.type, record.data, prefix=f"{prefix}data")
    if problems or record.type != "answer":
        return data, problems
    if items is None:
        return data, [rules.Problem(f"{prefix}type", "this session answers no questionnaire")]
    return data, rules.answer_problems(items, data["link_id"], data["value"], prefix=f"{prefix}data")


async def _upsert_one(session: AsyncSession, row: IntakeSession, record: RecordItem, data: dict[str, Any],
                      field: str) -> tuple[IntakeRecord, bool, bool]:
    """(record, created, changed). The row is updated only when its data changed (or it was deleted)."""
    now = clock.now()
    table = IntakeRecord.__table__
    stmt = insert(IntakeRecord).values(
        id=uuid.uuid4(), org_id=row.org_id, session_id=row.id, client_item_id=record.client_item_id,
        type=record.type, data=data, revision=1, created_at=now, updated_at=now,
    )
    excluded = stmt.excluded
    upsert_stmt: Any = stmt.on_conflict_do_update(
        constraint="uq_intake_records_session_item",
        set_={"data": excluded.data, "deleted_at": None, "revision": table.c.revision + 1, "updated_at": now},
        where=and_(table.c.type == excluded.type,
                   or_(table.c.data != excluded.data, table.c.deleted_at.is_not(None))),
    ).returning(IntakeRecord.id, literal_column("xmax = 0").label("created"))
    result = (await session.execute(upsert_stmt)).one_or_none()
    stored = await session.scalar(
        select(IntakeRecord).where(IntakeRecord.session_id == row.id,
                                   IntakeRecord.client_item_id == record.client_item_id)
        .execution_options(populate_existing=True))
    assert stored is not None
    if result is None and stored.type != record.type:
        raise Conflict(f"{field}type: item {record.client_item_id!r} is a {stored.type}; delete it or use a new id",
                       code="record_type_mismatch",
                       errors=[{"field": f"{field}type", "message": "differs from the stored item's type",
                                "type": "record_type_mismatch"}])
    if result is None:
        return stored, False, False  # the same data again: nothing changed
    return stored, bool(result.created), True


async def upsert(session: AsyncSession, who: Principal, session_id: uuid.UUID, records: Sequence[RecordItem],
                 expected_version: int | None, *, batch: bool = True
                 ) -> tuple[IntakeSession, list[tuple[IntakeRecord, bool]]]:
    """Create or update each record by its client item id, all or nothing; returns (session,
    [(record, created)]). Every record is validated first: one bad field is a 422 naming it
    (`records.<n>.data.<field>`), and nothing is written."""
    row = await for_write(session, who, session_id, expected_version)
    items = await questionnaire_items(session, row)
    seen: dict[str, int] = {}
    problems: list[rules.Problem] = []
    prepared: list[tuple[RecordItem, dict[str, Any], str]] = []
    for i, record in enumerate(records):
        prefix = f"records.{i}." if batch else ""
        if record.client_item_id in seen:
            problems.append(rules.Problem(f"{prefix}client_item_id", f"repeats records.{seen[record.client_item_id]}"))
            continue
        seen[record.client_item_id] = i
        data, found = _validated(items, record, prefix)
        problems += found
        prepared.append((record, data, prefix))
    if problems:
        raise ValidationFailed("; ".join(f"{p.field}: {p.message}" for p in problems[:5]), code="invalid_intake_record",
                               errors=[{"field": p.field, "message": p.message, "type": "invalid_intake_record"}
                                       for p in problems])
    out: list[tuple[IntakeRecord, bool]] = []
    any_change = False
    for record, data, prefix in prepared:
        stored, created, changed = await _upsert_one(session, row, record, data, prefix)
        out.append((stored, created))
        any_change = any_change or changed
    if any_change:
        bump(row)
    await audit.record(session, who, "upsert", "intake_record", row.id, patient_id=row.patient_id,
                       details={"items": [r.client_item_id for r, _ in out],
                                "types": sorted({r.type for r, _ in out}),
                                "created": sum(1 for _, c in out if c)})
    return row, out


async def delete(session: AsyncSession, who: Principal, session_id: uuid.UUID, client_item_id: str,
                 expected_version: int | None) -> IntakeSession:
    """Soft delete: the record leaves the session's data (and its summary); kept for the audit."""
    row = await for_write(session, who, session_id, expected_version)
    result = await session.execute(
        update(IntakeRecord).where(IntakeRecord.org_id == who.org_id, IntakeRecord.session_id == row.id,
                                   IntakeRecord.client_item_id == client_item_id,
                                   IntakeRecord.deleted_at.is_(None))
        .values(deleted_at=clock.now(), revision=IntakeRecord.revision + 1, updated_at=clock.now())
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"No record {client_item_id!r} in this session", code="intake_record_not_found")
    bump(row)
    await audit.record(session, who, "delete", "intake_record", row.id, patient_id=row.patient_id,
                       details={"item": client_item_id})
    return row


async def list_records(session: AsyncSession, who: Principal, session_id: uuid.UUID, *,
                       include_deleted: bool = False) -> tuple[IntakeSession, list[IntakeRecord]]:
    row = await get(session, who, session_id)
    return row, await live_records(session, who.org_id, row.id, include_deleted=include_deleted)
