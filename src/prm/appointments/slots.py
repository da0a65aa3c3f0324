"""Slot arithmetic: weekly availability in local time, exceptions and bookings -> bookable starts.

Pure: no database, no clock (callers pass `now`). Everything is an aware datetime; results are UTC
with the local time alongside.

Model
-----
* A `Schedule` is one practitioner at one location: weekly `Rule`s in the location's local time
  (`weekday` 0 = Monday, `start_time` < `end_time`, optionally valid between two dates), plus
  `extra` intervals (extra hours) and `off` intervals (time off), both as aware instants.
* Availability = (rule windows ∪ extra) − off.
* An appointment occupies `[start, start + duration)`; with its buffers it *blocks*
  `[start − buffer_before, end + buffer_after)`. Bookings (`busy`) are given as blocked ranges.
* A slot is offered when the appointment itself lies inside availability, its blocked range does
  not overlap any busy range of the practitioner (at any location), it starts at least
  `min_notice` after `now`, no later than `now + horizon`, and its local start date lies in
  `[start_date, end_date]` in the location's zone. Buffers may reach outside working hours (prep
  before the first appointment, notes after the last) but never into another booking's block.
  This is exactly what the database exclusion constraint enforces on blocked ranges, so every
  offered slot is bookable.
* Candidate starts lie on a grid of `step` from the start of each availability window (stepping in
  UTC, which stays on the local grid because real offsets change by whole quarter-hours).

DST (deliberate choices, tested for Europe/Madrid and America/New_York)
----------------------------------------------------------------------
Local wall-clock times are turned into instants with `to_instant`:
* an **ambiguous** time (the repeated hour when clocks go back) resolves to its *first*
  occurrence for a window start and its *second* occurrence for a window end, so a window covers
  every instant whose wall-clock time lies in it (a 00:00–04:00 rule on the autumn change lasts
  five real hours);
* a **nonexistent** time (the skipped hour when clocks go forward) is read with the offset in force
  before the change (PEP 495 `fold=0`), i.e. moved forward by the gap: 02:30 on the Madrid spring
  day is 03:30 CEST. A window keeps its nominal real-time length on that day.
Ordinary 09:00–17:00 rules never meet either case; a rule's window on a change day is simply 9 real
hours in that day's offset.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from operator import attrgetter
from typing import NamedTuple
from zoneinfo import ZoneInfo

Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class Rule:
    weekday: int  # 0 = Monday ... 6 = Sunday
    start_time: time
    end_time: time
    valid_from: date | None = None
    valid_until: date | None = None

    def applies(self, day: date) -> bool:
        return (
            day.weekday() == self.weekday
            and (self.valid_from is None or day >= self.valid_from)
            and (self.valid_until is None or day <= self.valid_until)
        )


@dataclass(frozen=True)
class Schedule:
    practitioner_id: uuid.UUID
    location_id: uuid.UUID
    timezone: str
    rules: Sequence[Rule] = ()
    extra: Sequence[Interval] = ()
    off: Sequence[Interval] = ()


class RuleRow(NamedTuple):
    """A weekly rule with the time zone of its (active) location."""

    practitioner_id: uuid.UUID
    location_id: uuid.UUID
    timezone: str
    rule: Rule


class ExceptionRow(NamedTuple):
    """Time off or extra hours; `timezone` is its location's (None: time off everywhere)."""

    practitioner_id: uuid.UUID
    location_id: uuid.UUID | None
    kind: str
    span: Interval
    timezone: str | None


def assemble_schedules(
    rules: Iterable[RuleRow], exceptions: Iterable[ExceptionRow], location_id: uuid.UUID | None
) -> list[Schedule]:
    """One Schedule per (practitioner, location) with rules or extra hours, sorted; `exceptions` are
    those touching the range of interest. Pure: the database read and the cached read share it."""
    zones: dict[tuple[uuid.UUID, uuid.UUID], str] = {}
    by_key: dict[tuple[uuid.UUID, uuid.UUID], list[Rule]] = defaultdict(list)
    for row in rules:
        if location_id is not None and row.location_id != location_id:
            continue
        key = (row.practitioner_id, row.location_id)
        zones[key] = row.timezone
        by_key[key].append(row.rule)
    off_everywhere: dict[uuid.UUID, list[Interval]] = defaultdict(list)
    off: dict[tuple[uuid.UUID, uuid.UUID], list[Interval]] = defaultdict(list)
    extra: dict[tuple[uuid.UUID, uuid.UUID], list[Interval]] = defaultdict(list)
    for exc in exceptions:
        if exc.kind == "time_off" and exc.location_id is None:
            off_everywhere[exc.practitioner_id].append(exc.span)
            continue
        assert exc.location_id is not None  # the check constraint: only time off may omit it
        key = (exc.practitioner_id, exc.location_id)
        if location_id is not None and exc.location_id != location_id:
            continue
        if exc.kind == "time_off":
            off[key].append(exc.span)
        else:
            extra[key].append(exc.span)
            if exc.timezone is not None:
                zones.setdefault(key, exc.timezone)
    return [
        Schedule(
            practitioner_id=key[0],
            location_id=key[1],
            timezone=zone,
            rules=by_key.get(key, []),
            extra=extra.get(key, []),
            off=[*off.get(key, []), *off_everywhere.get(key[0], [])],
        )
        for key, zone in sorted(zones.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1])))
    ]


class Slot(NamedTuple):
    start_at: datetime  # UTC
    end_at: datetime  # UTC
    local_start: datetime  # aware, in `timezone`
    local_end: datetime
    timezone: str
    practitioner_id: uuid.UUID
    location_id: uuid.UUID


@dataclass(frozen=True)
class ServiceTimes:
    duration: timedelta
    buffer_before: timedelta = timedelta(0)
    buffer_after: timedelta = timedelta(0)
    min_notice: timedelta = timedelta(0)
    horizon: timedelta | None = None
    step: timedelta = timedelta(minutes=15)

    def blocked(self, start_at: datetime) -> Interval:
        """The range an appointment starting at `start_at` blocks, buffers included."""
        return start_at - self.buffer_before, start_at + self.duration + self.buffer_after


@dataclass
class Query:
    start_date: date
    end_date: date
    now: datetime
    busy: dict[uuid.UUID, list[Interval]] = field(default_factory=dict)


# --- local time ---------------------------------------------------------------------------------


def exists(local: datetime) -> bool:
    """False for a wall-clock time skipped by a spring-forward change."""
    tz = local.tzinfo
    assert tz is not None
    back = local.astimezone(UTC).astimezone(tz)
    return back.replace(tzinfo=None, fold=0) == local.replace(tzinfo=None, fold=0)


def is_ambiguous(local: datetime) -> bool:
    """True for a wall-clock time that happens twice (the repeated hour of a fall-back change)."""
    return local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset() and exists(local)


def to_instant(day: date, wall: time, tz: ZoneInfo, *, end: bool = False) -> datetime:
    """The UTC instant of `wall` on `day` in `tz`, by the DST rules documented above."""
    local = datetime.combine(day, wall, tzinfo=tz)
    local = local.replace(fold=1 if end and is_ambiguous(local) else 0)
    return local.astimezone(UTC)


# --- interval arithmetic (sorted, non-overlapping, half-open) -----------------------------------


def merge(intervals: Iterable[Interval], *, join_touching: bool = True) -> list[Interval]:
    """Sort and union; open intervals that only touch must stay apart (`join_touching=False`)."""
    out: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[0] < i[1]):
        if out and (start < out[-1][1] or (join_touching and start == out[-1][1])):
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def subtract(base: Sequence[Interval], cut: Sequence[Interval]) -> list[Interval]:
    """`base − cut`, both merged."""
    out: list[Interval] = []
    j = 0
    for start, end in base:
        cursor = start
        while j < len(cut) and cut[j][1] <= cursor:
            j += 1
        k = j
        while k < len(cut) and cut[k][0] < end:
            if cut[k][0] > cursor:
                out.append((cursor, cut[k][0]))
            cursor = max(cursor, cut[k][1])
            k += 1
        if cursor < end:
            out.append((cursor, end))
    return out


# --- availability -------------------------------------------------------------------------------


def windows(schedule: Schedule, first: date, last: date) -> list[Interval]:
    """Rule windows (local days `first`..`last`) plus extra hours, merged, in UTC."""
    tz = ZoneInfo(schedule.timezone)
    found: list[Interval] = []
    day = first
    while day <= last:
        for rule in schedule.rules:
            if rule.applies(day):
                found.append((to_instant(day, rule.start_time, tz), to_instant(day, rule.end_time, tz, end=True)))
        day += timedelta(days=1)
    found.extend((a.astimezone(UTC), b.astimezone(UTC)) for a, b in schedule.extra)
    return merge(found)


def availability(schedule: Schedule, first: date, last: date) -> list[Interval]:
    """Where an appointment may lie: windows minus time off."""
    return subtract(
        windows(schedule, first, last), merge((a.astimezone(UTC), b.astimezone(UTC)) for a, b in schedule.off)
    )


def _forbidden_starts(busy: Iterable[Interval], times: ServiceTimes) -> list[Interval]:
    """Starts whose blocked range would overlap a busy range: (b0 − d − after, b1 + before)."""
    head = times.duration + times.buffer_after
    return merge(((b0 - head, b1 + times.buffer_before) for b0, b1 in busy), join_touching=False)


def _on_grid(origin: datetime, at_least: datetime, step: timedelta) -> datetime:
    """The first point of the grid `origin + k·step` (k ≥ 0) at or after `at_least`."""
    offset = at_least - origin
    return origin + -(-offset // step) * step if offset > timedelta(0) else origin


def _starts(schedule: Schedule, times: ServiceTimes, query: Query) -> list[datetime]:
    """Every bookable start (UTC, ascending) of one schedule on local days around the query's range.

    The caller keeps the starts whose local date lies in the range. One sweep: free intervals and
    forbidden ranges are both sorted, so a pointer into the forbidden ranges only moves forward, and a
    start inside one jumps straight to the first grid point after it.
    """
    # local days may straddle UTC days: compute a day either side, the caller filters by local date
    grid = windows(schedule, query.start_date - timedelta(days=1), query.end_date + timedelta(days=1))
    free = subtract(grid, merge((a.astimezone(UTC), b.astimezone(UTC)) for a, b in schedule.off))
    forbidden = _forbidden_starts(query.busy.get(schedule.practitioner_id, ()), times)
    origin_starts = [w[0] for w in grid]
    earliest = query.now + times.min_notice
    latest = query.now + times.horizon if times.horizon is not None else None
    step, duration = times.step, times.duration
    out: list[datetime] = []
    j, n_forbidden = 0, len(forbidden)
    for f0, f1 in free:
        last_start = f1 - duration
        if latest is not None and latest < last_start:
            last_start = latest
        lower = f0 if f0 > earliest else earliest
        if last_start < lower:
            continue
        # the grid runs from the start of the window this free interval belongs to
        origin = grid[bisect.bisect_right(origin_starts, f0) - 1][0]
        start = _on_grid(origin, lower, step)
        while start <= last_start:
            while j < n_forbidden and forbidden[j][1] <= start:
                j += 1
            if j < n_forbidden and forbidden[j][0] < start:  # strictly inside an open forbidden range
                start = _on_grid(origin, forbidden[j][1], step)
                continue
            out.append(start)
            start += step
    return out


def slots_for(schedule: Schedule, times: ServiceTimes, query: Query) -> list[Slot]:
    """Every bookable slot of one schedule (see the module docstring for the rules)."""
    tz = ZoneInfo(schedule.timezone)
    first, last, duration = query.start_date, query.end_date, times.duration
    out: list[Slot] = []
    for start in _starts(schedule, times, query):
        local = start.astimezone(tz)
        if first <= local.date() <= last:
            end = start + duration
            out.append(
                Slot(
                    start, end, local, end.astimezone(tz), schedule.timezone, schedule.practitioner_id,
                    schedule.location_id,
                )
            )
    return out


def compute_slots(
    schedules: Iterable[Schedule], times: ServiceTimes, query: Query, *, limit: int | None = None
) -> list[Slot]:
    """Slots of every schedule, ordered by start (ties in the order of `schedules`); at most `limit`."""
    found: list[Slot] = []
    for schedule in schedules:
        found.extend(slots_for(schedule, times, query))
    found.sort(key=attrgetter("start_at"))  # stable: ties keep the order of `schedules`
    return found[:limit] if limit is not None else found


# --- the compact form: per schedule and local day, the start times ------------------------------


class StartTimes(NamedTuple):
    """The bookable starts of one schedule, by local day: `{"2026-03-24": ["09:00:00+01:00", ...]}`.

    A start is the local wall-clock time with its UTC offset (RFC 3339 `full-time`), so a repeated
    hour on the autumn change stays unambiguous: `day + "T" + time` is the ISO instant. Days without a
    start are left out; days and times ascend (times in real-time order).
    """

    practitioner_id: uuid.UUID
    location_id: uuid.UUID
    timezone: str
    days: dict[str, list[str]]


def _local_starts(schedule: Schedule, times: ServiceTimes, query: Query) -> list[datetime]:
    """The starts of one schedule as local times in its zone, those on local days of the range."""
    tz = ZoneInfo(schedule.timezone)
    first, last = query.start_date, query.end_date
    out = []
    for start in _starts(schedule, times, query):
        local = start.astimezone(tz)
        if first <= local.date() <= last:
            out.append(local)
    return out


def _earliest_counts(found: Sequence[Sequence[datetime]], limit: int) -> list[int]:
    """How many of each schedule's starts are among the `limit` earliest of all (ties: schedule order)."""
    merged = heapq.merge(*([(local.astimezone(UTC), i) for local in starts] for i, starts in enumerate(found)))
    counts = [0] * len(found)
    for _, i in itertools.islice(merged, limit):
        counts[i] += 1
    return counts


def start_times(
    schedules: Sequence[Schedule], times: ServiceTimes, query: Query, *, limit: int | None = None
) -> list[StartTimes]:
    """`compute_slots` in the compact form: the same starts (the same `limit` earliest), one entry per schedule."""
    found = [_local_starts(schedule, times, query) for schedule in schedules]
    if limit is not None:
        found = [starts[:n] for starts, n in zip(found, _earliest_counts(found, limit), strict=True)]
    text: dict[tuple[int, int, int, int, timedelta | None], str] = {}
    out = []
    for schedule, starts in zip(schedules, found, strict=True):
        days: dict[str, list[str]] = {}
        day: date | None = None
        current: list[str] = []
        for local in starts:
            if local.date() != day:
                day = local.date()
                current = days.setdefault(day.isoformat(), [])
            key = (local.hour, local.minute, local.second, local.microsecond, local.utcoffset())
            wall = text.get(key)
            if wall is None:
                wall = text[key] = local.isoformat()[11:]
            current.append(wall)
        out.append(StartTimes(schedule.practitioner_id, schedule.location_id, schedule.timezone, days))
    return out


# --- checking one start (booking) ---------------------------------------------------------------


def within_availability(schedule: Schedule, times: ServiceTimes, start_at: datetime) -> bool:
    """True when `[start_at, start_at + duration)` lies inside the schedule's availability."""
    tz = ZoneInfo(schedule.timezone)
    local_day = start_at.astimezone(tz).date()
    end_at = start_at + times.duration
    for a, b in availability(schedule, local_day - timedelta(days=1), local_day + timedelta(days=1)):
        if a <= start_at and end_at <= b:
            return True
    return False


def overlaps_busy(times: ServiceTimes, start_at: datetime, busy: Iterable[Interval]) -> bool:
    b0, b1 = times.blocked(start_at)
    return any(x0 < b1 and b0 < x1 for x0, x1 in busy)
