"""Operation documentation and examples: declared per domain, merged into the OpenAPI document.

Each domain lists its operations in `prm/<domain>/examples.py` as `OPERATIONS = {"METHOD /path": Op(...)}`
(the path exactly as the router declares it). `document(schema, routes, registry)` writes into the
generated OpenAPI document, for every operation:

* its `description`: the router's own (or `Op.description`), then the scope it requires (read from
  `Requires(...)`, never restated by hand) and a table of its errors with their problem `type`s;
* examples of its path and query parameters and request body (`Op.path/query/body/form`); ids are the
  demo ids of `ids.<kind>` (stable UUIDs), which the example-walking test swaps for real rows;
* an example of its main response: the answer recorded by the example-walking test
  (`prm/<domain>/examples.json`, `make examples` rewrites them) or `Op.response`;
* an example problem document for each error (declared in `Op.errors`, plus the ones every
  operation of its kind has: 401 and 403 for a credential, 404 for an id in the path, 422 for input).

`docs/api-examples.md` is the guide; `tests/integration/test_api_examples.py` sends every example.
Only `prm.core` is imported here, so every domain may declare its examples.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prm.core.errors import PROBLEM_BASE

PROBLEM_MEDIA_TYPE = "application/problem+json"
_NAMESPACE = uuid.UUID("5b0f7c1e-2d4a-4f60-9c3b-7a1e2d3c4b5a")
_HTTP_METHODS = {"get", "put", "post", "delete", "patch"}
TITLES = {400: "Bad request", 401: "Unauthenticated", 403: "Forbidden", 404: "Not found",
          409: "Conflict", 412: "Precondition failed", 413: "Payload too large", 422: "Validation failed",
          429: "Too many requests", 503: "Service unavailable"}


HEADER_SCHEMAS = {
    "idempotency-key": {"type": "string", "minLength": 1, "maxLength": 255,
                        "description": "Retrying with the same key (same credential, same input) answers the first "
                                       "result instead of acting twice"},
}


def demo_id(kind: str) -> str:
    """The stable id of the example row of `kind` (e.g. `patient`), the same in every document."""
    return str(uuid.uuid5(_NAMESPACE, kind))


class _Ids:
    """`ids.patient`, `ids.appointment`, `ids.checked_in_appointment`: demo ids by kind."""

    def __getattr__(self, kind: str) -> str:
        if kind.startswith("__"):
            raise AttributeError(kind)
        return demo_id(kind)


ids = _Ids()


@dataclass(frozen=True)
class Err:
    """A documented error: its status, problem code, an example `detail`, and when it happens."""

    status: int
    code: str
    detail: str
    when: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def problem(self, instance: str) -> dict[str, Any]:
        return {"type": PROBLEM_BASE + self.code, "title": TITLES.get(self.status, "Error"),
                "status": self.status, "detail": self.detail, "code": self.code, "instance": instance,
                **self.extra}


@dataclass(frozen=True)
class Op:
    """How one operation is documented, and the example request the walking test sends.

    `path`: values of path parameters (default: `ids.<kind>` for `<kind>_id`); `query`: query
    parameters; `body` (JSON), `form` (url-encoded) or `content` + `content_type` (raw); `headers`;
    `status`: the expected status (default: the operation's first 2xx). `response` replaces the
    recorded response example (for answers that are not JSON, or must not be recorded). `given`:
    kinds of demo rows that must exist before the call besides the ones the request names (a list
    operation shows rows only if there are some). `at`: the moment of the call when it matters (ISO
    8601; the examples' world is on Monday 2026-03-23 09:00 in Madrid, `at` moves the clock forward).
    """

    description: str = ""
    path: Mapping[str, Any] = field(default_factory=dict)
    query: Mapping[str, Any] = field(default_factory=dict)
    body: Any = None
    form: Mapping[str, str] | None = None
    content: str | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    status: int | None = None
    errors: Sequence[Err] = ()
    response: Any = None
    summary: str = ""
    given: Sequence[str] = ()
    at: str | None = None


def kind_of(parameter: str) -> str:
    """`patient_id` → `patient`: the demo row a path parameter names by default."""
    return parameter.removesuffix("_id")


def required_scopes(route: Any) -> tuple[str, ...] | None:
    """The scopes `Requires(...)` demands on `route` (`()` any credential), None if public."""
    stack = [getattr(route, "dependant", None)]
    while stack:
        dependant = stack.pop()
        if dependant is None:
            continue
        scopes = getattr(dependant.call, "required_scopes", None)
        if scopes is not None:
            return tuple(scopes)
        stack.extend(dependant.dependencies)
    return None


def _auto_errors(operation: dict[str, Any], scopes: tuple[str, ...] | None,
                 not_found: Mapping[str, Err]) -> list[Err]:
    errors: list[Err] = []
    if scopes is not None:
        errors.append(Err(401, "unauthenticated", "Missing or invalid credentials",
                          "No credential, an unknown or revoked API key, or an expired token"))
    if scopes:
        errors.append(Err(403, "permission_denied", f"This credential lacks the scope(s): {scopes[0]}",
                          "The credential's role lacks the scope", extra={"missing_scopes": [scopes[0]]}))
    path_ids = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"
                and p["name"].endswith("_id")]
    if scopes is not None:
        for name in path_ids:
            kind = kind_of(name)
            errors.append(not_found.get(kind) or Err(
                404, "not_found", f"No {kind.replace('_', ' ')} {demo_id('missing')}",
                f"`{name}` is unknown in the caller's organisation"))
    parameters = operation.get("parameters", [])
    if "requestBody" in operation or parameters:
        field_name = path_ids[-1] if path_ids else (parameters[0]["name"] if parameters else "body")
        errors.append(Err(422, "validation_failed", f"{field_name}: Input should be a valid value",
                          "A field is missing or invalid: `errors` names each one",
                          extra={"errors": [{"field": field_name, "in": "path" if path_ids else "body",
                                             "message": "Input should be a valid value", "type": "value_error"}]}))
    return errors


def _merge_errors(auto: Iterable[Err], declared: Iterable[Err]) -> list[Err]:
    merged: dict[tuple[int, str], Err] = {(e.status, e.code): e for e in auto}
    for e in declared:
        merged[(e.status, e.code)] = e
    return sorted(merged.values(), key=lambda e: (e.status, e.code))


def _errors_markdown(errors: Sequence[Err]) -> str:
    rows = [f"| {e.status} | [`{e.code}`]({PROBLEM_BASE}{e.code}) | {(e.when or e.detail).replace('|', '/')} |"
            for e in errors]
    head = "**Errors** (`application/problem+json`)\n\n| Status | Problem `type` | When |\n|---|---|---|\n"
    return head + "\n".join(rows)


def _scope_markdown(scopes: tuple[str, ...] | None) -> str:
    if scopes is None:
        return "**Scope:** none (public; authenticated by what the description says, if anything)."
    if not scopes:
        return "**Scope:** any valid credential (staff token or API key)."
    return "**Scope:** " + ", ".join(f"`{s}`" for s in scopes) + " (a staff token or API key whose role grants it)."


def _set_parameter_examples(operation: dict[str, Any], values: Mapping[str, Any], where: str) -> None:
    fold = (lambda name: name.lower()) if where == "header" else (lambda name: name)  # headers: any case
    names = {fold(k): v for k, v in values.items()}
    declared = set()
    for parameter in operation.get("parameters", []):
        if parameter["in"] == where and fold(parameter["name"]) in names:
            parameter["example"] = names[fold(parameter["name"])]
            parameter.pop("examples", None)
            declared.add(fold(parameter["name"]))
    # Read by the route from the raw request (a signed URL's fields, Idempotency-Key, a signature): document
    # them too. OpenAPI ignores header parameters named Authorization, Accept or Content-Type.
    original = {fold(k): k for k in values}
    operation.setdefault("parameters", []).extend(
        {"name": original[name], "in": where, "required": where == "query",
         "schema": HEADER_SCHEMAS.get(name, {"type": "string"}) if where == "header" else {"type": "string"},
         "example": value}
        for name, value in names.items()
        if name not in declared and name not in ("authorization", "accept", "content-type"))


def _set_body_example(operation: dict[str, Any], op: Op) -> None:
    content = operation.get("requestBody", {}).get("content", {})
    if op.body is not None:
        value: Any = op.body
        media = "application/json"
    elif op.form is not None:
        value, media = dict(op.form), next(iter(content), "application/x-www-form-urlencoded")
    elif op.content is not None:
        value, media = op.content, op.content_type or "text/plain"
    else:
        return
    operation.setdefault("requestBody", {"required": True, "content": {}})
    target = operation["requestBody"].setdefault("content", {}).setdefault(media, {})
    examples = target.pop("examples", {}) or {}
    target.pop("example", None)
    target["examples"] = {"default": {"summary": op.summary or "Example", "value": value}, **examples}


def _set_response_example(operation: dict[str, Any], status: str, value: Any) -> None:
    response = operation.setdefault("responses", {}).setdefault(status, {"description": "Successful Response"})
    content = response.setdefault("content", {})
    if not content:
        return
    media = next(iter(content))
    content[media]["example"] = value


def _default_path_value(parameter: dict[str, Any]) -> Any:
    """`ids.<kind>` for `<kind>_id`; an integer id (a job) gets a plain number."""
    return 4211 if parameter.get("schema", {}).get("type") == "integer" else demo_id(kind_of(parameter["name"]))


def main_status(operation: dict[str, Any], op: Op | None) -> str:
    if op is not None and op.status is not None:
        return str(op.status)
    ok = sorted(s for s in operation.get("responses", {}) if s.startswith("2"))
    return ok[0] if ok else "200"


def not_found(kind: str, code: str, what: str) -> dict[str, Err]:
    """`NOT_FOUND = not_found("patient", "patient_not_found", "Patient")` in a domain's examples: the
    404 every operation with a `patient_id` in its path documents."""
    return {kind: Err(404, code, f"{what} {demo_id('missing')} not found",
                      f"`{kind}_id` is unknown in the caller's organisation")}


def document(schema: dict[str, Any], routes: Iterable[Any], registry: Mapping[str, tuple[Op, Any]],
             not_found: Mapping[str, Err] | None = None) -> dict[str, Any]:
    """Write descriptions, scopes, errors and examples into `schema` (an OpenAPI document, in place).

    `registry` maps `"METHOD /path"` to `(Op, recorded response or None)`; `not_found` maps the kind
    of a path id (`patient`) to the 404 its operations answer.
    """
    not_found = not_found or {}
    scopes_of: dict[str, tuple[str, ...] | None] = {}
    descriptions: dict[str, str] = {}
    for route in routes:
        for method in getattr(route, "methods", None) or ():
            key = f"{method} {route.path}"
            scopes_of[key] = required_scopes(route)
            descriptions[key] = getattr(route, "description", "") or ""
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _HTTP_METHODS:
                continue
            key = f"{method.upper()} {path}"
            op, recorded = registry.get(key, (None, None))
            scopes = scopes_of.get(key)
            errors = _merge_errors(_auto_errors(operation, scopes, not_found), op.errors if op else ())
            text = (descriptions.get(key) or (op.description if op else "") or operation.get("summary", "")).strip()
            operation["description"] = "\n\n".join([text, _scope_markdown(scopes), _errors_markdown(errors)])
            operation["x-scopes"] = list(scopes) if scopes is not None else None
            instance = path
            if op is not None:
                defaults = {p["name"]: _default_path_value(p) for p in operation.get("parameters", [])
                            if p["in"] == "path" and p["name"].endswith("_id")}
                path_values = {**defaults, **op.path}
                for name, value in path_values.items():
                    instance = instance.replace("{" + name + "}", str(value))
                _set_parameter_examples(operation, path_values, "path")
                _set_parameter_examples(operation, op.query, "query")
                _set_parameter_examples(operation, op.headers, "header")
                _set_body_example(operation, op)
                example = op.response if op.response is not None else recorded
                if example is not None:
                    _set_response_example(operation, main_status(operation, op), example)
                operation["x-example"] = True
            responses = operation.setdefault("responses", {})
            by_status: dict[int, list[Err]] = {}
            for e in errors:
                by_status.setdefault(e.status, []).append(e)
            for status, group in by_status.items():
                response = responses.setdefault(str(status), {})
                response["description"] = "; ".join(e.when or e.detail for e in group)
                response["content"] = {PROBLEM_MEDIA_TYPE: {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "examples": {e.code: {"summary": e.when or e.detail, "value": e.problem(instance)}
                                 for e in group},
                }}
    return schema
