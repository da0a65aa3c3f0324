"""Only the platform role creates organisations (issue 9): an organisation's admin, by key or by
login, gets 403; a platform key or user flagged by the operator's CLI gets 201."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from prm.identity import service as identity
from prm.identity.models import ApiKey, Organisation
from tests.fixtures.factories import DEFAULT_PASSWORD, make_user


def _signup(slug: str) -> dict[str, Any]:
    return {"organisation": {"name": "Rogue Clinic", "slug": slug, "timezone": "UTC"},
            "admin": {"email": f"{slug}@rogue.example", "password": "long enough pw", "role": "admin"}}


async def _count_orgs(session, slug: str) -> int:
    return int(await session.scalar(select(func.count()).select_from(Organisation)
                                    .where(Organisation.slug == slug)) or 0)


async def test_an_organisation_admin_key_cannot_create_organisations(session, client: httpx.AsyncClient) -> None:
    slug = f"rogue-{uuid.uuid4().hex[:8]}"
    r = await client.post("/admin/organisations", json=_signup(slug))
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "permission_denied" and r.json()["missing_scopes"] == ["platform:admin"]
    assert await _count_orgs(session, slug) == 0
    assert "platform:admin" not in (await client.get("/auth/me")).json()["scopes"]


async def test_an_organisation_admin_user_cannot_create_organisations(session, org, anon_client) -> None:
    await make_user(session, org, role="admin", email="boss@clinic.example")
    token = (await anon_client.post("/auth/token", data={"username": "boss@clinic.example",
                                                         "password": DEFAULT_PASSWORD})).json()["access_token"]
    slug = f"rogue-{uuid.uuid4().hex[:8]}"
    r = await anon_client.post("/admin/organisations", json=_signup(slug),
                               headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403, r.text
    assert await _count_orgs(session, slug) == 0


async def test_a_platform_key_creates_organisations(session, make_client) -> None:
    platform = await make_client("integration", platform_admin=True)
    assert "platform:admin" in (await platform.get("/auth/me")).json()["scopes"]
    slug = f"new-{uuid.uuid4().hex[:8]}"
    r = await platform.post("/admin/organisations", json=_signup(slug))
    assert r.status_code == 201, r.text
    assert r.json()["admin"]["role"] == "admin" and r.json()["admin"]["is_platform_admin"] is False
    assert await _count_orgs(session, slug) == 1


async def test_a_platform_user_logs_in_and_creates_organisations(session, org, anon_client) -> None:
    user = await make_user(session, org, role="coordinator", email="operator@platform.example")
    await identity.set_platform_admin(session, "Operator@Platform.example", True)
    token = (await anon_client.post("/auth/token", data={"username": user.email,
                                                         "password": DEFAULT_PASSWORD})).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    r = await anon_client.post("/admin/organisations", json=_signup(f"op-{uuid.uuid4().hex[:8]}"), headers=auth)
    assert r.status_code == 201, r.text
    # Withdrawn: effective at once (the flag is read on every request, not from the token).
    await identity.set_platform_admin(session, str(user.id), False)
    r = await anon_client.post("/admin/organisations", json=_signup(f"op-{uuid.uuid4().hex[:8]}"), headers=auth)
    assert r.status_code == 403


async def test_the_api_cannot_mint_a_platform_key(session, app, client: httpx.AsyncClient) -> None:
    r = await client.post("/admin/api-keys", json={"name": "sneaky", "role": "admin", "is_platform_admin": True})
    assert r.status_code == 201 and r.json()["is_platform_admin"] is False
    stored = await session.scalar(select(ApiKey).where(ApiKey.id == uuid.UUID(r.json()["id"])))
    assert stored is not None and stored.is_platform_admin is False
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://prm.test",
                                 headers={"Authorization": f"Bearer {r.json()['key']}"}) as minted:
        r = await minted.post("/admin/organisations", json=_signup(f"x-{uuid.uuid4().hex[:8]}"))
        assert r.status_code == 403


async def test_an_organisation_admin_cannot_take_over_a_platform_user(session, org, client) -> None:
    """Resetting a platform admin's password would hand the platform role to an organisation admin."""
    operator = await make_user(session, org, role="admin", email="op2@platform.example")
    await identity.set_platform_admin(session, str(operator.id), True)
    r = await client.patch(f"/admin/users/{operator.id}", json={"password": "taken over password"})
    assert r.status_code == 403, r.text
    ordinary = await make_user(session, org, role="practitioner")
    assert (await client.patch(f"/admin/users/{ordinary.id}", json={"full_name": "Dr Who"})).status_code == 200
