"""Integrations API: outbound webhook endpoints and their delivery log; n8n integrations, runs and
the callback n8n answers on (authenticated by the run's own token, not an API key)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from prm.context import get_context
from prm.core import ratelimit
from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.errors import PROBLEM_BASE
from prm.core.pagination import Page, Paging
from prm.integrations import n8n, outbound
from prm.integrations.models import WebhookMessage
from prm.integrations.schemas import (
    AttemptRead,
    CallbackResult,
    EndpointCreate,
    EndpointRead,
    EndpointUpdate,
    EndpointWithSecret,
    MessageDetail,
    MessageRead,
    N8nIntegrationCreate,
    N8nIntegrationRead,
    N8nIntegrationUpdate,
    N8nIntegrationWithSecret,
    ReplayRequest,
    ReplayResult,
    RunAttemptRead,
    RunCreate,
    RunDetail,
    RunRead,
)
from prm.settings import Settings

webhooks_router = APIRouter(prefix="/integrations/webhooks", tags=["integrations"])
n8n_router = APIRouter(prefix="/integrations/n8n", tags=["integrations"])
routers = [webhooks_router, n8n_router]

PROBLEM = "application/problem+json"


def _settings(request: Request) -> Settings:
    return get_context(request).settings


def _message(message: WebhookMessage) -> MessageRead:
    fields = {k: getattr(message, k) for k in MessageRead.model_fields if k != "webhook_id"}
    return MessageRead(webhook_id=outbound.message_header_id(message.id), **fields)


# --- outbound webhooks -------------------------------------------------------------------------


@webhooks_router.post("/endpoints", status_code=201, response_model=EndpointWithSecret,
                      summary="Register a webhook endpoint",
                      description="Events of the subscribed types are POSTed to the URL, signed with Standard "
                      "Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`). The secret "
                      "is shown only in this answer. Private, loopback and link-local URLs are refused (422 "
                      "`unsafe_url`). Scope `webhooks:write`.")
async def create_endpoint(body: EndpointCreate, request: Request, session: Session,
                          who: Principal = Requires("webhooks:write")) -> EndpointWithSecret:
    endpoint = await outbound.create_endpoint(session, who, body, _settings(request))
    return EndpointWithSecret.model_validate(endpoint)


@webhooks_router.get("/endpoints", response_model=list[EndpointRead], summary="List webhook endpoints")
async def list_endpoints(session: Session, who: Principal = Requires("webhooks:read")) -> list[EndpointRead]:
    return [EndpointRead.model_validate(e) for e in await outbound.list_endpoints(session, who)]


@webhooks_router.get("/endpoints/{endpoint_id}", response_model=EndpointRead, summary="Read a webhook endpoint")
async def get_endpoint(endpoint_id: uuid.UUID, session: Session,
                       who: Principal = Requires("webhooks:read")) -> EndpointRead:
    return EndpointRead.model_validate(await outbound.get_endpoint(session, who, endpoint_id))


@webhooks_router.patch("/endpoints/{endpoint_id}", response_model=EndpointRead, summary="Change a webhook endpoint",
                       description="`enabled: true` re-enables a disabled endpoint and resets its failure count.")
async def update_endpoint(endpoint_id: uuid.UUID, body: EndpointUpdate, request: Request, session: Session,
                          who: Principal = Requires("webhooks:write")) -> EndpointRead:
    return EndpointRead.model_validate(
        await outbound.update_endpoint(session, who, endpoint_id, body, _settings(request)))


@webhooks_router.delete("/endpoints/{endpoint_id}", status_code=204, summary="Delete a webhook endpoint")
async def delete_endpoint(endpoint_id: uuid.UUID, session: Session,
                          who: Principal = Requires("webhooks:write")) -> Response:
    await outbound.delete_endpoint(session, who, endpoint_id)
    return Response(status_code=204)


@webhooks_router.post("/endpoints/{endpoint_id}/rotate-secret", response_model=EndpointWithSecret,
                      summary="Rotate an endpoint's signing secret",
                      description="Messages carry a second signature with the old secret for 24 hours.")
async def rotate_endpoint_secret(endpoint_id: uuid.UUID, session: Session,
                                 who: Principal = Requires("webhooks:write")) -> EndpointWithSecret:
    return EndpointWithSecret.model_validate(await outbound.rotate_secret(session, who, endpoint_id))


@webhooks_router.post("/endpoints/{endpoint_id}/test", status_code=202, response_model=MessageRead,
                      summary="Send a `webhook.test` event to the endpoint")
async def test_endpoint(endpoint_id: uuid.UUID, session: Session,
                        who: Principal = Requires("webhooks:write")) -> MessageRead:
    return _message(await outbound.send_test(session, who, endpoint_id))


@webhooks_router.post("/endpoints/{endpoint_id}/replay", status_code=202, response_model=ReplayResult,
                      summary="Deliver again every subscribed event since a time")
async def replay(endpoint_id: uuid.UUID, body: ReplayRequest, session: Session,
                 who: Principal = Requires("webhooks:write")) -> ReplayResult:
    return ReplayResult(queued=await outbound.replay(session, who, endpoint_id, body.since))


@webhooks_router.get("/endpoints/{endpoint_id}/messages", response_model=Page[MessageRead],
                     summary="The endpoint's messages, newest first")
async def list_messages(endpoint_id: uuid.UUID, session: Session, paging: Paging,
                        status: Annotated[str | None, Query(pattern="^(pending|delivered|failed)$")] = None,
                        who: Principal = Requires("webhooks:read")) -> Page[MessageRead]:
    rows, total = await outbound.list_messages(session, who, endpoint_id, paging, status=status)
    return Page(items=[_message(m) for m in rows], total=total, limit=paging.limit, offset=paging.offset)


@webhooks_router.get("/messages/{message_id}", response_model=MessageDetail,
                     summary="A message with its delivery log (status, duration, first 2 KB of each answer)")
async def get_message(message_id: uuid.UUID, session: Session,
                      who: Principal = Requires("webhooks:read")) -> MessageDetail:
    message = await outbound.get_message(session, who, message_id)
    attempts = await outbound.attempts_of(session, who, message_id)
    return MessageDetail(**_message(message).model_dump(),
                         attempt_log=[AttemptRead.model_validate(a) for a in attempts])


@webhooks_router.post("/messages/{message_id}/redeliver", status_code=202, response_model=MessageRead,
                      summary="Deliver a message again (same webhook-id)")
async def redeliver(message_id: uuid.UUID, session: Session,
                    who: Principal = Requires("webhooks:write")) -> MessageRead:
    return _message(await outbound.redeliver(session, who, message_id))


# --- n8n ---------------------------------------------------------------------------------------


@n8n_router.post("/integrations", status_code=201, response_model=N8nIntegrationWithSecret,
                 summary="Connect an n8n instance",
                 description="The shared secret is generated and shown only in this answer: set it as the JWT "
                 "secret of the n8n Webhook node's credential. Scope `webhooks:write`.")
async def create_integration(body: N8nIntegrationCreate, request: Request, session: Session,
                             who: Principal = Requires("webhooks:write")) -> N8nIntegrationWithSecret:
    return N8nIntegrationWithSecret.model_validate(
        await n8n.create_integration(session, who, body, _settings(request)))


@n8n_router.get("/integrations", response_model=list[N8nIntegrationRead], summary="List n8n integrations")
async def list_integrations(session: Session, who: Principal = Requires("webhooks:read")) -> list[N8nIntegrationRead]:
    return [N8nIntegrationRead.model_validate(i) for i in await n8n.list_integrations(session, who)]


@n8n_router.get("/integrations/{integration_id}", response_model=N8nIntegrationRead, summary="Read an n8n integration")
async def get_integration(integration_id: uuid.UUID, session: Session,
                          who: Principal = Requires("webhooks:read")) -> N8nIntegrationRead:
    return N8nIntegrationRead.model_validate(await n8n.get_integration(session, who, integration_id))


@n8n_router.patch("/integrations/{integration_id}", response_model=N8nIntegrationRead,
                  summary="Change an n8n integration")
async def update_integration(integration_id: uuid.UUID, body: N8nIntegrationUpdate, request: Request,
                             session: Session, who: Principal = Requires("webhooks:write")) -> N8nIntegrationRead:
    return N8nIntegrationRead.model_validate(
        await n8n.update_integration(session, who, integration_id, body, _settings(request)))


@n8n_router.delete("/integrations/{integration_id}", status_code=204, summary="Disconnect an n8n instance")
async def delete_integration(integration_id: uuid.UUID, session: Session,
                             who: Principal = Requires("webhooks:write")) -> Response:
    await n8n.delete_integration(session, who, integration_id)
    return Response(status_code=204)


@n8n_router.post("/integrations/{integration_id}/rotate-secret", response_model=N8nIntegrationWithSecret,
                 summary="Rotate the shared secret",
                 description="Triggers are signed with the new secret at once; callbacks signed with the old "
                 "one are accepted for 24 hours. Update the n8n credential right away.")
async def rotate_integration_secret(integration_id: uuid.UUID, session: Session,
                                    who: Principal = Requires("webhooks:write")) -> N8nIntegrationWithSecret:
    return N8nIntegrationWithSecret.model_validate(await n8n.rotate_secret(session, who, integration_id))


@n8n_router.post("/runs", status_code=202, response_model=RunRead, summary="Trigger a workflow",
                 description="Queues the POST to n8n; the run stays `pending` until n8n calls back, fails, or "
                 "its deadline passes (`timed_out`, then the integration's fallback runs).")
async def trigger(body: RunCreate, session: Session, who: Principal = Requires("webhooks:write")) -> RunRead:
    return RunRead.model_validate(await n8n.trigger(session, who, body))


@n8n_router.get("/runs", response_model=Page[RunRead], summary="List workflow runs, newest first")
async def list_runs(session: Session, paging: Paging,
                    status: Annotated[str | None, Query(pattern="^(pending|succeeded|failed|timed_out)$")] = None,
                    workflow_key: Annotated[str | None, Query(max_length=100)] = None,
                    who: Principal = Requires("webhooks:read")) -> Page[RunRead]:
    rows, total = await n8n.list_runs(session, who, paging, status=status, workflow_key=workflow_key)
    return Page(items=[RunRead.model_validate(r) for r in rows], total=total, limit=paging.limit,
                offset=paging.offset)


@n8n_router.get("/runs/{run_id}", response_model=RunDetail, summary="A run with every attempt to reach n8n")
async def get_run(run_id: uuid.UUID, session: Session, who: Principal = Requires("webhooks:read")) -> RunDetail:
    run = await n8n.get_run(session, who, run_id)
    attempts = await n8n.attempts_of(session, who, run_id)
    return RunDetail(**RunRead.model_validate(run).model_dump(),
                     attempt_log=[RunAttemptRead.model_validate(a) for a in attempts])


@n8n_router.post("/runs/{run_id}/retry", status_code=202, response_model=RunRead,
                 summary="Run a failed or timed-out workflow again")
async def retry_run(run_id: uuid.UUID, session: Session, who: Principal = Requires("webhooks:write")) -> RunRead:
    return RunRead.model_validate(await n8n.retry(session, who, run_id))


@n8n_router.post(
    "/runs/{run_id}/callback", response_model=CallbackResult, summary="n8n's answer to a run",
    description="Authenticated by the run's callback token (`Authorization: Bearer <callback.token>` from the "
    "trigger), optionally also `X-PRM-Signature: sha256=<hex HMAC-SHA256 of the raw body>` with the shared "
    "secret. Body: `{\"action\": \"booking_response\" | \"confirm_slot\" | \"triage\", ...}`. The first valid "
    "callback acts; the same callback again gets the stored answer; a different one 409 `run_finished`; "
    "after the deadline 409 `run_expired`. `confirm_slot` books for real: 409 `slot_taken` when the time is "
    "gone (the patient is told).",
    dependencies=[ratelimit.limit("rate_limit_webhooks", "n8n")],
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object"},
        "example": {"action": "triage", "subject": "Patient asks about fasting before blood test",
                    "priority": "normal", "category": "triage"}}}}},
    responses={401: {"description": "Missing or invalid callback token"},
               409: {"description": "Run finished or expired, or the slot is taken"}},
)
async def callback(run_id: uuid.UUID, request: Request, session: Session,
                   authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
                   x_prm_signature: Annotated[str | None, Header(include_in_schema=False)] = None) -> Any:
    token = authorization[7:].strip() if authorization and authorization[:7].lower() == "bearer " else None
    status, body = await n8n.handle_callback(session, run_id, token=token, raw=await request.body(),
                                             signature=x_prm_signature, settings=_settings(request))
    if status >= 400:
        result = body.get("result", {})
        return JSONResponse(
            {"type": PROBLEM_BASE + str(result.get("error", "conflict")), "title": "Conflict",
             "status": status, "detail": result.get("detail", ""), "code": result.get("error", "conflict"),
             "instance": request.url.path, **body},
            status_code=status, media_type=PROBLEM)
    return CallbackResult(**body)
