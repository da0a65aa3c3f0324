"""Ids in a request body or query are resolved within the caller's organisation (issue 9).

Organisation B sending organisation A's real id, or an id that exists nowhere, gets the same 422
naming the field: never a 2xx that stores a reference into A, never a 500 (a foreign-key
violation) that tells B whether the id exists elsewhere. The walking test reads every route's
request-body schema and query parameters from /openapi.json, so a new route is covered the day
it is added; a new id field needs an entry in `_ids` (and its route a valid body in `_bodies`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from prm.communications.models import Communication
from prm.core import clock
from prm.identity.models import Organisation
from tests.fixtures import media_samples as samples
from tests.fixtures.factories import make_user
from tests.fixtures.media import upload_file

PROBLEM = "application/problem+json"
# Monday 2026-03-23, 08:00 UTC (09:00 in Madrid).
NOW = datetime(2026, 3, 23, 8, 0, tzinfo=UTC)
APPT = {"service_name": "Cleaning", "practitioner_name": "Dr Ruiz", "location_name": "Main St",
        "when": "Tuesday 24 March 2026, 10:30"}

# `*_id` fields that do not name a row of the caller's organisation, with the reason.
NOT_ROW_IDS = {
    "client_id": "the OAuth2 password form's client id, not a row",
    "resource_id": "audit log filter: free text naming any resource (deleted ones too)",
    "client_item_id": "intake records: the client's own id of an item (the upsert key), not a row",
}


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _id_fields(doc: dict[str, Any], schema: dict[str, Any], prefix: str = "", depth: int = 0) -> list[str]:
    """Dotted paths of every `*_id` / `*_ids` property, through nested objects and arrays."""
    schema = _resolve(doc, schema)
    found: list[str] = []
    if depth > 8:
        return found
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            found += _id_fields(doc, sub, prefix, depth + 1)
    if schema.get("type") == "array" and "items" in schema:
        found += _id_fields(doc, schema["items"], f"{prefix}0.", depth + 1)
    for name, sub in (schema.get("properties") or {}).items():
        if name.endswith(("_id", "_ids")):
            found.append(prefix + name)
        found += _id_fields(doc, sub, f"{prefix}{name}.", depth + 1)
    return list(dict.fromkeys(found))


def _with(body: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of `body` with `dotted` (e.g. `items.0.patient_id`) set to `value`."""
    import copy

    out = copy.deepcopy(body)
    target: Any = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    target[parts[-1]] = value
    return out


async def _world(session: Any, org: Organisation, client: httpx.AsyncClient) -> dict[str, Any]:
    """One of everything an id can name, in `org`, keyed by the field names that refer to it."""
    ids: dict[str, Any] = {}

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await client.post(path, json=body)
        assert r.status_code == 201, (path, r.text)
        return r.json()

    patient = await post("/patients", {"given_name": "Walk", "family_name": "Er",
                                       "phones": [{"number": "+34612345678"}], "preferred_channel": "sms"})
    duplicate = await post("/patients", {"given_name": "Walk", "family_name": "Ertwo"})
    location = await post("/locations", {"name": "Centro", "timezone": "Europe/Madrid"})
    practitioner = await post("/practitioners", {"name": "Dr Vega", "timezone": "Europe/Madrid"})
    for weekday in range(5):
        await post(f"/practitioners/{practitioner['id']}/availability/rules",
                   {"location_id": location["id"], "weekday": weekday, "start_time": "09:00", "end_time": "13:00"})
    service = await post("/services", {"name": "Cleaning", "duration_minutes": 30, "min_notice_minutes": 0,
                                       "practitioner_ids": [practitioner["id"]]})
    appointment = await post("/appointments", {"patient_id": patient["id"], "service_id": service["id"],
                                               "practitioner_id": practitioner["id"], "location_id": location["id"],
                                               "start_at": "2026-03-24T10:00:00+01:00"})
    conversation = await post("/conversations", {"patient_id": patient["id"], "channel": "sms"})
    ticket = await post("/tickets", {"subject": "Walk", "patient_id": patient["id"], "auto_assign": False})
    user = await make_user(session, org, role="coordinator")
    questionnaire = await post("/intake/questionnaires", {"key": "walk", "title": "Walk",
                                                          "item": [{"linkId": "a", "type": "string"}]})
    intake_session = await post("/intake/sessions", {"source": "staff"})
    agent_run = await post("/agents/agent-runs", {"goal": "Say hello"})
    await post("/integrations/n8n/integrations", {"name": "main", "base_url": "http://127.0.0.1:9",
                                                  "workflows": {"triage": "webhook/triage"}})
    connection = await post("/fhir/connections", {"name": "EHR", "base_url": "http://127.0.0.1:9/fhir",
                                                  "auth": "bearer", "bearer_token": "walk-token"})
    message = await post("/communications", {"patient_id": patient["id"], "channel": "sms", "body": "Walk"})
    # a file uploaded for the patient (declared, uploaded through the signed URL, verified)
    media = await upload_file(client, samples.png(1200), "image/png", "walk.png", patient_id=patient["id"])
    journey = await post("/journeys", {"key": "walk", "name": "Walk", "entry_policy": "once_per_patient",
                                       "definition": {"stages": [{"key": "only", "name": "Only"}]}})
    r = await client.post(f"/journeys/{journey['id']}/publish")
    assert r.status_code == 201, r.text
    ids.update(
        media_ids=[media["id"]], message_id=message["id"], journey_id=journey["id"],
        connection_id=connection["id"],
        patient_id=patient["id"], duplicate_id=duplicate["id"], patient_ids=[patient["id"]],
        location_id=location["id"], practitioner_id=practitioner["id"], practitioner_ids=[practitioner["id"]],
        service_id=service["id"], appointment_id=appointment["id"], conversation_id=conversation["id"],
        ticket_id=ticket["id"], user_id=str(user.id), assignee_id=str(user.id), actor_id=str(user.id),
        questionnaire_id=questionnaire["id"], session_id=intake_session["id"], intake_session_id=intake_session["id"],
        assigned_practitioner_id=practitioner["id"], agent_run_id=agent_run["id"],
    )
    return ids


def _bodies(mine: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """A valid body for every route that takes an id in its body (with this organisation's ids)."""
    return {
        ("POST", "/practitioners"): {"name": "Dr Walk", "timezone": "Europe/Madrid", "user_id": mine["user_id"]},
        ("PATCH", "/practitioners/{practitioner_id}"): {"user_id": mine["user_id"]},
        ("POST", "/practitioners/{practitioner_id}/availability/rules"): {
            "location_id": mine["location_id"], "weekday": 5, "start_time": "09:00", "end_time": "10:00"},
        ("POST", "/practitioners/{practitioner_id}/availability/exceptions"): {
            "kind": "extra_hours", "location_id": mine["location_id"],
            "start_at": "2026-03-28T09:00:00+01:00", "end_at": "2026-03-28T10:00:00+01:00"},
        ("POST", "/services"): {"name": "Walk", "duration_minutes": 30, "practitioner_ids": mine["practitioner_ids"]},
        ("PATCH", "/services/{service_id}"): {"practitioner_ids": mine["practitioner_ids"]},
        ("POST", "/appointments"): {
            "patient_id": mine["patient_id"], "service_id": mine["service_id"],
            "practitioner_id": mine["practitioner_id"], "location_id": mine["location_id"],
            "start_at": "2026-03-24T11:00:00+01:00"},
        ("POST", "/appointments/{appointment_id}/reschedule"): {
            "start_at": "2026-03-25T10:00:00+01:00", "practitioner_id": mine["practitioner_id"],
            "location_id": mine["location_id"]},
        ("POST", "/notifications/send"): {"patient_id": mine["patient_id"], "channel": "sms",
                                          "template_key": "appointment_reminder", "variables": APPT},
        ("POST", "/notifications/batches"): {"template_key": "appointment_reminder", "channel": "sms",
                                             "variables": APPT, "patient_ids": mine["patient_ids"]},
        ("POST", "/communications"): {"patient_id": mine["patient_id"], "channel": "sms", "body": "Hello",
                                      "conversation_id": mine["conversation_id"]},
        ("POST", "/conversations"): {"patient_id": mine["patient_id"], "channel": "whatsapp"},
        ("POST", "/conversations/{conversation_id}/assign"): {"assignee_id": mine["assignee_id"]},
        ("POST", "/tickets"): {"subject": "Walk", "patient_id": mine["patient_id"],
                               "conversation_id": mine["conversation_id"], "assignee_id": mine["assignee_id"]},
        ("POST", "/tickets/{ticket_id}/assign"): {"assignee_id": mine["assignee_id"]},
        ("POST", "/patients/{patient_id}/merge"): {"duplicate_id": mine["duplicate_id"]},
        ("POST", "/intake/sessions"): {"source": "staff", "assigned_practitioner_id": mine["practitioner_id"]},
        ("PATCH", "/intake/sessions/{session_id}"): {"assigned_practitioner_id": mine["practitioner_id"]},
        ("POST", "/intake/sessions/{session_id}/link"): {"patient_id": mine["patient_id"],
                                                         "consent": {"granted": True}},
        ("POST", "/media"): {"filename": "walk.png", "content_type": "image/png", "size_bytes": 10,
                             "sha256": "0" * 64, "patient_id": mine["patient_id"]},
        ("POST", "/journeys/{journey_id}/instances"): {"patient_id": mine["patient_id"]},
        ("POST", "/search"): {"query": "walk", "patient_id": mine["patient_id"]},
        ("POST", "/integrations/n8n/runs"): {"workflow_key": "triage", "patient_id": mine["patient_id"],
                                             "conversation_id": mine["conversation_id"]},
        ("POST", "/fhir/connections/{connection_id}/sync"): {"patient_id": mine["patient_id"]},
        ("POST", "/agents/agent-runs"): {"goal": "Summarise the conversation",
                                         "conversation_id": mine["conversation_id"]},
    }


def _queries(mine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Query parameters a route requires besides the one under test."""
    return {"/slots": {"service_id": mine["service_id"], "start_date": "2026-03-24", "end_date": "2026-03-27"},
            "/fhir/connections/{connection_id}/links": {"patient_id": mine["patient_id"]}}


def _url(path: str, operation: dict[str, Any], mine: dict[str, Any]) -> str:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", str(mine[parameter["name"]]))
    return path


def _foreign(value: Any, field: str, theirs: dict[str, Any]) -> list[tuple[str, Any]]:
    name = field.rsplit(".", 1)[-1]
    random_id = str(uuid.uuid4())
    nowhere = ("an id that exists nowhere", [random_id] if name.endswith("_ids") else random_id)
    if theirs[name] is None:  # a kind no module can create yet: any id of it exists nowhere
        return [nowhere]
    return [("another organisation's id", theirs[name]), nowhere]


def _refused(r: httpx.Response, field: str) -> bool:
    """A 422 problem whose errors name exactly this field (so the id is what was refused). Never a
    404 either: that is for the resource in the path, and would differ for ids of other organisations."""
    if r.status_code != 422 or r.headers.get("content-type") != PROBLEM:
        return False
    named = {e["field"] for e in r.json().get("errors", [])}
    return bool(named) and all(n == field or n.startswith(field + ".") for n in named)


@pytest.fixture
async def openapi(anon_client: httpx.AsyncClient) -> dict[str, Any]:
    return (await anon_client.get("/openapi.json")).json()


async def test_every_id_in_a_body_or_query_is_resolved_within_the_callers_organisation(
    session: Any, org: Organisation, other_org: Organisation, make_client: Any, openapi: dict[str, Any]
) -> None:
    client = await make_client("admin")
    theirs_client = await make_client("admin", for_org=other_org)
    with clock.frozen(NOW):
        mine = await _world(session, org, client)
        theirs = await _world(session, other_org, theirs_client)
        bodies, queries = _bodies(mine), _queries(mine)
        failures: list[str] = []
        checked = 0
        for method, path, operation in _operations(openapi):
            if path.startswith("/webhooks/"):
                continue  # no caller organisation: authenticated by signature, routed by number
            content = operation.get("requestBody", {}).get("content", {})
            body_fields = [f for f in _id_fields(openapi, content.get("application/json", {}).get("schema", {}))
                           if f.rsplit(".", 1)[-1] not in NOT_ROW_IDS]
            query_fields = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"
                            and p["name"].endswith(("_id", "_ids")) and p["name"] not in NOT_ROW_IDS]
            for field in body_fields + query_fields:
                name = field.rsplit(".", 1)[-1]
                if name not in mine:
                    failures.append(f"{method} {path}: no fixture row for `{name}`; add it to _world")
                    continue
                in_body = field in body_fields
                if in_body and (method, path) not in bodies:
                    failures.append(f"{method} {path}: no valid body in _bodies for `{field}`")
                    continue
                url = _url(path, operation, mine)
                for label, value in _foreign(mine[name], field, theirs):
                    if in_body:
                        r = await client.request(method, url, json=_with(bodies[(method, path)], field, value))
                    else:
                        params = {**queries.get(path, {}), field: value if isinstance(value, str) else value[0]}
                        r = await client.request(method, url, params=params)
                    checked += 1
                    if not _refused(r, field):
                        failures.append(f"{method} {path} `{field}` = {label}: {r.status_code} {r.text[:200]}")
    assert failures == [], "\n".join(failures)
    assert checked >= 60  # every body and query id of the API, twice


async def test_another_organisations_conversation_on_a_message_is_422(
    session: Any, org: Organisation, other_org: Organisation, make_client: Any
) -> None:
    """The issue's observation: 201, with A's conversation id stored on B's message."""
    a = await make_client("admin", for_org=other_org)
    b = await make_client("admin")
    a_patient = (await a.post("/patients", json={"given_name": "Ann", "family_name": "Aorg",
                                                 "phones": [{"number": "+34612345670"}]})).json()
    a_conversation = (await a.post("/conversations", json={"patient_id": a_patient["id"], "channel": "sms"})).json()
    b_patient = (await b.post("/patients", json={"given_name": "Bob", "family_name": "Borg",
                                                 "phones": [{"number": "+34612345671"}]})).json()
    for conversation_id in (a_conversation["id"], str(uuid.uuid4())):
        r = await b.post("/communications", json={"patient_id": b_patient["id"], "channel": "sms", "body": "Hi",
                                                  "conversation_id": conversation_id})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == PROBLEM
        assert [e["field"] for e in r.json()["errors"]] == ["conversation_id"]
        assert conversation_id not in r.text.replace(f"/{conversation_id}", "")  # the value is not echoed
    stored = await session.scalar(select(func.count()).select_from(Communication)
                                  .where(Communication.org_id == org.id,
                                         Communication.conversation_id == uuid.UUID(a_conversation["id"])))
    assert stored == 0
