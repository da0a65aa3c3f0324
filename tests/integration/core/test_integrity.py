"""The last line: a constraint the services did not check first is a 4xx naming the column, never a
500 and never the offending values (PostgreSQL's message and DETAIL quote them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from prm.app import create_app
from prm.core import clock, integrity
from prm.core.db import Database
from prm.core.errors import Conflict, ValidationFailed
from prm.identity.models import Organisation


async def _violation(session: AsyncSession, statement: Any) -> IntegrityError:
    with pytest.raises(IntegrityError) as info:
        async with session.begin_nested():
            await session.execute(statement)
    return info.value


async def test_foreign_key_violation_is_a_422_naming_the_column(session: AsyncSession, org: Organisation) -> None:
    missing = uuid.uuid4()
    exc = await _violation(session, text(
        "INSERT INTO communications (id, org_id, patient_id, channel, direction, status, "
        "attempts, created_at, updated_at) VALUES (gen_random_uuid(), :org, :missing, 'sms', "
        "'outbound', 'queued', 0, now(), now())").bindparams(org=org.id, missing=missing))
    problem = integrity.problem_for(exc)
    assert isinstance(problem, ValidationFailed) and problem.status == 422
    assert problem.errors == [{"field": "patient_id", "message": "refers to nothing in this organisation",
                               "type": "unknown_reference"}]
    assert str(missing) not in str(problem.problem())


async def test_deleting_a_referenced_row_is_a_409(session: AsyncSession, client: httpx.AsyncClient) -> None:
    from prm.patients.models import Patient

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await client.post(path, json=body)
        assert r.status_code == 201, r.text
        return r.json()

    with clock.frozen(datetime(2026, 3, 23, 8, 0, tzinfo=UTC)):
        patient = await post("/patients", {"given_name": "Ref", "family_name": "Erenced"})
        location = await post("/locations", {"name": "Ref", "timezone": "UTC"})
        practitioner = await post("/practitioners", {"name": "Dr Ref", "timezone": "UTC"})
        await post(f"/practitioners/{practitioner['id']}/availability/rules",
                   {"location_id": location["id"], "weekday": 1, "start_time": "09:00", "end_time": "12:00"})
        service = await post("/services", {"name": "Ref", "duration_minutes": 30, "min_notice_minutes": 0,
                                           "practitioner_ids": [practitioner["id"]]})
        await post("/appointments", {"patient_id": patient["id"], "service_id": service["id"],
                                     "practitioner_id": practitioner["id"], "start_at": "2026-03-24T10:00:00Z"})
    exc = await _violation(session, delete(Patient).where(Patient.id == uuid.UUID(patient["id"])))
    problem = integrity.problem_for(exc)
    assert isinstance(problem, Conflict) and problem.code == "still_referenced"


async def test_unique_and_not_null_violations(session: AsyncSession, org: Organisation) -> None:
    exc = await _violation(session, insert(Organisation).values(id=uuid.uuid4(), name="Dup", slug=org.slug,
                                                                timezone="UTC", is_active=True))
    problem = integrity.problem_for(exc)
    assert isinstance(problem, Conflict) and [e["field"] for e in problem.errors or []] == ["slug"]
    assert org.slug not in str(problem.problem())
    exc = await _violation(session, text("INSERT INTO organisations (id, name, timezone, is_active) "
                                         "VALUES (gen_random_uuid(), 'x', 'UTC', true)"))
    problem = integrity.problem_for(exc)
    assert isinstance(problem, ValidationFailed) and problem.errors and problem.errors[0]["field"] == "slug"


async def test_an_unmapped_violation_reaching_the_app_is_a_422_not_a_500(settings: Any, db: Database) -> None:
    app = create_app(settings, database=db)
    missing = uuid.uuid4()

    @app.post("/_probe")
    async def probe() -> None:
        async with db.sessionmaker() as s:
            await s.execute(text("INSERT INTO api_keys (id, org_id, name, role, prefix, secret_hash, created_at, "
                                 "updated_at) VALUES (gen_random_uuid(), :org, 'k', 'admin', 'p', 'h', now(), "
                                 "now())").bindparams(org=missing))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="https://prm.test") as c:
        r = await c.post("/_probe")
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0]["field"] == "org_id" and str(missing) not in r.text
