"""Tool runs: one row for every tool call, whatever its outcome (the agents' audit trail)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from prm.core import clock
from prm.core.models import Base, IdMixin, OrgMixin, one_of

RUN_STATUSES = ("succeeded", "failed", "denied", "invalid")
AGENT_RUN_STATUSES = ("running", "answered", "step_limit", "failed")


class AgentRun(IdMixin, OrgMixin, Base):
    """One run of the agent runner: a goal (and a conversation) handed to the LLM's tool-calling loop.

    Each tool call it makes is a `ToolRun` linked by `agent_run_id` and `step`; `steps` keeps the
    order and outcome of every step (ids, tool names, statuses — no free text).
    """

    __tablename__ = "agent_runs"
    __table_args__ = (
        CheckConstraint(one_of("status", AGENT_RUN_STATUSES), name="status"),
        CheckConstraint("max_steps BETWEEN 1 AND 20", name="max_steps"),
        Index("ix_agent_runs_org_created", "org_id", "created_at"),
        Index("uq_agent_runs_idempotency", "org_id", "credential", "idempotency_key", unique=True,
              postgresql_where=text("idempotency_key IS NOT NULL")),
    )

    credential: Mapped[str] = mapped_column(String(80))
    actor_role: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="running")
    goal: Mapped[str] = mapped_column(Text)  # "[redacted]" unless AGENTS_REDACT_INPUTS=false
    input_sha256: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[uuid.UUID | None]
    patient_id: Mapped[uuid.UUID | None]  # the conversation's patient, for filtering
    model: Mapped[str] = mapped_column(String(100))
    max_steps: Mapped[int] = mapped_column(Integer)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    answer: Mapped[str | None] = mapped_column(Text)  # kept (like a tool run's output) for replays
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_detail: Mapped[str | None] = mapped_column(String(500))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    finished_at: Mapped[datetime | None]


class ToolRun(IdMixin, OrgMixin, Base):
    __tablename__ = "agent_tool_runs"
    __table_args__ = (
        CheckConstraint(one_of("status", RUN_STATUSES), name="status"),
        Index("ix_agent_tool_runs_org_created", "org_id", "created_at"),
        Index("ix_agent_tool_runs_agent_run", "agent_run_id", "step"),
        Index("uq_agent_tool_runs_idempotency", "org_id", "credential", "idempotency_key", unique=True,
              postgresql_where=text("idempotency_key IS NOT NULL")),
    )

    tool: Mapped[str] = mapped_column(String(64))
    credential: Mapped[str] = mapped_column(String(80))  # "api_key:<id>", "user:<id>", "system"
    actor_role: Mapped[str] = mapped_column(String(32))
    transport: Mapped[str] = mapped_column(String(16))  # http | mcp | runner
    status: Mapped[str] = mapped_column(String(16))
    input: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    input_sha256: Mapped[str] = mapped_column(String(64))
    output_summary: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # only with an idempotency key: for replays
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_status: Mapped[int | None]
    error_detail: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    # Set when the agent runner made the call: its run, and the step (1, 2, ...) within it.
    agent_run_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agent_runs.id", ondelete="CASCADE"))
    step: Mapped[int | None] = mapped_column(Integer)
