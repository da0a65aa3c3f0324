"""Calendar-aware waits in the patient's local time zone. Pure: instants in, instants out (UTC).

The zone is the patient's, else the clinic's (the location of the appointment that started the
journey), else the organisation's. Days are calendar days in that zone: "wait 1 day" from 10:00 is
10:00 the next day whether that day has 23, 24 or 25 hours. Hours and minutes are elapsed time.
A local time that does not exist (the spring-forward gap) is taken as the same wall time after the
gap (02:30 → 03:30); one that happens twice (autumn) is its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def resolve_zone(patient: str | None, clinic: str | None, organisation: str | None) -> ZoneInfo:
    """The first valid zone of patient → clinic/location → organisation (UTC if none is)."""
    for name in (patient, clinic, organisation):
        zone = _zone(name)
        if zone is not None:
            return zone
    return ZoneInfo("UTC")


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of wall time `at` on `day` in `zone` (gap → after it, overlap → first)."""
    naive = datetime.combine(day, at.replace(tzinfo=None))
    aware = naive.replace(tzinfo=zone, fold=0)
    instant = aware.astimezone(UTC)
    # zoneinfo maps a gap time with fold=0 using the offset before the gap, which lands after it
    # (02:30 CET → 01:30 UTC = 03:30 CEST): exactly the rule above.
    return instant


def after(start: datetime, zone: ZoneInfo, *, days: int = 0, hours: int = 0, minutes: int = 0) -> datetime:
    """`start` plus `days` calendar days (same wall time, in `zone`) plus elapsed hours and minutes."""
    if start.tzinfo is None:
        raise ValueError("start must be aware")
    moved = start.astimezone(UTC)
    if days:
        local = moved.astimezone(zone)
        moved = local_instant(local.date() + timedelta(days=days), local.timetz().replace(tzinfo=None), zone)
    return moved + timedelta(hours=hours, minutes=minutes)


def next_local_time(start: datetime, zone: ZoneInfo, at: time, weekdays: Iterable[str] = ()) -> datetime:
    """The first instant strictly after `start` when the wall clock in `zone` reads `at` on one of
    `weekdays` (any day when empty)."""
    if start.tzinfo is None:
        raise ValueError("start must be aware")
    allowed = {WEEKDAYS.index(d) for d in weekdays} or set(range(7))
    day = start.astimezone(zone).date()
    for offset in range(0, 9):
        candidate_day = day + timedelta(days=offset)
        if candidate_day.weekday() not in allowed:
            continue
        instant = local_instant(candidate_day, at, zone)
        if instant > start:
            return instant
    raise AssertionError("unreachable: a week always holds an allowed day")  # pragma: no cover
