"""HTTP API of the patient record. Thin: parse, authorise, call the service, shape the response."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from prm.context import get_context
from prm.core import audit
from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.pagination import Paging
from prm.patients import service
from prm.patients.schemas import (
    ConsentRead,
    ConsentRecordRead,
    ConsentState,
    ConsentUpdate,
    DuplicateCandidate,
    DuplicateReason,
    MergeRequest,
    MergeResult,
    PatientCreate,
    PatientCreated,
    PatientPage,
    PatientRead,
    PatientSummary,
    PatientUpdate,
    TimelineEntryRead,
    TimelinePage,
)

router = APIRouter(prefix="/patients", tags=["patients"])

MERGED_NOTE = (" A merged patient answers `308 Permanent Redirect` with `Location` pointing at the same "
               "path for the survivor (and `merged_into_id` in the body).")


@contextlib.contextmanager
def _redirect_merged(request: Request) -> Iterator[None]:
    """Turn PatientMoved into a redirect to the same path (and query) for the survivor."""
    try:
        yield
    except service.PatientMoved as moved:
        path = request.url.path.replace(str(moved.patient_id), str(moved.survivor_id), 1)
        moved.headers["Location"] = path + (f"?{request.url.query}" if request.url.query else "")
        raise


def _threshold(request: Request, override: float | None) -> float:
    return override if override is not None else float(get_context(request).settings.patient_duplicate_threshold)


def _candidates(found: list[service.Candidate]) -> list[DuplicateCandidate]:
    return [
        DuplicateCandidate(
            patient=PatientSummary.model_validate(c.patient),
            score=c.match.score,
            reasons=[DuplicateReason(code=r.code, weight=r.weight, detail=r.detail) for r in c.match.reasons],
        )
        for c in found
    ]


def _consent_read(overview: service.ConsentOverview) -> ConsentRead:
    def state(rows: list[tuple[str | None, str, Any]]) -> list[ConsentState]:
        return [ConsentState(channel=c, purpose=p, allowed=d.allowed, reason=d.reason, basis=d.basis,  # type: ignore[arg-type]
                             source=d.source, recorded_at=d.recorded_at) for c, p, d in rows]

    return ConsentRead(patient_id=overview.patient_id, contact=state(overview.contact),
                       data_sharing=state(overview.data_sharing),
                       history=[ConsentRecordRead.model_validate(r) for r in overview.history])


@router.post("", status_code=201, response_model=PatientCreated, summary="Create a patient",
             description="Phones are stored in E.164, emails validated, a future birth date refused (422 "
                         "naming the field). The response lists existing patients that look like "
                         "duplicates (`possible_duplicates`, score ≥ PATIENT_DUPLICATE_THRESHOLD); the "
                         "patient is created regardless.")
async def create_patient(body: PatientCreate, request: Request, session: Session,
                         who: Principal = Requires("patients:write")) -> PatientCreated:
    patient, found = await service.create(session, who, body, threshold=_threshold(request, None))
    read = PatientRead.model_validate(patient)
    return PatientCreated(**read.model_dump(), possible_duplicates=_candidates(found))


@router.get("", response_model=PatientPage, summary="List and search patients",
            description="All filters combine. `q` is a fuzzy, accent- and case-insensitive name search "
                        "(best matches first); `phone` accepts any format; `email` ignores case; "
                        "`identifier` is `value` or `system|value`. Merged and deleted patients are left "
                        "out (`include_merged=true` shows merged ones). A name search of one word counts "
                        "its matches up to 1,000: past that, `total` is 1,000 and `total_exact` false "
                        "(more than 1,000 match).")
async def list_patients(
    session: Session,
    paging: Paging,
    who: Principal = Requires("patients:read"),
    q: Annotated[str | None, Query(max_length=200, description="Name, fuzzy")] = None,
    phone: Annotated[str | None, Query(max_length=40)] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    birth_date: date | None = None,
    identifier: Annotated[str | None, Query(max_length=520, description="value or system|value")] = None,
    status: Literal["active", "inactive", "merged", "deceased"] | None = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    is_provisional: bool | None = None,
    include_merged: bool = False,
) -> PatientPage:
    filters = service.Filters(q=q, phone=phone, email=email, birth_date=birth_date, identifier=identifier,
                              status=status, tag=tag, is_provisional=is_provisional,
                              include_merged=include_merged or status == "merged")
    found = await service.search_page(session, who, filters, paging)
    return PatientPage(items=[PatientRead.model_validate(r) for r in found.rows], total=found.total,
                       total_exact=found.total_exact, limit=paging.limit, offset=paging.offset)


@router.get("/{patient_id}", response_model=PatientRead, summary="Read a patient",
            description="404 for an unknown, deleted or other-organisation id." + MERGED_NOTE
                        + " `follow_merged=false` returns the merged record itself.")
async def read_patient(patient_id: uuid.UUID, request: Request, session: Session,
                       who: Principal = Requires("patients:read"), follow_merged: bool = True) -> PatientRead:
    with _redirect_merged(request):
        patient = await service.read(session, who, patient_id, follow_merged=follow_merged)
    return PatientRead.model_validate(patient)


@router.patch("/{patient_id}", response_model=PatientRead, summary="Update a patient (partial)",
              description="Only the fields sent change; `phones`, `emails` and `identifiers` replace the "
                          "whole list when sent. A merged patient cannot be changed (409).")
async def update_patient(patient_id: uuid.UUID, body: PatientUpdate, session: Session,
                         who: Principal = Requires("patients:write")) -> PatientRead:
    return PatientRead.model_validate(await service.update(session, who, patient_id, body))


@router.delete("/{patient_id}", status_code=204, summary="Delete a patient (soft)",
               description="The record is kept for the other modules' history but no longer found.")
async def delete_patient(patient_id: uuid.UUID, session: Session,
                         who: Principal = Requires("patients:write")) -> Response:
    await service.delete_patient(session, who, patient_id)
    return Response(status_code=204)


@router.get("/{patient_id}/duplicates", response_model=list[DuplicateCandidate],
            summary="Likely duplicates of a patient",
            description="Candidates with a score (0..1) and the reasons: name similarity, exact or "
                        "transposed birth date, shared phone, shared email (docs/patients.md)." + MERGED_NOTE)
async def list_duplicates(
    patient_id: uuid.UUID, request: Request, session: Session, who: Principal = Requires("patients:read"),
    threshold: Annotated[float | None, Query(ge=0, le=1, description="Default: the setting")] = None,
) -> list[DuplicateCandidate]:
    with _redirect_merged(request):
        found = await service.duplicates_of(session, who, patient_id,
                                            threshold=_threshold(request, threshold))
    return _candidates(found)


@router.post("/{patient_id}/merge", response_model=MergeResult, summary="Merge a duplicate into this patient",
             description="In one transaction: contact points, identifiers, consent history and every other "
                         "module's records move from `duplicate_id` to this patient; the duplicate becomes "
                         "`merged` and points here. 409 when merging a patient into itself, into a merged "
                         "patient, or one that is already merged.")
async def merge_patients(patient_id: uuid.UUID, body: MergeRequest, session: Session,
                         who: Principal = Requires("patients:write")) -> MergeResult:
    outcome = await service.merge(session, who, patient_id, body.duplicate_id)
    return MergeResult(survivor=PatientRead.model_validate(outcome.survivor),
                       duplicate_id=outcome.duplicate_id, moved=outcome.moved)


@router.get("/{patient_id}/consent", response_model=ConsentRead, summary="Read consent",
            description="The current decision for every channel × purpose and for data sharing, with "
                        "whether it comes from a record or the default, and the full history." + MERGED_NOTE)
async def read_consent(patient_id: uuid.UUID, request: Request, session: Session,
                       who: Principal = Requires("patients:read")) -> ConsentRead:
    with _redirect_merged(request):
        overview = await service.consent_overview(session, who, patient_id)
    return _consent_read(overview)


@router.post("/{patient_id}/consent", response_model=ConsentRead, summary="Record consent decisions",
             description="Each change appends to the history (nothing is overwritten). A change without "
                         "`purpose` applies to every purpose of its channel; data-sharing changes have no "
                         "channel and the purpose `ai_processing` or `ehr_export`.")
async def change_consent(patient_id: uuid.UUID, body: ConsentUpdate, session: Session,
                         who: Principal = Requires("patients:write")) -> ConsentRead:
    return _consent_read(await service.change_consent(session, who, patient_id, body.changes))


@router.get("/{patient_id}/timeline", response_model=TimelinePage, summary="Patient timeline",
            description="Everything that happened to the patient across modules, newest first. Page with "
                        "`before` = the previous page's `next_before`." + MERGED_NOTE)
async def read_timeline(patient_id: uuid.UUID, request: Request, session: Session,
                        who: Principal = Requires("patients:read"),
                        before: datetime | None = None,
                        limit: Annotated[int, Query(ge=1, le=200)] = 50) -> TimelinePage:
    with _redirect_merged(request):
        entries = await service.timeline(session, who, patient_id, before=before, limit=limit)
    items = [TimelineEntryRead(at=e.at, kind=e.kind, source=e.source, resource_id=e.resource_id,
                               summary=e.summary, data=e.data) for e in entries]
    return TimelinePage(items=items, limit=limit, next_before=items[-1].at if len(items) == limit else None)


@router.get("/{patient_id}/fhir", summary="The patient as a FHIR R4B Patient resource",
            response_class=JSONResponse, responses={200: {"content": {"application/fhir+json": {}}}})
async def read_fhir(patient_id: uuid.UUID, session: Session,
                    who: Principal = Requires("patients:read")) -> JSONResponse:
    patient = await service.get(session, who.org_id, patient_id, with_contacts=True)
    await audit.record(session, who, "read", "patient_fhir", patient.id, patient_id=patient.id)
    resource = service.to_fhir(patient)
    return JSONResponse(resource.model_dump(mode="json", by_alias=True, exclude_none=True),
                        media_type="application/fhir+json")
