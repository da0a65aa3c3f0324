"""Reminder offsets, and when a reminder is due (pure: no database).

An offset is `<n>d`, `<n>h` or `<n>m` (a plain number is minutes, as REMINDER_OFFSETS_MINUTES was):

* **days are local calendar days**: `1d` is the same wall-clock time the day before, in the time zone
  of the appointment (its location's, else its practitioner's), so "1 day before" keeps the patient's
  clock across a DST change (23 or 25 hours of real time then);
* **hours and minutes are absolute**: `2h` is 120 minutes of real time before the start.

A wall-clock time that does not exist on the earlier day (inside a spring-forward gap) is moved
forward by the gap (02:30 → 03:30); one that happens twice (inside a fall-back overlap) is the first
of the two (the earlier instant). This is PEP 495's `fold=0`, spelled out so nobody has to remember it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_PART = re.compile(r"^(\d{1,5})\s*([dhm]?)$")
UNIT_MINUTES = {"d": 1440, "h": 60, "m": 1}


@dataclass(frozen=True)
class ReminderOffset:
    amount: int
    unit: str  # "d", "h" or "m"

    @property
    def nominal_minutes(self) -> int:
        """Minutes of the offset on a day without a DST change (`1d` → 1440)."""
        return self.amount * UNIT_MINUTES[self.unit]

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


def parse(spec: str) -> list[ReminderOffset]:
    """`"1d, 2h,30m"` → offsets, largest first, without duplicates; ValueError naming a bad part."""
    found: dict[str, ReminderOffset] = {}
    for raw in spec.split(","):
        part = raw.strip().lower()
        if not part:
            continue
        match = _PART.match(part)
        if match is None or int(match.group(1)) <= 0:
            raise ValueError(
                f"{raw.strip()!r} is not a reminder offset: use a positive number of days, hours or minutes "
                "like 1d, 2h, 30m (a plain number is minutes)"
            )
        offset = ReminderOffset(int(match.group(1)), match.group(2) or "m")
        found.setdefault(str(offset), offset)
    return sorted(found.values(), key=lambda o: (o.nominal_minutes, o.unit == "d"), reverse=True)


def normalise(spec: str) -> str:
    """The canonical text of a spec (`" 1D, 90 "` → `"1d,90m"`); ValueError when invalid."""
    return ",".join(str(o) for o in parse(spec))


def due_at(start_at: datetime, offset: ReminderOffset, zone: ZoneInfo) -> datetime:
    """When a reminder `offset` before `start_at` is due (UTC)."""
    start_at = start_at.astimezone(UTC)
    if offset.unit != "d":
        return start_at - timedelta(minutes=offset.nominal_minutes)
    wall = start_at.astimezone(zone).replace(tzinfo=None) - timedelta(days=offset.amount)
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
