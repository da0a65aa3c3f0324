"""Booking: book, update, transition (cancel, confirm, ...), reschedule, and the guarded write."""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import structlog
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import BigInteger, BindParameter, ColumnElement, TextClause, Uuid, bindparam, cast, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import reference, slots
from prm.appointments import state_machine as sm
from prm.appointments.availability import Timed, _busy, _schedules, service_times
from prm.appointments.models import (
    Appointment,
    AppointmentChange,
    AppointmentReminder,
    Location,
    Practitioner,
    Service,
)
from prm.appointments.reminders import _schedule_reminders, _void_reminders, reminder_rows
from prm.appointments.schemas import (
    AppointmentCreate,
)
from prm.appointments.setup import _apply, _get, _holding, _ref, describe, describe_with, get_service
from prm.core import audit, clock, db, events
from prm.core.audit import AuditEntry
from prm.core.auth import Principal
from prm.core.batch import Batch, Guard
from prm.core.errors import Conflict, DomainError, ValidationFailed
from prm.core.events import Event
from prm.patients import service as patients_service

log = structlog.get_logger(__name__)

# a start is checked against the availability and bookings this far either side of it
CHECK_MARGIN = timedelta(days=2)


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


async def _publish(session: AsyncSession, action: str, appointment: Appointment, *,
                   described: dict[str, Any] | None = None, **extra: Any) -> None:
    if described is None:
        described = await describe(session, appointment)
    payload = event_payload(appointment, **described, **extra)
    await events.publish(session, Event(type=sm.EVENTS[action], org_id=appointment.org_id, payload=payload))


def _history_values(
    appointment: Appointment,
    action: str,
    who: Principal,
    *,
    from_status: str | None,
    old: tuple[datetime, datetime] | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "org_id": appointment.org_id,
        "appointment_id": appointment.id,
        "at": clock.now(),
        "action": action,
        "from_status": from_status,
        "to_status": appointment.status,
        "old_start_at": old[0] if old else None,
        "old_end_at": old[1] if old else None,
        "new_start_at": appointment.start_at if action in ("book", "reschedule") else None,
        "new_end_at": appointment.end_at if action in ("book", "reschedule") else None,
        "actor": who.credential,
        "reason": reason,
        "details": details or {},
    }


def _history(appointment: Appointment, action: str, who: Principal, **fields: Any) -> AppointmentChange:
    """The history row (`_history_values`) to add to the session."""
    return AppointmentChange(**_history_values(appointment, action, who, **fields))


def _check_window(service: Timed, times: slots.ServiceTimes, start_at: datetime) -> None:
    """Minimum notice and horizon: 422 naming `start_at`."""
    now = clock.now()
    if start_at < now + times.min_notice:
        raise ValidationFailed.field(
            "start_at",
            f"must be at least {service.min_notice_minutes} minutes from now",
            code="too_short_notice",
        )
    if times.horizon is not None and start_at > now + times.horizon:
        raise ValidationFailed.field("start_at", f"must be within {service.horizon_days} days", code="beyond_horizon")


def _located(schedules: list[slots.Schedule], times: slots.ServiceTimes, start_at: datetime,
             location_id: uuid.UUID | None) -> uuid.UUID:
    """The location of the first schedule whose availability holds the appointment, else 422."""
    matching = [s for s in schedules if slots.within_availability(s, times, start_at)]
    if not matching:
        raise ValidationFailed.field(
            "start_at",
            "outside the practitioner's availability" + (" at this location" if location_id else ""),
            code="outside_availability",
        )
    return matching[0].location_id


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
    _check_window(service, times, start_at)
    frm, until = start_at - CHECK_MARGIN, start_at + CHECK_MARGIN
    schedules = await _schedules(session, org_id, [practitioner_id], location_id, frm, until)
    located = _located(schedules, times, start_at, location_id)
    busy = await _busy(session, [practitioner_id], frm, until, exclude=exclude)
    if slots.overlaps_busy(times, start_at, busy.get(practitioner_id, [])):
        raise Conflict("That time is already taken for this practitioner", code="slot_taken")
    return located


def _constraint_conflict(exc: IntegrityError) -> Conflict | None:
    name = getattr(getattr(getattr(exc, "orig", None), "diag", None), "constraint_name", None)
    if name == "ex_appointments_practitioner_time":
        return Conflict("That time is already taken for this practitioner", code="slot_taken")
    if name == "ex_appointments_patient_time":
        return Conflict("The patient already has an appointment at an overlapping time", code="patient_overlap")
    return None


def lock_key(kind: str, row_id: uuid.UUID) -> int:
    """A stable signed 64-bit advisory-lock key for a practitioner's or patient's calendar."""
    digest = hashlib.blake2b(f"prm.appointments.{kind}:".encode() + row_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_keys(practitioner_ids: Iterable[uuid.UUID], patient_ids: Iterable[uuid.UUID]) -> list[int]:
    """The calendars' advisory-lock keys in the one global order (ascending)."""
    keys = {lock_key("practitioner", p) for p in practitioner_ids} | {lock_key("patient", p) for p in patient_ids}
    return sorted(keys)


def _locking(keys: Any) -> ColumnElement[Any]:
    """A scalar subquery taking the advisory locks `keys` (a list, or a bind parameter for one) one
    after the other (unnest yields them in the array's order and each lock is taken as its row is
    produced); its value is their number."""
    array = cast(keys if isinstance(keys, BindParameter) else bindparam("lock_keys", keys, type_=ARRAY(BigInteger)),
                 ARRAY(BigInteger))
    keyed = func.unnest(array).table_valued("k").render_derived(name="keyed")
    taken = select(func.pg_advisory_xact_lock(keyed.c.k).label("taken")).select_from(keyed).subquery()
    return select(func.count()).select_from(taken).scalar_subquery()


class _Opened(NamedTuple):
    locks: int
    version: int
    clean: bool
    patient_ok: bool


@functools.cache
def _opening() -> TextClause:
    """The first statement of every booking, built and compiled once (its values are bound at
    execution): as SQL text, SQLAlchemy need not walk the statement's tree on every execution."""
    org_id, patient_id = bindparam("org_id", type_=Uuid()), bindparam("patient_id", type_=Uuid())
    statement = select(
        _locking(bindparam("lock_keys", type_=ARRAY(BigInteger))).label("locks"),
        reference.version_of(org_id).label("version"),
        reference.clean().label("clean"),
        patients_service.bookable_exists(org_id, patient_id).label("patient_ok"),
    )
    compiled = statement.compile(dialect=postgresql.dialect())
    given = ("lock_keys", "org_id", "patient_id")
    # the compiled form names its parameters pyformat-style; text() wants them as :name, and the
    # constants the statement carries (0, 'merged') keep their values
    sql = re.sub(r"%\((\w+)\)s", r":\1 ", str(compiled))  # (a space before a `::` cast that follows)
    return text(sql).bindparams(*{
        name: bindparam(name, type_=bound.type) if name in given else bindparam(name, value=bound.value,
                                                                                type_=bound.type)
        for bound, name in compiled.bind_names.items()
    }.values())


@functools.cache
def _opening_parts() -> tuple[str, dict[str, Any]]:
    """The first statement's SQL text and the constants it binds, for embedding it as a guard."""
    opening = _opening()
    return str(opening), {name: bound.value for name, bound in opening._bindparams.items()
                          if name not in ("lock_keys", "org_id", "patient_id")}


def _guard(org_id: uuid.UUID, practitioner_id: uuid.UUID, patient_id: uuid.UUID, version: int) -> Guard:
    """The first statement as the guard of the optimistic one-statement booking: the row is written
    only when the reference version is still `version` and the patient can be booked."""
    sql, constants = _opening_parts()
    return Guard(sql=sql, params={
        **constants, "lock_keys": _lock_keys([practitioner_id], [patient_id]), "org_id": org_id,
        "patient_id": patient_id, "expected_version": version,
    }, condition="guard.version = :expected_version AND guard.patient_ok", columns=_Opened._fields)


async def _open_booking(session: AsyncSession, org_id: uuid.UUID, practitioner_id: uuid.UUID,
                        patient_id: uuid.UUID) -> _Opened:
    """A booking's first statement: its calendars' locks (`_serialize`), the organisation's reference
    version (the cache check, `reference.py`), whether the transaction is still clean, and whether
    the patient can be booked: one round trip for what used to take four."""
    row = (await session.execute(_opening(), {
        "lock_keys": _lock_keys([practitioner_id], [patient_id]), "org_id": org_id, "patient_id": patient_id,
    })).one()
    return _Opened(row.locks, row.version, row.clean, row.patient_ok)


async def _serialize(
    session: AsyncSession, *, practitioner_ids: Iterable[uuid.UUID], patient_ids: Iterable[uuid.UUID]
) -> None:
    """Take the transaction-scoped advisory locks of these calendars, in one global order (ascending key).

    Every booking and reschedule takes them before its availability/overlap check, so writes to the
    same practitioner's (or patient's) calendar run one after the other: the check sees every
    committed competitor and answers 409 itself, and two transactions never wait on each other's
    uncommitted rows (which is how concurrent inserts into an exclusion constraint deadlock). The
    exclusion constraints stay the guarantee; they no longer arbitrate. The locks end with the
    transaction (commit or rollback).
    """
    await session.execute(select(_locking(_lock_keys(practitioner_ids, patient_ids))))


async def _refused(session: AsyncSession, values: dict[str, Any]) -> None:
    """Why the exclusion constraints refused an appointment with these values (the booking inserts
    with `ON CONFLICT DO NOTHING`, so a refusal leaves the transaction usable): always raises 409."""
    taken = await session.scalar(
        select(Appointment.id).where(
            Appointment.practitioner_id == values["practitioner_id"], _holding,
            Appointment.blocked_from < values["blocked_until"], Appointment.blocked_until > values["blocked_from"],
        ).limit(1)
    )
    if taken is not None:
        raise Conflict("That time is already taken for this practitioner", code="slot_taken")
    raise Conflict("The patient already has an appointment at an overlapping time", code="patient_overlap")


async def _write_guarded(session: AsyncSession, change: Callable[[], None]) -> None:
    """Apply `change` and flush it in a savepoint; an exclusion violation becomes a 409.

    Under `_serialize` a violation only happens when a writer that does not take the locks got there
    first; the savepoint keeps the caller's transaction usable after the 409 (the booking assistant
    offers other times in the same transaction).
    """
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


async def book(
    session: AsyncSession, who: Principal, data: AppointmentCreate | dict[str, Any], *, notify_patient: bool = True,
    standalone: bool = False,
) -> Appointment:
    """Book a patient with a practitioner for a service at `data.start_at`.

    `data` is an `AppointmentCreate` (or a dict of its fields). 422 for unknown references or a
    start outside availability / notice / horizon; 409 `slot_taken` or `patient_overlap` when the
    time is held (checked, then enforced by the database's exclusion constraints, so concurrent
    bookings cannot both succeed). `notify_patient=False` marks the `appointment.booked` event so the
    standard confirmation is not sent (the caller confirms by its own means, e.g. the voice intake).

    `standalone=True`: the caller's transaction is this booking and nothing else (`POST
    /appointments`: nothing is written after it, and it commits right away). When the session has
    begun nothing yet, the one-statement booking then runs as its own transaction, without the
    `BEGIN` and `COMMIT` round trips (`prm.core.db.autocommit`); every other path still runs in the
    session's transaction. Callers that write more in their transaction (the booking assistant, the
    agents' tool, n8n, the voice intake) leave it False.
    """
    org_id = who.org_id
    if isinstance(data, dict):
        try:
            data = AppointmentCreate.model_validate(data)
        except PydanticValidationError as exc:
            errors = [
                {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
                for e in exc.errors()
            ]
            raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors) from None
    start_at = data.start_at.astimezone(UTC)
    frm = start_at - CHECK_MARGIN
    opened: _Opened | None = None
    cached = reference.cached(org_id, since=frm)
    if cached is not None:
        # Optimistic: plan with the copy in memory and send ONE statement that takes the locks, checks
        # the version and the patient, and writes only if both hold. A plan the copy refuses is not
        # trusted (the copy may be stale): it is decided below with checked data.
        try:
            values, batch = _plan(cached, who, data, start_at, notify_patient)
        except DomainError:
            pass
        else:
            # A statement is atomic by itself and the guard's advisory locks are transaction-scoped: they
            # hold from the guard through the write, as they would in a transaction of the request's
            alone = standalone and await db.autocommit(session)
            written, guard = await batch.execute_guarded(
                session, (Appointment, values), _guard(org_id, data.practitioner_id, data.patient_id, cached.version),
                returning=Appointment)
            if written is not None:
                return written  # type: ignore[no-any-return]
            if alone:
                # That statement was its own transaction: its locks ended with it, so what it saw decides
                # nothing now (a refusal diagnosed without them could name a time freed meanwhile). End
                # it (it wrote nothing; this sends nothing) and decide below in a transaction, as
                # without a copy: the locks again, the version, the plan, the write, the diagnosis.
                await session.commit()
            else:
                opened = _Opened(*guard)
                if opened.version == cached.version and opened.patient_ok:
                    await _refused(session, values)  # the time is held: 409
    if opened is None:
        opened = await _open_booking(session, org_id, data.practitioner_id, data.patient_id)
    if not opened.patient_ok:
        raise ValidationFailed.field("patient_id", f"no patient {data.patient_id}", code="unknown_patient")
    ref = await reference.current(session, org_id, opened.version, clean=opened.clean, since=frm)
    values, batch = _plan(ref, who, data, start_at, notify_patient)
    appointment: Appointment | None = await batch.execute(session, (Appointment, values), returning=Appointment)
    if appointment is None:
        await _refused(session, values)
    assert appointment is not None
    return appointment


def _plan(ref: reference.Reference, who: Principal, data: AppointmentCreate, start_at: datetime,
          notify_patient: bool) -> tuple[dict[str, Any], Batch]:
    """Check the booking against the reference data (422s) and plan its one-statement write: the
    appointment's values (the gate) and the batch of everything written with it."""
    org_id = who.org_id
    frm, until = start_at - CHECK_MARGIN, start_at + CHECK_MARGIN
    service = ref.services.get(data.service_id)
    if service is None or not service.is_active:
        raise ValidationFailed.field("service_id", f"no active service {data.service_id}", code="unknown_service")
    practitioner = ref.practitioners.get(data.practitioner_id)
    if practitioner is None or not practitioner.is_active:
        raise ValidationFailed.field("practitioner_id", f"no active practitioner {data.practitioner_id}",
                                     code="unknown_practitioner")
    if practitioner.id not in service.practitioner_ids:
        raise ValidationFailed.field(
            "practitioner_id", "this practitioner does not offer the service", code="service_not_offered"
        )
    if data.location_id is not None:
        chosen = ref.locations.get(data.location_id)
        if chosen is None or not chosen.is_active:
            raise ValidationFailed.field("location_id", f"no active location {data.location_id}",
                                         code="unknown_location")
    times = service_times(service)
    _check_window(service, times, start_at)
    location_id = _located(ref.schedules([practitioner.id], data.location_id, frm, until), times, start_at,
                           data.location_id)
    blocked = times.blocked(start_at)
    values = {
        "id": uuid.uuid4(),
        "org_id": org_id,
        "patient_id": data.patient_id,
        "practitioner_id": practitioner.id,
        "service_id": service.id,
        "location_id": location_id,
        "start_at": start_at,
        "end_at": start_at + times.duration,
        "blocked_from": blocked[0],
        "blocked_until": blocked[1],
        "status": "booked",
        "mode": service.mode,
        "notes": data.notes,
        "source": data.source,
        "booked_by": who.credential,
    }
    # ONE statement writes the appointment and, only when the exclusion constraints let it in (under
    # the locks they answer "is the time free" in the insert itself), its history, reminders (the sweep
    # fires them), the audit entry, the event and its deliveries (`prm.core.batch`)
    draft = Appointment(**values)
    location = ref.locations[location_id]
    batch = Batch()
    batch.insert(AppointmentChange, _history_values(draft, "book", who, from_status=None))
    for reminder in reminder_rows(draft, ZoneInfo(location.timezone), ref.settings.reminder_offsets, clock.now()):
        batch.insert(AppointmentReminder, reminder)  # the reminder sweep fires it when due
    batch.insert(AuditEntry, audit.entry(who, "create", "appointment", draft.id, patient_id=draft.patient_id,
                                         details={"source": data.source}))
    described = describe_with(draft, service_name=service.name, practitioner_name=practitioner.name,
                              location_name=location.name, timezone=location.timezone)
    extra = {} if notify_patient else {"notify_patient": False}
    events.publish_in(batch, Event(type=sm.EVENTS["book"], org_id=org_id,
                                   payload=event_payload(draft, **described, **extra)))
    return values, batch


async def get_appointment(
    session: AsyncSession,
    who: Principal,
    appointment_id: uuid.UUID,
    *,
    audit_read: bool = True,
) -> Appointment:
    org_id = who.org_id
    appointment = await _get(session, Appointment, org_id, appointment_id, "appointment")
    if audit_read:
        await audit.record(session, who, "read", "appointment", appointment.id, patient_id=appointment.patient_id)
    return appointment  # type: ignore[no-any-return]


async def update_appointment(
    session: AsyncSession, who: Principal, appointment_id: uuid.UUID, *, notes: str | None
) -> Appointment:
    """Change what does not move time (notes); moving is `reschedule`."""
    org_id = who.org_id
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
    who: Principal,
    appointment_id: uuid.UUID,
    action: str,
    *,
    reason: str | None = None,
    notify_patient: bool = True,
) -> Appointment:
    """Apply a lifecycle action (confirm, check_in, complete, no_show, cancel); 409 lists allowed ones.

    `notify_patient=False` marks the event as one the patient is not to be told about (a duplicate
    cancelled by a patient merge): the `notify_patient` field of the cancellation event.
    """
    org_id = who.org_id
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
    extra: dict[str, Any] = {"reason": reason, "notify_patient": notify_patient} if action == "cancel" else {}
    await _publish(session, action, appointment, **extra)
    return appointment


async def cancel(
    session: AsyncSession, who: Principal, appointment_id: uuid.UUID, *, reason: str
) -> Appointment:
    """Cancel (from booked or confirmed), recording why and who; voids pending reminders."""
    if not reason or not reason.strip():
        raise ValidationFailed.field("reason", "a cancellation needs a reason")
    return await transition(session, who, appointment_id, "cancel", reason=reason.strip())


async def reschedule(
    session: AsyncSession,
    who: Principal,
    appointment_id: uuid.UUID,
    *,
    start_at: datetime,
    practitioner_id: uuid.UUID | None = None,
    location_id: uuid.UUID | None = None,
    reason: str | None = None,
) -> Appointment:
    """Move an appointment atomically (same row, history kept); it is `booked` again afterwards."""
    org_id = who.org_id
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
    await _serialize(
        session, practitioner_ids=[appointment.practitioner_id, target], patient_ids=[appointment.patient_id]
    )
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
    await _write_guarded(session, lambda: _apply(appointment, moved))
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
