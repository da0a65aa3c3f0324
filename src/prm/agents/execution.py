"""Running a tool: the one path every transport (HTTP, MCP, the agent runner) goes through.

Validate the input (422 naming the field), check the tool's scope (403), run it in a savepoint of
the caller's transaction (a failing tool leaves none of its writes), and write a tool run row for
every call — succeeded, failed, denied or invalid — with the credential, the (redacted) input, an
output summary, the error and the duration. An idempotency key makes a repeated call return the
first call's result without running the tool again.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from prm.agents import registry
from prm.agents.models import ToolRun
from prm.core import clock, integrity
from prm.core import logging as prm_logging
from prm.core.auth import Principal
from prm.core.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from prm.settings import Settings

log = structlog.get_logger(__name__)

RUN_SCOPE = "agents:write"  # running any tool, whatever the transport, besides the tool's own scope

_KEPT = ("id", "status", "channel", "channels", "source_types", "priority", "category", "internal", "total",
         "limit", "template_key", "start_date", "end_date", "start_at", "end_at", "occurred_from", "occurred_to")


@dataclass
class Outcome:
    run: ToolRun
    status_code: int
    output: dict[str, Any] | None
    problem: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.status_code < 400


_PHI_KEYS = frozenset({"birth_date"})  # looks like a kept date, identifies a person


def redact(value: Any, key: str = "") -> Any:
    """Ids, enums, dates and numbers stay; free text (names, phones, notes, bodies) and birth dates do not."""
    if key in _PHI_KEYS:
        return "[redacted]"
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str) and not (key == "id" or key.endswith(("_id", "_ids", "_at", "_date")) or key in _KEPT):
        return "[redacted]"
    return value


def may_run(who: Principal, spec: registry.ToolSpec) -> bool:
    """Whether `who` may run the tool (what listings call `allowed`)."""
    return who.has(RUN_SCOPE) and who.has(spec.scope)


def summary(output: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in output.items():
        if isinstance(value, list):
            out[f"{key}_count"] = len(value)
        elif key == "id" or key.endswith(("_id", "_at")) or key in _KEPT:
            out[key] = value
    return out


def _digest(arguments: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(arguments, sort_keys=True, default=str).encode()).hexdigest()


def _patient_of(arguments: dict[str, Any]) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(arguments["patient_id"])) if arguments.get("patient_id") else None
    except (ValueError, TypeError):
        return None


async def execute(session: AsyncSession, who: Principal, name: str, arguments: dict[str, Any], *,
                  settings: Settings, transport: str = "http", idempotency_key: str | None = None,
                  agent_run_id: uuid.UUID | None = None, step: int | None = None) -> Outcome:
    spec = registry.get(name)
    name = name[:64]
    if spec is None:
        idempotency_key = None  # nothing ran: nothing to replay
    digest = _digest(arguments)
    if idempotency_key is not None:
        previous = await session.scalar(select(ToolRun).where(
            ToolRun.org_id == who.org_id, ToolRun.credential == who.credential,
            ToolRun.idempotency_key == idempotency_key))
        if previous is not None:
            if previous.input_sha256 != digest or previous.tool != name:
                raise ValidationFailed.field("Idempotency-Key", "was used before with another tool or input",
                                             code="idempotency_key_reused")
            return Outcome(previous, previous.error_status or 200, previous.output,
                           None if previous.error_status is None else {
                               "type": f"https://prm.dev/problems/{previous.error_code}", "title": "Tool failed",
                               "status": previous.error_status, "detail": previous.error_detail,
                               "code": previous.error_code})
    structlog.contextvars.bind_contextvars(tool=name)
    run = ToolRun(id=uuid.uuid4(), org_id=who.org_id, tool=name, credential=who.credential, actor_role=who.role,
                  transport=transport, input=redact(arguments) if settings.agents_redact_inputs else arguments,
                  input_sha256=digest, idempotency_key=idempotency_key, patient_id=_patient_of(arguments),
                  request_id=structlog.contextvars.get_contextvars().get("request_id"), created_at=clock.now(),
                  agent_run_id=agent_run_id, step=step)
    started = time.perf_counter()
    output: dict[str, Any] | None = None
    error: DomainError | None = None
    stage = "authorise"
    try:
        if spec is None:  # recorded too: an agent probing for tools that do not exist is worth seeing
            stage = "validate"
            raise NotFound(f"No tool named {name!r}; GET /agents/tools lists them", code="unknown_tool")
        missing = [s for s in (RUN_SCOPE, spec.scope) if not who.has(s)]
        if missing:
            raise PermissionDenied(f"The tool {name} needs the scope(s) {', '.join(missing)}", code="missing_scope",
                                   missing_scopes=missing)
        stage = "validate"
        try:
            data = spec.input_model.model_validate(arguments)
        except PydanticValidationError as exc:
            errors = [{"field": ".".join(str(p) for p in e["loc"]) or "input", "message": e["msg"], "type": e["type"]}
                      for e in exc.errors()]
            raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors) from None
        stage = "run"
        try:
            async with session.begin_nested():
                result = await spec.fn(session, who, data, settings)
        except DomainError:
            raise
        except IntegrityError as exc:  # a constraint the service did not check: the API's 4xx, never a 500
            mapped = integrity.problem_for(exc)
            if mapped is None:
                log.error("agents.tool_crashed", error="IntegrityError", frames=prm_logging.safe_frames(exc))
                raise DomainError("The tool failed unexpectedly; it has been logged", code="tool_error") from None
            raise mapped from None
        except Exception as exc:  # the tool's writes are rolled back; the failure is recorded
            log.error("agents.tool_crashed", error=type(exc).__name__, frames=prm_logging.safe_frames(exc))
            raise DomainError("The tool failed unexpectedly; it has been logged", code="tool_error") from None
        output = result.model_dump(mode="json")
    except DomainError as exc:
        error = exc
    run.duration_ms = int((time.perf_counter() - started) * 1000)
    if error is None:
        assert output is not None
        # The full output (patient data) is kept only to replay a call made with an idempotency key.
        run.status, run.output_summary = "succeeded", summary(output)
        run.output = output if idempotency_key is not None else None
        # the patient the call concerned, when only its result names them (an appointment's lifecycle)
        run.patient_id = run.patient_id or _patient_of(output)
        status_code, problem = 200, None
    else:
        status_code = 500 if error.code == "tool_error" else error.status
        run.status = {"authorise": "denied", "validate": "invalid"}.get(stage, "failed")
        run.error_code, run.error_status, run.error_detail = error.code, status_code, error.detail[:500]
        problem = {**error.problem(), "status": status_code}
    try:
        async with session.begin_nested():
            session.add(run)
            await session.flush()
    except IntegrityError:
        # Only the idempotency index can refuse the row: the same key is being (or was just) used
        # by a concurrent call of this credential. The caller's transaction must not keep this
        # call's writes: raising makes it roll back (HTTP, MCP) like any refused request.
        structlog.contextvars.unbind_contextvars("tool")
        raise Conflict("A call with this idempotency key is in progress; retry to get its result",
                       code="idempotency_in_progress") from None
    structlog.contextvars.unbind_contextvars("tool")
    log.info("agents.tool_run", tool=name, status=run.status, duration_ms=run.duration_ms, transport=transport)
    return Outcome(run, status_code, output, problem)
