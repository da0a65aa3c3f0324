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
from prm.core.auth import Principal, authenticate
from prm.core.errors import DomainError, Unauthenticated
from prm.settings import Settings

log = structlog.get_logger(__name__)

_caller: ContextVar[tuple[Principal, Any, Settings] | None] = ContextVar("mcp_caller", default=None)


async def _list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    current = _caller.get()
    principal = current[0] if current else None
    return types.ListToolsResult(tools=[
        types.Tool(name=t.name, description=f"{t.description} (scope {t.scope})", input_schema=t.input_schema(),
                   output_schema=t.output_schema())
        for t in registry.all_tools() if principal is None or principal.has(t.scope)
    ])


async def _call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    current = _caller.get()
    if current is None:  # the ASGI wrapper always sets it; never run a tool without a caller
        return types.CallToolResult(content=[types.TextContent(type="text", text="unauthenticated")], is_error=True)
    principal, sessionmaker, settings = current
    meta = params.meta or {}
    key = meta.get("idempotency_key") if isinstance(meta, dict) else None
    async with sessionmaker() as session:
        try:
            outcome = await execution.execute(session, principal, params.name, dict(params.arguments or {}),
                                              settings=settings, transport="mcp",
                                              idempotency_key=str(key) if key else None)
        except DomainError as exc:  # unknown tool, reused idempotency key: nothing was recorded
            await session.rollback()
            return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(exc.problem()))],
                                        is_error=True)
        await session.commit()
    if outcome.ok:
        return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(outcome.output))],
                                    structured_content=outcome.output, is_error=False)
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(outcome.problem))],
                                is_error=True)


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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        authorization = request.headers.get("authorization", "")
        bearer = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
        try:
            async with self.sessionmaker() as session:
                principal = await authenticate(session, request, bearer, request.headers.get("x-api-key"))
                await session.commit()
        except Unauthenticated as exc:
            body = json.dumps(exc.problem(request.url.path)).encode()
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/problem+json"), (b"www-authenticate", b'Bearer realm="prm"'),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        structlog.contextvars.bind_contextvars(org_id=str(principal.org_id))
        token = _caller.set((principal, self.sessionmaker, self.settings))
        try:
            await self.manager.handle_request(scope, receive, send)
        finally:
            _caller.reset(token)
