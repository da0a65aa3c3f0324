"""The tool registry over the Model Context Protocol (streamable HTTP, stateless, JSON responses).

`POST /mcp` takes the same bearer credentials as the API (an API key or a staff JWT); the tools are
the registry's, listed with their JSON schemas and run through `execution.execute` — the same
scope checks, the same tool-run audit. The SDK's DNS-rebinding guard stays on with the allowed
hosts configured explicitly (`MCP_ALLOWED_HOSTS`, plus the host of `PUBLIC_BASE_URL`), and its
session manager runs inside the app's lifespan.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import mcp_types as types
import structlog
from fastapi import FastAPI, Request
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Receive, Scope, Send

from prm import __version__
from prm.agents import execution, registry
from prm.core import logging as prm_logging
from prm.core.auth import Principal, authenticate
from prm.core.errors import DomainError, PermissionDenied, Unauthenticated, ValidationFailed
from prm.settings import Settings

log = structlog.get_logger(__name__)

_caller: ContextVar[tuple[Principal, Any, Settings] | None] = ContextVar("mcp_caller", default=None)


LIST_SCOPE = "agents:read"  # connecting at all, as for GET /agents/tools
MAX_IDEMPOTENCY_KEY = 200


async def _list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    current = _caller.get()
    if current is None:  # the ASGI wrapper always sets it; never list for an unknown caller
        return types.ListToolsResult(tools=[])
    principal = current[0]
    return types.ListToolsResult(tools=[
        types.Tool(name=t.name, description=f"{t.description} (scope {t.scope})", input_schema=t.input_schema(),
                   output_schema=t.output_schema())
        for t in registry.all_tools() if execution.may_run(principal, t)
    ])


def _error(problem: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(problem))], is_error=True)


def _idempotency_key(meta: Any) -> str | None:
    """`_meta.idempotency_key`: a non-empty string of at most 200 characters (422 otherwise)."""
    key = meta.get("idempotency_key") if isinstance(meta, dict) else None
    if key is None:
        return None
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_IDEMPOTENCY_KEY:
        raise ValidationFailed.field("_meta.idempotency_key",
                                     f"a non-empty string of at most {MAX_IDEMPOTENCY_KEY} characters")
    return key


async def _call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    current = _caller.get()
    if current is None:  # the ASGI wrapper always sets it; never run a tool without a caller
        return _error(Unauthenticated().problem())
    principal, sessionmaker, settings = current
    try:
        key = _idempotency_key(params.meta)
    except DomainError as exc:
        return _error(exc.problem())
    async with sessionmaker() as session:
        try:
            outcome = await execution.execute(session, principal, params.name, dict(params.arguments or {}),
                                              settings=settings, transport="mcp", idempotency_key=key)
            await session.commit()
        except DomainError as exc:  # a reused or busy idempotency key: nothing was recorded
            await session.rollback()
            return _error(exc.problem())
        except Exception as exc:  # never the exception's text (SQL parameters hold patient data)
            await session.rollback()
            log.error("agents.mcp_call_failed", error=type(exc).__name__, frames=prm_logging.safe_frames(exc))
            return _error({"type": "https://prm.dev/problems/internal_error", "title": "Internal error",
                           "status": 500, "detail": "The call failed unexpectedly; it has been logged",
                           "code": "internal_error"})
    if outcome.ok:
        return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(outcome.output))],
                                    structured_content=outcome.output, is_error=False)
    return _error(outcome.problem or {})


def allowed_hosts(settings: Settings) -> list[str]:
    hosts = list(settings.mcp_allowed_hosts)
    public = urlsplit(settings.public_base_url).netloc
    if public:
        hosts += [public, f"{public.split(':')[0]}:*"]
    return hosts


class McpEndpoint:
    """ASGI app for `/mcp`: authenticate like the API, then hand over to the SDK's session manager."""

    def __init__(self, settings: Settings, sessionmaker: Any) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        server: Server[Any] = Server("prm", version=__version__, instructions=(
            "Tools of a clinic's patient relationship management service. Every call is authorised by "
            "the credential's scopes and recorded."), on_list_tools=_list_tools, on_call_tool=_call_tool)
        hosts = allowed_hosts(settings)
        self.manager = StreamableHTTPSessionManager(
            app=server, json_response=True, stateless=True,
            security_settings=TransportSecuritySettings(
                enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                allowed_origins=[f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")]))

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    @staticmethod
    async def _problem(send: Send, problem: dict[str, Any], status: int, headers: list[tuple[bytes, bytes]]) -> None:
        body = json.dumps(problem).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
            *headers]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        authorization = request.headers.get("authorization", "")
        bearer = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
        try:
            async with self.sessionmaker() as session:
                principal = await authenticate(session, request, bearer, request.headers.get("x-api-key"))
                await session.commit()
        except Unauthenticated as exc:
            await self._problem(send, exc.problem(request.url.path), 401,
                                [(b"www-authenticate", b'Bearer realm="prm"')])
            return
        if not principal.has(LIST_SCOPE):
            denied = PermissionDenied(f"This credential lacks the scope(s): {LIST_SCOPE}", code="missing_scope",
                                      missing_scopes=[LIST_SCOPE])
            await self._problem(send, denied.problem(request.url.path), 403, [])
            return
        structlog.contextvars.bind_contextvars(org_id=str(principal.org_id))
        token = _caller.set((principal, self.sessionmaker, self.settings))
        try:
            await self.manager.handle_request(scope, receive, send)
        finally:
            _caller.reset(token)
