"""Routers refuse a path outside their first segments at once (`prm.app._skip_unless_first_segment`,
for speed): every operation, every unknown path and every trailing-slash variant still reaches
exactly what FastAPI's own matching reaches."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.routing import _IncludedRouter
from starlette.routing import Match

from prm import app as app_module
from prm.app import create_app
from prm.core.db import Database
from prm.settings import Settings

SAMPLE = {"uuid": str(uuid.UUID(int=7)), "int": "7", "float": "7.5", "path": "a/b", "str": "sample"}


def _concrete(template: str) -> str:
    """A path the template matches: each `{name}` or `{name:convertor}` by a sample value."""
    return re.sub(r"{(\w+)(?::(\w+))?}", lambda m: SAMPLE.get(m.group(2) or "str", "sample"), template)


def _resolve(application: Any, method: str, path: str) -> tuple[str, str] | None:
    """(how, endpoint) for the first route that matches `method path` fully, else the first that
    matches partially (a 405), as FastAPI's router picks them; None: a 404."""
    scope: dict[str, Any] = {"type": "http", "method": method, "path": path, "root_path": "", "headers": [],
                             "query_string": b"", "app": application}
    partial = None
    for route in application.router.routes:
        match, _ = route.matches(scope)
        if match == Match.NONE or (match == Match.PARTIAL and partial is not None):
            continue
        chosen = route
        while isinstance(chosen, _IncludedRouter):
            _, _, chosen, _ = chosen._match(scope)
        endpoint = getattr(chosen, "endpoint", chosen)
        name = getattr(endpoint, "__qualname__", type(endpoint).__qualname__)
        found = (match.name, f"{endpoint.__module__}.{name}")  # the same in two apps
        if match == Match.FULL:
            return found
        partial = found
    return partial


def _operations(application: Any) -> list[tuple[str, str]]:
    paths = application.openapi()["paths"]
    return [(method.upper(), template) for template, item in paths.items() for method in item
            if method in {"get", "post", "put", "patch", "delete"}]


async def test_every_path_reaches_what_fastapi_alone_reaches(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch,
) -> None:
    fast = create_app(settings, database=db)
    monkeypatch.setattr(app_module, "_skip_unless_first_segment", lambda router: None)
    plain = create_app(settings, database=db)
    operations = _operations(plain)
    assert len(operations) > 100 and sorted(operations) == sorted(_operations(fast))
    paths = {_concrete(template) for _, template in operations}
    probes = [(method, path) for method, template in operations for path in (_concrete(template),)]
    # every method on every path (405s), trailing slashes, unknown paths and segments (404s)
    probes += [(method, variant) for path in paths for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
               for variant in (path, path + "/", path.rstrip("/") + "/extra")]
    probes += [("GET", p) for p in ("/", "//", "/nope", "/nope/appointments", "/appointments-x", "/webhooks",
                                    "/fhir", "/fhir/R4", "/mcp", "/health/", "/docs")]
    for method, path in probes:
        assert _resolve(fast, method, path) == _resolve(plain, method, path), f"{method} {path}"
    for method, template in operations:  # and each operation reaches an endpoint of its own
        assert _resolve(fast, method, _concrete(template)) is not None, f"{method} {template}"


async def test_a_booking_and_a_webhook_skip_the_other_routers(settings: Settings, db: Database) -> None:
    application = create_app(settings, database=db)
    assert _resolve(application, "POST", "/appointments") == ("FULL", "prm.appointments.router.book")
    scope = {"type": "http", "method": "POST", "path": "/webhooks/twilio/messaging", "root_path": "",
             "headers": [], "query_string": b"", "app": application}
    filtered = [route for route in application.router.routes if isinstance(route, _IncludedRouter)
                and "matches" in vars(route.original_router)]
    assert len(filtered) >= 15  # every domain router: each route starts with a fixed segment
    assert sum(route.matches(scope)[0] != Match.NONE for route in filtered) == 1
