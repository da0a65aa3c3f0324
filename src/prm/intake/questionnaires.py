"""Questionnaires: publish (a new key is version 1, a known key its next version), read, list, retire.

A version is frozen once published; a session keeps the version it started with, so answers are
always validated against the questions the patient saw. The version number is taken under a lock
on the questionnaire row and is unique per questionnaire in the database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import audit, clock
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound, ValidationFailed
from prm.intake import rules
from prm.intake.models import Questionnaire, QuestionnaireVersion
from prm.intake.schemas import QuestionnairePublish


@dataclass(frozen=True)
class QuestionnaireView:
    questionnaire: Questionnaire
    current: QuestionnaireVersion
    versions: list[int]

    def resource(self) -> dict[str, Any]:
        q = self.questionnaire
        return rules.fhir_questionnaire(key=q.key, title=self.current.title, description=q.description,
                                        version=self.current.version, items=self.current.items)


def _not_found(ref: object) -> NotFound:
    return NotFound(f"Questionnaire {ref} not found", code="questionnaire_not_found")


async def _view(session: AsyncSession, q: Questionnaire, version: int | None = None) -> QuestionnaireView:
    rows = list(await session.scalars(select(QuestionnaireVersion).where(
        QuestionnaireVersion.questionnaire_id == q.id).order_by(QuestionnaireVersion.version)))
    wanted = version or q.latest_version
    current = next((v for v in rows if v.version == wanted), None)
    if current is None:
        raise NotFound(f"Questionnaire {q.key} has no version {wanted}", code="questionnaire_version_not_found")
    return QuestionnaireView(q, current, [v.version for v in rows])


async def publish(session: AsyncSession, who: Principal, data: QuestionnairePublish) -> QuestionnaireView:
    problems = rules.definition_problems(data.item)
    if problems:
        raise ValidationFailed("; ".join(f"{p.field}: {p.message}" for p in problems[:5]),
                               code="invalid_questionnaire",
                               errors=[{"field": p.field, "message": p.message, "type": "invalid_questionnaire"}
                                       for p in problems])
    now = clock.now()
    await session.execute(insert(Questionnaire).values(
        id=uuid.uuid4(), org_id=who.org_id, key=data.key, title=data.title, description=data.description,
        latest_version=0, created_at=now, updated_at=now,
    ).on_conflict_do_nothing(constraint="uq_intake_questionnaires_org_key"))
    q = await session.scalar(select(Questionnaire).where(Questionnaire.org_id == who.org_id,
                                                         Questionnaire.key == data.key)
                             .with_for_update().execution_options(populate_existing=True))
    assert q is not None
    q.latest_version += 1
    q.title, q.description, q.retired_at, q.updated_at = data.title, data.description, None, now
    session.add(QuestionnaireVersion(org_id=who.org_id, questionnaire_id=q.id, version=q.latest_version,
                                     title=data.title, items=rules.stored_items(data.item), published_at=now,
                                     published_by=who.credential))
    await session.flush()
    await audit.record(session, who, "publish", "questionnaire", q.id, details={"version": q.latest_version})
    return await _view(session, q)


async def _get(session: AsyncSession, org_id: uuid.UUID, questionnaire_id: uuid.UUID) -> Questionnaire:
    q = await session.scalar(select(Questionnaire).where(Questionnaire.id == questionnaire_id,
                                                         Questionnaire.org_id == org_id))
    if q is None:
        raise _not_found(questionnaire_id)
    return q


async def get(session: AsyncSession, who: Principal, questionnaire_id: uuid.UUID, version: int | None = None
              ) -> QuestionnaireView:
    return await _view(session, await _get(session, who.org_id, questionnaire_id), version)


async def list_questionnaires(session: AsyncSession, who: Principal, *, include_retired: bool = False
                              ) -> list[QuestionnaireView]:
    stmt = select(Questionnaire).where(Questionnaire.org_id == who.org_id, Questionnaire.latest_version > 0)
    if not include_retired:
        stmt = stmt.where(Questionnaire.retired_at.is_(None))
    return [await _view(session, q) for q in await session.scalars(stmt.order_by(Questionnaire.key))]


async def retire(session: AsyncSession, who: Principal, questionnaire_id: uuid.UUID) -> QuestionnaireView:
    """New sessions can no longer use it; sessions already started keep their version."""
    q = await _get(session, who.org_id, questionnaire_id)
    if q.retired_at is not None:
        raise Conflict("The questionnaire is already retired", code="questionnaire_retired")
    q.retired_at = clock.now()
    await audit.record(session, who, "retire", "questionnaire", q.id)
    return await _view(session, q)
