"""Idempotency keys (issue 9): nothing is stored for an unauthenticated caller; a stored response is
replayed only to the credential that made it; bodies are bounded; expired responses are purged."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, text

from prm.app import create_app
from prm.core import clock
from prm.core.db import Database
from prm.core.idempotency import IdempotencyRecord, purge_expired
from tests.fixtures.factories import DEFAULT_PASSWORD, make_user

PATIENT = {"given_name": "Ida", "family_name": "Empotent"}


async def _rows(db: Database, key: str) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM idempotency_keys WHERE key = :k"),
                                       {"k": key})).scalar_one())


async def test_nothing_is_stored_for_an_unauthenticated_caller(anon_client: httpx.AsyncClient, db: Database) -> None:
    for headers in ({}, {"Authorization": "Bearer prm_nothere_notasecret"},
                    {"Authorization": "Bearer not-a-jwt"}, {"X-API-Key": "prm_abc_def"}):
        key = uuid.uuid4().hex
        r = await anon_client.post("/patients", json=PATIENT, headers={"Idempotency-Key": key, **headers})
        assert r.status_code == 401, r.text
        assert "idempotent-replayed" not in r.headers
        assert await _rows(db, key) == 0, headers
    # Public routes (login, webhooks) authenticate no credential: nothing stored either.
    key = uuid.uuid4().hex
    await anon_client.post("/auth/token", data={"username": "x@example.org", "password": "nope nope nope"},
                           headers={"Idempotency-Key": key})
    assert await _rows(db, key) == 0


async def test_a_replay_goes_only_to_the_same_credential(
    session, org, other_org, make_client, anon_client: httpx.AsyncClient, db: Database
) -> None:
    key = uuid.uuid4().hex
    mine = await make_client("coordinator")
    first = await mine.post("/patients", json=PATIENT, headers={"Idempotency-Key": key})
    assert first.status_code == 201 and await _rows(db, key) == 1
    again = await mine.post("/patients", json=PATIENT, headers={"Idempotency-Key": key})
    assert again.headers.get("idempotent-replayed") == "true" and again.json()["id"] == first.json()["id"]

    # Another key of the same organisation, and a key of another organisation: their own request.
    colleague = await make_client("coordinator")
    r = await colleague.post("/patients", json=PATIENT, headers={"Idempotency-Key": key})
    assert "idempotent-replayed" not in r.headers and r.json().get("id") != first.json()["id"]
    stranger = await make_client("coordinator", for_org=other_org)
    r = await stranger.post("/patients", json=PATIENT, headers={"Idempotency-Key": key})
    assert "idempotent-replayed" not in r.headers
    assert r.status_code == 201 and r.json()["id"] != first.json()["id"]


async def test_a_user_is_one_credential_across_logins(session, org, anon_client: httpx.AsyncClient) -> None:
    """Scoped by who the caller is (organisation + user), not by the bytes of one token."""
    user = await make_user(session, org, role="coordinator")
    tokens = []
    for _ in range(2):
        with clock.frozen(clock.now() + timedelta(seconds=len(tokens))):  # two distinct tokens
            r = await anon_client.post("/auth/token", data={"username": user.email, "password": DEFAULT_PASSWORD})
        tokens.append(r.json()["access_token"])
    assert tokens[0] != tokens[1]
    key = uuid.uuid4().hex
    first = await anon_client.post("/patients", json=PATIENT,
                                   headers={"Idempotency-Key": key, "Authorization": f"Bearer {tokens[0]}"})
    second = await anon_client.post("/patients", json=PATIENT,
                                    headers={"Idempotency-Key": key, "Authorization": f"Bearer {tokens[1]}"})
    assert first.status_code == second.status_code == 201
    assert second.headers.get("idempotent-replayed") == "true" and second.json()["id"] == first.json()["id"]


async def test_bodies_are_bounded(client: httpx.AsyncClient, db: Database, settings: Any) -> None:
    key = uuid.uuid4().hex
    big = {**PATIENT, "tags": ["x" * 1000] * (settings.idempotency_max_body_bytes // 1000 + 1)}
    r = await client.post("/patients", json=big, headers={"Idempotency-Key": key})
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "idempotency_body_too_large" and r.json()["errors"][0]["field"] == "body"
    assert await _rows(db, key) == 0


async def test_a_response_larger_than_the_limit_is_not_stored(settings: Any, db: Database, committed) -> None:
    app = create_app(settings.model_copy(update={"idempotency_max_body_bytes": 200}), database=db)
    _, api_key = await committed.org("coordinator")
    key = uuid.uuid4().hex
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://prm.test",
                                 headers={"Authorization": f"Bearer {api_key}", "Idempotency-Key": key}) as c:
        first = await c.post("/patients", json=PATIENT)
        assert first.status_code == 201 and len(first.content) > 200
        second = await c.post("/patients", json=PATIENT)
        assert second.status_code == 409 and second.json()["code"] == "idempotency_not_replayable"
    async with db.sessionmaker() as s:
        row = await s.scalar(select(IdempotencyRecord).where(IdempotencyRecord.key == key))
        assert row is not None and row.state == "unreplayable" and row.response_body is None


async def test_expired_responses_are_purged(client: httpx.AsyncClient, db: Database, settings: Any) -> None:
    key = uuid.uuid4().hex
    assert (await client.post("/patients", json=PATIENT, headers={"Idempotency-Key": key})).status_code == 201
    async with db.sessionmaker() as s:
        assert await purge_expired(s) >= 0
        await s.commit()
    assert await _rows(db, key) == 1  # still within IDEMPOTENCY_TTL_HOURS
    with clock.frozen(clock.now() + timedelta(hours=settings.idempotency_ttl_hours, seconds=1)):
        async with db.sessionmaker() as s:
            assert await purge_expired(s) >= 1
            await s.commit()
    assert await _rows(db, key) == 0
    async with db.sessionmaker() as s:
        assert await s.scalar(select(func.count()).select_from(IdempotencyRecord)
                              .where(IdempotencyRecord.expires_at <= clock.now())) == 0
