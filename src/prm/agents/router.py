"""Agents API: the tool catalogue (JSON schemas, OpenAI format), executing a tool, the tool-run log;
and `/mcp`, the same tools over the Model Context Protocol."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.routing import Route

from prm import context
from prm.adapters.openai_api import AINotConfigured
from prm.agents import registry, service
from prm.agents import tools as _tools  # noqa: F401  (registers the catalogue)
from prm.agents.mcp_server import McpEndpoint
from prm.agents.schemas import AgentRunRead, RunnerRequest, RunnerStep, ToolExecution, ToolInfo, ToolRunRead
from prm.context import AppContext
from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.errors import DomainError, Unavailable
from prm.core.pagination import Page, Paging
from prm.settings import Settings

router = APIRouter(prefix="/agents", tags=["agents"])
PROBLEM = "application/problem+json"


@router.get("/tools", response_model=list[ToolInfo], summary="The tool catalogue with JSON schemas",
            description="Every tool with its input and output JSON Schema, the scope it needs and whether the "
            "calling credential may run it (`allowed`: `agents:write` and the tool's own scope).")
async def list_tools(who: Principal = Requires("agents:read")) -> list[ToolInfo]:
    return [ToolInfo(name=t.name, description=t.description, scope=t.scope, writes=t.writes,
                     allowed=service.may_run(who, t), input_schema=t.input_schema(), output_schema=t.output_schema())
            for t in registry.all_tools()]


@router.get("/tools/openai", summary="The tools this credential may run, in OpenAI's function-calling format",
            description="Pass the list as `tools` to OpenAI's chat completions API.")
async def openai_tools(who: Principal = Requires("agents:read")) -> list[dict[str, Any]]:
    return [t.openai() for t in registry.all_tools() if service.may_run(who, t)]


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
    outcome = await service.execute(session, who, name, body, settings=settings, transport="http",
                                      idempotency_key=idempotency_key)
    if outcome.ok:
        assert outcome.output is not None
        return ToolExecution(run_id=outcome.run.id, tool=name, status="succeeded", output=outcome.output)
    problem = {**(outcome.problem or {}), "instance": request.url.path, "run_id": str(outcome.run.id)}
    # The tool's own writes were rolled back in their savepoint; the tool run row commits.
    return JSONResponse(problem, status_code=outcome.status_code, media_type=PROBLEM)


@router.get("/runs", response_model=Page[ToolRunRead], summary="Tool runs, newest first",
            description="Every tool call (HTTP, MCP or the agent runner), whatever its outcome, filtered by tool, "
            "status, credential, patient or agent run. Scope `agents:read`. An unknown `patient_id` or "
            "`agent_run_id` is 422 naming it.")
async def list_runs(
    session: Session, paging: Paging,
    tool: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(pattern="^(succeeded|failed|denied|invalid)$")] = None,
    credential: Annotated[str | None, Query(max_length=80)] = None,
    patient_id: uuid.UUID | None = None,
    agent_run_id: Annotated[uuid.UUID | None, Query(description="Only the tool calls of this agent run")] = None,
    who: Principal = Requires("agents:read"),
) -> Page[ToolRunRead]:
    rows, total = await service.list_tool_runs(
        session, who, service.ToolRunFilters(tool=tool, status=status, credential=credential, patient_id=patient_id,
                                             agent_run_id=agent_run_id), paging)
    return Page(items=[ToolRunRead.model_validate(r) for r in rows], total=total, limit=paging.limit,
                offset=paging.offset)


@router.get("/runs/{tool_run_id}", response_model=ToolRunRead, summary="One tool run",
            description="A tool run of the organisation: who called which tool over which transport, the "
            "(redacted) input, an output summary, the error and the duration. Scope `agents:read`.")
async def get_run(tool_run_id: uuid.UUID, session: Session, who: Principal = Requires("agents:read")) -> ToolRunRead:
    return ToolRunRead.model_validate(await service.get_tool_run(session, who, tool_run_id))


# --- the agent runner ----------------------------------------------------------------------------


def _agent_run(row: Any) -> AgentRunRead:
    return AgentRunRead(
        id=row.id, status=row.status, stopped=None if row.status == "running" else row.status,
        answer=row.answer, steps=[RunnerStep.model_validate(s) for s in service.read_steps(row)], model=row.model,
        goal=row.goal, conversation_id=row.conversation_id, patient_id=row.patient_id, max_steps=row.max_steps,
        credential=row.credential, actor_role=row.actor_role, error_code=row.error_code,
        error_detail=row.error_detail, prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens,
        duration_ms=row.duration_ms, created_at=row.created_at, finished_at=row.finished_at)


class ProviderFailed(DomainError):
    status = 502
    default_code = "ai_provider_error"
    title = "The AI provider failed"


class ProviderTimedOut(DomainError):
    status = 504
    default_code = "ai_provider_timeout"
    title = "The AI provider did not answer in time"


@router.post(
    "/agent-runs", status_code=201, response_model=AgentRunRead, summary="Run an agent towards a goal",
    description="Hands the goal (and, with `conversation_id`, the conversation's latest messages) to the "
    "configured LLM (`LLM_PROVIDER`: `offline` by default — deterministic, see docs/agents.md — or `openai`) "
    "with the tools this credential may run. Every tool call the model makes runs with the caller's own "
    "credential and scopes and is recorded as a tool run linked to the agent run and its step; a failing "
    "step leaves none of its writes and its error goes back to the model. The loop stops when the model "
    "answers or after `max_steps` tool calls (`stopped: step_limit`). Needs `agents:write` (and "
    "`conversations:read` with a conversation). With `Idempotency-Key` the same request runs once. "
    "Errors: 422 `validation_failed` or `unknown_reference` (a bad field, a conversation of another "
    "organisation), 403 `missing_scope`, "
    "429 `rate_limited` (more runs than `RATE_LIMIT_AGENT_RUNS` per credential, default 30 a minute), "
    "502 `ai_provider_error` (the run is recorded as failed; its id is in `agent_run_id`), 504 "
    "`ai_provider_timeout` (the model's turns exceeded `AGENTS_RUN_TIMEOUT_SECONDS`; recorded likewise), 503 "
    "`provider_not_configured`.",
    responses={403: {"description": "Missing scope"}, 422: {"description": "Invalid input or unknown conversation"},
               502: {"description": "The model provider failed; the run is recorded as failed"},
               504: {"description": "The model took longer than the run's budget; the run is recorded as failed"},
               503: {"description": "The LLM provider is not configured"}},
)
async def create_agent_run(
    body: RunnerRequest, request: Request, response: Response, session: Session, ctx: AppContext,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    who: Principal = Requires("agents:write"),
) -> Any:
    # Each run spends the clinic's model tokens: a credential gets a bounded number per window.
    await request.app.state.rate_limiter.hit(ctx.settings.rate_limit_agent_runs, "agent_runs", who.credential)
    try:
        llm = ctx.adapters.llm()
    except AINotConfigured as exc:
        raise Unavailable(f"The LLM provider is not configured: {exc}", code="provider_not_configured") from None
    row = await service.run(session, who, body, settings=ctx.settings, llm=llm, idempotency_key=idempotency_key,
                            checkpoint=session.commit)
    location = f"/agents/agent-runs/{row.id}"
    if row.status == "failed":
        timed_out = row.error_code == service.TIME_LIMIT
        failed = (ProviderTimedOut if timed_out else ProviderFailed)(
            row.error_detail or "The model provider failed", provider_code=row.error_code, agent_run_id=str(row.id))
        # The run and the steps before the failure are committed (see the runner's checkpoints).
        return JSONResponse(failed.problem(request.url.path), status_code=failed.status, media_type=PROBLEM,
                            headers={"Location": location})
    response.headers["Location"] = location
    return _agent_run(row)


@router.get("/agent-runs", response_model=Page[AgentRunRead], summary="Agent runs, newest first",
            description="The agent runner's runs with their steps, filtered by status or credential. "
            "Scope `agents:read`.")
async def list_agent_runs(
    session: Session, paging: Paging,
    status: Annotated[str | None, Query(pattern="^(running|answered|step_limit|failed)$")] = None,
    credential: Annotated[str | None, Query(max_length=80)] = None,
    who: Principal = Requires("agents:read"),
) -> Page[AgentRunRead]:
    rows, total = await service.list_agent_runs(session, who, service.AgentRunFilters(status=status,
                                                                                      credential=credential), paging)
    return Page(items=[_agent_run(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset)


@router.get("/agent-runs/{agent_run_id}", response_model=AgentRunRead, summary="One agent run with its steps",
            description="The run, its answer and every step (tool, tool run id, status). Each step's tool run "
            "(input, output summary, error, duration) is at `GET /agents/runs/{tool_run_id}`; all of them at "
            "`GET /agents/runs?agent_run_id=`. 404 `agent_run_not_found` for another organisation's run. "
            "Scope `agents:read`.")
async def get_agent_run(agent_run_id: uuid.UUID, session: Session,
                        who: Principal = Requires("agents:read")) -> AgentRunRead:
    return _agent_run(await service.get_agent_run(session, who, agent_run_id))


def install(app: FastAPI, settings: Settings, sessionmaker: Any
            ) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Mount `/mcp` on the app; the returned lifespan hook runs the MCP session manager."""
    endpoint = McpEndpoint(settings, sessionmaker)
    app.router.routes.append(Route("/mcp", endpoint=endpoint, methods=["GET", "POST", "DELETE"],
                                   include_in_schema=False))
    return endpoint.lifespan
