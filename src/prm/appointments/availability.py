"""Slot queries: the bookable times of a service, from rules, exceptions and busy time."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol, Required, TypedDict, Unpack

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import reference, slots
from prm.appointments.models import (
    Appointment,
    AvailabilityException,
    AvailabilityRule,
    Location,
)
from prm.appointments.setup import MAX_RANGE_DAYS, _holding
from prm.core import clock, references
from prm.core.errors import ValidationFailed

# --- slots --------------------------------------------------------------------------------------


class Timed(Protocol):
    """A service's times: the `Service` row or its cached copy (`reference.ServiceInfo`)."""

    @property
    def duration_minutes(self) -> int: ...
    @property
    def buffer_before_minutes(self) -> int: ...
    @property
    def buffer_after_minutes(self) -> int: ...
    @property
    def min_notice_minutes(self) -> int: ...
    @property
    def horizon_days(self) -> int: ...
    @property
    def slot_step_minutes(self) -> int: ...


def service_times(service: Timed) -> slots.ServiceTimes:
    return slots.ServiceTimes(
        duration=timedelta(minutes=service.duration_minutes),
        buffer_before=timedelta(minutes=service.buffer_before_minutes),
        buffer_after=timedelta(minutes=service.buffer_after_minutes),
        min_notice=timedelta(minutes=service.min_notice_minutes),
        horizon=timedelta(days=service.horizon_days),
        step=timedelta(minutes=service.slot_step_minutes),
    )


async def _schedules(
    session: AsyncSession,
    org_id: uuid.UUID,
    practitioner_ids: Sequence[uuid.UUID],
    location_id: uuid.UUID | None,
    frm: datetime,
    until: datetime,
) -> list[slots.Schedule]:
    """One Schedule per (practitioner, location) with rules, with the exceptions touching the range."""
    if not practitioner_ids:
        return []
    rule_stmt = (
        select(AvailabilityRule, Location.timezone)
        .join(Location, Location.id == AvailabilityRule.location_id)
        .where(
            AvailabilityRule.org_id == org_id,
            AvailabilityRule.practitioner_id.in_(practitioner_ids),
            Location.is_active.is_(True),
        )
    )
    if location_id is not None:
        rule_stmt = rule_stmt.where(AvailabilityRule.location_id == location_id)
    rules = [reference.rule_row(rule, zone) for rule, zone in (await session.execute(rule_stmt)).all()]
    exc_stmt = (
        select(AvailabilityException, Location.timezone)
        .outerjoin(Location, Location.id == AvailabilityException.location_id)
        .where(
            AvailabilityException.org_id == org_id,
            AvailabilityException.practitioner_id.in_(practitioner_ids),
            AvailabilityException.start_at < until,
            AvailabilityException.end_at > frm,
        )
    )
    exceptions = [reference.exception_row(exc, zone) for exc, zone in (await session.execute(exc_stmt)).all()]
    return slots.assemble_schedules(rules, exceptions, location_id)


async def _busy(
    session: AsyncSession,
    practitioner_ids: Sequence[uuid.UUID],
    frm: datetime,
    until: datetime,
    *,
    exclude: uuid.UUID | None = None,
) -> dict[uuid.UUID, list[slots.Interval]]:
    stmt = select(Appointment.practitioner_id, Appointment.blocked_from, Appointment.blocked_until).where(
        Appointment.practitioner_id.in_(practitioner_ids),
        _holding,
        Appointment.blocked_from < until,
        Appointment.blocked_until > frm,
    )
    if exclude is not None:
        stmt = stmt.where(Appointment.id != exclude)
    busy: dict[uuid.UUID, list[slots.Interval]] = defaultdict(list)
    for pid, b0, b1 in (await session.execute(stmt)).all():
        busy[pid].append((b0, b1))
    return busy


def _day_bounds(start_date: date, end_date: date) -> tuple[datetime, datetime]:
    """UTC instants safely covering local days `start_date`..`end_date` in any zone."""
    return (
        datetime.combine(start_date - timedelta(days=2), time(0), tzinfo=UTC),
        datetime.combine(end_date + timedelta(days=2), time(0), tzinfo=UTC),
    )


class SlotRange(TypedDict, total=False):
    """Which slots: those of a service between two local dates (inclusive), of one practitioner and/or at
    one location if given."""

    service_id: Required[uuid.UUID]
    start_date: Required[date]
    end_date: Required[date]
    practitioner_id: uuid.UUID | None
    location_id: uuid.UUID | None


async def slot_query(
    session: AsyncSession, org_id: uuid.UUID, **where: Unpack[SlotRange]
) -> tuple[list[slots.Schedule], slots.ServiceTimes, slots.Query]:
    """What the slot arithmetic needs (schedules, the service's times, busy time), checked and read."""
    start_date, end_date = where["start_date"], where["end_date"]
    practitioner_id, location_id = where.get("practitioner_id"), where.get("location_id")
    if end_date < start_date:
        raise ValidationFailed.field("end_date", "must not be before start_date")
    if (end_date - start_date).days >= MAX_RANGE_DAYS:
        raise ValidationFailed.field("end_date", f"the range may span at most {MAX_RANGE_DAYS} days")
    frm, until = _day_bounds(start_date, end_date)
    # the service, practitioners, locations, rules and exceptions from the checked per-process copy
    ref = await reference.read(session, org_id, since=frm)
    service = ref.services.get(where["service_id"])
    if service is None or not service.is_active:
        raise ValidationFailed.field("service_id", f"no active service {where['service_id']}", code="unknown_service")
    if practitioner_id is not None and practitioner_id not in ref.practitioners:
        raise references.unknown("practitioner_id", "practitioner")
    if location_id is not None and location_id not in ref.locations:
        raise references.unknown("location_id", "location")
    offering = sorted((p for p in service.practitioner_ids if ref.practitioners[p].is_active), key=str)
    if practitioner_id is not None:
        offering = [p for p in offering if p == practitioner_id]
    schedules = ref.schedules(offering, location_id, frm, until)
    busy = await _busy(session, offering, frm, until)
    query = slots.Query(start_date=start_date, end_date=end_date, now=clock.now(), busy=busy)
    return schedules, service_times(service), query


async def available_slots(
    session: AsyncSession, org_id: uuid.UUID, *, limit: int | None = None, **where: Unpack[SlotRange]
) -> list[slots.Slot]:
    """Bookable slots of a service between two local dates (inclusive), earliest first; at most `limit`."""
    return slots.compute_slots(*await slot_query(session, org_id, **where), limit=limit)


async def available_start_times(
    session: AsyncSession, org_id: uuid.UUID, *, limit: int | None = None, **where: Unpack[SlotRange]
) -> tuple[timedelta, list[slots.StartTimes]]:
    """`available_slots` in the compact form: the slot duration, and per schedule the starts by local day."""
    schedules, times, query = await slot_query(session, org_id, **where)
    return times.duration, slots.start_times(schedules, times, query, limit=limit)
