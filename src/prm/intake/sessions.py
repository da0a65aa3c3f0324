"""Intake sessions: create, read, list, update, cancel; the version that is also the ETag.

Every write locks the session row (`SELECT ... FOR UPDATE`), checks the caller's expected version
(`If-Match`, a stale one is 412 and nothing is written) and bumps the version. A submitted or
cancelled session is frozen: writes answer 409 `intake_session_frozen`. Every read and write is
audited (intake is clinical data).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import audit, clock, events, references
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from prm.core.events import Event
from prm.core.pagination import PageParams, paginate
from prm.intake.models import IntakeRecord, IntakeSession, Questionnaire
from prm.intake.schemas import Contact, SessionCreate, SessionUpdate


def not_found(session_id: object) -> NotFound:
    return NotFound(f"Intake session {session_id} not found", code="intake_session_not_found")


async def _load(session: AsyncSession, org_id: uuid.UUID, session_id: uuid.UUID, *,
                for_update: bool = False) -> IntakeSession:
    stmt = select(IntakeSession).where(IntakeSession.id == session_id, IntakeSession.org_id == org_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    row = await session.scalar(stmt)
    if row is None:
        raise not_found(session_id)
    return row


async def get(session: AsyncSession, who: Principal, session_id: uuid.UUID) -> IntakeSession:
    """The session (audited read); 404 for an unknown id or another organisation's."""
    row = await _load(session, who.org_id, session_id)
    await audit.record(session, who, "read", "intake_session", row.id, patient_id=row.patient_id)
    return row


async def for_write(session: AsyncSession, who: Principal, session_id: uuid.UUID,
                    expected_version: int | None, *, allow_frozen: bool = False) -> IntakeSession:
    """The session locked for a write: 412 when `expected_version` is stale, 409 when frozen."""
    row = await _load(session, who.org_id, session_id, for_update=True)
    if expected_version is not None and expected_version != row.version:
        raise PreconditionFailed(
            f"The session is at version {row.version}, not {expected_version}: read it again",
            code="intake_session_version_mismatch", current_version=row.version,
        )
    if not allow_frozen and row.status != "open":
        raise Conflict(f"The session is {row.status}; it can no longer change", code="intake_session_frozen")
    return row


def bump(row: IntakeSession) -> None:
    row.version += 1
    row.updated_at = clock.now()


def contact_json(contact: Contact) -> dict[str, Any]:
    return contact.model_dump(mode="json", exclude_none=True)


async def _questionnaire(session: AsyncSession, org_id: uuid.UUID, key: str) -> Questionnaire:
    row = await session.scalar(select(Questionnaire).where(Questionnaire.org_id == org_id, Questionnaire.key == key))
    if row is None or row.retired_at is not None or row.latest_version < 1:
        raise ValidationFailed.field("questionnaire_key", "no published questionnaire with this key",
                                     code="unknown_questionnaire")
    return row


async def create(session: AsyncSession, who: Principal, data: SessionCreate, *,
                 communication_id: uuid.UUID | None = None) -> tuple[IntakeSession, bool]:
    """A new open session; returns (session, created). With `external_ref`, a second create (or twenty
    at once) returns the first session (`created` False) — the unique (organisation, reference)
    decides, not a check in code."""
    org_id = who.org_id
    await references.require(session, org_id, "practitioner", data.assigned_practitioner_id,
                             field="assigned_practitioner_id")
    await references.require(session, org_id, "patient", data.patient_id, field="patient_id")
    questionnaire = await _questionnaire(session, org_id, data.questionnaire_key) if data.questionnaire_key else None
    now = clock.now()
    session_id = uuid.uuid4()
    values: dict[str, Any] = dict(
        id=session_id, org_id=org_id, source=data.source, status="open", link_status="unlinked",
        assigned_practitioner_id=data.assigned_practitioner_id,
        questionnaire_id=questionnaire.id if questionnaire else None,
        questionnaire_version=questionnaire.latest_version if questionnaire else None,
        contact=contact_json(data.contact), language=data.language, external_ref=data.external_ref,
        communication_id=communication_id, match_candidates=[], version=1, summary_status="none",
        created_by=who.credential, created_at=now, updated_at=now,
    )
    stmt = insert(IntakeSession).values(**values)
    if data.external_ref is not None:
        stmt = stmt.on_conflict_do_nothing(constraint="uq_intake_sessions_org_external_ref")
    inserted = await session.scalar(stmt.returning(IntakeSession.id))
    if inserted is None:  # the reference exists: the first session answers
        existing = await session.scalar(select(IntakeSession).where(
            IntakeSession.org_id == org_id, IntakeSession.external_ref == data.external_ref))
        if existing is None:  # pragma: no cover - a concurrent delete of the organisation
            raise Conflict("The session could not be created", code="conflict")
        return existing, False
    row = await session.get(IntakeSession, session_id)
    assert row is not None
    await audit.record(session, who, "create", "intake_session", row.id,
                       details={"source": data.source, "questionnaire": data.questionnaire_key})
    await events.publish(session, Event(type="intake.started", org_id=org_id, payload={
        "session_id": str(row.id), "source": row.source, "org_id": str(org_id)}))
    if data.patient_id is not None:
        from prm.intake import linking  # the link rules (consent) live there

        await linking.link_to(session, who, row, data.patient_id, consent=None, field="patient_id")
    return row, True


@dataclass
class SessionFilters:
    status: list[str] | None = None
    source: list[str] | None = None
    link_status: str | None = None
    patient_id: uuid.UUID | None = None
    assigned_practitioner_id: uuid.UUID | None = None


def _filtered(org_id: uuid.UUID, f: SessionFilters) -> Select[Any]:
    stmt = select(IntakeSession).where(IntakeSession.org_id == org_id)
    if f.status:
        stmt = stmt.where(IntakeSession.status.in_(f.status))
    if f.source:
        stmt = stmt.where(IntakeSession.source.in_(f.source))
    if f.link_status:
        stmt = stmt.where(IntakeSession.link_status == f.link_status)
    if f.patient_id:
        stmt = stmt.where(IntakeSession.patient_id == f.patient_id)
    if f.assigned_practitioner_id:
        stmt = stmt.where(IntakeSession.assigned_practitioner_id == f.assigned_practitioner_id)
    return stmt.order_by(IntakeSession.created_at.desc(), IntakeSession.id.desc())


async def list_sessions(session: AsyncSession, who: Principal, filters: SessionFilters, paging: PageParams
                        ) -> tuple[list[IntakeSession], int]:
    await references.require(session, who.org_id, "patient", filters.patient_id, field="patient_id")
    await references.require(session, who.org_id, "practitioner", filters.assigned_practitioner_id,
                             field="assigned_practitioner_id")
    rows, total = await paginate(session, _filtered(who.org_id, filters), paging)
    await audit.record(session, who, "list", "intake_session", None,
                       details={"count": len(rows), "ids": [str(r.id) for r in rows]})
    return rows, total


async def update(session: AsyncSession, who: Principal, session_id: uuid.UUID, data: SessionUpdate,
                 expected_version: int | None) -> IntakeSession:
    row = await for_write(session, who, session_id, expected_version)
    sent = data.model_fields_set
    if "assigned_practitioner_id" in sent:
        await references.require(session, who.org_id, "practitioner", data.assigned_practitioner_id,
                                 field="assigned_practitioner_id")
        row.assigned_practitioner_id = data.assigned_practitioner_id
    if "contact" in sent:
        row.contact = contact_json(data.contact or Contact())
    if "language" in sent:
        row.language = data.language
    bump(row)
    await audit.record(session, who, "update", "intake_session", row.id, patient_id=row.patient_id,
                       details={"fields": sorted(sent)})
    return row


async def cancel(session: AsyncSession, who: Principal, session_id: uuid.UUID,
                 expected_version: int | None) -> IntakeSession:
    row = await for_write(session, who, session_id, expected_version)
    row.status = "cancelled"
    row.cancelled_at = clock.now()
    bump(row)
    await audit.record(session, who, "cancel", "intake_session", row.id, patient_id=row.patient_id)
    return row


async def live_records(session: AsyncSession, org_id: uuid.UUID, session_id: uuid.UUID,
                       *, include_deleted: bool = False) -> list[IntakeRecord]:
    stmt = select(IntakeRecord).where(IntakeRecord.org_id == org_id, IntakeRecord.session_id == session_id)
    if not include_deleted:
        stmt = stmt.where(IntakeRecord.deleted_at.is_(None))
    return list(await session.scalars(stmt.order_by(IntakeRecord.created_at, IntakeRecord.client_item_id)))


@references.resolver("intake_session")
async def _exists(session: AsyncSession, org_id: uuid.UUID, session_id: uuid.UUID) -> bool:
    found = await session.scalar(select(IntakeSession.id).where(IntakeSession.id == session_id,
                                                                IntakeSession.org_id == org_id))
    return found is not None


@references.resolver("questionnaire")
async def _questionnaire_exists(session: AsyncSession, org_id: uuid.UUID, questionnaire_id: uuid.UUID) -> bool:
    found = await session.scalar(select(Questionnaire.id).where(Questionnaire.id == questionnaire_id,
                                                                Questionnaire.org_id == org_id))
    return found is not None
