"""Request and response models of the integrations API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

EventPattern = Annotated[str, StringConstraints(
    strip_whitespace=True, min_length=1, max_length=100, pattern=r"^(\*|[a-z][a-z_]*(\.[a-z][a-z_]*)*(\.\*)?)$")]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=2000,
                                       pattern=r"^https?://[^\s/?#]+[^\s]*$")]
WorkflowKey = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100,
                                               pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
WebhookPath = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500,
                                               pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]*$")]
Fallback = Literal["none", "ticket", "handoff"]


# --- outbound webhooks -------------------------------------------------------------------------


class EndpointCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "url": "https://hooks.example-clinic.org/prm", "description": "Front-desk dashboard",
        "event_types": ["appointment.*", "patient.created"]}]})

    url: Url = Field(description="Public http(s) URL; private, loopback and link-local targets are refused")
    description: str | None = Field(default=None, max_length=500)
    event_types: list[EventPattern] = Field(min_length=1, max_length=50,
                                            description="Event types, `domain.*` prefixes, or `*` for all")


class EndpointUpdate(BaseModel):
    url: Url | None = None
    description: str | None = Field(default=None, max_length=500)
    event_types: list[EventPattern] | None = Field(default=None, min_length=1, max_length=50)
    enabled: bool | None = Field(default=None, description="Enable again after fixing the receiver (resets failures)")


class EndpointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    consecutive_failures: int
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointRead):
    secret: str = Field(description="The signing secret (`whsec_...`): shown only now; store it in the receiver")


class MessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    webhook_id: str = Field(description="The `webhook-id` header the receiver deduplicates on")
    endpoint_id: uuid.UUID
    event_id: uuid.UUID | None
    event_type: str
    payload: dict[str, Any]
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    created_at: datetime
    delivered_at: datetime | None


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    succeeded: bool
    error: str | None
    response_excerpt: str | None = Field(description="The first 2 KB of the receiver's answer")


class MessageDetail(MessageRead):
    attempt_log: list[AttemptRead]


class ReplayRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"since": "2026-11-30T08:00:00Z"}]})

    since: AwareDatetime = Field(description="Queue again every subscribed event that occurred since then")


class ReplayResult(BaseModel):
    queued: int


# --- n8n ---------------------------------------------------------------------------------------


class N8nIntegrationCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "main", "base_url": "https://n8n.example-clinic.org",
        "workflows": {"triage": "webhook/prm-triage", "booking": "webhook/prm-booking"},
        "event_triggers": {"message.received": "triage"},
        "callback_timeout_seconds": 600, "fallback": "ticket"}]})

    name: WorkflowKey = "main"
    base_url: Url
    workflows: dict[WorkflowKey, WebhookPath] = Field(default_factory=dict, max_length=100,
                                                      description="Workflow key → n8n webhook path")
    event_triggers: dict[EventPattern, WorkflowKey] = Field(
        default_factory=dict, max_length=100, description="Domain event type → workflow key it triggers")
    callback_timeout_seconds: int = Field(default=300, ge=10, le=7 * 24 * 3600,
                                          description="A run without a callback by then is timed out")
    request_timeout_seconds: int = Field(default=10, ge=1, le=90)
    fallback: Fallback = Field(default="ticket", description="What happens when a run fails or times out")
    enabled: bool = True


class N8nIntegrationUpdate(BaseModel):
    base_url: Url | None = None
    workflows: dict[WorkflowKey, WebhookPath] | None = Field(default=None, max_length=100)
    event_triggers: dict[EventPattern, WorkflowKey] | None = Field(default=None, max_length=100)
    callback_timeout_seconds: int | None = Field(default=None, ge=10, le=7 * 24 * 3600)
    request_timeout_seconds: int | None = Field(default=None, ge=1, le=90)
    fallback: Fallback | None = None
    enabled: bool | None = None


class N8nIntegrationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    base_url: str
    workflows: dict[str, str]
    event_triggers: dict[str, str]
    callback_timeout_seconds: int
    request_timeout_seconds: int
    fallback: str
    enabled: bool
    created_at: datetime
    updated_at: datetime


class N8nIntegrationWithSecret(N8nIntegrationRead):
    secret: str = Field(description="Shared secret (shown only now): the JWT secret of n8n's Webhook node "
                                    "and the key of the Standard Webhooks signature")


class RunCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "integration": "main", "workflow_key": "triage",
        "data": {"reason": "follow-up"}, "patient_id": "5b0f9c1e-2c8a-4f3e-9a47-0d7c1a2b3c4d"}]})

    integration: WorkflowKey = "main"
    workflow_key: WorkflowKey
    data: dict[str, Any] = Field(default_factory=dict)
    patient_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None


class RunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    integration_id: uuid.UUID
    workflow_key: str
    status: Literal["pending", "succeeded", "failed", "timed_out"]
    patient_id: uuid.UUID | None
    conversation_id: uuid.UUID | None
    source_event_id: uuid.UUID | None
    deadline_at: datetime
    attempts: int
    last_error: str | None
    action: str | None
    result: dict[str, Any] | None
    created_at: datetime
    completed_at: datetime | None


class RunAttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None
    response_excerpt: str | None


class RunDetail(RunRead):
    attempt_log: list[RunAttemptRead]


class OfferedSlot(BaseModel):
    start_at: AwareDatetime
    practitioner_id: uuid.UUID
    service_id: uuid.UUID
    location_id: uuid.UUID | None = None


class BookingResponse(BaseModel):
    action: Literal["booking_response"]
    slots: list[OfferedSlot] = Field(min_length=1, max_length=20)
    message: str | None = Field(default=None, max_length=1000)


class ConfirmSlot(BaseModel):
    action: Literal["confirm_slot"]
    patient_id: uuid.UUID | None = Field(default=None, description="Defaults to the run's patient")
    practitioner_id: uuid.UUID
    service_id: uuid.UUID
    start_at: AwareDatetime
    location_id: uuid.UUID | None = None
    notes: str | None = Field(default=None, max_length=2000)


class Triage(BaseModel):
    action: Literal["triage"]
    ticket_id: uuid.UUID | None = Field(default=None, description="Update this ticket instead of opening one")
    subject: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
    description: str = Field(default="", max_length=20_000)
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    category: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")] = \
        "triage"


Callback = Annotated[BookingResponse | ConfirmSlot | Triage, Field(discriminator="action")]


class CallbackResult(BaseModel):
    run_id: uuid.UUID
    status: str
    action: str
    result: dict[str, Any]
