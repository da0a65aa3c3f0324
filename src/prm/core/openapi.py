"""The OpenAPI document tells the truth about errors.

FastAPI documents its own `HTTPValidationError` (as `application/json`) for 422, but every error this
service sends is an RFC 9457 `application/problem+json` document (see `prm.app.install_error_handlers`).
`build(app)` generates the document once and rewrites it so that every operation's error responses,
plus a `default` for the statuses it does not list (401, 403, 404, 409, 429, 500, ...), are described
as `application/problem+json` with the `Problem` schema. Clients and contract tests (schemathesis) then
check errors against what is actually sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from prm.core import apidocs

PROBLEM_MEDIA_TYPE = "application/problem+json"
_REF = "#/components/schemas/{model}"
_HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


class ProblemFieldError(BaseModel):
    """One invalid field of a 422."""

    model_config = ConfigDict(populate_by_name=True)

    field: str = Field(description="Dotted path of the field, e.g. `phones.0.number`")
    message: str
    type: str = Field(description="Machine code of the problem, e.g. `missing`, `uuid_parsing`")
    in_: str | None = Field(default=None, alias="in", description="body, query, path or header")


class Problem(BaseModel):
    """An RFC 9457 problem document; some errors add members (e.g. `missing_scopes`)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="`https://prm.dev/problems/<code>`")
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine code, e.g. `slot_taken`")
    instance: str | None = Field(default=None, description="The request path")
    errors: list[ProblemFieldError] | None = Field(default=None, description="422: one entry per invalid field")
    request_id: str | None = Field(default=None, description="500: the id to quote (also `X-Request-ID`)")


def _problem_content() -> dict[str, Any]:
    return {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": _REF.format(model="Problem")}}}


def _is_error(status: str) -> bool:
    return status == "default" or status[:1] in {"4", "5"}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite `schema` (an OpenAPI document, in place) so errors are documented as problem+json."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ProblemFieldError, Problem):
        definition = model.model_json_schema(ref_template=_REF, by_alias=True, mode="serialization")
        definition.pop("$defs", None)
        components[model.__name__] = definition
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if _is_error(str(status)):
                    response["content"] = _problem_content()
                    if status == "422" and response.get("description") == "Validation Error":
                        response["description"] = "Validation failed: `errors` names each field"
            responses.setdefault(
                "default", {"description": "Error (RFC 9457 problem document)", "content": _problem_content()}
            )
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's, replaced by Problem
        if _REF.format(model=unused) + '"' not in json.dumps(schema):
            components.pop(unused, None)
    return schema


def api_routes(app: FastAPI) -> list[Any]:
    """Every APIRoute of the app, those of included routers too (FastAPI ≥ 0.160 nests them)."""
    from fastapi import routing
    from fastapi.openapi.utils import _get_api_route_for_openapi

    found = (_get_api_route_for_openapi(context) for context in routing.iter_route_contexts(app.routes))
    return [route for route in found if route is not None]


def build(app: FastAPI, examples: Mapping[str, tuple[apidocs.Op, Any]] | None = None,
          not_found: Mapping[str, apidocs.Err] | None = None) -> dict[str, Any]:
    """`app.openapi`: FastAPI's document with errors described as they are sent, and every
    operation's description, scope, errors and examples (`core.apidocs`); cached."""
    if app.openapi_schema is None:
        schema = document_problems(
            get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
            )
        )
        app.openapi_schema = apidocs.document(schema, api_routes(app), examples or {}, not_found)
    return app.openapi_schema
