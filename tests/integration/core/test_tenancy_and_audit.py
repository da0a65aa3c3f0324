"""Every row belongs to one organisation; the audit log is append-only and filterable."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from prm.core import audit
from tests.fixtures.factories import make_user, principal


async def test_other_orgs_user_is_not_found(session, org, other_org, client: httpx.AsyncClient) -> None:
    stranger = await make_user(session, other_org, role="coordinator")
    r = await client.patch(f"/admin/users/{stranger.id}", json={"full_name": "Hijacked"})
    assert r.status_code == 404
    assert stranger.email not in (await client.get("/admin/users")).text


async def test_api_key_reads_only_its_own_organisation(session, org, other_org, make_client) -> None:
    mine = await make_client("admin")
    theirs = await make_client("admin", for_org=other_org)
    assert (await mine.get("/admin/organisation")).json()["id"] == str(org.id)
    assert (await theirs.get("/admin/organisation")).json()["id"] == str(other_org.id)


async def test_audit_log_is_append_only(session, org) -> None:
    await audit.record(session, principal(org), "read", "patient", "p1")
    await session.flush()
    with pytest.raises(DBAPIError):
        async with session.begin_nested():
            await session.execute(text("UPDATE audit_log SET action = 'tampered'"))
    with pytest.raises(DBAPIError):
        async with session.begin_nested():
            await session.execute(text("DELETE FROM audit_log"))


async def test_audit_entries_are_listed_with_filters(session, org, other_org, client: httpx.AsyncClient) -> None:
    who = principal(org)
    await audit.record(session, who, "read", "patient", "p1")
    await audit.record(session, who, "update", "patient", "p2", details={"fields": ["family_name"]})
    await audit.record(session, principal(other_org), "read", "patient", "p3")
    await session.flush()
    r = await client.get("/admin/audit", params={"resource_type": "patient"})
    ids = [e["resource_id"] for e in r.json()["items"]]
    assert ids == ["p2", "p1"]
    only_updates = (await client.get("/admin/audit", params={"action": "update"})).json()
    assert only_updates["total"] == 1 and only_updates["items"][0]["details"] == {"fields": ["family_name"]}


async def test_admin_actions_are_audited_with_credential_and_address(client: httpx.AsyncClient) -> None:
    r = await client.post("/admin/users", json={"email": "audited@example.org", "password": "long enough pw",
                                                 "role": "practitioner"})
    entries = (await client.get("/admin/audit", params={"resource_id": r.json()["id"]})).json()["items"]
    assert entries[0]["action"] == "create" and entries[0]["actor_kind"] == "api_key"
    assert entries[0]["ip"] == "127.0.0.1" and entries[0]["request_id"]


async def test_organisation_signup_via_admin_api(make_client) -> None:
    client = await make_client("integration", platform_admin=True)
    r = await client.post("/admin/organisations", json={
        "organisation": {"name": "Second", "slug": "second-clinic", "timezone": "America/New_York"},
        "admin": {"email": "boss@second.example", "password": "long enough pw", "role": "coordinator"},
    })
    assert r.status_code == 201
    assert r.json()["admin"]["role"] == "admin"
    bad = await client.post("/admin/organisations", json={
        "organisation": {"name": "X", "slug": "x-clinic", "timezone": "Mars/Olympus"},
        "admin": {"email": "x@x.example", "password": "long enough pw", "role": "admin"},
    })
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "timezone"
