"""Intake in the FHIR view: submitted intakes in the patient's chart (push sync), in the read API
and in the bulk export.

Only **submitted** sessions linked to a patient are clinical data of that patient: open ones are
drafts, cancelled ones were withdrawn. Their resources (see `clinical.py`): the Questionnaire
version the patient answered, the QuestionnaireResponse, one resource per typed record, and the
summary as a DocumentReference once it exists.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core.auth import Principal
from prm.fhir import bulk, clinical, reads, search_params, sync
from prm.fhir.bundles import ChartEntry
from prm.fhir.search_params import Param, Query, ResourceSpec, SearchError, parse_id, parse_reference, parse_token
from prm.intake.service import IntakeRecord, IntakeSession, IntakeSummary, Questionnaire, QuestionnaireVersion

RECORD_TYPES = ("Condition", "AllergyIntolerance", "MedicationStatement", "Observation", "FamilyMemberHistory")
SESSION_TYPES = ("QuestionnaireResponse", "DocumentReference")
CLINICAL_TYPES = RECORD_TYPES + SESSION_TYPES
INTAKE_TYPES_OF = {fhir: tuple(t for t, f in clinical.RECORD_RESOURCE.items() if f == fhir) for fhir in RECORD_TYPES}


# --- building the resources of submitted sessions ---------------------------------------------------


async def _sessions(session: AsyncSession, org_id: uuid.UUID, *, patient_ids: Sequence[uuid.UUID] | None = None,
                    session_ids: Sequence[uuid.UUID] | None = None) -> list[IntakeSession]:
    stmt = select(IntakeSession).where(IntakeSession.org_id == org_id, IntakeSession.status == "submitted",
                                       IntakeSession.patient_id.is_not(None))
    if patient_ids is not None:
        stmt = stmt.where(IntakeSession.patient_id.in_(patient_ids))
    if session_ids is not None:
        stmt = stmt.where(IntakeSession.id.in_(session_ids))
    return list(await session.scalars(stmt.order_by(IntakeSession.submitted_at, IntakeSession.id)))


async def _questionnaire(session: AsyncSession, row: IntakeSession
                         ) -> tuple[Questionnaire, QuestionnaireVersion] | None:
    if row.questionnaire_id is None or row.questionnaire_version is None:
        return None
    found = (await session.execute(
        select(Questionnaire, QuestionnaireVersion)
        .join(QuestionnaireVersion, QuestionnaireVersion.questionnaire_id == Questionnaire.id)
        .where(Questionnaire.id == row.questionnaire_id, QuestionnaireVersion.version == row.questionnaire_version)
    )).first()
    return (found[0], found[1]) if found else None


def questionnaire_resource(q: Questionnaire, version: QuestionnaireVersion) -> dict[str, Any]:
    return clinical.questionnaire(questionnaire_id=q.id, key=q.key, title=version.title, description=q.description,
                                  version=version.version, items=version.items,
                                  status="retired" if q.retired_at is not None else "active",
                                  updated_at=version.published_at)


async def entries_of(session: AsyncSession, org_id: uuid.UUID, rows: Sequence[IntakeSession],
                     *, types: Sequence[str] | None = None) -> list[ChartEntry]:
    """The resources of these submitted sessions, questionnaires first (deduplicated)."""
    wanted = set(types) if types is not None else {"Questionnaire", *CLINICAL_TYPES}
    entries: dict[tuple[str, str], ChartEntry] = {}
    for row in rows:
        assert row.patient_id is not None
        pid = str(row.patient_id)
        form = await _questionnaire(session, row)
        if form is not None and "Questionnaire" in wanted:
            entries.setdefault(("Questionnaire", str(form[0].id)),
                               ChartEntry("Questionnaire", str(form[0].id), questionnaire_resource(*form)))
        records = list(await session.scalars(select(IntakeRecord).where(
            IntakeRecord.org_id == org_id, IntakeRecord.session_id == row.id, IntakeRecord.deleted_at.is_(None))
            .order_by(IntakeRecord.created_at, IntakeRecord.client_item_id)))
        answers = [r.data for r in records if r.type == "answer"]
        if "QuestionnaireResponse" in wanted and (form is not None or answers):
            entries[("QuestionnaireResponse", str(row.id))] = ChartEntry(
                "QuestionnaireResponse", str(row.id), clinical.questionnaire_response(
                    session_id=row.id, status=row.status, patient_id=row.patient_id,
                    questionnaire_key=form[0].key if form else None, questionnaire_version=row.questionnaire_version,
                    items=form[1].items if form else [], answers=answers, authored_at=row.submitted_at,
                    updated_at=row.updated_at), pid)
        for record in records:
            resource_type = clinical.RECORD_RESOURCE.get(record.type)
            if resource_type is None or resource_type not in wanted:
                continue
            resource = clinical.record(record_id=record.id, record_type=record.type, data=record.data,
                                       patient_id=row.patient_id, recorded_at=row.submitted_at or record.created_at,
                                       updated_at=record.updated_at)
            if resource is not None:
                entries[(resource_type, str(record.id))] = ChartEntry(resource_type, str(record.id), resource, pid)
        if "DocumentReference" in wanted:
            summary = await session.get(IntakeSummary, row.id)
            if summary is not None:
                entries[("DocumentReference", str(row.id))] = ChartEntry(
                    "DocumentReference", str(row.id), clinical.summary_document(
                        session_id=row.id, patient_id=row.patient_id, text=summary.text,
                        generated_at=summary.generated_at, machine_generated=summary.machine_generated,
                        edited=summary.edited, generator=summary.generator, updated_at=summary.updated_at,
                        has_response=form is not None or bool(answers)), pid)
    order = {t: i for i, t in enumerate(("Questionnaire", *RECORD_TYPES, "QuestionnaireResponse", "DocumentReference"))}
    return sorted(entries.values(), key=lambda e: order[e.resource_type])


@sync.chart_source
async def intake_chart(session: AsyncSession, org_id: uuid.UUID, patient: Any) -> list[ChartEntry]:
    return await entries_of(session, org_id, await _sessions(session, org_id, patient_ids=[patient.id]))


# --- bulk export ------------------------------------------------------------------------------------


def _exporter(resource_type: str) -> bulk.Exporter:
    async def export(session: AsyncSession, org_id: uuid.UUID, patient_ids: list[uuid.UUID] | None,
                     since: datetime | None) -> AsyncIterator[dict[str, Any]]:
        if resource_type == "Questionnaire":
            rows = await session.execute(
                select(Questionnaire, QuestionnaireVersion)
                .join(QuestionnaireVersion, (QuestionnaireVersion.questionnaire_id == Questionnaire.id)
                      & (QuestionnaireVersion.version == Questionnaire.latest_version))
                .where(Questionnaire.org_id == org_id).order_by(Questionnaire.id))
            for q, version in rows.all():
                if since is None or version.published_at >= since:
                    yield questionnaire_resource(q, version)
            return
        rows_ = await _sessions(session, org_id, patient_ids=patient_ids)
        for entry in await entries_of(session, org_id, rows_, types=[resource_type]):
            updated = (entry.resource.get("meta") or {}).get("lastUpdated")
            if since is None or updated is None or datetime.fromisoformat(updated.replace("Z", "+00:00")) >= since:
                yield entry.resource
    return export


bulk.exporter("Questionnaire", patient_compartment=False)(_exporter("Questionnaire"))
for _type in CLINICAL_TYPES:
    bulk.exporter(_type, patient_compartment=True)(_exporter(_type))


# --- read API -----------------------------------------------------------------------------------------

_PATIENT = Param("patient", "reference", "Required (or `_id`): Patient/<id>")
_SUBJECT = Param("subject", "reference", "Same as `patient`")
_CATEGORY = Param("category", "token", "vital-signs | social-history | survey (Observation); problem-list-item "
                                       "(Condition); food | medication | environment | biologic (AllergyIntolerance)")
for _spec in (
    ResourceSpec("Questionnaire", ("read", "search-type"), (
        Param("_id", "token", "The questionnaire id"), Param("url", "uri", "The canonical URL"),
        Param("name", "string", "Part of the key or title"), Param("status", "token", "active | retired")),
        documentation="Intake questionnaires (the latest version; `version` says which)."),
    *[ResourceSpec(t, ("read", "search-type"), (Param("_id", "token", "The resource id"), _PATIENT, _SUBJECT)
                   + ((_CATEGORY,) if t in ("Observation", "Condition", "AllergyIntolerance") else ()),
                   documentation="From submitted intakes (patient-reported); a search names the patient.")
      for t in CLINICAL_TYPES],
):
    search_params.RESOURCES[_spec.type] = _spec


async def _search_questionnaires(session: AsyncSession, who: Principal, query: Query) -> tuple[list[Any], int]:
    stmt = select(Questionnaire, QuestionnaireVersion).join(
        QuestionnaireVersion, (QuestionnaireVersion.questionnaire_id == Questionnaire.id)
        & (QuestionnaireVersion.version == Questionnaire.latest_version)).where(Questionnaire.org_id == who.org_id)
    for _, values in query.values("_id"):
        stmt = stmt.where(Questionnaire.id.in_([i for i in (parse_id("_id", v) for v in values) if i]))
    for _, values in query.values("url"):
        keys = [v.rsplit("/", 1)[-1].split("|")[0] for v in values if v.startswith(clinical.QUESTIONNAIRE_URL_BASE)]
        stmt = stmt.where(Questionnaire.key.in_(keys))
    for _, values in query.values("name"):
        patterns = ["%" + v.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for v in values]
        stmt = stmt.where(or_(*[Questionnaire.key.ilike(p, escape="\\") | Questionnaire.title.ilike(p, escape="\\")
                                for p in patterns]))
    for _, values in query.values("status"):
        codes_ = {parse_token("status", v).code for v in values}
        if not codes_ <= {"active", "retired"}:
            raise SearchError("status", "active or retired", code="code-invalid")
        if codes_ == {"active"}:
            stmt = stmt.where(Questionnaire.retired_at.is_(None))
        elif codes_ == {"retired"}:
            stmt = stmt.where(Questionnaire.retired_at.is_not(None))
    rows = list((await session.execute(stmt.order_by(Questionnaire.key, Questionnaire.id))).all())
    return [questionnaire_resource(q, v) for q, v in rows[query.offset:query.offset + query.count]], len(rows)


def _clinical_search(resource_type: str) -> reads.Searcher:
    async def search(session: AsyncSession, who: Principal, query: Query) -> tuple[list[Any], int]:
        patient_ids: list[uuid.UUID] | None = None
        for name in ("patient", "subject"):
            for _, values in query.values(name):
                ids = [parse_reference(name, v, allowed=("Patient",))[1] for v in values]
                patient_ids = ids if patient_ids is None else [i for i in patient_ids if i in ids]
        wanted_ids = None
        for _, values in query.values("_id"):
            wanted_ids = {str(i) for i in (parse_id("_id", v) for v in values) if i}
        if patient_ids is None and wanted_ids is None:
            raise SearchError("patient", f"{resource_type} searches name the patient (or `_id`)", code="required")
        if patient_ids is None and wanted_ids is not None:
            patient_ids = await _patients_of(session, who.org_id, resource_type, wanted_ids)
        rows = await _sessions(session, who.org_id, patient_ids=patient_ids)
        found = [e.resource for e in await entries_of(session, who.org_id, rows, types=[resource_type])
                 if wanted_ids is None or e.local_id in wanted_ids]
        for modifier, values in query.values("category"):
            wanted = {parse_token("category", v).code for v in values}
            matched = [r for r in found if wanted & _categories(r)]
            found = [r for r in found if r not in matched] if modifier == "not" else matched
        return found[query.offset:query.offset + query.count], len(found)
    return search


def _categories(resource: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for category in resource.get("category") or []:
        if isinstance(category, str):
            out.add(category)
        else:
            out.update(c.get("code") for c in category.get("coding") or [] if c.get("code"))
    return out


async def _patients_of(session: AsyncSession, org_id: uuid.UUID, resource_type: str, ids: set[str]
                       ) -> list[uuid.UUID]:
    """The patients whose submitted sessions hold these records (or are these sessions)."""
    uuids = [uuid.UUID(i) for i in ids]
    if resource_type in SESSION_TYPES:
        stmt = select(IntakeSession.patient_id).where(IntakeSession.org_id == org_id, IntakeSession.id.in_(uuids))
    else:
        stmt = select(IntakeSession.patient_id).join(IntakeRecord, IntakeRecord.session_id == IntakeSession.id).where(
            IntakeSession.org_id == org_id, IntakeRecord.id.in_(uuids))
    return [p for p in await session.scalars(stmt) if p is not None]


reads.SEARCHES["Questionnaire"] = _search_questionnaires
for _type in CLINICAL_TYPES:
    reads.SEARCHES[_type] = _clinical_search(_type)
reads.PATIENT_DATA = (*reads.PATIENT_DATA, *CLINICAL_TYPES)
