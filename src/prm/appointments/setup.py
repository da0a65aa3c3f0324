"""Scheduling setup: practitioners, locations, services, availability rules and exceptions."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import state_machine as sm
from prm.appointments.models import (
    Appointment,
    AvailabilityException,
    AvailabilityRule,
    Location,
    Practitioner,
    Service,
)
from prm.appointments.schemas import (
    ExceptionCreate,
    LocationCreate,
    LocationUpdate,
    PractitionerCreate,
    PractitionerUpdate,
    RuleCreate,
    ServiceCreate,
    ServiceUpdate,
)
from prm.core import references
from prm.core.errors import NotFound, ValidationFailed
from prm.identity import service as identity

T = TypeVar("T")

MAX_RANGE_DAYS = 62
REMINDER_JOB = "appointments.send_reminder"  # one reminder's own job (rows scheduled before the sweep)
REMINDER_SWEEP = "appointments.send_due_reminders"  # every minute: every reminder that has come due
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


references.resolver("practitioner")(references.in_organisation(Practitioner))
references.resolver("location")(references.in_organisation(Location))
references.resolver("service")(references.in_organisation(Service))


async def _stored(session: AsyncSession, row: T) -> T:
    """A new row, written (its constraints checked now, not at commit)."""
    session.add(row)
    await session.flush()
    return row


def _apply(row: Any, changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        setattr(row, key, value)


async def _changed(session: AsyncSession, row: T, changes: dict[str, Any]) -> T:
    """A row with `changes` applied, written."""
    _apply(row, changes)
    await session.flush()
    return row


# --- practitioners, locations --------------------------------------------------------------------


async def _check_user(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID | None) -> None:
    if user_id is not None and not await identity.user_exists(session, org_id, user_id):
        raise ValidationFailed.field("user_id", f"no staff user {user_id} in this organisation", code="unknown_user")


async def create_practitioner(session: AsyncSession, org_id: uuid.UUID, data: PractitionerCreate) -> Practitioner:
    await _check_user(session, org_id, data.user_id)
    row = Practitioner(org_id=org_id, **data.model_dump())
    return await _stored(session, row)


async def update_practitioner(
    session: AsyncSession, org_id: uuid.UUID, practitioner_id: uuid.UUID, data: PractitionerUpdate
) -> Practitioner:
    row = await get_practitioner(session, org_id, practitioner_id)
    changes = data.model_dump(exclude_unset=True)
    if "user_id" in changes:
        await _check_user(session, org_id, changes["user_id"])
    return await _changed(session, row, changes)


async def get_practitioner(session: AsyncSession, org_id: uuid.UUID, practitioner_id: uuid.UUID) -> Practitioner:
    return await _get(session, Practitioner, org_id, practitioner_id, "practitioner")  # type: ignore[no-any-return]


async def list_practitioners(session: AsyncSession, org_id: uuid.UUID) -> list[Practitioner]:
    rows = await session.scalars(select(Practitioner).where(Practitioner.org_id == org_id).order_by(Practitioner.name))
    return list(rows)


async def create_location(session: AsyncSession, org_id: uuid.UUID, data: LocationCreate) -> Location:
    row = Location(org_id=org_id, **data.model_dump())
    return await _stored(session, row)


async def update_location(
    session: AsyncSession, org_id: uuid.UUID, location_id: uuid.UUID, data: LocationUpdate
) -> Location:
    row = await get_location(session, org_id, location_id)
    return await _changed(session, row, data.model_dump(exclude_unset=True))


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
    return await _stored(session, row)


async def update_service(
    session: AsyncSession, org_id: uuid.UUID, service_id: uuid.UUID, data: ServiceUpdate
) -> Service:
    row = await get_service(session, org_id, service_id)
    changes = data.model_dump(exclude_unset=True)
    if "practitioner_ids" in changes:
        row.practitioners = await _practitioners(session, org_id, changes.pop("practitioner_ids") or [])
    if "keywords" in changes:
        changes["keywords"] = _keywords(changes["keywords"] or [])
    return await _changed(session, row, changes)


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
    return await _stored(session, row)


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
    return await _stored(session, row)


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


async def describe(session: AsyncSession, appointment: Appointment) -> dict[str, Any]:
    """What a message about the appointment needs, so subscribers need not import this module:
    service, practitioner and location names, the location's time zone and the local start."""
    service = await session.get(Service, appointment.service_id)
    practitioner = await session.get(Practitioner, appointment.practitioner_id)
    location = await session.get(Location, appointment.location_id)
    assert service and practitioner and location
    return describe_with(appointment, service_name=service.name, practitioner_name=practitioner.name,
                         location_name=location.name, timezone=location.timezone)


def describe_with(appointment: Appointment, *, service_name: str, practitioner_name: str, location_name: str,
                  timezone: str) -> dict[str, Any]:
    """`describe` from names already at hand (the booking has them in its reference data)."""
    return {
        "service_name": service_name,
        "practitioner_name": practitioner_name,
        "location_name": location_name,
        "timezone": timezone,
        "local_start": appointment.start_at.astimezone(ZoneInfo(timezone)).isoformat(),
    }
