"""Helpers shared by the communications service tests."""

from __future__ import annotations

from datetime import UTC, datetime

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
