"""Reminder offsets: days are local calendar days (same wall-clock time), hours and minutes absolute;
both DST edges in two zones, including a wall-clock time that does not exist or happens twice on the
day before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from prm.core.reminder_offsets import ReminderOffset, due_at, normalise, parse

MADRID = ZoneInfo("Europe/Madrid")  # 2026: CET→CEST on Sun 29 Mar 02:00, CEST→CET on Sun 25 Oct 03:00
NEW_YORK = ZoneInfo("America/New_York")  # 2026: EST→EDT on Sun 8 Mar 02:00, EDT→EST on Sun 1 Nov 02:00
DAY, TWO_H = ReminderOffset(1, "d"), ReminderOffset(2, "h")


def local(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold)  # type: ignore[misc]


def test_parse_units_plain_minutes_order_and_duplicates() -> None:
    assert [str(o) for o in parse("2h, 1d,30m,90")] == ["1d", "2h", "90m", "30m"]
    assert [str(o) for o in parse("1440,1d")] == ["1d", "1440m"]  # 1d is not 1440 minutes
    assert parse("1d,1D, 1d") == [DAY] and parse("") == []
    assert parse("2d")[0].nominal_minutes == 2880 and normalise(" 2H,1d ") == "1d,2h"
    for bad in ("0", "0d", "-1d", "1w", "1.5h", "d", "1 day"):
        with pytest.raises(ValueError, match="reminder offset"):
            parse(bad)


@pytest.mark.parametrize(
    ("zone", "start_local", "expected_local"),
    [
        # spring forward: the day before has one more hour of real time between the two wall times
        (MADRID, (2026, 3, 29, 10, 0), (2026, 3, 28, 10, 0)),
        (NEW_YORK, (2026, 3, 8, 10, 0), (2026, 3, 7, 10, 0)),
        # fall back
        (MADRID, (2026, 10, 25, 10, 0), (2026, 10, 24, 10, 0)),
        (NEW_YORK, (2026, 11, 1, 10, 0), (2026, 10, 31, 10, 0)),
        # a DST change between the reminder and the appointment on another day (Monday after)
        (MADRID, (2026, 3, 30, 9, 15), (2026, 3, 29, 9, 15)),
        (NEW_YORK, (2026, 11, 2, 8, 0), (2026, 11, 1, 8, 0)),
    ],
)
def test_one_day_before_is_the_same_local_time_across_dst(zone, start_local, expected_local) -> None:  # type: ignore[no-untyped-def]
    start = local(zone, *start_local)
    due = due_at(start, DAY, zone)
    assert due.tzinfo == UTC
    assert due.astimezone(zone).replace(tzinfo=None) == datetime(*expected_local)
    # which is not 24 hours of real time when the change lies in between
    if start.utcoffset() != local(zone, *expected_local).utcoffset():
        assert start - due != timedelta(hours=24)


def test_spring_forward_one_day_is_23_hours_and_fall_back_25() -> None:
    assert local(MADRID, 2026, 3, 29, 10) - due_at(local(MADRID, 2026, 3, 29, 10), DAY, MADRID) == timedelta(hours=23)
    assert local(MADRID, 2026, 10, 25, 10) - due_at(local(MADRID, 2026, 10, 25, 10), DAY, MADRID) == timedelta(hours=25)
    ny_spring = local(NEW_YORK, 2026, 3, 8, 10)
    assert ny_spring - due_at(ny_spring, DAY, NEW_YORK) == timedelta(hours=23)
    ny_fall = local(NEW_YORK, 2026, 11, 1, 10)
    assert ny_fall - due_at(ny_fall, DAY, NEW_YORK) == timedelta(hours=25)


def test_a_local_time_missing_on_the_day_before_moves_forward_by_the_gap() -> None:
    # Monday 30 Mar 02:30 CEST exists; Sunday 29 Mar 02:30 does not (02:00 → 03:00): 03:30 CEST
    due = due_at(local(MADRID, 2026, 3, 30, 2, 30), DAY, MADRID)
    assert due == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert (due.astimezone(MADRID).hour, due.astimezone(MADRID).minute) == (3, 30)
    # New York: Monday 9 Mar 02:30 EDT; Sunday 8 Mar 02:30 does not exist: 03:30 EDT
    due = due_at(local(NEW_YORK, 2026, 3, 9, 2, 30), DAY, NEW_YORK)
    assert due == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    assert (due.astimezone(NEW_YORK).hour, due.astimezone(NEW_YORK).minute) == (3, 30)


def test_a_local_time_that_happens_twice_on_the_day_before_is_the_first() -> None:
    # Monday 26 Oct 02:30 CET; Sunday 25 Oct 02:30 happens at 00:30Z (CEST) and 01:30Z (CET): the first
    assert due_at(local(MADRID, 2026, 10, 26, 2, 30), DAY, MADRID) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    # Monday 2 Nov 01:30 EST; Sunday 1 Nov 01:30 happens at 05:30Z (EDT) and 06:30Z (EST): the first
    assert due_at(local(NEW_YORK, 2026, 11, 2, 1, 30), DAY, NEW_YORK) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_hours_and_minutes_are_absolute_even_across_a_change() -> None:
    # 2 h before 03:30 CEST on the spring-forward night is 00:30 CET (three hours on the wall clock)
    start = local(MADRID, 2026, 3, 29, 3, 30)
    assert start - due_at(start, TWO_H, MADRID) == timedelta(hours=2)
    assert due_at(start, TWO_H, MADRID).astimezone(MADRID).hour == 0
    start = local(NEW_YORK, 2026, 11, 1, 1, 30, fold=1)  # the second 01:30 (EST)
    assert start - due_at(start, ReminderOffset(90, "m"), NEW_YORK) == timedelta(minutes=90)
    assert start - due_at(start, ReminderOffset(1440, "m"), NEW_YORK) == timedelta(hours=24)


def test_several_days_count_calendar_days() -> None:
    start = local(NEW_YORK, 2026, 3, 10, 9)  # Tuesday after the change
    due = due_at(start, ReminderOffset(3, "d"), NEW_YORK)
    assert due.astimezone(NEW_YORK).replace(tzinfo=None) == datetime(2026, 3, 7, 9)
    assert start - due == timedelta(days=3) - timedelta(hours=1)
