"""Tool runs: one row for every tool call, whatever its outcome (the agents' audit trail)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from prm.core import clock
from prm.core.models import Base, IdMixin, OrgMixin, one_of

RUN_STATUSES = ("succeeded", "failed", "denied", "invalid")


class ToolRun(IdMixin, OrgMixin, Base):
    __tablename__ = "agent_tool_runs"
    __table_args__ = (
        CheckConstraint(one_of("status", RUN_STATUSES), name="status"),
        Index("ix_agent_tool_runs_org_created", "org_id", "created_at"),
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
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # kept for idempotent replays
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_status: Mapped[int | None]
    error_detail: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_id: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
