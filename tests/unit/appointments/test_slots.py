"""Slot arithmetic: grids, buffers, exceptions, notice, horizon and both DST changes."""

from __future__ import annotations

import bisect
import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from prm.appointments.slots import (
    Query,
    Rule,
    Schedule,
    ServiceTimes,
    Slot,
    StartTimes,
    availability,
    compute_slots,
    exists,
    is_ambiguous,
    merge,
    overlaps_busy,
    start_times,
    subtract,
    to_instant,
    windows,
    within_availability,
)

P1, P2, LOC = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
MADRID, NEW_YORK = "Europe/Madrid", "America/New_York"
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def every_day(start: time, end: time) -> list[Rule]:
    return [Rule(weekday=d, start_time=start, end_time=end) for d in range(7)]


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


def test_weekly_rule_gives_grid_in_local_time() -> None:
    # Monday 2026-01-12, Madrid is UTC+1 in winter
    schedule = Schedule(P1, LOC, MADRID, rules=[Rule(0, time(9), time(12))])
    times = ServiceTimes(duration=minutes(30), step=minutes(15))
    slots = compute_slots([schedule], times, Query(date(2026, 1, 12), date(2026, 1, 18), now=EPOCH))
    assert [s.local_start.strftime("%H:%M") for s in slots] == [
        "09:00",
        "09:15",
        "09:30",
        "09:45",
        "10:00",
        "10:15",
        "10:30",
        "10:45",
        "11:00",
        "11:15",
        "11:30",
    ]
    assert slots[0].start_at == utc(2026, 1, 12, 8, 0)
    assert slots[-1].end_at == utc(2026, 1, 12, 11, 0)
    assert all(s.start_at.tzinfo == UTC and s.timezone == MADRID for s in slots)


def _nine_oclock(zone: str, first: date, last: date) -> list[tuple[str, datetime]]:
    schedule = Schedule(P1, LOC, zone, rules=every_day(time(9), time(10)))
    times = ServiceTimes(duration=minutes(60), step=minutes(60))
    return [
        (s.local_start.isoformat(), s.start_at) for s in compute_slots([schedule], times, Query(first, last, now=EPOCH))
    ]


def test_madrid_spring_forward_keeps_local_nine() -> None:
    # clocks go 02:00 -> 03:00 on Sunday 2026-03-29
    assert _nine_oclock(MADRID, date(2026, 3, 28), date(2026, 3, 29)) == [
        ("2026-03-28T09:00:00+01:00", utc(2026, 3, 28, 8)),
        ("2026-03-29T09:00:00+02:00", utc(2026, 3, 29, 7)),
    ]


def test_madrid_fall_back_keeps_local_nine() -> None:
    # clocks go 03:00 -> 02:00 on Sunday 2026-10-25
    assert _nine_oclock(MADRID, date(2026, 10, 24), date(2026, 10, 25)) == [
        ("2026-10-24T09:00:00+02:00", utc(2026, 10, 24, 7)),
        ("2026-10-25T09:00:00+01:00", utc(2026, 10, 25, 8)),
    ]


def test_new_york_both_changes_keep_local_nine() -> None:
    assert _nine_oclock(NEW_YORK, date(2026, 3, 7), date(2026, 3, 8)) == [
        ("2026-03-07T09:00:00-05:00", utc(2026, 3, 7, 14)),
        ("2026-03-08T09:00:00-04:00", utc(2026, 3, 8, 13)),
    ]
    assert _nine_oclock(NEW_YORK, date(2026, 10, 31), date(2026, 11, 1)) == [
        ("2026-10-31T09:00:00-04:00", utc(2026, 10, 31, 13)),
        ("2026-11-01T09:00:00-05:00", utc(2026, 11, 1, 14)),
    ]


def test_nonexistent_local_time_moves_forward_by_the_gap() -> None:
    tz = ZoneInfo(MADRID)
    assert not exists(datetime(2026, 3, 29, 2, 30, tzinfo=tz))
    assert to_instant(date(2026, 3, 29), time(2, 30), tz) == utc(2026, 3, 29, 1, 30)  # 03:30 CEST
    # a night window 01:00-04:00 on the spring day lasts two real hours and never offers 02:xx
    schedule = Schedule(P1, LOC, MADRID, rules=[Rule(6, time(1), time(4))])
    slots = compute_slots(
        [schedule],
        ServiceTimes(duration=minutes(60), step=minutes(60)),
        Query(date(2026, 3, 29), date(2026, 3, 29), now=EPOCH),
    )
    assert [s.local_start.isoformat() for s in slots] == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
    ]


def test_ambiguous_local_time_window_covers_both_occurrences() -> None:
    tz = ZoneInfo(NEW_YORK)
    assert is_ambiguous(datetime(2026, 11, 1, 1, 30, tzinfo=tz))
    assert to_instant(date(2026, 11, 1), time(1, 30), tz) == utc(2026, 11, 1, 5, 30)  # first (EDT)
    assert to_instant(date(2026, 11, 1), time(1, 30), tz, end=True) == utc(2026, 11, 1, 6, 30)  # second (EST)
    schedule = Schedule(P1, LOC, NEW_YORK, rules=[Rule(6, time(0), time(3))])
    slots = compute_slots(
        [schedule],
        ServiceTimes(duration=minutes(60), step=minutes(60)),
        Query(date(2026, 11, 1), date(2026, 11, 1), now=EPOCH),
    )
    assert [s.local_start.isoformat() for s in slots] == [
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]
    assert len({s.start_at for s in slots}) == 4


def test_bookings_and_buffers_remove_slots_but_adjacent_fits() -> None:
    schedule = Schedule(P1, LOC, "UTC", rules=[Rule(0, time(9), time(12))])
    times = ServiceTimes(duration=minutes(30), buffer_before=minutes(10), buffer_after=minutes(5), step=minutes(15))
    # an existing appointment 10:00-10:30 with the same buffers blocks 09:50-10:35
    busy = {P1: [times.blocked(utc(2026, 1, 12, 10))]}
    query = Query(date(2026, 1, 12), date(2026, 1, 12), now=EPOCH, busy=busy)
    slots = compute_slots([schedule], times, query)
    starts = [s.start_at.strftime("%H:%M") for s in slots]
    # 09:15 blocks 09:05-09:50: touches, allowed; 09:30 would block until 10:05: refused
    assert "09:15" in starts and "09:30" not in starts
    # 10:45 blocks 10:35-11:20: touches the booking's after-buffer, allowed; 10:30 is refused
    assert "10:30" not in starts and "10:45" in starts
    # another practitioner's bookings do not matter
    other = compute_slots(
        [Schedule(P2, LOC, "UTC", rules=[Rule(0, time(9), time(12))])],
        times,
        Query(date(2026, 1, 12), date(2026, 1, 12), now=EPOCH, busy=busy),
    )
    assert len(other) == 11


def test_time_off_and_extra_hours() -> None:
    off = [(utc(2026, 1, 12, 10), utc(2026, 1, 12, 11))]
    extra = [(utc(2026, 1, 13, 15), utc(2026, 1, 13, 16))]  # a Tuesday without a rule
    schedule = Schedule(P1, LOC, "UTC", rules=[Rule(0, time(9), time(12))], off=off, extra=extra)
    slots = compute_slots(
        [schedule],
        ServiceTimes(duration=minutes(60), step=minutes(60)),
        Query(date(2026, 1, 12), date(2026, 1, 13), now=EPOCH),
    )
    assert [s.start_at for s in slots] == [utc(2026, 1, 12, 9), utc(2026, 1, 12, 11), utc(2026, 1, 13, 15)]


def test_minimum_notice_and_horizon() -> None:
    schedule = Schedule(P1, LOC, "UTC", rules=every_day(time(9), time(17)))
    times = ServiceTimes(
        duration=minutes(60), step=minutes(30), min_notice=timedelta(hours=2), horizon=timedelta(days=1)
    )
    now = utc(2026, 1, 12, 9, 40)
    slots = compute_slots([schedule], times, Query(date(2026, 1, 12), date(2026, 1, 20), now=now))
    assert slots[0].start_at == utc(2026, 1, 12, 12)  # 11:40 rounded up to the grid
    assert slots[-1].start_at <= now + timedelta(days=1)
    assert slots[-1].start_at == utc(2026, 1, 13, 9, 30)


def test_rule_validity_dates_and_limit() -> None:
    rule = Rule(0, time(9), time(10), valid_from=date(2026, 1, 19), valid_until=date(2026, 1, 26))
    schedule = Schedule(P1, LOC, "UTC", rules=[rule])
    times = ServiceTimes(duration=minutes(30), step=minutes(30))
    slots = compute_slots([schedule], times, Query(date(2026, 1, 1), date(2026, 2, 28), now=EPOCH))
    assert sorted({s.start_at.date() for s in slots}) == [date(2026, 1, 19), date(2026, 1, 26)]
    assert len(compute_slots([schedule], times, Query(date(2026, 1, 1), date(2026, 2, 28), now=EPOCH), limit=3)) == 3


def test_several_practitioners_sorted_by_start() -> None:
    a = Schedule(P1, LOC, "UTC", rules=[Rule(0, time(9), time(10))])
    b = Schedule(P2, LOC, MADRID, rules=[Rule(0, time(9), time(10))])  # 08:00 UTC
    slots = compute_slots(
        [a, b],
        ServiceTimes(duration=minutes(60), step=minutes(60)),
        Query(date(2026, 1, 12), date(2026, 1, 12), now=EPOCH),
    )
    assert [(s.practitioner_id, s.start_at.hour) for s in slots] == [(P2, 8), (P1, 9)]


def test_checking_a_single_start() -> None:
    schedule = Schedule(
        P1,
        LOC,
        MADRID,
        rules=[Rule(0, time(9), time(12))],
        off=[(utc(2026, 1, 12, 9), utc(2026, 1, 12, 9, 30))],
    )
    times = ServiceTimes(duration=minutes(30), buffer_after=minutes(10))
    assert within_availability(schedule, times, utc(2026, 1, 12, 8))
    assert not within_availability(schedule, times, utc(2026, 1, 12, 7, 45))  # 08:45 local
    assert not within_availability(schedule, times, utc(2026, 1, 12, 10, 45))  # ends 12:15 local
    assert not within_availability(schedule, times, utc(2026, 1, 12, 9))  # time off
    busy = [times.blocked(utc(2026, 1, 12, 8))]  # 08:00-08:40
    assert overlaps_busy(times, utc(2026, 1, 12, 8, 30), busy)
    assert not overlaps_busy(times, utc(2026, 1, 12, 8, 40), busy)


def test_interval_helpers() -> None:
    a, b, c, d = (utc(2026, 1, 1, h) for h in (1, 2, 3, 4))
    assert merge([(c, d), (a, b), (b, c)]) == [(a, d)]
    assert merge([(a, b), (b, c)], join_touching=False) == [(a, b), (b, c)]
    assert subtract([(a, d)], [(b, c)]) == [(a, b), (c, d)]
    assert subtract([(a, b), (c, d)], [(a, d)]) == []


# --- property: no slot overlaps a booking (buffers included) or lies outside availability --------

DAY0 = date(2026, 3, 23)  # the week of the Madrid spring change


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Schedule, ServiceTimes, Query]:
    zone = draw(st.sampled_from([MADRID, NEW_YORK, "UTC", "Australia/Lord_Howe"]))
    rules = []
    for _ in range(draw(st.integers(1, 6))):
        start = draw(st.integers(0, 22 * 4)) * 15
        length = draw(st.integers(1, 12)) * 15
        end = min(start + length, 24 * 60 - 1)
        rules.append(Rule(draw(st.integers(0, 6)), time(start // 60, start % 60), time(end // 60, end % 60)))
    base = datetime.combine(DAY0, time(0), tzinfo=UTC)

    def interval() -> tuple[datetime, datetime]:
        s = base + minutes(draw(st.integers(0, 8 * 24 * 12)) * 5)
        return s, s + minutes(draw(st.integers(1, 48)) * 5)

    extra = [interval() for _ in range(draw(st.integers(0, 2)))]
    off = [interval() for _ in range(draw(st.integers(0, 3)))]
    times = ServiceTimes(
        duration=minutes(draw(st.integers(1, 12)) * 5),
        buffer_before=minutes(draw(st.integers(0, 4)) * 5),
        buffer_after=minutes(draw(st.integers(0, 4)) * 5),
        step=minutes(draw(st.sampled_from([5, 10, 15, 30]))),
        min_notice=minutes(draw(st.integers(0, 600))),
    )
    busy = [interval() for _ in range(draw(st.integers(0, 8)))]
    now = base + minutes(draw(st.integers(-1440, 2 * 1440)))
    schedule = Schedule(P1, LOC, zone, rules=rules, extra=extra, off=off)
    return schedule, times, Query(DAY0, DAY0 + timedelta(days=6), now=now, busy={P1: busy})


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_property_slots_never_overlap_bookings_and_stay_inside_availability(
    scenario: tuple[Schedule, ServiceTimes, Query],
) -> None:
    schedule, times, query = scenario
    free = availability(schedule, query.start_date - timedelta(days=1), query.end_date + timedelta(days=1))
    slots = compute_slots([schedule], times, query)
    for slot in slots:
        assert slot.end_at - slot.start_at == times.duration
        assert any(a <= slot.start_at and slot.end_at <= b for a, b in free), "outside availability"
        b0, b1 = times.blocked(slot.start_at)
        assert all(not (x0 < b1 and b0 < x1) for x0, x1 in query.busy[P1]), "overlaps a booking"
        assert slot.start_at >= query.now + times.min_notice
        assert query.start_date <= slot.local_start.date() <= query.end_date
        assert within_availability(schedule, times, slot.start_at)
        assert not overlaps_busy(times, slot.start_at, query.busy[P1])
    assert len({s.start_at for s in slots}) == len(slots)


# --- the sweep gives exactly what the previous per-start search gave -----------------------------


def reference_slots(schedule: Schedule, times: ServiceTimes, query: Query) -> list[Slot]:
    """The previous implementation of `slots_for` (a bisect per candidate start), kept as the oracle."""
    tz = ZoneInfo(schedule.timezone)
    first, last = query.start_date - timedelta(days=1), query.end_date + timedelta(days=1)
    free = availability(schedule, first, last)
    head = times.duration + times.buffer_after
    forbidden = merge(
        ((b0 - head, b1 + times.buffer_before) for b0, b1 in query.busy.get(schedule.practitioner_id, ())),
        join_touching=False,
    )
    lows = [f[0] for f in forbidden]
    earliest = query.now + times.min_notice
    latest = query.now + times.horizon if times.horizon is not None else None
    grid_origins = windows(schedule, first, last)
    origin_starts = [w[0] for w in grid_origins]
    out = []
    for f0, f1 in free:
        last_start = f1 - times.duration
        if last_start < f0:
            continue
        w = bisect.bisect_right(origin_starts, f0) - 1
        origin = grid_origins[w][0] if w >= 0 else f0
        offset = max(f0, earliest) - origin
        start = origin + (-(-offset // times.step) if offset > timedelta(0) else 0) * times.step
        while start <= last_start:
            if latest is not None and start > latest:
                break
            i = bisect.bisect_left(lows, start) - 1
            if not (i >= 0 and start < forbidden[i][1]):
                local = start.astimezone(tz)
                if query.start_date <= local.date() <= query.end_date:
                    end = start + times.duration
                    out.append(
                        Slot(start, end, local, end.astimezone(tz), schedule.timezone, schedule.practitioner_id,
                             schedule.location_id)
                    )
            start += times.step
    return out


Row = tuple[uuid.UUID, uuid.UUID, str, datetime, datetime]


def expand(compact: list[StartTimes], duration: timedelta) -> list[Row]:
    """The compact form read back as (practitioner, location, zone, start UTC, end UTC), as a client would."""
    out = []
    for entry in compact:
        for day, walls in entry.days.items():
            for wall in walls:
                start = datetime.fromisoformat(f"{day}T{wall}").astimezone(UTC)
                out.append((entry.practitioner_id, entry.location_id, entry.timezone, start, start + duration))
    return sorted(out, key=lambda row: row[3])


def as_rows(found: list[Slot]) -> list[Row]:
    return sorted(((s.practitioner_id, s.location_id, s.timezone, s.start_at, s.end_at) for s in found),
                  key=lambda row: row[3])


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.integers(1, 40) | st.none())
def test_property_sweep_matches_reference_and_compact_form_describes_the_same_slots(
    scenario: tuple[Schedule, ServiceTimes, Query], limit: int | None
) -> None:
    schedule, times, query = scenario
    times = ServiceTimes(times.duration, times.buffer_before, times.buffer_after, times.min_notice,
                         horizon=timedelta(days=3), step=times.step)
    other = Schedule(P2, LOC, NEW_YORK, rules=schedule.rules, extra=schedule.extra)
    query.busy[P2] = query.busy[P1][::2]
    full = compute_slots([schedule, other], times, query, limit=limit)
    expected = sorted(reference_slots(schedule, times, query) + reference_slots(other, times, query),
                      key=lambda s: s.start_at)
    assert full == expected[:limit]
    compact = start_times([schedule, other], times, query, limit=limit)
    assert [(c.practitioner_id, c.timezone) for c in compact] == [(P1, schedule.timezone), (P2, NEW_YORK)]
    assert expand(compact, times.duration) == as_rows(full)
    for entry in compact:
        assert all(walls for walls in entry.days.values()), "a day without starts is left out"
        assert list(entry.days) == sorted(entry.days)


# --- the compact form across DST changes and month ends -------------------------------------------


def _night(zone: str, weekday: int, day: date) -> dict[str, list[str]]:
    schedule = Schedule(P1, LOC, zone, rules=[Rule(weekday, time(0), time(4))])
    times = ServiceTimes(duration=minutes(30), step=minutes(30))
    (entry,) = start_times([schedule], times, Query(day, day, now=EPOCH))
    return entry.days


def test_compact_form_on_the_madrid_spring_change_skips_the_missing_hour() -> None:
    # clocks go 02:00 -> 03:00 on Sunday 2026-03-29: a 00:00-04:00 window lasts three real hours
    assert _night(MADRID, 6, date(2026, 3, 29)) == {
        "2026-03-29": ["00:00:00+01:00", "00:30:00+01:00", "01:00:00+01:00", "01:30:00+01:00",
                       "03:00:00+02:00", "03:30:00+02:00"]
    }


def test_compact_form_on_the_madrid_autumn_change_lists_the_repeated_hour_twice() -> None:
    # clocks go 03:00 -> 02:00 on Sunday 2026-10-25: 02:00 and 02:30 happen twice, told apart by the offset
    days = _night(MADRID, 6, date(2026, 10, 25))
    assert days == {
        "2026-10-25": ["00:00:00+02:00", "00:30:00+02:00", "01:00:00+02:00", "01:30:00+02:00",
                       "02:00:00+02:00", "02:30:00+02:00", "02:00:00+01:00", "02:30:00+01:00",
                       "03:00:00+01:00", "03:30:00+01:00"]
    }
    instants = [datetime.fromisoformat(f"2026-10-25T{wall}") for wall in days["2026-10-25"]]
    assert instants == sorted(instants) and len(set(instants)) == 10
    assert instants[-1] - instants[0] == timedelta(hours=4, minutes=30)  # five real hours of window


def test_compact_form_days_are_local_days() -> None:
    # 23:00-01:00 New York time spans two UTC days; each start is filed under its local day
    schedule = Schedule(P1, LOC, NEW_YORK, rules=[Rule(d, time(22), time(23, 59)) for d in range(7)])
    times = ServiceTimes(duration=minutes(60), step=minutes(60))
    (entry,) = start_times([schedule], times, Query(date(2026, 3, 7), date(2026, 3, 8), now=EPOCH))
    # Saturday EST (-05:00), Sunday after the spring change EDT (-04:00)
    assert entry.days == {"2026-03-07": ["22:00:00-05:00"], "2026-03-08": ["22:00:00-04:00"]}


def test_compact_form_keeps_months_apart() -> None:
    rules = [Rule(1, time(9), time(10), valid_until=date(2026, 3, 24)),
             Rule(4, time(9), time(10), valid_from=date(2026, 4, 24))]  # Tue 24 March, then Fri 24 April
    schedule = Schedule(P1, LOC, "UTC", rules=rules)
    times = ServiceTimes(duration=minutes(60), step=minutes(60))
    (entry,) = start_times([schedule], times, Query(date(2026, 3, 23), date(2026, 4, 24), now=EPOCH))
    assert entry.days == {"2026-03-24": ["09:00:00+00:00"], "2026-04-24": ["09:00:00+00:00"]}
