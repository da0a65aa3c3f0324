"""The intake domain's published interface: what routers, jobs, subscribers and other modules call.

The rules live in capability modules: `sessions` (create, read, list, update, cancel; the version
that is the ETag), `records` (upsert by client item id, soft delete), `questionnaires` (versioned
definitions), `linking` (a patient, with consent), `submission` (completeness, freeze, the
practitioner told), `summaries` (the summary job, staff edits), `statistics`, `voice` (a finished
voice-agent call becomes an intake and, when a slot was confirmed, an appointment).
Every function acting for a caller takes `who: Principal` right after the session.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.intake.linking import CONSENT_PURPOSE, LinkOutcome, candidates_for, link, link_to
from prm.intake.models import (  # read-only queries of the FHIR view (fhir)
    IntakeRecord,
    IntakeSession,
    IntakeSummary,
    Questionnaire,
    QuestionnaireVersion,
)
from prm.intake.questionnaires import QuestionnaireView, list_questionnaires, publish, retire
from prm.intake.questionnaires import get as get_questionnaire
from prm.intake.records import delete as delete_record
from prm.intake.records import list_records, upsert
from prm.intake.sessions import SessionFilters, cancel, create, get, list_sessions, live_records, update
from prm.intake.statistics import statistics
from prm.intake.submission import SUMMARY_JOB, Submitted, missing, submit
from prm.intake.summaries import edit_summary, get_summary, regenerate, summarise
from prm.media import service as media
from prm.patients.registry import TimelineEntry, newest_of_patient, on_merge, reassigning, timeline_source

__all__ = [
    "CONSENT_PURPOSE",
    "SUMMARY_JOB",
    "IntakeRecord",
    "IntakeSession",
    "IntakeSummary",
    "LinkOutcome",
    "Questionnaire",
    "QuestionnaireVersion",
    "QuestionnaireView",
    "SessionFilters",
    "Submitted",
    "cancel",
    "candidates_for",
    "create",
    "delete_record",
    "edit_summary",
    "get",
    "get_questionnaire",
    "get_summary",
    "link",
    "link_to",
    "list_questionnaires",
    "list_records",
    "list_sessions",
    "live_records",
    "missing",
    "publish",
    "regenerate",
    "retire",
    "statistics",
    "submit",
    "summarise",
    "update",
    "upsert",
]


# --- the patient record's extension points ------------------------------------------------------

on_merge("intake")(reassigning(IntakeSession))


@timeline_source("intake")
async def _timeline(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, before: object,
                    limit: int) -> list[TimelineEntry]:
    rows = await newest_of_patient(session, IntakeSession, org_id, patient_id, before, limit)  # type: ignore[arg-type]
    return [TimelineEntry(at=r.created_at, kind=f"intake.{r.status}", source="intake", resource_id=str(r.id),
                          summary=f"Intake ({r.source.replace('_', ' ')}) {r.status}",
                          data={"source": r.source, "status": r.status}) for r in rows]


@media.link_target("intake_session")
async def _media_link(session: AsyncSession, org_id: uuid.UUID, session_id: uuid.UUID) -> media.LinkTarget | None:
    row = (await session.execute(select(IntakeSession.id, IntakeSession.patient_id).where(
        IntakeSession.id == session_id, IntakeSession.org_id == org_id))).one_or_none()
    return None if row is None else media.LinkTarget(patient_id=row[1])
