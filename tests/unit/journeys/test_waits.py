"""Calendar-aware waits: local wall time across both DST changes, gaps and overlaps, zone fallback."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from prm.journeys import waits

MADRID = ZoneInfo("Europe/Madrid")  # 2026: CET→CEST on 29 March 02:00, CEST→CET on 25 October 03:00


def test_a_day_is_a_calendar_day_across_spring_forward() -> None:
    start = datetime(2026, 3, 28, 9, 0, tzinfo=UTC)  # 10:00 CET
    due = waits.after(start, MADRID, days=1)
    assert due == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)  # 10:00 CEST: 23 hours later
    assert due.astimezone(MADRID).hour == 10


def test_a_day_is_a_calendar_day_across_fall_back() -> None:
    start = datetime(2026, 10, 24, 8, 0, tzinfo=UTC)  # 10:00 CEST
    due = waits.after(start, MADRID, days=1)
    assert due == datetime(2026, 10, 25, 9, 0, tzinfo=UTC)  # 10:00 CET: 25 hours later


def test_many_days_across_both_changes_keep_the_wall_time() -> None:
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)  # 10:00 CET
    due = waits.after(start, MADRID, days=240)  # 27 October, back on CET
    assert due.astimezone(MADRID).replace(tzinfo=None) == datetime(2026, 10, 27, 10, 0)
    summer = waits.after(start, MADRID, days=100)
    assert summer.astimezone(MADRID).replace(tzinfo=None) == datetime(2026, 6, 9, 10, 0)
    assert summer == datetime(2026, 6, 9, 8, 0, tzinfo=UTC)


def test_hours_are_elapsed_time() -> None:
    start = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 01:30 CET, before the gap
    assert waits.after(start, MADRID, hours=2) == datetime(2026, 3, 29, 2, 30, tzinfo=UTC)  # 04:30 CEST


def test_a_wall_time_in_the_spring_gap_moves_past_it() -> None:
    start = datetime(2026, 3, 28, 1, 30, tzinfo=UTC)  # 02:30 CET on the 28th
    due = waits.after(start, MADRID, days=1)  # 02:30 on the 29th does not exist
    assert due.astimezone(MADRID).replace(tzinfo=None) == datetime(2026, 3, 29, 3, 30)


def test_an_ambiguous_wall_time_is_its_first_occurrence() -> None:
    instant = waits.local_instant(datetime(2026, 10, 25).date(), time(2, 30), MADRID)
    assert instant == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, not 02:30 CET


def test_next_local_time_same_day_or_next() -> None:
    before = datetime(2026, 3, 28, 7, 0, tzinfo=UTC)  # 08:00 CET Saturday
    assert waits.next_local_time(before, MADRID, time(9, 0)) == datetime(2026, 3, 28, 8, 0, tzinfo=UTC)
    after_it = datetime(2026, 3, 28, 9, 0, tzinfo=UTC)  # 10:00 CET: tomorrow, which is summer time
    assert waits.next_local_time(after_it, MADRID, time(9, 0)) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)


def test_next_local_time_on_weekdays() -> None:
    saturday = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
    due = waits.next_local_time(saturday, MADRID, time(9, 0), ["mon", "wed"])
    assert due == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)  # Monday 09:00 CET
    assert due.astimezone(MADRID).weekday() == 0
    exactly = datetime(2026, 10, 26, 8, 0, tzinfo=UTC)  # strictly after: not the same instant
    assert waits.next_local_time(exactly, MADRID, time(9, 0), ["mon", "wed"]) == datetime(
        2026, 10, 28, 8, 0, tzinfo=UTC
    )


def test_zone_falls_back_patient_then_clinic_then_organisation() -> None:
    assert waits.resolve_zone("America/New_York", "Europe/Madrid", "UTC").key == "America/New_York"
    assert waits.resolve_zone(None, "Europe/Madrid", "UTC").key == "Europe/Madrid"
    assert waits.resolve_zone("Not/AZone", "", "Europe/London").key == "Europe/London"
    assert waits.resolve_zone(None, None, None).key == "UTC"
