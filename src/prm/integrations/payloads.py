"""Pure rules of outbound delivery: what an event payload may carry, which endpoint wants which
event, and when a failed delivery is tried again."""

from __future__ import annotations

import random
from email.utils import parsedate_to_datetime
from typing import Any

# After the first attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (Standard Webhooks' usual
# schedule); ±20 % jitter so a recovering receiver is not hit by every retry at once.
RETRY_SCHEDULE_SECONDS: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
MAX_RETRY_AFTER_SECONDS = 24 * 3600

# Thin payloads: ids, statuses, channels, times and names of changed fields; never free text.
_KEPT_KEYS = {"id", "status", "from_status", "to_status", "channel", "direction", "action", "kind", "source",
              "reason", "priority", "category", "event", "changed", "changed_fields", "fields", "mode",
              "provider", "version", "occurrence", "step", "stage", "type"}


def _kept(key: str) -> bool:
    return key in _KEPT_KEYS or key.endswith(("_id", "_ids", "_at", "_date", "_status", "_count", "_key"))


def _value(value: Any) -> Any:
    if isinstance(value, dict):
        return thin(value)
    if isinstance(value, list):
        return [_value(v) for v in value if isinstance(v, (str, int, float, bool, dict)) or v is None]
    return value


def thin(payload: dict[str, Any]) -> dict[str, Any]:
    """The part of a domain event's payload that may leave the service: ids and changed fields.

    Names, phone numbers, message bodies, notes and other free text are dropped; a receiver that
    needs them reads them through the API with its own credentials.
    """
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if not _kept(key):
            continue
        if isinstance(value, str) and len(value) > 200:
            continue
        out[key] = _value(value)
    return out


def wants(event_types: list[str], event_type: str) -> bool:
    """Does a subscription list (`*`, `appointment.*`, `appointment.booked`) cover `event_type`?"""
    for pattern in event_types:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def retry_after_seconds(header: str | None, *, now_epoch: float) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date), None when absent or invalid."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_epoch)


def next_delay(attempts_made: int, retry_after: float | None = None,
               schedule: tuple[int, ...] = RETRY_SCHEDULE_SECONDS) -> float | None:
    """Seconds until the next attempt after `attempts_made` attempts; None when retries are exhausted.

    A receiver's `Retry-After` is honoured (never shortened below the schedule, capped at a day).
    """
    if attempts_made < 1 or attempts_made > len(schedule):
        return None
    base = schedule[attempts_made - 1] * random.uniform(0.8, 1.2)
    if retry_after is not None:
        base = max(base, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return base
