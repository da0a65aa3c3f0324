"""Fixtures of the end-to-end tests (processes, test-owned databases)."""

from tests.e2e.processes import own_postgres  # noqa: F401  (fixture)
