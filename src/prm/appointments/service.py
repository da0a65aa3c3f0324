"""Scheduling rules: setup, slots, booking, lifecycle, reminders and views.

Public functions other modules call (a chat bot, journeys, agents): `list_services`,
`find_services`, `available_slots`, `book`, `cancel`, `reschedule`, `upcoming_for_patient`.
All take the session first and the organisation second, flush and never commit.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import calendar, slots
from prm.appointments import state_machine as sm
from prm.appointments.models import (
    Appointment,
    AppointmentChange,
    AppointmentReminder,
    AvailabilityException,
    AvailabilityRule,
    Location,
    Practitioner,
    Service,
)
from prm.appointments.schemas import (
    AppointmentCreate,
    ExceptionCreate,
    LocationCreate,
    LocationUpdate,
    PractitionerCreate,
    PractitionerUpdate,
    RuleCreate,
    ServiceCreate,
    ServiceUpdate,
)
from prm.core import audit, clock, events, jobs
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound, ValidationFailed
from prm.core.events import Event
from prm.identity.models import User
from prm.patients import registry
from prm.patients import service as patients_service
from prm.patients.models import Patient
from prm.settings import get_settings

log = structlog.get_logger(__name__)
MAX_RANGE_DAYS = 62
REMINDER_JOB = "appointments.send_reminder"
_holding = Appointment.status.in_(sm.HOLDS_TIME)


# --- small shared lookups -----------------------------------------------------------------------


async def _get(
    session: AsyncSession,
    model: Any,
    org_id: uuid.UUID,
    row_id: uuid.UUID,
    what: str,
    *,
    for_update: bool = False,
) -> Any:
    stmt = select(model).where(model.id == row_id, model.org_id == org_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{what} {row_id} not found", code=f"{what}_not_found")
    return row


async def _ref(session: AsyncSession, model: Any, org_id: uuid.UUID, row_id: uuid.UUID, field: str, what: str) -> Any:
    """A row referenced from a request body: a missing one is a 422 naming the field."""
    row = (await session.execute(select(model).where(model.id == row_id, model.org_id == org_id))).scalar_one_or_none()
    if row is None or not getattr(row, "is_active", True):
        raise ValidationFailed.field(field, f"no active {what} {row_id}", code=f"unknown_{what}")
    return row


def _apply(row: Any, changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        setattr(row, key, value)


# --- practitioners, locations --------------------------------------------------------------------


async def _check_user(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID | None) -> None:
    if user_id is not None:
        found = await session.scalar(select(User.id).where(User.id == user_id, User.org_id == org_id))
        if found is None:
            raise ValidationFailed.field(
                "user_id", f"no staff user {user_id} in this organisation", code="unknown_user"
            )


async def create_practitioner(session: AsyncSession, org_id: uuid.UUID, data: PractitionerCreate) -> Practitioner:
    await _check_user(session, org_id, data.user_id)
    row = Practitioner(org_id=org_id, **data.model_dump())
    session.add(row)
    await session.flush()
    return row


async def update_practitioner(
    session: AsyncSession, org_id: uuid.UUID, practitioner_id: uuid.UUID, data: PractitionerUpdate
) -> Practitioner:
    row = await get_practitioner(session, org_id, practitioner_id)
    changes = data.model_dump(exclude_unset=True)
    if "user_id" in changes:
        await _check_user(session, org_id, changes["user_id"])
    _apply(row, changes)
    await session.flush()
    return row


async def get_practitioner(session: AsyncSession, org_id: uuid.UUID, practitioner_id: uuid.UUID) -> Practitioner:
    return await _get(session, Practitioner, org_id, practitioner_id, "practitioner")  # type: ignore[no-any-return]


async def list_practitioners(session: AsyncSession, org_id: uuid.UUID) -> list[Practitioner]:
    rows = await session.scalars(select(Practitioner).where(Practitioner.org_id == org_id).order_by(Practitioner.name))
    return list(rows)


async def create_location(session: AsyncSession, org_id: uuid.UUID, data: LocationCreate) -> Location:
    row = Location(org_id=org_id, **data.model_dump())
    session.add(row)
    await session.flush()
    return row


async def update_location(
    session: AsyncSession, org_id: uuid.UUID, location_id: uuid.UUID, data: LocationUpdate
) -> Location:
    row = await get_location(session, org_id, location_id)
    _apply(row, data.model_dump(exclude_unset=True))
    await session.flush()
    return row


async def get_location(session: AsyncSession, org_id: uuid.UUID, location_id: uuid.UUID) -> Location:
    return await _get(session, Location, org_id, location_id, "location")  # type: ignore[no-any-return]


async def list_locations(session: AsyncSession, org_id: uuid.UUID) -> list[Location]:
    return list(await session.scalars(select(Location).where(Location.org_id == org_id).order_by(Location.name)))


# --- services -----------------------------------------------------------------------------------


async def _practitioners(session: AsyncSession, org_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> list[Practitioner]:
    if not ids:
        return []
    found = {
        p.id: p
        for p in await session.scalars(
            select(Practitioner).where(Practitioner.org_id == org_id, Practitioner.id.in_(ids))
        )
    }
    for i, pid in enumerate(ids):
        if pid not in found:
            raise ValidationFailed.field(f"practitioner_ids.{i}", f"no practitioner {pid}", code="unknown_practitioner")
    return [found[pid] for pid in dict.fromkeys(ids)]


def _keywords(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v.strip().lower() for v in values if v.strip()))


async def create_service(session: AsyncSession, org_id: uuid.UUID, data: ServiceCreate) -> Service:
    fields = data.model_dump(exclude={"practitioner_ids", "keywords"})
    row = Service(org_id=org_id, keywords=_keywords(data.keywords), **fields)
    row.practitioners = await _practitioners(session, org_id, data.practitioner_ids)
    session.add(row)
    await session.flush()
    return row


async def update_service(
    session: AsyncSession, org_id: uuid.UUID, service_id: uuid.UUID, data: ServiceUpdate
) -> Service:
    row = await get_service(session, org_id, service_id)
    changes = data.model_dump(exclude_unset=True)
    if "practitioner_ids" in changes:
        row.practitioners = await _practitioners(session, org_id, changes.pop("practitioner_ids") or [])
    if "keywords" in changes:
        changes["keywords"] = _keywords(changes["keywords"] or [])
    _apply(row, changes)
    await session.flush()
    return row


async def get_service(session: AsyncSession, org_id: uuid.UUID, service_id: uuid.UUID) -> Service:
    return await _get(session, Service, org_id, service_id, "service")  # type: ignore[no-any-return]


async def list_services(session: AsyncSession, org_id: uuid.UUID, *, include_inactive: bool = False) -> list[Service]:
    """The organisation's services (appointment types), active ones unless asked otherwise."""
    stmt = select(Service).where(Service.org_id == org_id).order_by(Service.name)
    if not include_inactive:
        stmt = stmt.where(Service.is_active.is_(True))
    return list(await session.scalars(stmt))


async def find_services(session: AsyncSession, org_id: uuid.UUID, text: str) -> list[Service]:
    """Active services whose name or a keyword matches `text` ("a cleaning please" -> Cleaning).

    A keyword or name contained in the text ranks first, then names containing the text.
    """
    wanted = text.strip().lower()
    if not wanted:
        return []
    ranked: list[tuple[int, str, Service]] = []
    for service in await list_services(session, org_id):
        terms = [service.name.lower(), *service.keywords]
        if any(t and t in wanted for t in terms):
            ranked.append((0, service.name, service))
        elif any(wanted in t for t in terms):
            ranked.append((1, service.name, service))
    return [s for _, _, s in sorted(ranked, key=lambda r: (r[0], r[1]))]


# --- availability -------------------------------------------------------------------------------


async def add_rule(
    session: AsyncSession, org_id: uuid.UUID, practitioner_id: uuid.UUID, data: RuleCreate
) -> AvailabilityRule:
    await get_practitioner(session, org_id, practitioner_id)
    await _ref(session, Location, org_id, data.location_id, "location_id", "location")
    row = AvailabilityRule(org_id=org_id, practitioner_id=practitioner_id, **data.model_dump())
    session.add(row)
    await session.flush()
    return row


async def list_rules(session: AsyncSession, org_id: uuid.UUID, practitioner_id: uuid.UUID) -> list[AvailabilityRule]:
    await get_practitioner(session, org_id, practitioner_id)
    return list(
        await session.scalars(
            select(AvailabilityRule)
            .where(AvailabilityRule.org_id == org_id, AvailabilityRule.practitioner_id == practitioner_id)
            .order_by(AvailabilityRule.weekday, AvailabilityRule.start_time)
        )
    )


async def delete_rule(session: AsyncSession, org_id: uuid.UUID, practitioner_id: uuid.UUID, rule_id: uuid.UUID) -> None:
    result = await session.execute(
        delete(AvailabilityRule).where(
            AvailabilityRule.id == rule_id,
            AvailabilityRule.org_id == org_id,
            AvailabilityRule.practitioner_id == practitioner_id,
        )
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"availability rule {rule_id} not found", code="rule_not_found")


def _aware(value: datetime, zone: str) -> datetime:
    """An aware instant; a naive value is read as wall-clock time in `zone` (first occurrence)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone))
    return value.astimezone(UTC)


async def add_exception(
    session: AsyncSession, org_id: uuid.UUID, practitioner_id: uuid.UUID, data: ExceptionCreate
) -> AvailabilityException:
    practitioner = await get_practitioner(session, org_id, practitioner_id)
    zone = practitioner.timezone
    if data.location_id is not None:
        zone = (await _ref(session, Location, org_id, data.location_id, "location_id", "location")).timezone
    elif data.kind == "extra_hours":
        raise ValidationFailed.field("location_id", "extra hours need a location", code="location_required")
    start_at, end_at = _aware(data.start_at, zone), _aware(data.end_at, zone)
    if start_at >= end_at:
        raise ValidationFailed.field("end_at", "must be after start_at")
    row = AvailabilityException(
        org_id=org_id,
        practitioner_id=practitioner_id,
        location_id=data.location_id,
        kind=data.kind,
        start_at=start_at,
        end_at=end_at,
        reason=data.reason,
    )
    session.add(row)
    await session.flush()
    return row


async def list_exceptions(
    session: AsyncSession, org_id: uuid.UUID, practitioner_id: uuid.UUID
) -> list[AvailabilityException]:
    await get_practitioner(session, org_id, practitioner_id)
    return list(
        await session.scalars(
            select(AvailabilityException)
            .where(
                AvailabilityException.org_id == org_id,
                AvailabilityException.practitioner_id == practitioner_id,
            )
            .order_by(AvailabilityException.start_at)
        )
    )


async def delete_exception(
    session: AsyncSession, org_id: uuid.UUID, practitioner_id: uuid.UUID, exception_id: uuid.UUID
) -> None:
    result = await session.execute(
        delete(AvailabilityException).where(
            AvailabilityException.id == exception_id,
            AvailabilityException.org_id == org_id,
            AvailabilityException.practitioner_id == practitioner_id,
        )
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"availability exception {exception_id} not found", code="exception_not_found")


# --- slots --------------------------------------------------------------------------------------


def service_times(service: Service) -> slots.ServiceTimes:
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
    zones: dict[tuple[uuid.UUID, uuid.UUID], str] = {}
    rules: dict[tuple[uuid.UUID, uuid.UUID], list[slots.Rule]] = defaultdict(list)
    for rule, zone in (await session.execute(rule_stmt)).all():
        key = (rule.practitioner_id, rule.location_id)
        zones[key] = zone
        rules[key].append(slots.Rule(rule.weekday, rule.start_time, rule.end_time, rule.valid_from, rule.valid_until))
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
    off_everywhere: dict[uuid.UUID, list[slots.Interval]] = defaultdict(list)
    off: dict[tuple[uuid.UUID, uuid.UUID], list[slots.Interval]] = defaultdict(list)
    extra: dict[tuple[uuid.UUID, uuid.UUID], list[slots.Interval]] = defaultdict(list)
    for exc, zone in (await session.execute(exc_stmt)).all():
        span = (exc.start_at, exc.end_at)
        if exc.kind == "time_off" and exc.location_id is None:
            off_everywhere[exc.practitioner_id].append(span)
            continue
        assert exc.location_id is not None  # the check constraint: only time off may omit it
        key = (exc.practitioner_id, exc.location_id)
        if location_id is not None and exc.location_id != location_id:
            continue
        if exc.kind == "time_off":
            off[key].append(span)
        else:
            extra[key].append(span)
            zones.setdefault(key, zone)
    return [
        slots.Schedule(
            practitioner_id=key[0],
            location_id=key[1],
            timezone=zone,
            rules=rules.get(key, []),
            extra=extra.get(key, []),
            off=[*off.get(key, []), *off_everywhere.get(key[0], [])],
        )
        for key, zone in sorted(zones.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1])))
    ]


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


async def available_slots(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    service_id: uuid.UUID,
    start_date: date,
    end_date: date,
    practitioner_id: uuid.UUID | None = None,
    location_id: uuid.UUID | None = None,
    limit: int | None = None,
) -> list[slots.Slot]:
    """Bookable slots of a service between two local dates (inclusive), earliest first."""
    if end_date < start_date:
        raise ValidationFailed.field("end_date", "must not be before start_date")
    if (end_date - start_date).days >= MAX_RANGE_DAYS:
        raise ValidationFailed.field("end_date", f"the range may span at most {MAX_RANGE_DAYS} days")
    service = await _ref(session, Service, org_id, service_id, "service_id", "service")
    offering = [p.id for p in service.practitioners if p.is_active]
    if practitioner_id is not None:
        offering = [p for p in offering if p == practitioner_id]
    frm, until = _day_bounds(start_date, end_date)
    schedules = await _schedules(session, org_id, offering, location_id, frm, until)
    busy = await _busy(session, offering, frm, until)
    query = slots.Query(start_date=start_date, end_date=end_date, now=clock.now(), busy=busy)
    return slots.compute_slots(schedules, service_times(service), query, limit=limit)


# --- booking ------------------------------------------------------------------------------------


def event_payload(appointment: Appointment, **extra: Any) -> dict[str, Any]:
    return {
        "appointment_id": str(appointment.id),
        "patient_id": str(appointment.patient_id),
        "practitioner_id": str(appointment.practitioner_id),
        "service_id": str(appointment.service_id),
        "location_id": str(appointment.location_id),
        "start_at": appointment.start_at.astimezone(UTC).isoformat(),
        "end_at": appointment.end_at.astimezone(UTC).isoformat(),
        "status": appointment.status,
        **extra,
    }


async def describe(session: AsyncSession, appointment: Appointment) -> dict[str, Any]:
    """What a message about the appointment needs, so subscribers need not import this module:
    service, practitioner and location names, the location's time zone and the local start."""
    service = await session.get(Service, appointment.service_id)
    practitioner = await session.get(Practitioner, appointment.practitioner_id)
    location = await session.get(Location, appointment.location_id)
    assert service and practitioner and location
    return {
        "service_name": service.name,
        "practitioner_name": practitioner.name,
        "location_name": location.name,
        "timezone": location.timezone,
        "local_start": appointment.start_at.astimezone(ZoneInfo(location.timezone)).isoformat(),
    }


async def _publish(session: AsyncSession, action: str, appointment: Appointment, **extra: Any) -> None:
    payload = event_payload(appointment, **await describe(session, appointment), **extra)
    await events.publish(session, Event(type=sm.EVENTS[action], org_id=appointment.org_id, payload=payload))


def _history(
    appointment: Appointment,
    action: str,
    who: Principal,
    *,
    from_status: str | None,
    old: tuple[datetime, datetime] | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> AppointmentChange:
    return AppointmentChange(
        org_id=appointment.org_id,
        appointment_id=appointment.id,
        at=clock.now(),
        action=action,
        from_status=from_status,
        to_status=appointment.status,
        old_start_at=old[0] if old else None,
        old_end_at=old[1] if old else None,
        new_start_at=appointment.start_at if action in ("book", "reschedule") else None,
        new_end_at=appointment.end_at if action in ("book", "reschedule") else None,
        actor=who.credential,
        reason=reason,
        details=details or {},
    )


async def _check_start(
    session: AsyncSession,
    org_id: uuid.UUID,
    service: Service,
    practitioner_id: uuid.UUID,
    location_id: uuid.UUID | None,
    start_at: datetime,
    *,
    exclude: uuid.UUID | None = None,
) -> uuid.UUID:
    """Validate a start for booking; return the location it happens at. 422 / 409 as documented."""
    times = service_times(service)
    now = clock.now()
    if start_at < now + times.min_notice:
        raise ValidationFailed.field(
            "start_at",
            f"must be at least {service.min_notice_minutes} minutes from now",
            code="too_short_notice",
        )
    if times.horizon is not None and start_at > now + times.horizon:
        raise ValidationFailed.field("start_at", f"must be within {service.horizon_days} days", code="beyond_horizon")
    frm, until = start_at - timedelta(days=2), start_at + timedelta(days=2)
    schedules = await _schedules(session, org_id, [practitioner_id], location_id, frm, until)
    matching = [s for s in schedules if slots.within_availability(s, times, start_at)]
    if not matching:
        raise ValidationFailed.field(
            "start_at",
            "outside the practitioner's availability" + (" at this location" if location_id else ""),
            code="outside_availability",
        )
    busy = await _busy(session, [practitioner_id], frm, until, exclude=exclude)
    if slots.overlaps_busy(times, start_at, busy.get(practitioner_id, [])):
        raise Conflict("That time is already taken for this practitioner", code="slot_taken")
    return matching[0].location_id


def _constraint_conflict(exc: IntegrityError) -> Conflict | None:
    name = getattr(getattr(getattr(exc, "orig", None), "diag", None), "constraint_name", None)
    if name == "ex_appointments_practitioner_time":
        return Conflict("That time is already taken for this practitioner", code="slot_taken")
    if name == "ex_appointments_patient_time":
        return Conflict("The patient already has an appointment at an overlapping time", code="patient_overlap")
    return None


DEADLOCK_RETRIES = 5


def _is_deadlock(exc: DBAPIError) -> bool:
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == "40P01"


async def _write_guarded(session: AsyncSession, appointment: Appointment, change: Callable[[], None]) -> None:
    """Apply `change` and flush it in a savepoint; an exclusion violation becomes a 409.

    Two transactions inserting overlapping rows at the same moment each wait for the other's
    uncommitted row: PostgreSQL detects the deadlock and aborts one. That one rolls back its
    savepoint and tries again, now waiting for the winner to commit, and then gets the ordinary
    exclusion violation (409) — or succeeds if the winner rolled back.
    """
    for attempt in range(DEADLOCK_RETRIES + 1):
        try:
            # begin_nested() flushes what is pending first, so the change is made inside the savepoint
            async with session.begin_nested():
                change()
                await session.flush()
        except IntegrityError as exc:
            conflict = _constraint_conflict(exc)
            if conflict is None:
                raise
            raise conflict from None
        except DBAPIError as exc:
            if not _is_deadlock(exc) or attempt == DEADLOCK_RETRIES:
                raise
            log.info("appointments.deadlock_retry", attempt=attempt + 1)
            continue
        if attempt:
            await session.refresh(appointment)  # the savepoint rollback expired what `change` did not set
        return


async def _patient(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID) -> Patient:
    patient = (
        await session.execute(select(Patient).where(Patient.id == patient_id, Patient.org_id == org_id))
    ).scalar_one_or_none()
    if patient is None or patient.deleted_at is not None or patient.status == "merged":
        raise ValidationFailed.field("patient_id", f"no patient {patient_id}", code="unknown_patient")
    return patient


async def book(
    session: AsyncSession, org_id: uuid.UUID, data: AppointmentCreate | dict[str, Any], who: Principal
) -> Appointment:
    """Book a patient with a practitioner for a service at `data.start_at`.

    `data` is an `AppointmentCreate` (or a dict of its fields). 422 for unknown references or a
    start outside availability / notice / horizon; 409 `slot_taken` or `patient_overlap` when the
    time is held (checked, then enforced by the database's exclusion constraints, so concurrent
    bookings cannot both succeed).
    """
    if isinstance(data, dict):
        try:
            data = AppointmentCreate.model_validate(data)
        except PydanticValidationError as exc:
            errors = [
                {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
                for e in exc.errors()
            ]
            raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors) from None
    await _patient(session, org_id, data.patient_id)
    service = await _ref(session, Service, org_id, data.service_id, "service_id", "service")
    practitioner = next((p for p in service.practitioners if p.id == data.practitioner_id and p.is_active), None)
    if practitioner is None:
        await _ref(session, Practitioner, org_id, data.practitioner_id, "practitioner_id", "practitioner")
        raise ValidationFailed.field(
            "practitioner_id", "this practitioner does not offer the service", code="service_not_offered"
        )
    if data.location_id is not None:
        await _ref(session, Location, org_id, data.location_id, "location_id", "location")
    start_at = data.start_at.astimezone(UTC)
    location_id = await _check_start(session, org_id, service, practitioner.id, data.location_id, start_at)
    times = service_times(service)
    blocked = times.blocked(start_at)
    appointment = Appointment(
        id=uuid.uuid4(),
        org_id=org_id,
        patient_id=data.patient_id,
        practitioner_id=practitioner.id,
        service_id=service.id,
        location_id=location_id,
        start_at=start_at,
        end_at=start_at + times.duration,
        blocked_from=blocked[0],
        blocked_until=blocked[1],
        status="booked",
        mode=service.mode,
        notes=data.notes,
        source=data.source,
        booked_by=who.credential,
    )
    await _write_guarded(session, appointment, lambda: session.add(appointment))
    session.add(_history(appointment, "book", who, from_status=None))
    await _schedule_reminders(session, appointment)
    await audit.record(
        session,
        who,
        "create",
        "appointment",
        appointment.id,
        patient_id=appointment.patient_id,
        details={"source": data.source},
    )
    await _publish(session, "book", appointment)
    return appointment


async def get_appointment(
    session: AsyncSession,
    org_id: uuid.UUID,
    appointment_id: uuid.UUID,
    who: Principal,
    *,
    audit_read: bool = True,
) -> Appointment:
    appointment = await _get(session, Appointment, org_id, appointment_id, "appointment")
    if audit_read:
        await audit.record(session, who, "read", "appointment", appointment.id, patient_id=appointment.patient_id)
    return appointment  # type: ignore[no-any-return]


async def update_appointment(
    session: AsyncSession, org_id: uuid.UUID, appointment_id: uuid.UUID, *, notes: str | None, who: Principal
) -> Appointment:
    """Change what does not move time (notes); moving is `reschedule`."""
    appointment = await _get(session, Appointment, org_id, appointment_id, "appointment", for_update=True)
    if notes is not None:
        appointment.notes = notes
    await session.flush()
    await audit.record(
        session,
        who,
        "update",
        "appointment",
        appointment.id,
        patient_id=appointment.patient_id,
        details={"fields": ["notes"] if notes is not None else []},
    )
    return appointment  # type: ignore[no-any-return]


_STAMPS = {
    "confirm": "confirmed_at",
    "check_in": "checked_in_at",
    "complete": "completed_at",
    "no_show": "no_show_at",
    "cancel": "cancelled_at",
}


async def transition(
    session: AsyncSession,
    org_id: uuid.UUID,
    appointment_id: uuid.UUID,
    action: str,
    who: Principal,
    *,
    reason: str | None = None,
    notify_patient: bool = True,
) -> Appointment:
    """Apply a lifecycle action (confirm, check_in, complete, no_show, cancel); 409 lists allowed ones.

    `notify_patient=False` marks the event as one the patient is not to be told about (a duplicate
    cancelled by a patient merge): the `notify_patient` field of the cancellation event.
    """
    appointment: Appointment = await _get(session, Appointment, org_id, appointment_id, "appointment", for_update=True)
    before = appointment.status
    target = sm.transition(before, action)
    if action == "no_show" and clock.now() < appointment.start_at:
        raise Conflict(
            "A patient can only be marked as a no-show once the appointment has started",
            code="not_started",
            allowed_actions=sm.allowed_actions(before),
        )
    appointment.status = target
    setattr(appointment, _STAMPS[action], clock.now())
    if action == "cancel":
        appointment.cancel_reason = reason
        appointment.cancelled_by = who.credential
    if appointment.status not in sm.REMINDABLE:  # checked in, done or off: pending reminders are moot
        await _void_reminders(session, appointment)
    await session.flush()
    session.add(_history(appointment, action, who, from_status=before, reason=reason))
    await audit.record(
        session,
        who,
        action,
        "appointment",
        appointment.id,
        patient_id=appointment.patient_id,
        details={"from": before, "to": appointment.status},
    )
    extra = {"reason": reason, "notify_patient": notify_patient} if action == "cancel" else {}
    await _publish(session, action, appointment, **extra)
    return appointment


async def cancel(
    session: AsyncSession, org_id: uuid.UUID, appointment_id: uuid.UUID, *, reason: str, who: Principal
) -> Appointment:
    """Cancel (from booked or confirmed), recording why and who; voids pending reminders."""
    if not reason or not reason.strip():
        raise ValidationFailed.field("reason", "a cancellation needs a reason")
    return await transition(session, org_id, appointment_id, "cancel", who, reason=reason.strip())


async def reschedule(
    session: AsyncSession,
    org_id: uuid.UUID,
    appointment_id: uuid.UUID,
    *,
    start_at: datetime,
    who: Principal,
    practitioner_id: uuid.UUID | None = None,
    location_id: uuid.UUID | None = None,
    reason: str | None = None,
) -> Appointment:
    """Move an appointment atomically (same row, history kept); it is `booked` again afterwards."""
    appointment: Appointment = await _get(session, Appointment, org_id, appointment_id, "appointment", for_update=True)
    before = appointment.status
    new_status = sm.transition(before, "reschedule")
    if start_at.tzinfo is None:
        raise ValidationFailed.field("start_at", "needs a UTC offset")
    start_at = start_at.astimezone(UTC)
    service = await get_service(session, org_id, appointment.service_id)
    target = appointment.practitioner_id
    if practitioner_id is not None and practitioner_id != target:
        practitioner = await _ref(session, Practitioner, org_id, practitioner_id, "practitioner_id", "practitioner")
        if practitioner.id not in service.practitioner_ids:
            raise ValidationFailed.field(
                "practitioner_id", "this practitioner does not offer the service", code="service_not_offered"
            )
        target = practitioner.id
    if location_id is not None:
        await _ref(session, Location, org_id, location_id, "location_id", "location")
    new_location = await _check_start(session, org_id, service, target, location_id, start_at, exclude=appointment.id)
    old = (appointment.start_at, appointment.end_at)
    old_location_id = appointment.location_id
    times = service_times(service)
    blocked = times.blocked(start_at)
    previous = {
        "start_at": old[0].astimezone(UTC).isoformat(),
        "practitioner_id": str(appointment.practitioner_id),
        "location_id": str(appointment.location_id),
    }
    moved = {
        "start_at": start_at,
        "end_at": start_at + times.duration,
        "blocked_from": blocked[0],
        "blocked_until": blocked[1],
        "practitioner_id": target,
        "location_id": new_location,
        "status": new_status,
        "confirmed_at": None,
        "sequence": appointment.sequence + 1,
    }
    await _write_guarded(session, appointment, lambda: _apply(appointment, moved))
    session.add(
        _history(
            appointment,
            "reschedule",
            who,
            from_status=before,
            old=old,
            reason=reason,
            details={"previous": previous},
        )
    )
    await _void_reminders(session, appointment)
    await _schedule_reminders(session, appointment)
    await audit.record(session, who, "reschedule", "appointment", appointment.id, patient_id=appointment.patient_id)
    previous_location = await session.get(Location, old_location_id)
    await _publish(
        session,
        "reschedule",
        appointment,
        previous_start_at=previous["start_at"],
        previous_local_start=old[0].astimezone(ZoneInfo(previous_location.timezone)).isoformat()
        if previous_location
        else None,
    )
    return appointment


# --- reminders ----------------------------------------------------------------------------------


def reminder_offsets() -> list[int]:
    """Minutes before the start, from REMINDER_OFFSETS_MINUTES ("1440,120"), largest first."""
    raw = get_settings().reminder_offsets_minutes
    return sorted({int(part) for part in raw.split(",") if part.strip()}, reverse=True)


async def _schedule_reminders(session: AsyncSession, appointment: Appointment) -> list[AppointmentReminder]:
    """One reminder row + job per offset whose moment is still ahead."""
    now = clock.now()
    created = []
    for offset in reminder_offsets():
        due_at = appointment.start_at - timedelta(minutes=offset)
        if due_at <= now:
            continue
        reminder_id = uuid.uuid4()
        # the job goes first (the reminder row only carries its id), in the same transaction
        job_id = await jobs.defer(
            session, REMINDER_JOB, schedule_at=due_at, org_id=str(appointment.org_id), reminder_id=str(reminder_id)
        )
        reminder = AppointmentReminder(
            id=reminder_id,
            org_id=appointment.org_id,
            appointment_id=appointment.id,
            offset_minutes=offset,
            due_at=due_at,
            status="scheduled",
            job_id=job_id,
        )
        session.add(reminder)
        created.append(reminder)
    await session.flush()
    return created


async def _void_reminders(session: AsyncSession, appointment: Appointment) -> int:
    pending = list(
        await session.scalars(
            select(AppointmentReminder).where(
                AppointmentReminder.appointment_id == appointment.id,
                AppointmentReminder.status == "scheduled",
            )
        )
    )
    for reminder in pending:
        if reminder.job_id is not None:
            await jobs.cancel_pending(session, reminder.job_id)
        reminder.status = "void"
    await session.flush()
    return len(pending)


async def fire_reminder(session: AsyncSession, org_id: uuid.UUID, reminder_id: uuid.UUID) -> bool:
    """Publish `appointment.reminder_due` for a scheduled reminder; False when there is nothing to do."""
    reminder = (
        await session.execute(
            select(AppointmentReminder)
            .where(AppointmentReminder.id == reminder_id, AppointmentReminder.org_id == org_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if reminder is None or reminder.status != "scheduled":
        return False
    appointment = await session.get(Appointment, reminder.appointment_id)
    assert appointment is not None
    if appointment.status not in sm.REMINDABLE:
        reminder.status = "void"
        return False
    reminder.status = "due"
    reminder.fired_at = clock.now()
    await audit.record(
        session,
        Principal.system(org_id),
        "remind",
        "appointment",
        appointment.id,
        patient_id=appointment.patient_id,
        details={"reminder_id": str(reminder.id), "offset_minutes": reminder.offset_minutes},
    )
    await session.flush()
    await events.publish(
        session,
        Event(
            type="appointment.reminder_due",
            org_id=org_id,
            payload={
                "reminder_id": str(reminder.id),
                "appointment_id": str(appointment.id),
                "patient_id": str(appointment.patient_id),
                "offset_minutes": reminder.offset_minutes,
                "start_at": appointment.start_at.astimezone(UTC).isoformat(),
                **await describe(session, appointment),
            },
        ),
    )
    return True


async def reminders_of(session: AsyncSession, appointment_id: uuid.UUID) -> list[AppointmentReminder]:
    return list(
        await session.scalars(
            select(AppointmentReminder)
            .where(AppointmentReminder.appointment_id == appointment_id)
            .order_by(AppointmentReminder.due_at, AppointmentReminder.created_at)
        )
    )


async def history_of(session: AsyncSession, appointment_id: uuid.UUID) -> list[AppointmentChange]:
    return list(
        await session.scalars(
            select(AppointmentChange)
            .where(AppointmentChange.appointment_id == appointment_id)
            .order_by(AppointmentChange.id)
        )
    )


# --- views --------------------------------------------------------------------------------------


def _filtered(
    org_id: uuid.UUID,
    *,
    patient_id: uuid.UUID | None = None,
    practitioner_id: uuid.UUID | None = None,
    status: str | None = None,
    start_from: datetime | None = None,
    start_before: datetime | None = None,
) -> Select[Any]:
    stmt = select(Appointment).where(Appointment.org_id == org_id)
    if patient_id is not None:
        stmt = stmt.where(Appointment.patient_id == patient_id)
    if practitioner_id is not None:
        stmt = stmt.where(Appointment.practitioner_id == practitioner_id)
    if status is not None:
        stmt = stmt.where(Appointment.status == status)
    if start_from is not None:
        stmt = stmt.where(Appointment.start_at >= start_from)
    if start_before is not None:
        stmt = stmt.where(Appointment.start_at < start_before)
    return stmt


async def _audit_reads(session: AsyncSession, who: Principal, rows: Iterable[Appointment], view: str) -> None:
    for row in rows:
        await audit.record(
            session, who, "read", "appointment", row.id, patient_id=row.patient_id, details={"view": view}
        )


async def list_appointments(
    session: AsyncSession, org_id: uuid.UUID, who: Principal, *, limit: int, offset: int, **filters: Any
) -> tuple[list[Appointment], int]:
    stmt = _filtered(org_id, **filters).order_by(Appointment.start_at, Appointment.id)
    total = int(await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0)
    rows = list(await session.scalars(stmt.limit(limit).offset(offset)))
    await _audit_reads(session, who, rows, "list")
    return rows, total


async def patient_history(
    session: AsyncSession,
    org_id: uuid.UUID,
    patient_id: uuid.UUID,
    who: Principal,
    *,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Appointment], int]:
    """A patient's appointments, newest first (every status), audited as one read of the record.

    A merged patient answers `PatientMoved` (308 to the survivor), as the patient API does.
    """
    patient = await patients_service.get(session, org_id, patient_id)  # NotFound when unknown or deleted
    if patient.merged_into_id is not None:
        survivor = await patients_service.resolve(session, org_id, patient_id)
        raise patients_service.PatientMoved(patient_id, survivor.id)
    stmt = _filtered(org_id, patient_id=patient_id).order_by(Appointment.start_at.desc(), Appointment.id)
    total = int(await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0)
    rows = list(await session.scalars(stmt.limit(limit).offset(offset)))
    await audit.record(
        session,
        who,
        "read",
        "patient_appointments",
        patient_id,
        patient_id=patient_id,
        details={"count": len(rows)},
    )
    return rows, total


async def upcoming_for_patient(
    session: AsyncSession,
    org_id: uuid.UUID,
    patient_id: uuid.UUID,
    *,
    who: Principal | None = None,
    limit: int = 20,
) -> list[Appointment]:
    """The patient's appointments that still hold time and have not started, soonest first."""
    rows = list(
        await session.scalars(
            _filtered(org_id, patient_id=patient_id, start_from=clock.now())
            .where(Appointment.status.in_(("booked", "confirmed")))
            .order_by(Appointment.start_at)
            .limit(limit)
        )
    )
    await audit.record(
        session,
        who or Principal.system(org_id),
        "read",
        "patient_appointments",
        patient_id,
        patient_id=patient_id,
        details={"view": "upcoming", "count": len(rows)},
    )
    return rows


async def agenda(
    session: AsyncSession,
    org_id: uuid.UUID,
    practitioner_id: uuid.UUID,
    *,
    start_date: date,
    days: int,
    who: Principal,
) -> tuple[Practitioner, str, list[tuple[Appointment, Service, Location]]]:
    """A practitioner's appointments over `days` local days from `start_date` (their own zone)."""
    if not 1 <= days <= 31:
        raise ValidationFailed.field("days", "must be between 1 and 31")
    practitioner = await get_practitioner(session, org_id, practitioner_id)
    tz = ZoneInfo(practitioner.timezone)
    frm = datetime.combine(start_date, time(0), tzinfo=tz).astimezone(UTC)
    until = datetime.combine(start_date + timedelta(days=days), time(0), tzinfo=tz).astimezone(UTC)
    rows = (
        await session.execute(
            select(Appointment, Service, Location)
            .join(Service, Service.id == Appointment.service_id)
            .join(Location, Location.id == Appointment.location_id)
            .where(
                Appointment.org_id == org_id,
                Appointment.practitioner_id == practitioner_id,
                Appointment.start_at >= frm,
                Appointment.start_at < until,
            )
            .order_by(Appointment.start_at)
        )
    ).all()
    entries = [(a, s, loc) for a, s, loc in rows]
    await _audit_reads(session, who, (a for a, _, _ in entries), "agenda")
    return practitioner, practitioner.timezone, entries


async def ics(session: AsyncSession, org_id: uuid.UUID, appointment_id: uuid.UUID, who: Principal) -> bytes:
    """The appointment as an iCalendar document (stable UID, SEQUENCE = reschedules)."""
    appointment = await get_appointment(session, org_id, appointment_id, who)
    service = await session.get(Service, appointment.service_id)
    practitioner = await session.get(Practitioner, appointment.practitioner_id)
    location = await session.get(Location, appointment.location_id)
    assert service and practitioner and location
    invite = calendar.Invite(
        appointment_id=appointment.id,
        start_at=appointment.start_at.astimezone(UTC),
        end_at=appointment.end_at.astimezone(UTC),
        status=appointment.status,
        sequence=appointment.sequence,
        summary=f"{service.name} with {practitioner.name}",
        location=location.name,
        timezone=location.timezone,
        mode=appointment.mode,
        stamp=appointment.updated_at or clock.now(),
        organizer_email=practitioner.email,
    )
    return calendar.to_ics(invite)


# --- patient record extension points ------------------------------------------------------------


@registry.on_merge("appointments")
async def move_patient(
    session: AsyncSession, org_id: uuid.UUID, duplicate_id: uuid.UUID, survivor_id: uuid.UUID
) -> int:
    """Patient merge: the duplicate's appointments move to the survivor.

    A duplicate's appointment that overlaps one the survivor already holds is the same visit booked
    twice: it is cancelled (reason recorded) before the move, so the patient constraint holds.
    """
    system = Principal.system(org_id)
    survivor_rows = list(
        await session.scalars(
            select(Appointment).where(Appointment.org_id == org_id, Appointment.patient_id == survivor_id, _holding)
        )
    )
    duplicates = list(
        await session.scalars(
            select(Appointment).where(Appointment.org_id == org_id, Appointment.patient_id == duplicate_id, _holding)
        )
    )
    for row in duplicates:
        if row.status in ("booked", "confirmed") and any(
            s.start_at < row.end_at and row.start_at < s.end_at for s in survivor_rows
        ):
            await transition(
                session,
                org_id,
                row.id,
                "cancel",
                system,
                reason=f"duplicate of an appointment of patient {survivor_id} (patient merge)",
                notify_patient=False,
            )
    result = await session.execute(
        update(Appointment)
        .where(Appointment.org_id == org_id, Appointment.patient_id == duplicate_id)
        .values(patient_id=survivor_id)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@registry.timeline_source("appointments")
async def timeline(
    session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, before: datetime | None, limit: int
) -> list[registry.TimelineEntry]:
    """Timeline entries: one per booking, move and status change of the patient's appointments."""
    stmt = (
        select(AppointmentChange, Appointment, Service.name, Practitioner.name, Location.timezone)
        .join(Appointment, Appointment.id == AppointmentChange.appointment_id)
        .join(Service, Service.id == Appointment.service_id)
        .join(Practitioner, Practitioner.id == Appointment.practitioner_id)
        .join(Location, Location.id == Appointment.location_id)
        .where(AppointmentChange.org_id == org_id, Appointment.patient_id == patient_id)
    )
    if before is not None:
        stmt = stmt.where(AppointmentChange.at < before)
    rows = (
        await session.execute(stmt.order_by(AppointmentChange.at.desc(), AppointmentChange.id.desc()).limit(limit))
    ).all()
    out = []
    for change, appointment, service_name, practitioner_name, zone in rows:
        when = (change.new_start_at or appointment.start_at).astimezone(ZoneInfo(zone))
        out.append(
            registry.TimelineEntry(
                at=change.at,
                kind=sm.EVENTS.get(change.action, f"appointment.{change.action}"),
                source="appointments",
                resource_id=str(appointment.id),
                summary=f"{service_name} with {practitioner_name}, {when:%Y-%m-%d %H:%M} ({zone}): {change.to_status}",
                data={
                    "status": change.to_status,
                    "start_at": appointment.start_at.astimezone(UTC).isoformat(),
                    "action": change.action,
                },
            )
        )
    return out
