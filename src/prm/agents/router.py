"""Agents API: the tool catalogue (JSON schemas, OpenAI format), executing a tool, the tool-run log;
and `/mcp`, the same tools over the Model Context Protocol."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.routing import Route

from prm import context
from prm.agents import execution, registry
from prm.agents import tools as _tools  # noqa: F401  (registers the catalogue)
from prm.agents.mcp_server import McpEndpoint
from prm.agents.models import ToolRun
from prm.agents.schemas import ToolExecution, ToolInfo, ToolRunRead
from prm.core import references
from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.errors import NotFound
from prm.core.pagination import Page, Paging, paginate
from prm.settings import Settings

router = APIRouter(prefix="/agents", tags=["agents"])
PROBLEM = "application/problem+json"


@router.get("/tools", response_model=list[ToolInfo], summary="The tool catalogue with JSON schemas",
            description="Every tool with its input and output JSON Schema, the scope it needs and whether the "
            "calling credential has it. Scope `agents:read`.")
async def list_tools(who: Principal = Requires("agents:read")) -> list[ToolInfo]:
    return [ToolInfo(name=t.name, description=t.description, scope=t.scope, writes=t.writes, allowed=who.has(t.scope),
                     input_schema=t.input_schema(), output_schema=t.output_schema()) for t in registry.all_tools()]


@router.get("/tools/openai", summary="The tools this credential may run, in OpenAI's function-calling format",
            description="Pass the list as `tools` to OpenAI's chat completions API.")
async def openai_tools(who: Principal = Requires("agents:read")) -> list[dict[str, Any]]:
    return [t.openai() for t in registry.all_tools() if who.has(t.scope)]


@router.post(
    "/tools/{name}/execute", response_model=ToolExecution, summary="Run a tool",
    description="The body is the tool's input (see its `input_schema`). Needs `agents:write` and the tool's own "
    "scope (403 `missing_scope`). Invalid input is 422 naming the field; a failing tool rolls back its writes. "
    "Every call, whatever its outcome, is recorded as a tool run (`GET /agents/runs`). With `Idempotency-Key` the "
    "same call runs once. Errors are problem+json with the `run_id`.",
    responses={403: {"description": "Missing scope"}, 404: {"description": "Unknown tool or reference"},
               409: {"description": "Conflict (e.g. slot taken)"}, 422: {"description": "Invalid input"}},
)
async def execute_tool(
    name: str, request: Request, session: Session,
    body: Annotated[dict[str, Any], Body(examples=[{"subject": "Patient asks for a call back", "priority": "normal"}])],
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    who: Principal = Requires("agents:write"),
) -> Any:
    settings = context.of(session).settings
    outcome = await execution.execute(session, who, name, body, settings=settings, transport="http",
                                      idempotency_key=idempotency_key)
    if outcome.ok:
        assert outcome.output is not None
        return ToolExecution(run_id=outcome.run.id, tool=name, status="succeeded", output=outcome.output)
    problem = {**(outcome.problem or {}), "instance": request.url.path, "run_id": str(outcome.run.id)}
    # The tool's own writes were rolled back in their savepoint; the tool run row commits.
    return JSONResponse(problem, status_code=outcome.status_code, media_type=PROBLEM)


@router.get("/runs", response_model=Page[ToolRunRead], summary="Tool runs, newest first")
async def list_runs(
    session: Session, paging: Paging,
    tool: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(pattern="^(succeeded|failed|denied|invalid)$")] = None,
    credential: Annotated[str | None, Query(max_length=80)] = None,
    patient_id: uuid.UUID | None = None,
    who: Principal = Requires("agents:read"),
) -> Page[ToolRunRead]:
    await references.require(session, who.org_id, "patient", patient_id, field="patient_id")
    stmt = select(ToolRun).where(ToolRun.org_id == who.org_id)
    for column, value in ((ToolRun.tool, tool), (ToolRun.status, status), (ToolRun.credential, credential),
                          (ToolRun.patient_id, patient_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    rows, total = await paginate(session, stmt.order_by(ToolRun.created_at.desc(), ToolRun.id), paging)
    return Page(items=[ToolRunRead.model_validate(r) for r in rows], total=total, limit=paging.limit,
                offset=paging.offset)


@router.get("/runs/{run_id}", response_model=ToolRunRead, summary="One tool run")
async def get_run(run_id: uuid.UUID, session: Session, who: Principal = Requires("agents:read")) -> ToolRunRead:
    run = await session.scalar(select(ToolRun).where(ToolRun.id == run_id, ToolRun.org_id == who.org_id))
    if run is None:
        raise NotFound("No such tool run", code="tool_run_not_found")
    return ToolRunRead.model_validate(run)


def install(app: FastAPI, settings: Settings, sessionmaker: Any
            ) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Mount `/mcp` on the app; the returned lifespan hook runs the MCP session manager."""
    endpoint = McpEndpoint(settings, sessionmaker)
    app.router.routes.append(Route("/mcp", endpoint=endpoint, methods=["GET", "POST", "DELETE"],
                                   include_in_schema=False))
    return endpoint.lifespan
