"""The one source of "now". Tests move time with `frozen(...)` instead of sleeping.

The override is process-wide on purpose: a test that freezes time freezes it for the service code
it calls, including code running in other tasks (the in-process worker, background handlers).
"""

from __future__ import annotations

import contextlib
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

_frozen_at: datetime | None = None


def is_time_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone. Any text is safe to ask about: `zoneinfo` raises
    ValueError for odd names and OSError for a folder of zones (`America`) or an overlong name."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def now() -> datetime:
    """Current time, timezone-aware UTC."""
    return _frozen_at if _frozen_at is not None else datetime.now(UTC)


class FrozenClock:
    """Handle returned by `frozen()`; moves the frozen time."""

    def set(self, at: datetime) -> datetime:
        global _frozen_at
        if at.tzinfo is None:
            raise ValueError("the clock needs an aware datetime")
        _frozen_at = at.astimezone(UTC)
        return _frozen_at

    def advance(self, delta: timedelta) -> datetime:
        return self.set(now() + delta)


@contextlib.contextmanager
def frozen(at: datetime) -> Iterator[FrozenClock]:
    """Freeze time at `at` (aware) until the block ends; `.advance()` / `.set()` move it."""
    global _frozen_at
    previous = _frozen_at
    clock = FrozenClock()
    clock.set(at)
    try:
        yield clock
    finally:
        _frozen_at = previous
