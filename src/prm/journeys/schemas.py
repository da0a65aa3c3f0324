"""Request and response models of the journeys API (the definition itself is `steps.Definition`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from prm.journeys.steps import Definition, EntryPolicy, FieldPath, Ref, Stage, Step

JourneyStatus = Literal["draft", "active", "retired"]
InstanceStatus = Literal["active", "completed", "exited"]


class JourneyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: Ref = Field(description="Stable identifier within the organisation, e.g. `new-patient`")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    entry_policy: EntryPolicy = "once_per_patient"
    entry_key_field: FieldPath | None = Field(
        default=None,
        description="For once_per_key: the field of the trigger's facts that names the key, "
        "e.g. `event.appointment_id`",
    )
    definition: Definition = Field(default_factory=Definition, description="The draft: edit freely, then publish")


class JourneyUpdate(BaseModel):
    """Partial update of the draft and the journey's properties; published versions never change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    entry_policy: EntryPolicy | None = None
    entry_key_field: FieldPath | None = None
    definition: Definition | None = None


class StageCreate(BaseModel):
    """A stage appended to the draft, with the steps of its actions."""

    model_config = ConfigDict(extra="forbid")

    stage: Stage
    steps: list[Step] = Field(default_factory=list, max_length=50)


class JourneyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    key: str
    name: str
    description: str
    status: JourneyStatus
    entry_policy: EntryPolicy
    entry_key_field: str | None
    active_version: int | None = Field(description="The version new patients enter (none: not published or retired)")
    latest_version: int
    definition: dict[str, Any] = Field(description="The draft")
    retired_at: datetime | None
    created_at: datetime
    updated_at: datetime


class VersionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    journey_id: uuid.UUID
    version: int
    definition: dict[str, Any]
    trigger_events: list[str]
    published_at: datetime
    published_by: str


class InstanceCreate(BaseModel):
    """Enrol a patient by hand in the journey's active version."""

    model_config = ConfigDict(extra="forbid")

    patient_id: uuid.UUID
    key: str | None = Field(default=None, min_length=1, max_length=190, description="For once_per_key journeys")
    context: dict[str, str] = Field(default_factory=dict, max_length=30, description="Values steps may test")


class InstanceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    journey_id: uuid.UUID
    version: int
    patient_id: uuid.UUID
    status: InstanceStatus
    current_stage: str | None
    entry_policy: EntryPolicy
    entry_key: str
    source_event_type: str | None
    source_event_id: uuid.UUID | None
    waiting_for: dict[str, Any] | None
    enrolled_by: str
    created_at: datetime
    completed_at: datetime | None
    exited_at: datetime | None
    exit_reason: str | None
    allowed_transitions: list[str] = Field(default_factory=list)


class StageAdvanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_stage: Ref


class InstanceExit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="manual", min_length=1, max_length=64)


class TimelineEntry(BaseModel):
    at: datetime
    type: Literal["stage_changed", "step"]
    stage: str | None = None
    from_stage: str | None = None
    cause: str | None = None
    step_id: str | None = None
    kind: str | None = None
    occurrence: int | None = None
    status: str | None = None
    due_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: dict[str, Any] = Field(default_factory=dict)


class Timeline(BaseModel):
    instance: InstanceRead
    entries: list[TimelineEntry]
