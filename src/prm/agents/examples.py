"""Documentation and examples of the agents API (see docs/api-examples.md and docs/agents.md)."""

from __future__ import annotations

from prm.core.apidocs import Err, Op, ids, not_found

NOT_FOUND = {**not_found("tool_run", "tool_run_not_found", "Tool run"),
             **not_found("agent_run", "agent_run_not_found", "Agent run")}

_UNKNOWN_REFERENCE = Err(422, "unknown_reference", "conversation_id: no conversation with this id in this organisation",
                         "An id in the body names no row of the caller's organisation (`errors` names the field)")
_KEY_REUSED = Err(422, "idempotency_key_reused", "Idempotency-Key: was used before with another input",
                  "The `Idempotency-Key` was used before by this credential with another input")
_KEY_IN_PROGRESS = Err(409, "idempotency_in_progress",
                       "A call with this idempotency key is in progress; retry to get its result",
                       "A concurrent request of this credential uses the same `Idempotency-Key`")

OPERATIONS = {
    "GET /agents/tools": Op(),
    "GET /agents/tools/openai": Op(),
    "POST /agents/tools/{name}/execute": Op(
        path={"name": "create_ticket"},
        body={"subject": "Maria García López asks for a call back about her invoice", "patient_id": ids.patient,
              "priority": "normal"},
        headers={"Idempotency-Key": "call-7f3a"},
        errors=[
            Err(403, "missing_scope", "The tool create_ticket needs the scope(s) tickets:write",
                "The credential lacks `agents:write` or the tool's own scope (recorded as a denied tool run)",
                extra={"missing_scopes": ["tickets:write"], "run_id": ids.tool_run}),
            Err(404, "unknown_tool", "No tool named 'make_any_request'; GET /agents/tools lists them",
                "No tool has this name (recorded as an invalid tool run)", extra={"run_id": ids.tool_run}),
            Err(404, "patient_not_found", "Patient 0b9f3f0e-8e8f-4a55-9d0c-5f2b1c7a9e10 not found",
                "The tool names a row of another organisation, or none (recorded as a failed tool run)",
                extra={"run_id": ids.tool_run}),
            Err(409, "invalid_transition", "Cannot confirm an appointment that is cancelled",
                "The tool's service refused the change (its writes are rolled back; recorded as failed)",
                extra={"run_id": ids.tool_run}),
            _KEY_IN_PROGRESS,
            Err(422, "validation_failed", "subject: String should have at least 1 character",
                "The input does not match the tool's `input_schema` (recorded as an invalid tool run)",
                extra={"errors": [{"field": "subject", "message": "String should have at least 1 character",
                                   "type": "string_too_short"}], "run_id": ids.tool_run}),
            _KEY_REUSED,
            Err(500, "tool_error", "The tool failed unexpectedly; it has been logged",
                "The tool crashed: its writes are rolled back and the failure recorded",
                extra={"run_id": ids.tool_run}),
        ],
    ),
    "GET /agents/runs": Op(
        query={"tool": "create_ticket", "status": "succeeded", "limit": 20}, given=["tool_run"],
        errors=[Err(422, "unknown_reference", "agent_run_id: no agent run with this id in this organisation",
                    "`patient_id` or `agent_run_id` names no row of the caller's organisation")],
    ),
    "GET /agents/runs/{tool_run_id}": Op(),
    "POST /agents/agent-runs": Op(
        body={"goal": "Maria García López wants to move tomorrow's cleaning to the afternoon. Help her.",
              "conversation_id": ids.conversation, "max_steps": 5},
        headers={"Idempotency-Key": "run-2b81"},
        errors=[
            Err(403, "missing_scope", "Giving the agent a conversation needs the scope conversations:read",
                "A `conversation_id` without `conversations:read`", extra={"missing_scopes": ["conversations:read"]}),
            Err(409, "ai_processing_not_allowed", "The conversation's patient does not allow AI processing of their "
                "data", "The conversation's patient refused (or never gave) consent to AI processing",
                extra={"reason": "opted_out"}),
            _KEY_IN_PROGRESS,
            _UNKNOWN_REFERENCE,
            _KEY_REUSED,
            Err(429, "rate_limited", "Rate limit exceeded",
                "More runs than `RATE_LIMIT_AGENT_RUNS` for this credential (default 30 a minute); see `Retry-After`"),
            Err(502, "ai_provider_error", "OpenAI answered 503 (no code)",
                "The model provider failed after retries: the run is recorded as failed (`agent_run_id`)",
                extra={"provider_code": "unreachable", "agent_run_id": ids.agent_run}),
            Err(504, "ai_provider_timeout", "The model did not answer within the run's budget of 120 s",
                "The model's turns exceeded `AGENTS_RUN_TIMEOUT_SECONDS`: the run is recorded as failed",
                extra={"provider_code": "time_limit", "agent_run_id": ids.agent_run}),
            Err(503, "provider_not_configured", "The LLM provider is not configured: OPENAI_API_KEY is not set",
                "`LLM_PROVIDER=openai` without its key"),
        ],
    ),
    "GET /agents/agent-runs": Op(query={"status": "answered", "limit": 20}, given=["agent_run"]),
    "GET /agents/agent-runs/{agent_run_id}": Op(),
}
