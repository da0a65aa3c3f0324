"""Slot arithmetic: grids, buffers, exceptions, notice, horizon and both DST changes."""

from __future__ import annotations

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
    availability,
    compute_slots,
    exists,
    is_ambiguous,
    merge,
    overlaps_busy,
    subtract,
    to_instant,
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
