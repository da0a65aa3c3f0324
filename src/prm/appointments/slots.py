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
import uuid
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


def _strictly_inside(open_intervals: Sequence[Interval], lows: list[datetime], point: datetime) -> bool:
    i = bisect.bisect_left(lows, point) - 1  # the last interval whose low end is < point
    return i >= 0 and point < open_intervals[i][1]


def slots_for(schedule: Schedule, times: ServiceTimes, query: Query) -> list[Slot]:
    """Every bookable slot of one schedule (see the module docstring for the rules)."""
    tz = ZoneInfo(schedule.timezone)
    # local days may straddle UTC days: compute a day either side, filter by local date below
    free = availability(schedule, query.start_date - timedelta(days=1), query.end_date + timedelta(days=1))
    forbidden = _forbidden_starts(query.busy.get(schedule.practitioner_id, ()), times)
    forbidden_starts = [f[0] for f in forbidden]
    earliest = query.now + times.min_notice
    latest = query.now + times.horizon if times.horizon is not None else None
    grid_origins = windows(schedule, query.start_date - timedelta(days=1), query.end_date + timedelta(days=1))
    origin_starts = [w[0] for w in grid_origins]
    out: list[Slot] = []
    for f0, f1 in free:
        last_start = f1 - times.duration
        if last_start < f0:
            continue
        # the grid runs from the start of the window this free interval belongs to
        w = bisect.bisect_right(origin_starts, f0) - 1
        origin = grid_origins[w][0] if w >= 0 else f0
        lower = max(f0, earliest)
        offset = lower - origin
        steps = -(-offset // times.step) if offset > timedelta(0) else 0
        start = origin + steps * times.step
        while start <= last_start:
            if latest is not None and start > latest:
                break
            if not _strictly_inside(forbidden, forbidden_starts, start):
                local = start.astimezone(tz)
                if query.start_date <= local.date() <= query.end_date:
                    end = start + times.duration
                    out.append(
                        Slot(
                            start_at=start,
                            end_at=end,
                            local_start=local,
                            local_end=end.astimezone(tz),
                            timezone=schedule.timezone,
                            practitioner_id=schedule.practitioner_id,
                            location_id=schedule.location_id,
                        )
                    )
            start += times.step
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
