"""The credential cache (issue 19): a checked API key or login is trusted for AUTH_CACHE_SECONDS
without asking the database, so a revocation made by another process is honoured within that time,
one made by this process at once, and a cached credential never outlives its own expiry."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest

from prm.core import clock
from prm.core.auth import CredentialCache
from tests.fixtures.factories import DEFAULT_PASSWORD, make_user


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def cache_clock(app: Any) -> Iterator[FakeMonotonic]:
    """The app's credential cache with 5 seconds and a clock the test moves (pytest's monkeypatch
    cannot restore an attribute of starlette's State)."""
    fake = FakeMonotonic()
    previous = app.state.credential_cache
    app.state.credential_cache = CredentialCache(5, monotonic=fake)
    try:
        yield fake
    finally:
        app.state.credential_cache = previous


async def test_a_key_revoked_by_another_process_stops_working_within_the_cache_time(
    committed: Any, database_url: str, cache_clock: FakeMonotonic
) -> None:
    org, key = await committed.org()
    c = committed.client(key)
    assert (await c.get("/auth/me")).status_code == 200
    with psycopg.connect(database_url, autocommit=True) as conn:  # as another API process would
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE org_id = %s", (org.id,))
    cache_clock.now += 1
    assert (await c.get("/auth/me")).status_code == 200  # still trusted from the cache...
    cache_clock.now += 4.5
    r = await c.get("/auth/me")  # ...but not after AUTH_CACHE_SECONDS
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"


async def test_a_key_revoked_through_this_process_stops_working_at_once(
    committed: Any, cache_clock: FakeMonotonic
) -> None:
    _, key = await committed.org()
    _, other = await committed.org()
    c = committed.client(key)
    me = await c.get("/auth/me")
    assert me.status_code == 200
    assert (await committed.client(other).get("/auth/me")).status_code == 200  # cached too
    r = await c.post(f"/admin/api-keys/{me.json()['subject_id']}/revoke")
    assert r.status_code == 200, r.text
    assert (await c.get("/auth/me")).status_code == 401


async def test_a_user_deactivated_in_this_process_is_refused_at_once(
    session: Any, org: Any, anon_client: httpx.AsyncClient, cache_clock: FakeMonotonic
) -> None:
    user = await make_user(session, org, role="coordinator")
    token = (await anon_client.post("/auth/token", data={"username": user.email, "password": DEFAULT_PASSWORD}))
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert (await anon_client.get("/auth/me", headers=auth)).status_code == 200
    user.is_active = False
    await session.flush()
    assert (await anon_client.get("/auth/me", headers=auth)).status_code == 401


async def test_a_cached_login_never_outlives_its_token(
    session: Any, org: Any, anon_client: httpx.AsyncClient, cache_clock: FakeMonotonic
) -> None:
    user = await make_user(session, org)
    token = (await anon_client.post("/auth/token", data={"username": user.email, "password": DEFAULT_PASSWORD}))
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert (await anon_client.get("/auth/me", headers=auth)).status_code == 200
    with clock.frozen(clock.now() + timedelta(hours=2)):  # past `exp`, well within the cache time
        assert (await anon_client.get("/auth/me", headers=auth)).status_code == 401
