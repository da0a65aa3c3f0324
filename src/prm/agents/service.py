"""Agents: the published interface — running a tool, running the agent runner, reading the records.

`execution.execute` is the one path every transport takes to run a tool; `runner.run` is the
LLM's tool-calling loop over it. The reads below are scoped to the caller's organisation.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.agents.execution import RUN_SCOPE, Outcome, execute, may_run
from prm.agents.models import AgentRun, ToolRun
from prm.agents.runner import TIME_LIMIT, offered_tools, read_steps, run
from prm.core import audit, references
from prm.core.auth import Principal
from prm.core.errors import NotFound
from prm.core.pagination import PageParams, paginate

__all__ = ["RUN_SCOPE", "TIME_LIMIT", "AgentRunFilters", "Outcome", "ToolRunFilters", "execute", "get_agent_run",
           "get_tool_run", "list_agent_runs", "list_tool_runs", "may_run", "offered_tools", "read_steps", "run"]


@dataclass(frozen=True)
class ToolRunFilters:
    tool: str | None = None
    status: str | None = None
    credential: str | None = None
    patient_id: uuid.UUID | None = None
    agent_run_id: uuid.UUID | None = None


@dataclass(frozen=True)
class AgentRunFilters:
    status: str | None = None
    credential: str | None = None


async def list_tool_runs(session: AsyncSession, who: Principal, filters: ToolRunFilters, paging: PageParams
                         ) -> tuple[list[ToolRun], int]:
    await references.require(session, who.org_id, "patient", filters.patient_id, field="patient_id")
    await references.require(session, who.org_id, "agent_run", filters.agent_run_id, field="agent_run_id")
    stmt: Select[Any] = select(ToolRun).where(ToolRun.org_id == who.org_id)
    for column, value in ((ToolRun.tool, filters.tool), (ToolRun.status, filters.status),
                          (ToolRun.credential, filters.credential), (ToolRun.patient_id, filters.patient_id),
                          (ToolRun.agent_run_id, filters.agent_run_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    rows, total = await paginate(session, stmt.order_by(ToolRun.created_at.desc(), ToolRun.id), paging)
    return list(rows), total


async def get_tool_run(session: AsyncSession, who: Principal, run_id: uuid.UUID) -> ToolRun:
    found = await session.scalar(select(ToolRun).where(ToolRun.id == run_id, ToolRun.org_id == who.org_id))
    if found is None:
        raise NotFound("No such tool run", code="tool_run_not_found")
    return found


async def list_agent_runs(session: AsyncSession, who: Principal, filters: AgentRunFilters, paging: PageParams
                          ) -> tuple[list[AgentRun], int]:
    stmt: Select[Any] = select(AgentRun).where(AgentRun.org_id == who.org_id)
    if filters.status is not None:
        stmt = stmt.where(AgentRun.status == filters.status)
    if filters.credential is not None:
        stmt = stmt.where(AgentRun.credential == filters.credential)
    rows, total = await paginate(session, stmt.order_by(AgentRun.created_at.desc(), AgentRun.id), paging)
    patient_ids = sorted({str(r.patient_id) for r in rows if r.patient_id is not None})
    if patient_ids:  # answers may quote patient data: a read of it, like any other
        await audit.record(session, who, "read", "agent_runs", None,
                           details={"count": len(rows), "patient_ids": patient_ids})
    return list(rows), total


async def get_agent_run(session: AsyncSession, who: Principal, agent_run_id: uuid.UUID) -> AgentRun:
    found = await session.scalar(select(AgentRun).where(AgentRun.id == agent_run_id,
                                                        AgentRun.org_id == who.org_id))
    if found is None:
        raise NotFound("No such agent run", code="agent_run_not_found")
    if found.patient_id is not None:
        await audit.record(session, who, "read", "agent_run", found.id, patient_id=found.patient_id)
    return found


references.resolver("agent_run")(references.in_organisation(AgentRun))
