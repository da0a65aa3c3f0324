"""Journeys API: definitions (draft, stages, publish, versions, retire) and instances (enrol, advance,
execute a stage's actions, exit, timeline). Thin: parse, authorize, call `journeys.service`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.pagination import Page, Paging
from prm.journeys import service
from prm.journeys.models import Journey, JourneyInstance
from prm.journeys.schemas import (
    InstanceCreate,
    InstanceExit,
    InstanceRead,
    InstanceStatus,
    JourneyCreate,
    JourneyRead,
    JourneyStatus,
    JourneyUpdate,
    StageAdvanceRequest,
    StageCreate,
    Timeline,
    TimelineEntry,
    VersionRead,
)
from prm.journeys.steps import EventType

router = APIRouter(prefix="/journeys", tags=["journeys"])
instances_router = APIRouter(prefix="/journey-instances", tags=["journeys"])
routers = [router, instances_router]

_CONFLICT: dict[int | str, dict[str, Any]] = {409: {"description": "Conflict (see `code`)"}}

NEW_PATIENT_EXAMPLE: dict[str, Any] = {
    "key": "new-patient",
    "name": "New patient",
    "description": "Welcome, invite to book, confirm.",
    "entry_policy": "once_per_patient",
    "definition": {
        "triggers": [{"event": "patient.created"}],
        "exit_rules": [{"event": "patient.updated", "conditions": [
            {"field": "patient.status", "op": "eq", "value": "inactive"}], "reason": "inactive"}],
        "stages": [
            {"key": "welcome", "name": "Welcome", "entry": "send-welcome", "transitions": ["booking"]},
            {"key": "booking", "name": "Booking", "entry": "wait-for-booking", "transitions": ["confirmed"],
             "advance_on": [{"event": "appointment.booked", "to": "confirmed"}]},
            {"key": "confirmed", "name": "Confirmed", "transitions": []},
        ],
        "steps": [
            {"id": "send-welcome", "kind": "send_notification", "template_key": "journey_welcome",
             "next": "to-booking"},
            {"id": "to-booking", "kind": "advance_stage", "to": "booking"},
            {"id": "wait-for-booking", "kind": "wait", "days": 3, "next": "nudge"},
            {"id": "nudge", "kind": "create_ticket", "subject": "New patient has not booked yet",
             "category": "follow-up"},
        ],
    },
}


def _journey(journey: Journey) -> JourneyRead:
    return JourneyRead(
        id=journey.id,
        key=journey.key,
        name=journey.name,
        description=journey.description,
        status=service.status_of(journey),  # type: ignore[arg-type]
        entry_policy=journey.entry_policy,  # type: ignore[arg-type]
        entry_key_field=journey.entry_key_field,
        active_version=journey.active_version,
        latest_version=journey.latest_version,
        definition=journey.draft or {},
        retired_at=journey.retired_at,
        created_at=journey.created_at,
        updated_at=journey.updated_at,
    )


async def _instance(session: AsyncSession, instance: JourneyInstance) -> InstanceRead:
    read = InstanceRead.model_validate(instance)
    read.allowed_transitions = await service.allowed_transitions(session, instance)
    return read


# --- definitions ---------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=JourneyRead,
    summary="Create a journey (its draft)",
    description="The draft is checked for shape here and for consistency when published.",
    responses=_CONFLICT,
)
async def create_journey(
    response: Response,
    session: Session,
    body: Annotated[JourneyCreate, Body(openapi_examples={"new_patient": {"summary": "New-patient pathway",
                                                                         "value": NEW_PATIENT_EXAMPLE}})],
    who: Principal = Requires("journeys:write"),
) -> JourneyRead:
    journey = await service.create(session, who, body)
    response.headers["Location"] = f"/journeys/{journey.id}"
    return _journey(journey)


@router.get("", response_model=Page[JourneyRead], summary="List journeys")
async def list_journeys(
    session: Session,
    paging: Paging,
    status: JourneyStatus | None = None,
    q: Annotated[str | None, Query(max_length=200, description="Part of the name or key")] = None,
    trigger: Annotated[EventType | None, Query(description="Active journeys this event enrols into")] = None,
    who: Principal = Requires("journeys:read"),
) -> Page[JourneyRead]:
    rows, total = await service.list_journeys(
        session, who, service.JourneyFilters(status=status, q=q, trigger=trigger), paging
    )
    return Page[JourneyRead](items=[_journey(j) for j in rows], total=total, limit=paging.limit,
                             offset=paging.offset)


@router.get("/{journey_id}", response_model=JourneyRead, summary="Read a journey and its draft")
async def get_journey(
    journey_id: uuid.UUID, session: Session, who: Principal = Requires("journeys:read")
) -> JourneyRead:
    return _journey(await service.get(session, who, journey_id))


@router.patch("/{journey_id}", response_model=JourneyRead, summary="Edit the draft or the journey's properties")
async def update_journey(
    journey_id: uuid.UUID,
    session: Session,
    body: Annotated[JourneyUpdate, Body(openapi_examples={"rename": {"summary": "Rename",
                                                                     "value": {"name": "New patients"}}})],
    who: Principal = Requires("journeys:write"),
) -> JourneyRead:
    return _journey(await service.update(session, who, journey_id, body))


@router.post("/{journey_id}/stages", status_code=201, response_model=JourneyRead,
             summary="Add a stage (and its steps) to the draft", responses=_CONFLICT)
async def add_stage(
    journey_id: uuid.UUID,
    session: Session,
    body: Annotated[StageCreate, Body(openapi_examples={"follow_up": {"summary": "A follow-up stage", "value": {
        "stage": {"key": "follow-up", "name": "Follow-up", "entry": "ask-feedback"},
        "steps": [{"id": "ask-feedback", "kind": "send_notification", "template_key": "journey_feedback"}],
    }}})],
    who: Principal = Requires("journeys:write"),
) -> JourneyRead:
    return _journey(await service.add_stage(session, who, journey_id, body))


@router.post(
    "/{journey_id}/publish",
    status_code=201,
    response_model=VersionRead,
    summary="Validate the draft and publish it as the next version",
    description="422 `invalid_definition` lists every problem with its field (unreachable steps, dangling "
    "references, missing templates). The new version becomes the one new patients enter; "
    "patients already in the journey stay on theirs.",
)
async def publish(journey_id: uuid.UUID, session: Session, who: Principal = Requires("journeys:write")) -> VersionRead:
    return VersionRead.model_validate(await service.publish(session, who, journey_id))


@router.post("/{journey_id}/retire", response_model=JourneyRead,
             summary="Stop new enrolments (running instances carry on)")
async def retire(journey_id: uuid.UUID, session: Session, who: Principal = Requires("journeys:write")) -> JourneyRead:
    return _journey(await service.retire(session, who, journey_id))


@router.get("/{journey_id}/versions", response_model=list[VersionRead], summary="Published versions")
async def list_versions(
    journey_id: uuid.UUID, session: Session, who: Principal = Requires("journeys:read")
) -> list[VersionRead]:
    return [VersionRead.model_validate(v) for v in await service.versions(session, who, journey_id)]


@router.get("/{journey_id}/versions/{number}", response_model=VersionRead, summary="One published version")
async def get_version(
    journey_id: uuid.UUID,
    number: Annotated[int, Path(ge=1, le=2**31 - 1)],
    session: Session,
    who: Principal = Requires("journeys:read"),
) -> VersionRead:
    return VersionRead.model_validate(await service.version(session, who, journey_id, number))


@router.post(
    "/{journey_id}/instances",
    status_code=201,
    response_model=InstanceRead,
    summary="Enrol a patient by hand (create an instance from the active version)",
    responses=_CONFLICT,
)
async def enrol(
    journey_id: uuid.UUID,
    response: Response,
    session: Session,
    body: Annotated[InstanceCreate, Body(openapi_examples={"enrol": {"summary": "Enrol a patient", "value": {
        "patient_id": "7d5c0e3e-2b9a-4c55-9d7e-0a6f4f1f2a10"}}})],
    who: Principal = Requires("journeys:write"),
) -> InstanceRead:
    instance = await service.enrol_by_hand(session, who, journey_id, body)
    response.headers["Location"] = f"/journey-instances/{instance.id}"
    return await _instance(session, instance)


# --- instances -----------------------------------------------------------------------------------


@instances_router.get("", response_model=Page[InstanceRead], summary="List journey instances")
async def list_instances(
    session: Session,
    paging: Paging,
    journey_id: uuid.UUID | None = None,
    patient_id: uuid.UUID | None = None,
    status: InstanceStatus | None = None,
    stage: Annotated[str | None, Query(max_length=64)] = None,
    who: Principal = Requires("journeys:read"),
) -> Page[InstanceRead]:
    filters = service.InstanceFilters(journey_id=journey_id, patient_id=patient_id, status=status, stage=stage)
    rows, total = await service.list_instances(session, who, filters, paging)
    return Page[InstanceRead](items=[await _instance(session, r) for r in rows], total=total,
                              limit=paging.limit, offset=paging.offset)


@instances_router.get("/{instance_id}", response_model=InstanceRead, summary="Read a journey instance")
async def get_instance(
    instance_id: uuid.UUID, session: Session, who: Principal = Requires("journeys:read")
) -> InstanceRead:
    return await _instance(session, await service.get_instance(session, who, instance_id))


@instances_router.post(
    "/{instance_id}/advance",
    response_model=InstanceRead,
    summary="Advance the instance to another stage by hand",
    description="409 `invalid_stage_transition` lists `allowed_transitions` from the current stage.",
    responses=_CONFLICT,
)
async def advance(
    instance_id: uuid.UUID,
    session: Session,
    body: Annotated[StageAdvanceRequest, Body(openapi_examples={"book": {"summary": "To booking",
                                                                         "value": {"to_stage": "booking"}}})],
    who: Principal = Requires("journeys:write"),
) -> InstanceRead:
    return await _instance(session, await service.advance(session, who, instance_id, body.to_stage))


@instances_router.post(
    "/{instance_id}/execute",
    status_code=202,
    response_model=TimelineEntry,
    summary="Run the current stage's actions again (from its entry step)",
    responses=_CONFLICT,
)
async def execute(
    instance_id: uuid.UUID, session: Session, who: Principal = Requires("journeys:write")
) -> TimelineEntry:
    run = await service.execute_stage(session, who, instance_id)
    return TimelineEntry(at=run.created_at, type="step", stage=run.stage, step_id=run.step_id, kind=run.kind,
                         occurrence=run.occurrence, status=run.status, due_at=run.due_at,
                         finished_at=run.finished_at, outcome=run.outcome or {})


@instances_router.post(
    "/{instance_id}/exit",
    response_model=InstanceRead,
    summary="Take the patient out of the journey (pending waits are cancelled)",
    responses=_CONFLICT,
)
async def exit_instance(
    instance_id: uuid.UUID,
    session: Session,
    body: Annotated[InstanceExit, Body(openapi_examples={"manual": {"summary": "By hand",
                                                                    "value": {"reason": "patient_request"}}})],
    who: Principal = Requires("journeys:write"),
) -> InstanceRead:
    return await _instance(session, await service.exit_instance(session, who, instance_id, body.reason))


@instances_router.get("/{instance_id}/timeline", response_model=Timeline,
                      summary="Every stage change and step run (with the message or ticket it made)")
async def timeline(
    instance_id: uuid.UUID, session: Session, who: Principal = Requires("journeys:read")
) -> Timeline:
    instance, entries = await service.timeline(session, who, instance_id)
    return Timeline(instance=await _instance(session, instance),
                    entries=[TimelineEntry(**e) for e in entries])
