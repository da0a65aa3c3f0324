"""Request and response models of the agents API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class ToolInfo(BaseModel):
    name: str
    description: str
    scope: str = Field(description="The scope a credential needs to run the tool")
    writes: bool
    allowed: bool = Field(description="Whether the calling credential may run it (`agents:write` and the tool's "
                          "scope)")
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
    agent_run_id: uuid.UUID | None = Field(description="The agent run that made the call, if any")
    step: int | None = Field(description="Its step within that run")


class RunnerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "goal": "The patient wants to move tomorrow's appointment to the afternoon",
        "conversation_id": "5b0c6f0e-1d2a-4e8b-9a51-3c7d2f9e4a10", "max_steps": 5}]})

    goal: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)] = Field(
        description="What the agent should achieve, in plain words")
    conversation_id: uuid.UUID | None = Field(
        default=None, description="A conversation of the organisation whose latest messages are given to the "
        "model as context (needs `conversations:read`)")
    max_steps: int = Field(default=5, ge=1, le=20, description="At most this many tool calls")


class RunnerStep(BaseModel):
    step: int = Field(description="1, 2, ... in the order the model asked for them")
    tool: str | None = Field(description="The tool the model called (null for the answer)")
    run_id: uuid.UUID | None = Field(description="The tool run of the call (`GET /agents/runs/{tool_run_id}`)")
    status: str | None = Field(description="The tool run's status (succeeded, failed, denied, invalid), "
                               "`skipped` (over the step limit, not run) or `answered`")
    message: str | None = Field(description="The error code of a failed call, or the answer")


class RunnerResult(BaseModel):
    answer: str | None = Field(description="The model's answer (null when the run failed)")
    steps: list[RunnerStep]
    stopped: Literal["answered", "step_limit", "failed"] | None = Field(
        description="Why the loop ended (null while the run is still running)")
    model: str


class AgentRunRead(RunnerResult):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "9d3e1c52-7f0a-4b8e-8c61-2a5f4e9b7d03", "status": "answered", "stopped": "answered",
        "goal": "[redacted]", "conversation_id": None, "patient_id": None, "model": "gpt-4o-mini", "max_steps": 5,
        "steps": [{"step": 1, "tool": "create_ticket", "run_id": "0b9f3f0e-8e8f-4a55-9d0c-5f2b1c7a9e10",
                   "status": "succeeded", "message": None},
                  {"step": 2, "tool": None, "run_id": None, "status": "answered",
                   "message": "I opened a ticket so that staff call the patient back."}],
        "answer": "I opened a ticket so that staff call the patient back.",
        "credential": "api_key:6a0f6c1e-2b7d-4c3e-9f1a-8e2d5b7c4a90", "actor_role": "agent",
        "error_code": None, "error_detail": None, "prompt_tokens": 412, "completion_tokens": 58,
        "duration_ms": 1840, "created_at": "2026-11-30T09:15:02Z", "finished_at": "2026-11-30T09:15:04Z"}]})

    id: uuid.UUID
    status: Literal["running", "answered", "step_limit", "failed"]
    goal: str = Field(description="The goal, replaced by `[redacted]` unless AGENTS_REDACT_INPUTS=false")
    conversation_id: uuid.UUID | None
    patient_id: uuid.UUID | None = Field(description="The conversation's patient, if any")
    max_steps: int
    credential: str
    actor_role: str
    error_code: str | None = Field(description="Why the run failed (the model provider's error), if it did")
    error_detail: str | None
    prompt_tokens: int
    completion_tokens: int
    duration_ms: int
    created_at: datetime
    finished_at: datetime | None
