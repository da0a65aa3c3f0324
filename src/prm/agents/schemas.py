"""Request and response models of the agents API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ToolInfo(BaseModel):
    name: str
    description: str
    scope: str = Field(description="The scope a credential needs to run the tool")
    writes: bool
    allowed: bool = Field(description="Whether the calling credential may run it")
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]


class ToolExecution(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "run_id": "0b9f3f0e-8e8f-4a55-9d0c-5f2b1c7a9e10", "tool": "create_ticket", "status": "succeeded",
        "output": {"id": "2f1c...", "subject": "Patient asks for a call back", "status": "open",
                   "priority": "normal", "assignee_id": None}}]})

    run_id: uuid.UUID
    tool: str
    status: Literal["succeeded"]
    output: dict[str, Any]


class ToolRunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tool: str
    credential: str
    actor_role: str
    transport: str
    status: Literal["succeeded", "failed", "denied", "invalid"]
    input: dict[str, Any] = Field(description="The input, with free text redacted unless AGENTS_REDACT_INPUTS=false")
    output_summary: dict[str, Any] | None
    error_code: str | None
    error_status: int | None
    error_detail: str | None
    duration_ms: int
    idempotency_key: str | None
    patient_id: uuid.UUID | None
    created_at: datetime


class RunnerRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "goal": "The patient wants to move tomorrow's appointment to the afternoon",
        "conversation_id": None, "max_steps": 5}]})

    goal: str = Field(min_length=1, max_length=4000)
    conversation_id: uuid.UUID | None = None
    max_steps: int = Field(default=5, ge=1, le=20)


class RunnerStep(BaseModel):
    tool: str | None
    run_id: uuid.UUID | None
    status: str | None
    message: str | None


class RunnerResult(BaseModel):
    answer: str
    steps: list[RunnerStep]
    stopped: Literal["answered", "step_limit"]
    model: str
