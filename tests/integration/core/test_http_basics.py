"""Errors are problem+json; health, readiness, metrics; rate limits; idempotency; request ids."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import APIRouter

from prm.app import create_app
from prm.core.db import Database
from prm.core.ratelimit import RateLimiter
from tests.fixtures.factories import DEFAULT_PASSWORD, make_user

PROBLEM = "application/problem+json"


async def test_unknown_route_is_404_problem(anon_client: httpx.AsyncClient) -> None:
    r = await anon_client.get("/nope")
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["type"].endswith("/not_found") and body["status"] == 404 and "/nope" in body["detail"]


async def test_wrong_method_is_405_problem(anon_client: httpx.AsyncClient) -> None:
    r = await anon_client.delete("/health")
    assert r.status_code == 405
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "method_not_allowed"


async def test_validation_error_names_each_field(client: httpx.AsyncClient) -> None:
    r = await client.post("/admin/users", json={"email": "not-an-email", "password": "short", "role": "wizard"})
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"email", "password", "role"} <= fields


async def test_unhandled_error_is_500_without_internals(settings, db: Database) -> None:
    app = create_app(settings, database=db)
    boom = APIRouter()

    @boom.get("/_test/boom")
    async def explode() -> None:
        raise RuntimeError(f"secret {settings.jwt_secret()} in a stack trace")

    app.include_router(boom)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="https://t") as c:
        r = await c.get("/_test/boom")
    assert r.status_code == 500
    assert r.headers["content-type"] == PROBLEM
    assert settings.jwt_secret() not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    assert r.json()["request_id"] == r.headers["x-request-id"]


async def test_request_id_is_echoed(anon_client: httpx.AsyncClient) -> None:
    r = await anon_client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert len((await anon_client.get("/health")).headers["x-request-id"]) == 32


async def test_ready_is_200_at_head_and_503_otherwise(app, anon_client: httpx.AsyncClient) -> None:
    r = await anon_client.get("/ready")
    assert r.status_code == 200, r.text
    head = app.state.alembic_head
    app.state.alembic_head = "some_future_revision"
    try:
        r = await anon_client.get("/ready")
    finally:
        app.state.alembic_head = head
    assert r.status_code == 503 and r.json()["code"] == "migrations_pending"


async def test_ready_is_503_when_database_unreachable(settings) -> None:
    bad = Database.connect("postgresql://nobody@127.0.0.1:1/none")
    app = create_app(settings, database=bad)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t") as c:
        r = await c.get("/ready")
        assert r.status_code == 503 and r.json()["code"] == "database_unavailable"
        assert (await c.get("/health")).status_code == 200
    await bad.dispose()


async def test_metrics_label_route_templates_and_jobs(client: httpx.AsyncClient) -> None:
    await client.patch(f"/admin/users/{uuid.uuid4()}", json={"full_name": "x"})
    text = (await client.get("/metrics")).text
    assert 'route="/admin/users/{user_id}"' in text
    assert "prm_http_request_duration_seconds_bucket" in text
    assert "prm_jobs" in text


async def test_login_is_rate_limited_with_retry_after(session, org, anon_client: httpx.AsyncClient, app) -> None:
    await make_user(session, org, email="rl@example.org")
    statuses = []
    for _ in range(12):
        r = await anon_client.post("/auth/token", data={"username": "rl@example.org", "password": "wrong-password"})
        statuses.append(r.status_code)
    assert statuses[:10] == [401] * 10
    assert statuses[-1] == 429
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["content-type"] == PROBLEM
    await app.state.rate_limiter.reset()
    ok = await anon_client.post("/auth/token", data={"username": "rl@example.org", "password": DEFAULT_PASSWORD})
    assert ok.status_code == 200


@pytest.mark.redis
async def test_rate_limit_shared_through_redis(redis_url: str) -> None:
    a, b = RateLimiter(redis_url), RateLimiter(redis_url)  # two replicas
    await a.reset()
    key = uuid.uuid4().hex
    for _ in range(2):
        await a.hit("3/minute", key)
    await b.hit("3/minute", key)
    with pytest.raises(Exception) as info:
        await b.hit("3/minute", key)
    assert info.value.status == 429  # type: ignore[attr-defined]
    assert a.backend == "redis"


async def test_idempotency_key_replays_first_response(client: httpx.AsyncClient) -> None:
    key = uuid.uuid4().hex
    body = {"email": f"{key}@example.org", "password": "long enough password", "role": "coordinator"}
    first = await client.post("/admin/users", json=body, headers={"Idempotency-Key": key})
    second = await client.post("/admin/users", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    users = (await client.get("/admin/users")).json()
    assert [u["email"] for u in users].count(body["email"]) == 1


async def test_idempotency_key_reused_with_other_body_is_422(client: httpx.AsyncClient) -> None:
    key = uuid.uuid4().hex
    body = {"email": f"{key}@example.org", "password": "long enough password", "role": "coordinator"}
    await client.post("/admin/users", json=body, headers={"Idempotency-Key": key})
    other = await client.post("/admin/users", json={**body, "role": "admin"}, headers={"Idempotency-Key": key})
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


async def test_idempotency_never_stores_secrets(client: httpx.AsyncClient, db: Database) -> None:
    key = uuid.uuid4().hex
    first = await client.post("/admin/api-keys", json={"name": "k"}, headers={"Idempotency-Key": key})
    assert first.status_code == 201
    second = await client.post("/admin/api-keys", json={"name": "k"}, headers={"Idempotency-Key": key})
    assert second.status_code == 409 and second.json()["code"] == "idempotency_not_replayable"
    async with db.engine.connect() as conn:
        from sqlalchemy import text

        stored = (await conn.execute(text("SELECT response_body FROM idempotency_keys WHERE key = :k"),
                                     {"k": key})).scalar_one()
    assert stored is None


async def test_idempotency_keys_are_scoped_per_credential(make_client) -> None:
    key = uuid.uuid4().hex
    a, b = await make_client("admin"), await make_client("admin")
    body = {"email": f"{key}@example.org", "password": "long enough password", "role": "coordinator"}
    assert (await a.post("/admin/users", json=body, headers={"Idempotency-Key": key})).status_code == 201
    r = await b.post("/admin/users", json=body, headers={"Idempotency-Key": key})
    assert "idempotent-replayed" not in r.headers and r.status_code == 409  # email taken, not a replay


# --- bad input found by fuzzing (schemathesis): 4xx naming the field, never a 500 -----------------


async def test_huge_offset_is_422_not_a_database_error(client: httpx.AsyncClient) -> None:
    for path in ("/patients", "/admin/jobs", "/communications/sandbox/outbox"):
        r = await client.get(path, params={"offset": str(10**22)})
        assert r.status_code == 422, (path, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["errors"][0]["field"] == "offset"


async def test_huge_job_id_is_422(client: httpx.AsyncClient) -> None:
    r = await client.post(f"/admin/jobs/{10**20}/retry")
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "job_id"


async def test_nul_character_in_query_is_422_naming_the_parameter(client: httpx.AsyncClient) -> None:
    r = await client.get("/patients", params={"q": "ana\x00"})
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["errors"] == [{"field": "q", "in": "query", "message": r.json()["errors"][0]["message"],
                                   "type": "nul_character"}]


async def test_nul_character_in_json_is_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient,
) -> None:
    before = (await client.get("/patients")).json()["total"]
    r = await client.post("/patients", json={
        "given_name": "Ana", "family_name": "Nul",
        "identifiers": [{"system": "urn:ok", "value": "1"}, {"system": "urn:x\x00", "value": "2"}],
    })
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["errors"][0]["field"] == "identifiers.1.system"
    assert (await client.get("/patients")).json()["total"] == before
    r = await client.post("/notifications/templates/preview",
                          json={"key": "appointment_reminder", "channel": "sms", "variables": {"a\x00": 1}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "variables.a\\u0000"


async def test_nul_character_in_a_login_form_is_422(anon_client: httpx.AsyncClient) -> None:
    r = await anon_client.post("/auth/token", data={"username": "a\x00@example.org", "password": "x"})
    assert r.status_code == 422
    assert r.json()["errors"][0] == {"field": "username", "in": "form", "message": r.json()["errors"][0]["message"],
                                     "type": "nul_character"}


async def test_openapi_documents_errors_as_problem_json(anon_client: httpx.AsyncClient) -> None:
    doc = (await anon_client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert {"Problem", "ProblemFieldError"} <= set(doc["components"]["schemas"])
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "default" in responses, (method, path)
            for status, response in responses.items():
                if status == "default" or status[0] in "45":
                    assert list(response["content"]) == [PROBLEM], (method, path, status)
