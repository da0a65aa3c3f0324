"""Roles and scopes: defined in `prm.core.scopes` (the `Principal` in core needs them); re-exported here."""

from __future__ import annotations

from prm.core.scopes import (
    ALL_SCOPES,
    PLATFORM_ADMIN,
    PLATFORM_SCOPES,
    RESOURCES,
    ROLE_SCOPES,
    ROLES,
    scopes_for,
)

__all__ = ["ALL_SCOPES", "PLATFORM_ADMIN", "PLATFORM_SCOPES", "RESOURCES", "ROLES", "ROLE_SCOPES", "scopes_for"]
