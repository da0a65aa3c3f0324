"""Every operation's documented example works (issue 20): examples that cannot rot.

For every operation of `/openapi.json`, the test reads the example request from the document (path
and query parameter examples, the request body's first example), swaps the demo ids for real rows of
the test's organisation (`tests/fixtures/api_world.py`), sends it, and checks that the status is the
documented one and that the answer validates against the documented response schema. Every
documented error example must validate against `Problem`, and a recorded response example against
the response schema, with the same fields as today's answer.

`PRM_RECORD_EXAMPLES=1` (`make examples`) rewrites the recorded responses (`prm/<domain>/examples.json`).
`docs/api-examples.md` explains how to document an operation.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import jsonschema
import pytest
from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from prm import modules
from prm.core import clock
from prm.core.apidocs import demo_id, kind_of, main_status
from tests.fixtures.api_world import KINDS, NOW, VOICE_AGENT_SECRET, World
from tests.fixtures.settings_switch import use_settings

REGISTRY = modules.examples()
RECORD = os.environ.get("PRM_RECORD_EXAMPLES") == "1"
HTTP_METHODS = {"get", "put", "post", "delete", "patch"}

# Operations without an example yet. This list only shrinks: document the operation in its domain's
# `examples.py` and remove it here (the test fails while an operation is on both, or on neither).
NOT_YET_COVERED: set[str] = set()

# Keys whose values are secrets shown once (API keys, tokens, signing secrets): recorded as placeholders.
SECRET_KEYS = {"access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.example.signature",
               "key": "prm_demo1234_exampleexampleexampleexample", "secret": "whsec_ZXhhbXBsZSBzZWNyZXQ="}


def _operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{method.upper()} {path}": operation for path, item in doc["paths"].items()
            for method, operation in item.items() if method in HTTP_METHODS}


@pytest.fixture(scope="module")
def openapi(app: Any) -> dict[str, Any]:
    return app.openapi()  # type: ignore[no-any-return]


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]},
                                           format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _errors(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}"
            for e in _validator(doc, schema).iter_errors(value)]


def _shape(value: Any) -> Any:
    """The field names of an answer, nested (list: its first item), to compare with the recorded one."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


def _same_shape(recorded: Any, live: Any, where: str = "") -> list[str]:
    if isinstance(recorded, dict) and isinstance(live, dict):
        out = [f"{where}.{k}: gone from the answer" for k in recorded.keys() - live.keys()]
        out += [f"{where}.{k}: new in the answer" for k in live.keys() - recorded.keys()]
        for k in recorded.keys() & live.keys():
            out += _same_shape(recorded[k], live[k], f"{where}.{k}")
        return out
    if isinstance(recorded, list) and isinstance(live, list) and recorded and live:
        return _same_shape(recorded[0], live[0], where + "[0]")
    return []


# Values that differ on every run (recorded as one fixed value, so re-recording changes nothing).
VOLATILE = {"request_id": "4bf92f3577b34da6a3ce929d0e0e4736", "duration_ms": 42}


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (SECRET_KEYS[k] if k in SECRET_KEYS and isinstance(v, str) else
                    VOLATILE[k] if k in VOLATILE and v is not None else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _stable_ids(key: str, value: Any) -> Any:
    """Ids of rows the call itself made (not demo rows) become stable ones, so re-recording an unchanged
    answer changes nothing in examples.json (and two branches re-recording do not conflict)."""
    demo = {demo_id(name) for name in KINDS}
    seen: dict[str, str] = {}

    def stable(match: re.Match[str]) -> str:
        found = match.group(0)
        if found in demo:
            return found
        return seen.setdefault(found, str(uuid.uuid5(uuid.NAMESPACE_URL, f"{key}#{len(seen)}")))

    return json.loads(UUID.sub(stable, json.dumps(value, ensure_ascii=False)))


def _record(key: str, value: Any) -> None:
    for name, module in modules.example_modules().items():
        if key in module.OPERATIONS:
            path = modules.examples_file(name)
            stored = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
            stored[key] = value
            path.write_text(json.dumps(dict(sorted(stored.items())), indent=2, ensure_ascii=False) + "\n",
                            encoding="utf-8")
            return


def _request_example(doc: dict[str, Any], operation: dict[str, Any]) -> tuple[str | None, Any]:
    """The request body's first example: the operation's own, else its schema's (`json_schema_extra`)."""
    content = operation.get("requestBody", {}).get("content", {})
    for media, spec in content.items():
        if "examples" in spec:
            return media, next(iter(spec["examples"].values()))["value"]
        if "example" in spec:
            return media, spec["example"]
        schema = spec.get("schema", {})
        while "$ref" in schema:
            schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        if schema.get("examples"):
            return media, schema["examples"][0]
    return (next(iter(content)) if content else None), None


def _twilio_signature(app: Any, url: str, body: Any) -> dict[str, str]:
    adapters = app.state.context.adapters
    validator = RequestValidator(adapters.twilio_auth_token())
    return {"X-Twilio-Signature": validator.compute_signature(adapters.public_base_url() + url, body)}


def _voice_agent_signature(app: Any, url: str, body: Any) -> dict[str, str]:
    raw = json.dumps(body).encode()
    return {"X-Signature": "sha256=" + hmac.new(VOICE_AGENT_SECRET.encode(), raw, hashlib.sha256).hexdigest()}


def _retell_signature(app: Any, url: str, body: Any) -> dict[str, str]:
    """As Retell signs: HMAC-SHA256(secret, raw body + unix ms), at the examples' (frozen) clock."""
    raw, stamp = json.dumps(body).encode(), str(int(clock.now().timestamp() * 1000))
    digest = hmac.new(VOICE_AGENT_SECRET.encode(), raw + stamp.encode(), hashlib.sha256).hexdigest()
    return {"x-retell-signature": f"v={stamp},d={digest}"}


# Webhooks authenticate by signature: the example's header is recomputed with the service's secrets.
SIGNERS = {"POST /webhooks/twilio/messaging": _twilio_signature, "POST /webhooks/twilio/status": _twilio_signature,
           "POST /webhooks/voice-agent/{org_id}": _voice_agent_signature,
           "POST /webhooks/voice-agent/{org_id}/{provider}": _retell_signature}
SIGNED_BODY_HEADERS = {"X-Signature", "x-retell-signature"}


async def _path_value(world: World, parameter: dict[str, Any]) -> str:
    """A path parameter's example with demo ids swapped; an integer id (`job_id`) is the row of its kind."""
    value = parameter.get("example", demo_id(kind_of(parameter["name"])))
    if parameter.get("schema", {}).get("type") == "integer" and parameter["name"].endswith("_id"):
        return await world.resolve(kind_of(parameter["name"]))
    return str(await world.substitute(value))


async def _send(client: httpx.AsyncClient, method: str, url: str, media: str | None, body: Any,
                headers: dict[str, str]) -> httpx.Response:
    if media == "application/json" and body is not None and SIGNED_BODY_HEADERS & headers.keys():  # these bytes
        return await client.request(method, url, content=json.dumps(body).encode(),
                                    headers={"content-type": media, **headers})
    if media == "application/json" and body is not None:
        return await client.request(method, url, json=body, headers=headers)
    if media == "application/x-www-form-urlencoded" and body is not None:
        return await client.request(method, url, data=body, headers=headers)
    if body is not None:
        return await client.request(method, url, content=str(body).encode(),
                                    headers={"content-type": media or "text/plain", **headers})
    return await client.request(method, url, headers=headers)


async def _unknown_id_is_a_documented_404(key: str, operation: dict[str, Any], client: httpx.AsyncClient,
                                          world: World, url: str, media: str | None, body: Any,
                                          headers: dict[str, str]) -> None:
    """The same request with the last id of the path unknown: a 404 whose code is documented."""
    if operation.get("x-scopes") is None:
        return  # public: webhooks and probes answer for themselves
    ids = [p for p in operation.get("parameters", []) if p["in"] == "path" and p["name"].endswith("_id")]
    if not ids:
        return
    real = await _path_value(world, ids[-1])
    unknown = "4611686018427387904" if ids[-1].get("schema", {}).get("type") == "integer" else demo_id("missing")
    method = key.split(" ", 1)[0]
    r = await _send(client, method, url.replace(f"/{real}", f"/{unknown}"), media, body, headers)
    if r.headers.get("content-type", "").startswith("application/fhir+json"):  # FHIR: an OperationOutcome
        assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-found", (key, r.text[:300])
        return
    documented = operation["responses"].get("404", {}).get("content", {}).get("application/problem+json", {})
    codes = {e["value"]["code"] for e in documented.get("examples", {}).values()}
    assert r.status_code == 404 and r.json().get("code") in codes, (
        f"{key} with an unknown {ids[-1]['name']}: answered {r.status_code} {r.text[:300]}; "
        f"documented 404 codes {codes}")


def test_every_operation_is_documented_with_an_example(openapi: dict[str, Any]) -> None:
    operations = _operations(openapi)
    missing = sorted(set(operations) - REGISTRY.keys() - NOT_YET_COVERED)
    assert missing == [], "operations without an example (see docs/api-examples.md):\n" + "\n".join(missing)
    covered_yet_listed = sorted(NOT_YET_COVERED & REGISTRY.keys())
    assert covered_yet_listed == [], f"documented now: remove them from NOT_YET_COVERED: {covered_yet_listed}"
    unknown = sorted((REGISTRY.keys() | NOT_YET_COVERED) - operations.keys())
    assert unknown == [], f"documented operations that do not exist (method and path as routed): {unknown}"
    short = []
    for key, operation in operations.items():
        assert operation.get("summary"), key
        assert "**Scope:**" in operation["description"] and "**Errors**" in operation["description"], key
        what = operation["description"].split("**Scope:**")[0].strip()
        if what == operation["summary"].strip() or len(what) < 40:
            short.append(key)
    assert short == [], f"say what these do beyond the summary (Op(description) or the router's): {short}"


# Request-body strings without a length, pattern, format or enum in their schema, and why the service
# accepts any length there (the request body limit still applies). Anything else gets `max_length` etc.
# so generated clients refuse what the service refuses.
UNBOUNDED_STRINGS = {
    "AttachmentIn.content_base64": "the attachment itself: bounded by the request body limit",
    "Body_token_auth_token_post.username": "OAuth2 form (FastAPI's): an unknown email is a 401",
    "Body_token_auth_token_post.scope": "OAuth2 form (FastAPI's): ignored",
    "Body_token_auth_token_post.client_id": "OAuth2 form (FastAPI's): ignored",
    "Body_token_auth_token_post.client_secret": "OAuth2 form (FastAPI's): ignored",
    "BatchFilter.preferred_language": "a filter: a longer value matches no patient",
    "BatchFilter.tags[]": "a filter: a longer value matches no patient",
    "CommunicationCreate.media_urls[]": "public media URLs, checked when fetched",
    "LocationCreate.address": "free text (text column)",
    "LocationUpdate.address": "free text (text column)",
    "ServiceCreate.description": "free text (text column)",
    "ServiceUpdate.description": "free text (text column)",
    "PatientCreate.tags[]": "free labels (text array)",
    "PatientUpdate.tags[]": "free labels (text array)",
    "TemplateCreate.variables[]": "variable names, checked against the template when rendered",
    "TemplateUpdate.variables[]": "variable names, checked against the template when rendered",
}


def _request_schemas(doc: dict[str, Any]) -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[1]
                if name not in found:
                    found.add(name)
                    walk(doc["components"]["schemas"][name])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for operation in _operations(doc).values():
        walk(operation.get("requestBody", {}))
    return found


def test_request_strings_say_what_the_service_refuses(openapi: dict[str, Any]) -> None:
    """Every string a request body carries has a bound (maxLength, pattern, format, enum) in its schema,
    or a reason on UNBOUNDED_STRINGS."""
    bounds = ("maxLength", "pattern", "format", "enum", "const")
    unbounded: list[str] = []

    def check(schema: dict[str, Any], where: str) -> None:
        for sub in schema.get("anyOf", [schema]):
            if sub.get("type") == "string" and not any(b in sub for b in bounds):
                unbounded.append(where)
            if sub.get("type") == "array":
                check(sub.get("items", {}), where + "[]")

    for name in sorted(_request_schemas(openapi)):
        for field, schema in openapi["components"]["schemas"][name].get("properties", {}).items():
            check(schema, f"{name}.{field}")
    missing = sorted(set(unbounded) - UNBOUNDED_STRINGS.keys())
    assert missing == [], f"give these a max_length (or pattern/enum), or a reason in UNBOUNDED_STRINGS: {missing}"
    stale = sorted(UNBOUNDED_STRINGS.keys() - set(unbounded))
    assert stale == [], f"bounded now (or gone): remove from UNBOUNDED_STRINGS: {stale}"


def test_every_error_example_is_a_problem_document(openapi: dict[str, Any]) -> None:
    problem = {"$ref": "#/components/schemas/Problem"}
    failures = []
    for key, operation in _operations(openapi).items():
        for status, response in operation["responses"].items():
            for example in response.get("content", {}).get("application/problem+json", {}).get("examples", {}).values():
                failures += [f"{key} {status}: {e}" for e in _errors(openapi, problem, example["value"])]
                if status != "default" and example["value"]["status"] != int(status):
                    failures.append(f"{key} {status}: the example says {example['value']['status']}")
    assert failures == []


@pytest.mark.parametrize("key", sorted(REGISTRY))
async def test_documented_example(key: str, app: Any, settings: Any, openapi: dict[str, Any], session: Any,
                                  org: Any, make_client: Any) -> None:
    operation = _operations(openapi).get(key)
    assert operation is not None, f"{key} is documented but not routed"
    method, path = key.split(" ", 1)
    op, _ = REGISTRY[key]
    client = await make_client("admin", platform_admin=True)
    world = World(session, org, client)
    twilio = settings.model_copy(update={"twilio_auth_token": SecretStr("example-twilio-auth-token-0123")})
    with clock.frozen(NOW) as moved, (use_settings(twilio) if "/twilio/" in key else contextlib.nullcontext()):
        url = path
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                url = url.replace("{" + parameter["name"] + "}", await _path_value(world, parameter))
        query = {p["name"]: await world.substitute(p["example"]) for p in operation.get("parameters", [])
                 if p["in"] == "query" and "example" in p}
        headers = {k: await world.substitute(v) for k, v in op.headers.items()}
        media, body = _request_example(openapi, operation)
        body = await world.substitute(body)
        for name in op.given:
            await world.resolve(name)
        if query:
            url += "?" + urlencode(query, doseq=True)
        await _unknown_id_is_a_documented_404(key, operation, client, world, url, media, body, headers)
        if key in SIGNERS:
            headers.update(SIGNERS[key](app, url, body))
        if op.at is not None:
            moved.set(datetime.fromisoformat(op.at))
        r = await _send(client, method, url, media, body, headers)

    status = main_status(operation, op)
    assert str(r.status_code) == status, f"{key}: documented {status}, answered {r.status_code}: {r.text[:500]}"
    response = operation["responses"].get(status, {})
    content = response.get("content", {})
    if "application/json" in content and r.content:
        schema = content["application/json"].get("schema", {})
        live = r.json()
        failures = _errors(openapi, schema, live)
        assert failures == [], f"{key}: the answer does not match the documented schema:\n" + "\n".join(failures)
        example = content["application/json"].get("example")
        if RECORD and op.response is None:
            _record(key, _stable_ids(key, _scrub(world.to_demo(live))))
        elif example is not None:
            stale = _errors(openapi, schema, example)
            assert stale == [], f"{key}: the response example is stale (`make examples`):\n" + "\n".join(stale)
            changed = _same_shape(example, _scrub(live))
            assert changed == [], f"{key}: the answer's fields changed (`make examples`): {changed}"
        else:
            pytest.fail(f"{key}: no response example; run `make examples` to record it")
    elif content and r.content:
        media_type = r.headers.get("content-type", "").split(";")[0]
        assert media_type in content or "application/octet-stream" in content, (
            f"{key}: answered {media_type}, documented {list(content)}")
