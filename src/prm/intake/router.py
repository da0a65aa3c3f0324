"""Intake API: sessions (ETag / If-Match), records upserted by the client's item id, linking,
submitting, summaries, questionnaires and statistics. Thin: parse, authorize, call `intake.service`."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Response

from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.errors import ValidationFailed
from prm.core.pagination import Page, Paging
from prm.intake import rules, service
from prm.intake.models import IntakeRecord, IntakeSession
from prm.intake.schemas import (
    ClientItemId,
    LinkRequest,
    LinkStatus,
    QuestionnairePublish,
    QuestionnaireRead,
    RecordBatch,
    RecordItem,
    RecordRead,
    RecordUpsert,
    SessionCreate,
    SessionDetail,
    SessionRead,
    SessionStatus,
    SessionUpdate,
    Source,
    Statistics,
    SubmitResult,
    SummaryEdit,
    SummaryRead,
)

router = APIRouter(prefix="/intake", tags=["intake"])

IfMatch = Annotated[
    str | None,
    Header(description='The session\'s ETag from your last read (e.g. `"3"`); a stale one answers 412 and '
           "nothing is written"),
]
ItemPath = Annotated[ClientItemId, Path(description="The client's own id of the record (`client_item_id`, the "
                                                 "upsert key)")]


def expected_version(if_match: str | None) -> int | None:
    """The version an `If-Match` header names (`"3"`, `W/"3"`); None for absent or `*`."""
    if if_match is None or if_match.strip() == "*":
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise ValidationFailed.field("If-Match", 'must be the ETag of the session, e.g. "3"', code="invalid_if_match")
    return int(value)


def _session(row: IntakeSession, response: Response, model: type[SessionRead] = SessionRead, **extra: Any
             ) -> Any:
    response.headers["ETag"] = rules.etag(row.version)
    return model.model_validate({**{k: getattr(row, k) for k in SessionRead.model_fields if k != "records"},
                                 **extra})


# --- sessions ----------------------------------------------------------------------------------


@router.post(
    "/sessions", status_code=201, response_model=SessionRead, summary="Start an intake session",
    description="Starts an intake from a web form, WhatsApp, a voice call or staff (scope `intake:write`). "
    "With `questionnaire_key` the session answers that questionnaire's current version (kept for the "
    "session's life). With `patient_id` it is linked at once (the patient's intake consent must be "
    "recorded). With `external_ref`, a repeated create returns the first session (200).",
    responses={200: {"description": "The session already created with this external_ref", "model": SessionRead}},
)
async def create_session(body: SessionCreate, response: Response, session: Session,
                         who: Principal = Requires("intake:write")) -> SessionRead:
    row, created = await service.create(session, who, body)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/intake/sessions/{row.id}"
    return _session(row, response)  # type: ignore[no-any-return]


@router.get(
    "/sessions", response_model=Page[SessionRead], summary="List intake sessions",
    description="Newest first, filtered by status, source, link status, patient or assigned practitioner "
    "(scope `intake:read`; audited).",
)
async def list_sessions(
    session: Session, paging: Paging,
    status: Annotated[list[SessionStatus] | None, Query(description="One or more statuses")] = None,
    source: Annotated[list[Source] | None, Query(description="One or more sources")] = None,
    link_status: LinkStatus | None = None,
    patient_id: uuid.UUID | None = None,
    assigned_practitioner_id: uuid.UUID | None = None,
    who: Principal = Requires("intake:read"),
) -> Page[SessionRead]:
    filters = service.SessionFilters(status=list(status) if status else None, source=list(source) if source else None,
                                     link_status=link_status, patient_id=patient_id,
                                     assigned_practitioner_id=assigned_practitioner_id)
    rows, total = await service.list_sessions(session, who, filters, paging)
    return Page[SessionRead](items=[_session(r, Response()) for r in rows], total=total, limit=paging.limit,
                             offset=paging.offset)


@router.get(
    "/sessions/{session_id}", response_model=SessionDetail, summary="Read an intake session with its records",
    description="The session, its live records and its ETag (scope `intake:read`; audited).",
)
async def get_session(session_id: uuid.UUID, response: Response, session: Session,
                      who: Principal = Requires("intake:read")) -> SessionDetail:
    row, records = await service.list_records(session, who, session_id)
    return _session(row, response, SessionDetail,  # type: ignore[no-any-return]
                    records=[RecordRead.model_validate(r) for r in records])


@router.patch(
    "/sessions/{session_id}", response_model=SessionRead, summary="Change an open session",
    description="Assigned practitioner, contact, language (scope `intake:write`; If-Match).",
)
async def update_session(session_id: uuid.UUID, body: SessionUpdate, response: Response, session: Session,
                         if_match: IfMatch = None, who: Principal = Requires("intake:write")) -> SessionRead:
    row = await service.update(session, who, session_id, body, expected_version(if_match))
    return _session(row, response)  # type: ignore[no-any-return]


@router.post(
    "/sessions/{session_id}/cancel", response_model=SessionRead, summary="Cancel an open session",
    description="The session is frozen as cancelled (scope `intake:write`; If-Match).",
)
async def cancel_session(session_id: uuid.UUID, response: Response, session: Session, if_match: IfMatch = None,
                         who: Principal = Requires("intake:write")) -> SessionRead:
    row = await service.cancel(session, who, session_id, expected_version(if_match))
    return _session(row, response)  # type: ignore[no-any-return]


# --- records -----------------------------------------------------------------------------------


@router.put(
    "/sessions/{session_id}/records/{item}", response_model=RecordRead,
    summary="Create or update one record by the client's item id",
    description="Idempotent upsert keyed by (session, client item id), enforced by a unique constraint: "
    "the same item sent again (or concurrently) is one record; `revision` grows only when the data "
    "changes. 201 when created, 200 when updated. `data` holds the fields of `type` (see docs/intake.md); "
    "an `answer` is checked against the session's questionnaire version. Scope `intake:write`; If-Match "
    "optional.",
    responses={201: {"description": "Created", "model": RecordRead}},
)
async def put_record(session_id: uuid.UUID, item: ItemPath, body: RecordUpsert, response: Response,
                     session: Session, if_match: IfMatch = None,
                     who: Principal = Requires("intake:write")) -> RecordRead:
    record_in = RecordItem(client_item_id=item, type=body.type, data=body.data)
    row, [(record, created)] = await service.upsert(session, who, session_id, [record_in], expected_version(if_match),
                                                    batch=False)
    response.status_code = 201 if created else 200
    response.headers["ETag"] = rules.etag(row.version)
    return RecordRead.model_validate(record)


@router.post(
    "/sessions/{session_id}/records", response_model=list[RecordRead],
    summary="Upsert several records at once (all or nothing)",
    description="Each item is upserted by its `client_item_id` as with PUT; one invalid item refuses the "
    "whole batch with a 422 naming `records.<n>.<field>`. Scope `intake:write`; If-Match optional.",
)
async def upsert_records(session_id: uuid.UUID, body: RecordBatch, response: Response, session: Session,
                         if_match: IfMatch = None, who: Principal = Requires("intake:write")) -> list[RecordRead]:
    row, out = await service.upsert(session, who, session_id, body.records, expected_version(if_match))
    response.headers["ETag"] = rules.etag(row.version)
    return [RecordRead.model_validate(r) for r, _ in out]


@router.get(
    "/sessions/{session_id}/records", response_model=list[RecordRead], summary="List a session's records",
    description="Live records (with `include_deleted`, the soft-deleted ones too). Scope `intake:read`; "
    "audited.",
)
async def list_records(session_id: uuid.UUID, session: Session, include_deleted: bool = False,
                       who: Principal = Requires("intake:read")) -> list[IntakeRecord]:
    _, records = await service.list_records(session, who, session_id, include_deleted=include_deleted)
    return records


@router.delete(
    "/sessions/{session_id}/records/{item}", status_code=204, response_class=Response,
    summary="Soft-delete a record",
    description="The record leaves the session's data (kept for the audit; upserting the item again brings "
    "it back). Scope `intake:write`; If-Match optional.",
)
async def delete_record(session_id: uuid.UUID, item: ItemPath, session: Session,
                        if_match: IfMatch = None, who: Principal = Requires("intake:write")) -> Response:
    row = await service.delete_record(session, who, session_id, item, expected_version(if_match))
    return Response(status_code=204, headers={"ETag": rules.etag(row.version)})


# --- linking, submitting, summary --------------------------------------------------------------


@router.post(
    "/sessions/{session_id}/link", response_model=SessionRead, summary="Link the session to a patient",
    description="By `patient_id`, or without it by matching the session's contact (phone, email, name and "
    "birth date) with the duplicate finder: one likely patient is linked; several leave the session in "
    "`needs_review` with `match_candidates` for staff (never a guess); none leaves it `unlinked`. `consent` "
    "records the patient's intake consent; without it a recorded consent is required. Scope "
    "`intake:write`; If-Match optional.",
)
async def link_session(session_id: uuid.UUID, body: LinkRequest, response: Response, session: Session,
                       if_match: IfMatch = None, who: Principal = Requires("intake:write")) -> SessionRead:
    outcome = await service.link(session, who, session_id, patient_id=body.patient_id, consent=body.consent,
                                 expected_version=expected_version(if_match))
    return _session(outcome.session, response)  # type: ignore[no-any-return]


@router.post(
    "/sessions/{session_id}/submit", response_model=SubmitResult, summary="Submit the intake",
    description="Checks completeness (every required item of the questionnaire version answered; without a "
    "questionnaire, a chief complaint), freezes the session, publishes `intake.submitted`, opens a ticket "
    "for the assigned practitioner and queues the summary. Scope `intake:write`; If-Match optional.",
)
async def submit_session(session_id: uuid.UUID, response: Response, session: Session, if_match: IfMatch = None,
                         who: Principal = Requires("intake:write")) -> SubmitResult:
    done = await service.submit(session, who, session_id, expected_version(if_match))
    return _session(done.session, response, SubmitResult, ticket_id=done.ticket_id)  # type: ignore[no-any-return]


@router.get(
    "/sessions/{session_id}/summary", response_model=SummaryRead, summary="Read the intake's clinical summary",
    description="Machine-generated (offline summariser or the configured model, see `generator`) unless "
    "`edited`. Scope `intake:read`; audited.",
)
async def get_summary(session_id: uuid.UUID, session: Session, who: Principal = Requires("intake:read")) -> Any:
    return await service.get_summary(session, who, session_id)


@router.put(
    "/sessions/{session_id}/summary", response_model=SummaryRead, summary="Correct the summary",
    description="Staff replace the text (and optionally the structured content); the summary is then "
    "`edited` and never overwritten by a regeneration. Scope `intake:write`.",
)
async def edit_summary(session_id: uuid.UUID, body: SummaryEdit, session: Session,
                       who: Principal = Requires("intake:write")) -> Any:
    return await service.edit_summary(session, who, session_id, body)


@router.post(
    "/sessions/{session_id}/summary/regenerate", status_code=202, response_model=SessionRead,
    summary="Queue a new machine summary",
    description="A new machine summary of the submitted intake is queued (202); refused once staff edited "
    "the summary.",
)
async def regenerate_summary(session_id: uuid.UUID, response: Response, session: Session,
                             who: Principal = Requires("intake:write")) -> SessionRead:
    row = await service.regenerate(session, who, session_id)
    return _session(row, response)  # type: ignore[no-any-return]


# --- questionnaires ----------------------------------------------------------------------------


def _questionnaire(view: service.QuestionnaireView) -> QuestionnaireRead:
    q = view.questionnaire
    return QuestionnaireRead(id=q.id, key=q.key, title=view.current.title, description=q.description,
                             version=view.current.version, versions=view.versions, retired=q.retired_at is not None,
                             resource=view.resource())


@router.post(
    "/questionnaires", status_code=201, response_model=QuestionnaireRead, summary="Publish a questionnaire",
    description="FHIR Questionnaire items (`linkId`, `type`, `required`, `repeats`, `answerOption`, nested "
    "`item` in groups). A new key is version 1; a known key gets its next version, which new sessions "
    "use (started sessions keep theirs). Scope `intake:write`.",
)
async def publish_questionnaire(body: QuestionnairePublish, session: Session,
                                who: Principal = Requires("intake:write")) -> QuestionnaireRead:
    return _questionnaire(await service.publish(session, who, body))


@router.get(
    "/questionnaires", response_model=list[QuestionnaireRead], summary="List questionnaires",
    description="Current versions, by key (scope `intake:read`).",
)
async def list_questionnaires(session: Session, include_retired: bool = False,
                              who: Principal = Requires("intake:read")) -> list[QuestionnaireRead]:
    return [_questionnaire(v) for v in await service.list_questionnaires(session, who,
                                                                         include_retired=include_retired)]


@router.get(
    "/questionnaires/{questionnaire_id}", response_model=QuestionnaireRead, summary="Read a questionnaire",
    description="The current version, or `version` (scope `intake:read`).",
)
async def get_questionnaire(questionnaire_id: uuid.UUID, session: Session,
                            version: Annotated[int | None, Query(ge=1, le=100000)] = None,
                            who: Principal = Requires("intake:read")) -> QuestionnaireRead:
    return _questionnaire(await service.get_questionnaire(session, who, questionnaire_id, version))


@router.post(
    "/questionnaires/{questionnaire_id}/retire", response_model=QuestionnaireRead, summary="Retire a questionnaire",
    description="New sessions can no longer use it (scope `intake:write`).",
)
async def retire_questionnaire(questionnaire_id: uuid.UUID, session: Session,
                               who: Principal = Requires("intake:write")) -> QuestionnaireRead:
    return _questionnaire(await service.retire(session, who, questionnaire_id))


# --- statistics --------------------------------------------------------------------------------


@router.get(
    "/statistics", response_model=Statistics, summary="Intake statistics for a period",
    description="Sessions started in the period (UTC days, default the last 30): by status and source, "
    "completion rate (submitted / not cancelled), median minutes to submit, and the same per "
    "questionnaire and per day, week or month (`interval`). Scope `intake:read`.",
)
async def get_statistics(session: Session, from_date: date | None = None, to_date: date | None = None,
                         questionnaire_id: uuid.UUID | None = None, source: Source | None = None,
                         interval: Annotated[Literal["day", "week", "month"], Query(
                             description="The periods of `by_period`")] = "week",
                         who: Principal = Requires("intake:read")) -> dict[str, Any]:
    return await service.statistics(session, who, from_date=from_date, to_date=to_date,
                                    questionnaire_id=questionnaire_id, source=source, interval=interval)
