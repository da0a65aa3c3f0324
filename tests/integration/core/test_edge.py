"""The edge of the app (issue 9): trusted proxies, failed logins per account, request body size,
deep JSON through the NUL guard, API docs and unsafe production settings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from prm.app import create_app
from prm.core.audit import AuditEntry
from prm.core.db import Database
from prm.core.errors import RateLimited
from prm.core.ratelimit import RateLimiter, account_key
from prm.core.startup import UnsafeConfiguration
from tests.fixtures.factories import DEFAULT_PASSWORD, make_user

PROBLEM = "application/problem+json"


def _client(app: Any, peer: str, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(peer, 40000)),
                             base_url="https://prm.test", headers=headers)


@pytest.fixture
def trusting(app: Any) -> Any:
    """The app with 10.0.0.0/8 configured as its proxies, for one test."""
    app.state.settings.trusted_proxies = ["10.0.0.0/8"]
    yield app
    app.state.settings.trusted_proxies = []


async def test_failed_logins_are_limited_per_account_across_addresses(session, org, app) -> None:
    await make_user(session, org, email="per-account@example.org")
    form = {"username": "Per-Account@example.org", "password": "wrong-password"}
    statuses = []
    for i in range(12):  # a new address each time: the per-address limit never applies
        async with _client(app, f"192.0.2.{i + 1}") as c:
            r = await c.post("/auth/token", data=form)
        statuses.append(r.status_code)
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
    assert r.headers["content-type"] == PROBLEM and int(r.headers["retry-after"]) >= 1
    async with _client(app, "192.0.2.99") as c:
        right = await c.post("/auth/token", data={"username": "per-account@example.org", "password": DEFAULT_PASSWORD})
    assert right.status_code == 429  # a used-up account cannot be used to test a guess


async def test_a_successful_login_clears_the_accounts_failures(session, org, app) -> None:
    await make_user(session, org, email="clears@example.org")
    wrong = {"username": "clears@example.org", "password": "wrong-password"}
    statuses = []
    for i in range(9):
        async with _client(app, f"192.0.2.{i + 1}") as c:
            statuses.append((await c.post("/auth/token", data=wrong)).status_code)
    async with _client(app, "192.0.2.50") as c:
        assert (await c.post("/auth/token", data={**wrong, "password": DEFAULT_PASSWORD})).status_code == 200
    for i in range(9):
        async with _client(app, f"192.0.2.{i + 60}") as c:
            statuses.append((await c.post("/auth/token", data=wrong)).status_code)
    assert statuses == [401] * 18


@pytest.mark.redis
async def test_account_limit_works_through_redis(redis_url: str) -> None:
    a, b = RateLimiter(redis_url), RateLimiter(redis_url)  # two replicas
    key = account_key(f"{uuid.uuid4().hex}@example.org")
    for _ in range(3):
        await a.check("3/minute", "login-account", key)
        await a.count("3/minute", "login-account", key)
    with pytest.raises(RateLimited):
        await b.check("3/minute", "login-account", key)
    await b.clear("3/minute", "login-account", key)
    await a.check("3/minute", "login-account", key)


async def test_forwarded_headers_from_a_client_that_is_no_proxy_are_ignored(session, org, app, make_client) -> None:
    key_client = await make_client("admin")
    headers = {"Authorization": key_client.headers["Authorization"], "X-Forwarded-For": "203.0.113.9"}
    async with _client(app, "192.0.2.7", headers) as c:
        r = await c.post("/patients", json={"given_name": "Ida", "family_name": "Proxy"})
    assert r.status_code == 201, r.text
    ips = {str(ip) for ip in (await session.scalars(select(AuditEntry.ip).where(AuditEntry.org_id == org.id))).all()}
    assert ips == {"192.0.2.7"}


async def test_a_trusted_proxy_gives_the_client_address(session, org, trusting, make_client) -> None:
    key_client = await make_client("admin")
    headers = {"Authorization": key_client.headers["Authorization"],
               # the client claims 198.51.100.1; the proxies (10.x) appended the real address
               "X-Forwarded-For": "198.51.100.1, 203.0.113.9, 10.0.0.2"}
    async with _client(trusting, "10.0.0.1", headers) as c:
        r = await c.post("/patients", json={"given_name": "Ida", "family_name": "Proxy"})
    assert r.status_code == 201, r.text
    ips = {str(ip) for ip in (await session.scalars(select(AuditEntry.ip).where(AuditEntry.org_id == org.id))).all()}
    assert ips == {"203.0.113.9"}


async def test_forwarded_rfc7239_style_when_configured(session, org, trusting, make_client) -> None:
    trusting.state.settings.forwarded_header_style = "forwarded"
    try:
        key_client = await make_client("admin")
        headers = {"Authorization": key_client.headers["Authorization"], "X-Forwarded-For": "198.51.100.1",
                   "Forwarded": 'for=198.51.100.2, for="[2001:db8::7]:4711";proto=https'}
        async with _client(trusting, "10.0.0.1", headers) as c:
            r = await c.post("/patients", json={"given_name": "Ida", "family_name": "Proxy"})
        assert r.status_code == 201, r.text
    finally:
        trusting.state.settings.forwarded_header_style = "x-forwarded"
    ips = {str(ip) for ip in (await session.scalars(select(AuditEntry.ip).where(AuditEntry.org_id == org.id))).all()}
    assert ips == {"2001:db8::7"}


async def test_rotating_forwarded_for_through_a_trusted_proxy_still_hits_the_account_limit(
    session, org, trusting
) -> None:
    await make_user(session, org, email="rotate@example.org")
    statuses = []
    async with _client(trusting, "10.0.0.1") as c:
        for i in range(12):
            r = await c.post("/auth/token", data={"username": "rotate@example.org", "password": "wrong-password"},
                             headers={"X-Forwarded-For": f"198.51.100.{i + 1}"})
            statuses.append(r.status_code)
    assert statuses[10:] == [429, 429]


async def _chunks(count: int, size: int, sent: list[int]) -> AsyncIterator[bytes]:
    for _ in range(count):
        sent.append(size)
        yield b" " * size


async def test_a_streamed_body_past_the_limit_is_413_before_it_is_read_whole(app, anon_client) -> None:
    limit = app.state.settings.max_request_body_bytes
    sent: list[int] = []
    chunk = 64 * 1024
    total_chunks = 2 * limit // chunk + 10
    r = await anon_client.post("/auth/token", content=_chunks(total_chunks, chunk, sent),
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    assert r.headers["content-type"] == PROBLEM and r.headers["connection"] == "close"
    assert r.json()["code"] == "payload_too_large" and r.json()["limit_bytes"] == limit
    assert r.headers["x-request-id"]
    assert sum(sent) <= limit + 2 * chunk < total_chunks * chunk  # stopped reading at the limit


async def test_a_declared_length_past_the_limit_is_413(app, anon_client) -> None:
    limit = app.state.settings.max_request_body_bytes
    r = await anon_client.post("/patients", content=b"{}", headers={"Content-Length": str(limit + 1),
                                                                     "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    assert len(r.headers["x-request-id"]) == 32  # the body limit answers inside the request context
    r = await anon_client.post("/patients", content=b"{}", headers={
        "Content-Length": str(limit + 1), "Content-Type": "application/json", "X-Request-ID": "trace-413"})
    assert r.status_code == 413 and r.headers["x-request-id"] == "trace-413"


async def test_a_body_within_the_limit_in_many_chunks_still_reaches_the_nul_guard(client) -> None:
    body = b'{"given_name": "A\\u0000", "family_name": "' + b"x" * 100 + b'"}'
    pieces = [body[i:i + 7] for i in range(0, len(body), 7)]

    async def stream() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    r = await client.post("/patients", content=stream(), headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "given_name"


@pytest.mark.parametrize("depth", [1000, 5000])
async def test_deeply_nested_json_with_nul_is_a_4xx_not_500(anon_client, depth: int) -> None:
    body = b"[" * depth + b'"\\u0000"' + b"]" * depth
    r = await anon_client.post("/patients", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"] == PROBLEM


async def test_deeply_nested_json_without_nul_is_a_4xx(client) -> None:
    body = b'{"given_name": ' + b"[" * 5000 + b"1" + b"]" * 5000 + b"}"
    r = await client.post("/patients", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500


def _production(settings: Any, **changes: Any) -> Any:
    values = {"environment": "production", "secret_key": SecretStr("p" * 48), "public_base_url": "https://prm.example",
              "outbound_allow_private_targets": False}
    return settings.model_copy(update={**values, **changes})


@pytest.fixture(autouse=True)
def _restore_context(app: Any, db: Database) -> Any:
    """create_app binds the shared test database to its own context: give it back to the test app's."""
    from prm import context
    from prm.core import jobs

    yield
    context.bind(db.sessionmaker, app.state.context)
    jobs.bind(db.sessionmaker)


@pytest.mark.parametrize("docs", [None, False])
async def test_api_docs_are_off_in_production(settings, db: Database, docs: bool | None) -> None:
    app = create_app(_production(settings, api_docs=docs), database=db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t") as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await c.get(path)).status_code == 404
        assert (await c.get("/health")).status_code == 200


async def test_api_docs_on_when_asked_for(settings, db: Database) -> None:
    app = create_app(_production(settings, api_docs=True), database=db)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t") as c:
        assert (await c.get("/openapi.json")).status_code == 200
        assert (await c.get("/docs")).status_code == 200


@pytest.mark.parametrize("secret", [None, "secret", "x" * 31])
def test_production_refuses_to_start_without_a_long_secret_key(settings, db: Database, secret: str | None) -> None:
    with pytest.raises(UnsafeConfiguration) as info:
        create_app(_production(settings, secret_key=SecretStr(secret) if secret else None), database=db)
    assert any("SECRET_KEY" in p for p in info.value.problems)
    with pytest.raises(RuntimeError):
        _production(settings, secret_key=SecretStr(secret) if secret else None).jwt_secret()
