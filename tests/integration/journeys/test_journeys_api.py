"""The journeys API: status codes, problem+json naming fields, scopes, tenancy, audit, OpenAPI."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core.audit import AuditEntry
from prm.identity.models import Organisation
from tests.fixtures.messaging import patient_with_contacts
from tests.integration.journeys.conftest import journey_body, new_patient_definition

PROBLEM = "application/problem+json"


async def _published(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    r = await client.post("/journeys", json=journey_body(**overrides))
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/journeys/{r.json()['id']}"
    journey: dict[str, Any] = r.json()
    r = await client.post(f"/journeys/{journey['id']}/publish")
    assert r.status_code == 201, r.text
    return journey


async def test_definition_lifecycle_over_http(client: httpx.AsyncClient, templates: None) -> None:
    journey = await _published(client)
    r = await client.post("/journeys", json=journey_body())
    assert r.status_code == 409 and r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == "journey_key_taken" and r.json()["errors"][0]["field"] == "key"

    r = await client.patch(f"/journeys/{journey['id']}", json={"name": "Renamed"})
    assert r.status_code == 200 and r.json()["name"] == "Renamed" and r.json()["status"] == "active"
    r = await client.post(f"/journeys/{journey['id']}/stages", json={
        "stage": {"key": "follow-up", "name": "Follow-up", "entry": "ask"},
        "steps": [{"id": "ask", "kind": "send_notification", "template_key": "journey_feedback"}]})
    assert r.status_code == 201, r.text
    r = await client.post(f"/journeys/{journey['id']}/publish")
    assert r.status_code == 201 and r.json()["version"] == 2
    r = await client.get(f"/journeys/{journey['id']}/versions")
    assert [v["version"] for v in r.json()] == [1, 2]
    r = await client.get(f"/journeys/{journey['id']}/versions/1")
    assert r.status_code == 200 and len(r.json()["definition"]["stages"]) == 4
    r = await client.get(f"/journeys/{journey['id']}/versions/9")
    assert r.status_code == 404 and r.json()["code"] == "journey_version_not_found"
    r = await client.post(f"/journeys/{journey['id']}/retire")
    assert r.status_code == 200 and r.json()["status"] == "retired" and r.json()["active_version"] is None
    r = await client.get("/journeys", params={"status": "retired"})
    assert [j["key"] for j in r.json()["items"]] == ["new-patient"]


async def test_bad_definitions_name_the_field(client: httpx.AsyncClient) -> None:
    body = journey_body()
    body["definition"]["steps"][0] = {"id": "send-welcome", "kind": "teleport"}
    r = await client.post("/journeys", json=body)
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    assert any("definition" in e["field"] and "steps" in e["field"] for e in r.json()["errors"])

    dangling = journey_body(key="dangling")
    dangling["definition"]["steps"][0]["next"] = "nowhere"
    r = await client.post("/journeys", json=dangling)
    assert r.status_code == 201
    r = await client.post(f"/journeys/{r.json()['id']}/publish")
    assert r.status_code == 422 and r.json()["code"] == "invalid_definition"
    fields = [e["field"] for e in r.json()["errors"]]
    assert "definition.steps.0.next" in fields and "definition.steps.0.template_key" in fields


async def test_instances_over_http(client: httpx.AsyncClient, session: AsyncSession, org: Organisation,
                                   other_org: Organisation, templates: None, messaging_settings: Any) -> None:
    journey = await _published(client, definition=new_patient_definition(trigger=False))
    patient = await patient_with_contacts(session, org)
    stranger = await patient_with_contacts(session, other_org)

    r = await client.post(f"/journeys/{journey['id']}/instances", json={"patient_id": str(stranger.id)})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "patient_id"
    r = await client.post(f"/journeys/{journey['id']}/instances", json={"patient_id": str(patient.id)})
    assert r.status_code == 201, r.text
    instance = r.json()
    assert r.headers["Location"] == f"/journey-instances/{instance['id']}"
    assert instance["current_stage"] == "welcome" and instance["allowed_transitions"] == ["booking"]
    r = await client.post(f"/journeys/{journey['id']}/instances", json={"patient_id": str(patient.id)})
    assert r.status_code == 409 and r.json()["code"] == "already_enrolled"
    assert r.json()["instance_id"] == instance["id"]

    r = await client.post(f"/journey-instances/{instance['id']}/advance", json={"to_stage": "completed"})
    assert r.status_code == 409 and r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["code"] == "invalid_stage_transition" and r.json()["allowed_transitions"] == ["booking"]
    r = await client.post(f"/journey-instances/{instance['id']}/advance", json={"to_stage": "Bad Stage"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("to_stage")

    r = await client.post(f"/journey-instances/{instance['id']}/execute")
    assert r.status_code == 202 and r.json()["step_id"] == "send-welcome" and r.json()["occurrence"] == 2

    r = await client.post(f"/journey-instances/{instance['id']}/exit", json={"reason": "moved_away"})
    assert r.status_code == 200 and r.json()["status"] == "exited" and r.json()["allowed_transitions"] == []
    r = await client.post(f"/journey-instances/{instance['id']}/exit", json={})
    assert r.status_code == 409 and r.json()["code"] == "instance_not_active"

    r = await client.get("/journey-instances", params={"patient_id": str(patient.id), "status": "exited"})
    assert r.json()["total"] == 1
    r = await client.get(f"/journey-instances/{instance['id']}/timeline")
    assert r.status_code == 200
    statuses = [(e["step_id"], e["status"]) for e in r.json()["entries"] if e["type"] == "step"]
    assert statuses == [("send-welcome", "cancelled"), ("send-welcome", "cancelled")]  # never ran: no worker here

    audited = list(await session.scalars(select(AuditEntry.action).where(
        AuditEntry.org_id == org.id, AuditEntry.resource_type == "journey_instance",
        AuditEntry.patient_id == patient.id)))
    assert {"create", "execute", "exit", "read"} <= set(audited)


async def test_scopes_and_tenancy(make_client: Any, client: httpx.AsyncClient, other_org: Organisation,
                                  templates: None) -> None:
    journey = await _published(client, definition=new_patient_definition(trigger=False))
    practitioner = await make_client("practitioner")
    r = await practitioner.get(f"/journeys/{journey['id']}")
    assert r.status_code == 200
    r = await practitioner.post("/journeys", json=journey_body(key="mine"))
    assert r.status_code == 403 and r.json()["missing_scopes"] == ["journeys:write"]
    coordinator = await make_client("coordinator")
    r = await coordinator.post(f"/journeys/{journey['id']}/retire")
    assert r.status_code == 200
    outsider = await make_client("admin", for_org=other_org)
    for method, path in (("GET", f"/journeys/{journey['id']}"), ("POST", f"/journeys/{journey['id']}/publish"),
                         ("GET", f"/journeys/{journey['id']}/versions")):
        r = await outsider.request(method, path)
        assert r.status_code == 404 and r.json()["code"] == "journey_not_found", path
    r = await outsider.get("/journeys")
    assert r.json()["total"] == 0


async def test_openapi_has_examples_for_journey_bodies(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    create = spec["paths"]["/journeys"]["post"]["requestBody"]["content"]["application/json"]
    assert create["examples"]["new_patient"]["value"]["key"] == "new-patient"
    advance = spec["paths"]["/journey-instances/{instance_id}/advance"]["post"]
    assert "examples" in advance["requestBody"]["content"]["application/json"]
