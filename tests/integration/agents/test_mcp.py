"""The same tools over MCP: the SDK's own streamable-HTTP client against a real server on 127.0.0.1,
authenticated with the API's credentials, scoped, audited."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import func, select

from prm.agents.models import ToolRun
from prm.app import create_app
from prm.core import jobs
from prm.core.auth import issue_token
from prm.core.db import Database
from prm.settings import Settings
from prm.tickets.models import Ticket
from tests.conftest import Committed
from tests.fixtures.factories import make_api_key, make_org, make_user

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def mcp_url(settings: Settings, db: Database, committed: Committed) -> AsyncIterator[str]:
    app = create_app(settings, database=db)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        jobs.bind(db.sessionmaker)


async def _keys(committed: Committed) -> tuple[Any, str, str, str]:
    """An organisation, an agent's API key, a support agent's API key (no agents scope), a coordinator's JWT
    (agents:read only)."""
    async with committed.session() as s:
        org = await make_org(s)
        _, agent_key = await make_api_key(s, org, role="agent")
        _, support_key = await make_api_key(s, org, role="support_agent")
        coordinator = await make_user(s, org, role="coordinator")
        await s.commit()
    jwt, _ = issue_token(committed.app.state.settings, user_id=coordinator.id, org_id=org.id, role="coordinator")
    return org, agent_key, support_key, jwt



async def test_mcp_client_lists_and_calls_tools_with_a_key(mcp_url: str, committed: Committed) -> None:
    org, agent_key, _, coordinator_jwt = await _keys(committed)
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {agent_key}"}, timeout=30) as http, \
            streamable_http_client(mcp_url, http_client=http) as streams, ClientSession(streams[0], streams[1]) as mcp:
        await mcp.initialize()
        listed = await mcp.list_tools()
        names = {t.name for t in listed.tools}
        assert {"create_ticket", "book_appointment", "update_patient"} <= names
        result = await mcp.call_tool("create_ticket", {"subject": "Patient asks about parking"})
        assert not result.is_error, result
        created = json.loads(result.content[0].text)
        invalid = await mcp.call_tool("create_ticket", {"subject": ""})
        assert invalid.is_error
        assert json.loads(invalid.content[0].text)["errors"][0]["field"] == "subject"

    # a staff JWT with agents:read but not agents:write (a coordinator): connects, is offered no tool,
    # and a call — even of a tool whose own scope it has (tickets:write) — is refused and recorded
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {coordinator_jwt}"}, timeout=30) as http, \
            streamable_http_client(mcp_url, http_client=http) as streams, ClientSession(streams[0], streams[1]) as mcp:
        await mcp.initialize()
        assert (await mcp.list_tools()).tools == []
        denied = await mcp.call_tool("create_ticket", {"subject": "Not through an agent tool"})
        problem = json.loads(denied.content[0].text)
        assert denied.is_error and problem["code"] == "missing_scope" and problem["missing_scopes"] == ["agents:write"]

    async with committed.session() as s:
        tickets = await s.scalar(select(func.count()).select_from(Ticket).where(Ticket.org_id == org.id))
        runs = (await s.scalars(select(ToolRun).where(ToolRun.org_id == org.id).order_by(ToolRun.created_at))).all()
    assert tickets == 1 and created["subject"] == "Patient asks about parking"
    assert [(r.tool, r.status, r.transport) for r in runs] == [
        ("create_ticket", "succeeded", "mcp"), ("create_ticket", "invalid", "mcp"),
        ("create_ticket", "denied", "mcp")]
    assert runs[2].credential.startswith("user:") and runs[2].actor_role == "coordinator"


async def test_mcp_idempotency_key_in_meta_runs_once(mcp_url: str, committed: Committed) -> None:
    org, agent_key, _, _ = await _keys(committed)
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {agent_key}"}, timeout=30) as http, \
            streamable_http_client(mcp_url, http_client=http) as streams, ClientSession(streams[0], streams[1]) as mcp:
        await mcp.initialize()
        body = {"subject": "Resend the invoice"}
        first = await mcp.call_tool("create_ticket", body, meta={"idempotency_key": "mcp-call-1"})
        second = await mcp.call_tool("create_ticket", body, meta={"idempotency_key": "mcp-call-1"})
        assert not first.is_error and json.loads(first.content[0].text) == json.loads(second.content[0].text)
        reused = await mcp.call_tool("create_ticket", {"subject": "Other"}, meta={"idempotency_key": "mcp-call-1"})
        assert reused.is_error and json.loads(reused.content[0].text)["code"] == "idempotency_key_reused"
        too_long = await mcp.call_tool("create_ticket", body, meta={"idempotency_key": "k" * 201})
        assert too_long.is_error
        assert json.loads(too_long.content[0].text)["errors"][0]["field"] == "_meta.idempotency_key"
    async with committed.session() as s:
        tickets = await s.scalar(select(func.count()).select_from(Ticket).where(Ticket.org_id == org.id))
        runs = await s.scalar(select(func.count()).select_from(ToolRun).where(ToolRun.org_id == org.id))
    assert tickets == 1 and runs == 1


async def test_mcp_refuses_without_credentials_and_foreign_hosts(mcp_url: str, committed: Committed) -> None:
    _, agent_key, support_key, _ = await _keys(committed)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(mcp_url, json=init, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        r = await http.post(mcp_url, json=init, headers={**headers, "Authorization": "Bearer prm_wrong_key"})
        assert r.status_code == 401
        # a credential without agents:read (a support agent's key) is refused like GET /agents/tools
        r = await http.post(mcp_url, json=init, headers={**headers, "Authorization": f"Bearer {support_key}"})
        assert r.status_code == 403 and r.json()["code"] == "missing_scope"
        assert r.headers["content-type"] == "application/problem+json"
        r = await http.post(mcp_url, json=init, headers={**headers, "Authorization": f"Bearer {agent_key}",
                                                         "Host": "evil.example"})
        assert r.status_code == 421  # the SDK's DNS-rebinding guard, with our allowed hosts
        r = await http.post(mcp_url, json=init, headers={**headers, "Authorization": f"Bearer {agent_key}",
                                                         "Origin": "https://evil.example"})
        assert r.status_code == 403  # a page of another origin, even with a credential
        r = await http.post(mcp_url, json=init, headers={**headers, "Authorization": f"Bearer {agent_key}"})
        assert r.status_code == 200 and r.json()["result"]["serverInfo"]["name"] == "prm"
