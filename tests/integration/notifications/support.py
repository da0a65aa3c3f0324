"""Helpers shared by the notification service tests."""

from __future__ import annotations

from datetime import UTC, datetime

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
APPT = {
    "service_name": "Cleaning",
    "practitioner_name": "Dr Ruiz",
    "location_name": "Main St",
    "when": "Tuesday 8 December 2026, 10:30",
}
