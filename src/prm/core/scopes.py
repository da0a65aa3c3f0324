"""Roles and the scopes they grant. Pure data: the one place to read who may do what."""

from __future__ import annotations

ROLES = ("admin", "coordinator", "practitioner", "support_agent", "integration", "agent")

RESOURCES = (
    "patients",
    "appointments",
    "schedule",
    "communications",
    "notifications",
    "conversations",
    "tickets",
    "journeys",
    "intake",
    "media",
    "vector",
    "search",
    "agents",
    "fhir",
    "webhooks",
)

ALL_SCOPES: frozenset[str] = frozenset(
    [f"{r}:{a}" for r in RESOURCES for a in ("read", "write")] + ["admin", "audit:read", "jobs:admin"]
)


def _rw(*resources: str) -> set[str]:
    return {f"{r}:{a}" for r in resources for a in ("read", "write")}


def _r(*resources: str) -> set[str]:
    return {f"{r}:read" for r in resources}


ROLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": ALL_SCOPES,
    "coordinator": frozenset(
        _rw("patients", "appointments", "schedule", "communications", "notifications", "conversations",
            "tickets", "journeys", "intake", "media")
        | _r("vector", "agents", "fhir")
        | _rw("search")
    ),
    "practitioner": frozenset(
        _rw("patients", "appointments", "intake", "media", "tickets")
        | _r("schedule", "communications", "conversations", "journeys", "vector", "search", "fhir")
    ),
    "support_agent": frozenset(
        _rw("conversations", "tickets", "communications", "notifications")
        | _r("patients", "appointments", "schedule", "journeys", "vector", "search", "media")
    ),
    # An AI agent's API key: its tools (agents), the records they act on, nothing administrative.
    "agent": frozenset(
        _rw("agents", "patients", "appointments", "tickets", "notifications")
        | _r("schedule", "conversations", "vector", "search")
    ),
    "integration": frozenset(
        _rw("patients", "appointments", "communications", "notifications", "conversations", "tickets",
            "journeys", "intake", "media", "vector", "search", "agents", "fhir", "webhooks")
        | _r("schedule")
    ),
}


# Platform scopes act above organisations (creating one). No role grants them, and the `admin`
# scope does not imply them: only a user or API key flagged `is_platform_admin` (set by the
# operator with the CLI, never through the API) carries them.
PLATFORM_ADMIN = "platform:admin"
PLATFORM_SCOPES: frozenset[str] = frozenset({PLATFORM_ADMIN})


def scopes_for(role: str, *, platform_admin: bool = False) -> frozenset[str]:
    try:
        scopes = ROLE_SCOPES[role]
    except KeyError:
        raise ValueError(f"unknown role {role!r}") from None
    return scopes | PLATFORM_SCOPES if platform_admin else scopes
