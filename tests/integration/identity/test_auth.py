from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import select

from prm.core import clock
from prm.identity.models import ApiKey
from tests.fixtures.factories import DEFAULT_PASSWORD, make_api_key, make_user


async def test_health_and_openapi_bearer(anon_client: httpx.AsyncClient) -> None:
    assert (await anon_client.get("/health")).json()["status"] == "ok"
    spec = (await anon_client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["OAuth2PasswordBearer"]["type"] == "oauth2"
    assert schemes["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == "/auth/token"


async def test_login_returns_jwt_that_authenticates(session, org, anon_client: httpx.AsyncClient) -> None:
    user = await make_user(session, org, role="coordinator", email="Coord@Example.org")
    r = await anon_client.post("/auth/token", data={"username": "coord@example.org", "password": DEFAULT_PASSWORD})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    me = await anon_client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["subject_id"] == str(user.id)
    assert "patients:write" in me.json()["scopes"]


async def test_wrong_password_is_401_problem(session, org, anon_client: httpx.AsyncClient) -> None:
    await make_user(session, org, email="a@example.org")
    r = await anon_client.post("/auth/token", data={"username": "a@example.org", "password": "nope-nope-nope"})
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "unauthenticated"


async def test_expired_token_is_rejected(session, org, anon_client: httpx.AsyncClient) -> None:
    await make_user(session, org, email="b@example.org")
    r = await anon_client.post("/auth/token", data={"username": "b@example.org", "password": DEFAULT_PASSWORD})
    token = r.json()["access_token"]
    with clock.frozen(clock.now() + timedelta(hours=2)):
        me = await anon_client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401


async def test_a_token_is_judged_by_the_service_clock_not_the_libraries(
    session, org, anon_client: httpx.AsyncClient
) -> None:
    """Time claims are read against `prm.core.clock`: a token issued while the clock runs ahead of the
    wall clock (a frozen test clock, or another server a second ahead) is valid at once; the expiry
    alone decides, by the same clock (PyJWT's own `iat` check used the wall clock: 401 within the second)."""
    user = await make_user(session, org, role="coordinator")
    with clock.frozen(clock.now() + timedelta(minutes=5)):
        r = await anon_client.post("/auth/token", data={"username": user.email, "password": DEFAULT_PASSWORD})
    assert r.status_code == 200, r.text
    me = await anon_client.get("/auth/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert me.status_code == 200, me.text
    assert me.json()["subject_id"] == str(user.id)


async def test_wrong_api_key_is_401(anon_client: httpx.AsyncClient) -> None:
    for value in ("prm_deadbeef0000_notthesecret", "garbage", "Bearer"):
        r = await anon_client.get("/auth/me", headers={"Authorization": f"Bearer {value}"})
        assert r.status_code == 401, value
    assert (await anon_client.get("/auth/me")).status_code == 401


async def test_revoked_key_is_401_and_last_used_is_recorded(session, org, anon_client: httpx.AsyncClient) -> None:
    key, secret = await make_api_key(session, org, role="integration")
    r = await anon_client.get("/auth/me", headers={"X-API-Key": secret})
    assert r.status_code == 200
    await session.refresh(key)
    assert key.last_used_at is not None
    _admin_key, admin_secret = await make_api_key(session, org, role="admin")
    r = await anon_client.post(f"/admin/api-keys/{key.id}/revoke", headers={"X-API-Key": admin_secret})
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert (await anon_client.get("/auth/me", headers={"X-API-Key": secret})).status_code == 401


async def test_role_without_scope_is_403(make_client) -> None:
    support = await make_client("support_agent")
    r = await support.get("/admin/users")
    assert r.status_code == 403
    assert r.json()["code"] == "permission_denied"
    assert r.json()["missing_scopes"] == ["admin"]


async def test_api_key_created_via_api_is_shown_once(session, org, client: httpx.AsyncClient) -> None:
    r = await client.post("/admin/api-keys", json={"name": "n8n", "role": "integration"})
    assert r.status_code == 201
    body = r.json()
    assert body["key"].startswith("prm_")
    listed = (await client.get("/admin/api-keys")).json()
    assert all("key" not in k for k in listed)
    stored = (await session.execute(select(ApiKey).where(ApiKey.id == body["id"]))).scalar_one()
    assert body["key"].split("_")[-1] not in stored.secret_hash


async def test_organisation_with_a_folder_of_zones_as_time_zone_is_422(make_client) -> None:
    """Found by fuzzing: `zoneinfo` raises OSError (not ValueError) for `Etc`; nothing is created."""
    client = await make_client("admin", platform_admin=True)
    r = await client.post("/admin/organisations", json={
        "organisation": {"name": "Zone Clinic", "slug": "zone-clinic", "timezone": "Etc"},
        "admin": {"email": "a@zone.example", "full_name": "Zed", "password": "a-long-password-1", "role": "admin"},
    })
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "timezone"
    assert (await client.post("/admin/organisations", json={
        "organisation": {"name": "Zone Clinic", "slug": "zone-clinic", "timezone": "UTC"},
        "admin": {"email": "a@zone.example", "full_name": "Zed", "password": "a-long-password-1", "role": "admin"},
    })).status_code == 201  # the slug was not taken by the refused attempt
