"""The domain packages, in dependency order, and the loader that wires them in.

Each package may have `router.py` (exposing `router`, or `routers` for several), `tasks.py` (its
jobs) and `subscribers.py` (its event handlers). Loading imports them all, which registers jobs and
subscribers; the API and the worker both call `load()`, so a publisher never imports a subscriber.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

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
