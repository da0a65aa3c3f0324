"""The domain packages, in dependency order, and the loader that wires them in.

Each package may have `router.py` (exposing `router`, or `routers` for several), `tasks.py` (its
jobs) and `subscribers.py` (its event handlers). Loading imports them all, which registers jobs and
subscribers; the API and the worker both call `load()`, so a publisher never imports a subscriber.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

DOMAINS = (
    "identity",
    "admin",
    "patients",
    "appointments",
    "notifications",
    "communications",
    "webhooks",
    "conversations",
    "tickets",
    "journeys",
    "intake",
    "media",
    "vector",
    "agents",
    "fhir",
    "n8n",
    "integrations",
)
PARTS = ("models", "tasks", "subscribers", "router")


def _optional(name: str) -> ModuleType | None:
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(name)


def load() -> list[ModuleType]:
    """Import every present part of every domain; return the router modules."""
    import prm.core.events
    import prm.core.idempotency  # noqa: F401  (registers idempotency.purge)

    routers: list[ModuleType] = []
    for domain in DOMAINS:
        if _optional(f"prm.{domain}") is None:
            continue
        for part in PARTS:
            module = _optional(f"prm.{domain}.{part}")
            if module is not None and part == "router":
                routers.append(module)
    return routers


def examples() -> dict[str, tuple[Any, Any]]:
    """Every operation's documentation and example (`prm/<domain>/examples.py`, `OPERATIONS`), with
    the response recorded beside it (`examples.json`): `{"METHOD /path": (Op, response or None)}`."""
    found: dict[str, tuple[Any, Any]] = {}
    for name, module in example_modules().items():
        recorded = recorded_responses(name)
        for key, op in module.OPERATIONS.items():
            if key in found:
                raise ValueError(f"{key} is documented twice (again in {name})")
            found[key] = (op, recorded.get(key))
    return found


def not_found_errors() -> dict[str, Any]:
    """The 404 of each kind of path id, as the domains declare it (`NOT_FOUND` in `examples.py`)."""
    found: dict[str, Any] = {}
    for module in example_modules().values():
        found.update(getattr(module, "NOT_FOUND", {}))
    return found


def example_modules() -> dict[str, ModuleType]:
    """`{"prm.patients.examples": module, ...}`: core's (health, readiness, metrics) and each domain's."""
    out: dict[str, ModuleType] = {}
    for package in ("core", *DOMAINS):
        module = _optional(f"prm.{package}.examples")
        if module is not None:
            out[module.__name__] = module
    return out


def recorded_responses(module_name: str) -> dict[str, Any]:
    """The responses the example-walking test recorded for a module's operations (`examples.json`)."""
    path = examples_file(module_name)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def examples_file(module_name: str) -> Path:
    spec = importlib.util.find_spec(module_name)
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).with_suffix(".json")
