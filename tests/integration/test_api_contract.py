"""The API's contract, checked route by route over the ASGI app (no network):

* every route needs credentials, except an explicit allow-list: an anonymous call is a 401 problem;
* bad requests (malformed ids, wrong body types, out-of-range paging) are 4xx `application/problem+json`
  naming the field;
* another organisation's rows are 404 on every route that reads one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from prm.identity.models import Organisation

PROBLEM = "application/problem+json"

# Public on purpose: operations endpoints, the login itself, the API description, and webhooks,
# which authenticate by signature (Twilio's X-Twilio-Signature, the voice agent's HMAC).
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("POST", "/auth/token"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
    ("POST", "/webhooks/twilio/messaging"),
    ("POST", "/webhooks/twilio/status"),
    ("POST", "/webhooks/voice-agent/{org_id}"),
    ("POST", "/webhooks/voice-agent/{org_id}/{provider}"),
    # signed, expiring local-disk media URLs: the HMAC signature in the URL is the credential
    ("PUT", "/media/local/{folder}/{name}"),
    ("GET", "/media/local/{folder}/{name}"),
    # FHIR: the CapabilityStatement is public (clients read it before authenticating), and so is our
    # JWKS (public keys that EHRs verify our SMART client assertions with)
    ("GET", "/fhir/R4/metadata"),
    ("GET", "/.well-known/jwks.json"),
}
FHIR_BASE = "/fhir/R4/"


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _schema(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _valid_value(doc: dict[str, Any], schema: dict[str, Any]) -> str:
    schema = _schema(doc, schema)
    if "anyOf" in schema:
        schema = next(s for s in schema["anyOf"] if s.get("type") != "null")
    if schema.get("format") == "date":
        return "2026-03-23"
    if "enum" in schema:
        return str(schema["enum"][0])
    if schema.get("type") == "integer":
        return "1"
    return str(uuid.uuid4()) if schema.get("format") == "uuid" else "x"


def _url(doc: dict[str, Any], path: str, operation: dict[str, Any], **override: str) -> str:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            value = override.get(parameter["name"], _valid_value(doc, parameter["schema"]))
            path = path.replace("{" + parameter["name"] + "}", value)
    return path


def _required_query(doc: dict[str, Any], operation: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: _valid_value(doc, p["schema"]) for p in operation.get("parameters", [])
            if p["in"] == "query" and p.get("required")}


@pytest.fixture
async def openapi(anon_client: httpx.AsyncClient) -> dict[str, Any]:
    r = await anon_client.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


async def test_every_route_but_the_public_ones_requires_credentials(
    app: Any, openapi: dict[str, Any], anon_client: httpx.AsyncClient
) -> None:
    documented = {(method, path) for method, path, _ in _operations(openapi)}
    for route in app.routes:  # hidden routes too: none may slip past authentication
        if isinstance(route, APIRoute):
            for method in route.methods - {"HEAD"}:
                assert (method, route.path) in documented or (method, route.path) in PUBLIC, (method, route.path)
    checked = 0
    for method, path, operation in _operations(openapi):
        if (method, path) in PUBLIC:
            continue
        r = await anon_client.request(method, _url(openapi, path, operation))
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        if path.startswith(FHIR_BASE):  # FHIR's errors are OperationOutcomes
            assert r.headers["content-type"] == "application/fhir+json", (method, path)
            assert r.json()["issue"][0]["code"] == "login"
        else:
            assert r.headers["content-type"] == PROBLEM, (method, path)
            assert r.json()["code"] == "unauthenticated"
        assert r.headers["www-authenticate"] == "Bearer"
        checked += 1
    assert checked > 80  # the whole API, not an empty document
    bad_key = {"Authorization": "Bearer prm_nothere_notasecret"}
    r = await anon_client.get("/patients", headers=bad_key)
    assert (r.status_code, r.headers["content-type"]) == (401, PROBLEM)


async def test_public_routes_answer_without_credentials(anon_client: httpx.AsyncClient) -> None:
    for path in ("/health", "/ready", "/metrics", "/openapi.json", "/docs"):
        assert (await anon_client.get(path)).status_code == 200, path


async def test_malformed_path_ids_are_422_problems_naming_the_parameter(
    openapi: dict[str, Any], client: httpx.AsyncClient
) -> None:
    checked = 0
    for method, path, operation in _operations(openapi):
        ids = [p["name"] for p in operation.get("parameters", [])
               if p["in"] == "path" and _schema(openapi, p["schema"]).get("format") == "uuid"]
        if not ids or path.startswith("/webhooks/"):
            continue
        r = await client.request(method, _url(openapi, path, operation, **{ids[-1]: "not-an-id"}), json={})
        if path.startswith(FHIR_BASE):  # FHIR: a malformed request is a 400 OperationOutcome naming it
            assert r.status_code == 400 and r.headers["content-type"] == "application/fhir+json", (method, path)
            assert ids[-1] in r.json()["issue"][0]["expression"], (method, path, r.text)
            checked += 1
            continue
        assert r.status_code == 422, (method, path, r.text)
        assert r.headers["content-type"] == PROBLEM, (method, path)
        assert ids[-1] in {e["field"] for e in r.json()["errors"]}, (method, path, r.text)
        checked += 1
    assert checked > 40


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b"null"])
async def test_bodies_of_the_wrong_shape_are_422_problems(
    openapi: dict[str, Any], make_client: Any, body: bytes
) -> None:
    client = await make_client("admin", platform_admin=True)  # may call every route, POST /admin/organisations too
    checked = 0
    for method, path, operation in _operations(openapi):
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" not in content or path.startswith("/webhooks/"):
            continue
        r = await client.request(method, _url(openapi, path, operation), content=body,
                                 headers={"content-type": "application/json"})
        if path.startswith(FHIR_BASE):  # FHIR: a 400 OperationOutcome
            assert (r.status_code, r.headers["content-type"]) == (400, "application/fhir+json"), (method, path)
            checked += 1
            continue
        assert r.status_code in (404, 422), (method, path, r.status_code, r.text)
        assert r.headers["content-type"] == PROBLEM, (method, path)
        if r.status_code == 422:
            assert r.json()["errors"], (method, path)
        checked += 1
    assert checked > 30


async def test_paging_out_of_range_is_a_422_naming_the_parameter(
    openapi: dict[str, Any], client: httpx.AsyncClient
) -> None:
    checked = 0
    for method, path, operation in _operations(openapi):
        names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        if method != "GET" or not {"limit", "offset"} <= names or "{" in path:
            continue
        for params, field in (({"limit": 0}, "limit"), ({"limit": 10_000}, "limit"), ({"offset": -1}, "offset"),
                              ({"offset": 2**70}, "offset")):
            r = await client.get(path, params=params)
            assert r.status_code == 422, (path, params, r.text)
            assert r.headers["content-type"] == PROBLEM
            assert [e["field"] for e in r.json()["errors"]] == [field]
        checked += 1
    assert checked >= 10


async def test_another_organisations_rows_are_404_everywhere(
    openapi: dict[str, Any], make_client: Any, other_org: Organisation
) -> None:
    theirs = await make_client("admin", for_org=other_org)
    mine = await make_client("admin")
    created: dict[str, str] = {}

    async def create(name: str, path: str, body: dict[str, Any]) -> None:
        r = await theirs.post(path, json=body)
        assert r.status_code == 201, (path, r.text)
        created[name] = r.json()["id"]

    await create("patient_id", "/patients", {"given_name": "Eva", "family_name": "Other"})
    await create("location_id", "/locations", {"name": "Elsewhere", "timezone": "Europe/Madrid"})
    await create("practitioner_id", "/practitioners", {"name": "Dr Other", "timezone": "Europe/Madrid"})
    await create("service_id", "/services", {"name": "Other cleaning", "duration_minutes": 30})
    await create("ticket_id", "/tickets", {"subject": "Their ticket", "patient_id": created["patient_id"]})
    await create("template_id", "/notifications/templates",
                 {"key": "their_template", "channel": "sms", "body": "Hello"})
    await create("conversation_id", "/conversations", {"patient_id": created["patient_id"], "channel": "sms"})

    checked = 0
    for method, path, operation in _operations(openapi):
        params = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        if method != "GET" or len(params) != 1 or params[0] not in created:
            continue
        url = _url(openapi, path, operation, **created)
        query = _required_query(openapi, operation)
        mine_r = await mine.get(url, params=query)
        assert mine_r.status_code == 404, (path, mine_r.status_code, mine_r.text)
        assert mine_r.headers["content-type"] == PROBLEM
        assert "Eva" not in mine_r.text and "Other" not in mine_r.text  # nothing of theirs in the answer
        assert (await theirs.get(url, params=query)).status_code == 200, path
        checked += 1
    assert checked >= 15
    listed = (await mine.get("/patients", params={"q": "Eva Other"})).json()
    assert created["patient_id"] not in {p["id"] for p in listed["items"]}
