"""Inbound webhooks. No API key: Twilio requests carry `X-Twilio-Signature`, voice-agent requests an
HMAC-SHA256 `X-Signature`; a missing or wrong signature is 403, a malformed payload 400."""

from __future__ import annotations

import uuid
from typing import Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response

from prm.adapters.twilio import message_twiml
from prm.context import get_context
from prm.core import proxy, ratelimit
from prm.core.db import Session
from prm.core.errors import PermissionDenied
from prm.webhooks import service, twilio_inbound
from prm.webhooks.schemas import WebhookAck

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

TWIML = "application/xml"


async def _form(request: Request) -> dict[str, str]:
    """The fields of the posted form (the last value of a repeated name, as Starlette's form gives).

    Twilio posts `application/x-www-form-urlencoded`: decoded straight from the body (a quarter of
    the cost of Starlette's form parser); any other form type goes through Starlette's parser."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl((await request.body()).decode("latin-1"), keep_blank_values=True))
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def _signed_form(request: Request) -> dict[str, str]:
    """The form Twilio posted, after checking `X-Twilio-Signature` against the public URL."""
    params = await _form(request)
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    adapters = get_context(request).adapters
    urls = twilio_inbound.candidate_urls(adapters.public_base_url(), path, *proxy.forwarded_base(request))
    token = adapters.twilio_auth_token()
    if not twilio_inbound.signature_valid(token or "", urls, params, request.headers.get("x-twilio-signature")):
        raise PermissionDenied("Missing or invalid Twilio signature", code="invalid_signature")
    return params


EMPTY_TWIML = message_twiml()  # the answer to nearly every delivery, built once


def _twiml(reply: str | None = None) -> Response:
    return Response(message_twiml(reply) if reply else EMPTY_TWIML, media_type=TWIML)


@router.post(
    "/twilio/messaging",
    summary="Twilio inbound message (WhatsApp, SMS)",
    response_class=Response,
    dependencies=[ratelimit.limit("rate_limit_webhooks", "twilio")],
    responses={
        200: {"content": {TWIML: {}}, "description": "TwiML (a reply for STOP/START)"},
        400: {"description": "Malformed payload"},
        403: {"description": "Bad signature"},
    },
)
async def twilio_messaging(request: Request, session: Session) -> Response:
    params = await _signed_form(request)
    if get_context(request).settings.webhooks_deferred:  # store, queue one job, answer (WEBHOOK_INGEST)
        # nothing else is written in this request: its one statement may run without BEGIN/COMMIT
        outcome = await service.accept_twilio_message(session, params, standalone=True)
    else:
        outcome = await service.receive_twilio_message(session, params)
    return _twiml(outcome.reply)


@router.post(
    "/twilio/status",
    summary="Twilio delivery status callback",
    response_class=Response,
    dependencies=[ratelimit.limit("rate_limit_webhooks", "twilio")],
    responses={
        200: {"content": {TWIML: {}}},
        400: {"description": "Malformed payload"},
        403: {"description": "Bad signature"},
    },
)
async def twilio_status(request: Request, session: Session) -> Response:
    params = await _signed_form(request)
    await service.receive_twilio_status(session, params)
    return _twiml()


@router.post(
    "/voice-agent/{org_id}",
    response_model=WebhookAck,
    summary="Voice agent: a finished call",
    description="JSON body (call id, caller, transcript, extracted fields) signed with "
    "`X-Signature: sha256=<hex HMAC-SHA256 of the raw body>` using the organisation's "
    "voice-agent secret (PUT /communications/channels/voice).",
    dependencies=[ratelimit.limit("rate_limit_webhooks", "voice_agent")],
)
async def voice_agent(org_id: uuid.UUID, request: Request, session: Session) -> WebhookAck:
    raw = await request.body()
    outcome = await service.receive_voice_call(session, org_id, raw, request.headers.get("x-signature"))
    return WebhookAck(
        status=outcome.status,
        communication_id=str(outcome.communication_id) if outcome.communication_id else None,
    )


@router.post(
    "/voice-agent/{org_id}/{provider}",
    response_model=WebhookAck,
    summary="Voice agent (Retell, Vapi): a call event",
    description="The provider's own webhook, checked on the raw body with the organisation's voice-agent "
    "secret (PUT /communications/channels/voice): Retell signs `x-retell-signature: v=<unix ms>,d=<hex "
    "HMAC-SHA256 of body + timestamp>` (five minutes' tolerance), Vapi's HMAC credential sends "
    "`x-vapi-signature: <hex HMAC-SHA256 of the body>`. Each (provider, call, event) is processed once "
    "(a redelivery answers `duplicate`). The event that ends a call (Retell `call_analyzed`, Vapi "
    "`end-of-call-report`) is stored as a voice communication and published as `voice_call.completed`: "
    "the intake, the booking and the confirmations follow in jobs. Other events answer `ignored`. "
    "A bad signature is 403 `invalid_signature`, an unreadable payload 400 `malformed_webhook`.",
    dependencies=[ratelimit.limit("rate_limit_webhooks", "voice_agent")],
)
async def voice_agent_provider(
    org_id: uuid.UUID, provider: Literal["retell", "vapi"], request: Request, session: Session
) -> WebhookAck:
    raw = await request.body()
    outcome = await service.receive_voice_event(session, org_id, provider, raw, request.headers)
    return WebhookAck(
        status=outcome.status,
        communication_id=str(outcome.communication_id) if outcome.communication_id else None,
    )
