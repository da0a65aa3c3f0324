"""The organisation's scheduling reference data, cached per process and checked current on every use.

A booking needs the service (its durations, buffers, notice, who offers it), the practitioner, the
availability rules and exceptions, the locations (names, time zones) and the organisation's reminder
settings: seven reads that change rarely. Each process keeps one `Reference` per organisation and
checks it with one integer: `reference_versions.version`, which database triggers bump in the same
transaction as any change to that data (migration `20261130_reference_versions`), whoever writes it.
The booking reads the version inside its first statement (with its calendar locks), so the cache
costs no round trip and is never older than what a fresh read at that moment would give.

Why it is safe:

* the data is read *after* the version (a later read sees at least that version's data); a change
  committed in between bumps the version, so the next check reloads;
* only a transaction that has written nothing yet (`clean`) stores what it loaded: one that has
  written reference data itself sees its own uncommitted version and data, which must never reach
  other requests (it may still roll back). Such a transaction uses what it loaded for itself only;
* exceptions are cached from three days before the load onwards (older ones cannot touch a start
  that respects its minimum notice); a check reaching further back reads afresh.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import slots
from prm.appointments.models import (
    AvailabilityException,
    AvailabilityRule,
    Location,
    Practitioner,
    ReferenceVersion,
    Service,
    service_practitioners,
)
from prm.appointments.slots import ExceptionRow, RuleRow, assemble_schedules
from prm.core import clock
from prm.identity import service as identity

# exceptions ending this long before the load are left out of the cache (a booking's check reads
# two days either side of a start that is never in the past)
EXCEPTIONS_BEFORE = timedelta(days=3)
MAX_ORGANISATIONS = 1000  # least recently used organisations beyond this are dropped


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    id: uuid.UUID
    name: str
    is_active: bool
    mode: str
    duration_minutes: int
    buffer_before_minutes: int
    buffer_after_minutes: int
    min_notice_minutes: int
    horizon_days: int
    slot_step_minutes: int
    practitioner_ids: frozenset[uuid.UUID]


@dataclass(frozen=True, slots=True)
class PractitionerInfo:
    id: uuid.UUID
    name: str
    timezone: str
    is_active: bool


@dataclass(frozen=True, slots=True)
class LocationInfo:
    id: uuid.UUID
    name: str
    timezone: str
    is_active: bool


@dataclass
class Reference:
    """One organisation's reference data as of `version`."""

    org_id: uuid.UUID
    version: int
    exceptions_since: datetime
    services: dict[uuid.UUID, ServiceInfo]
    practitioners: dict[uuid.UUID, PractitionerInfo]
    locations: dict[uuid.UUID, LocationInfo]
    settings: identity.OrganisationSettings
    rules: dict[uuid.UUID, list[RuleRow]] = field(default_factory=dict)  # by practitioner, active locations
    exceptions: dict[uuid.UUID, list[ExceptionRow]] = field(default_factory=dict)  # by practitioner

    def schedules(self, practitioner_ids: Iterable[uuid.UUID], location_id: uuid.UUID | None,
                  frm: datetime, until: datetime) -> list[slots.Schedule]:
        """What `availability._schedules` reads from the database, from this copy (frm >= exceptions_since)."""
        wanted = list(practitioner_ids)
        rules = [row for p in wanted for row in self.rules.get(p, ())]
        exceptions = [row for p in wanted for row in self.exceptions.get(p, ())
                      if row.span[0] < until and row.span[1] > frm]
        return assemble_schedules(rules, exceptions, location_id)


_cache: OrderedDict[uuid.UUID, Reference] = OrderedDict()


def rule_row(rule: AvailabilityRule, timezone: str) -> RuleRow:
    return RuleRow(rule.practitioner_id, rule.location_id, timezone,
                   slots.Rule(rule.weekday, rule.start_time, rule.end_time, rule.valid_from, rule.valid_until))


def exception_row(exc: AvailabilityException, timezone: str | None) -> ExceptionRow:
    return ExceptionRow(exc.practitioner_id, exc.location_id, exc.kind, (exc.start_at, exc.end_at), timezone)


def version_of(org_id: Any) -> ColumnElement[Any]:
    """The organisation's reference version as a scalar subquery (0 when nothing changed since the
    migration), for the caller to read inside a statement it sends anyway."""
    return func.coalesce(
        select(ReferenceVersion.version).where(ReferenceVersion.org_id == org_id).scalar_subquery(), 0
    )


def clean() -> ColumnElement[Any]:
    """True while the transaction has written nothing (then everything it reads is committed data)."""
    return func.pg_current_xact_id_if_assigned().is_(None)


def cached(org_id: uuid.UUID, *, since: datetime | None = None) -> Reference | None:
    """The copy in memory as it is, unchecked (reaching back to `since`): for an optimistic write that
    checks the version itself (the booking's one statement), never to answer from."""
    copy = _cache.get(org_id)
    if copy is None or (since is not None and since < copy.exceptions_since):
        return None
    return copy


async def current(session: AsyncSession, org_id: uuid.UUID, version: int, *, clean: bool,
                  since: datetime | None = None) -> Reference:
    """The organisation's reference data at `version` (read by the caller in this transaction):
    the cached copy when it is that version and reaches back to `since`, else read now."""
    cached = _cache.get(org_id)
    if cached is not None and cached.version == version and (since is None or since >= cached.exceptions_since):
        _cache.move_to_end(org_id)
        return cached
    loaded = await load(session, org_id, version, since=since)
    if clean and (cached is None or cached.version <= version):
        _store(loaded)
    return loaded


def _store(copy: Reference) -> None:
    _cache[copy.org_id] = copy
    _cache.move_to_end(copy.org_id)
    while len(_cache) > MAX_ORGANISATIONS:
        _cache.popitem(last=False)


async def read(session: AsyncSession, org_id: uuid.UUID, *, since: datetime | None = None) -> Reference:
    """`current` for a request with no statement of its own to carry the version (one small read)."""
    version, is_clean = (await session.execute(select(version_of(org_id), clean()))).one()
    return await current(session, org_id, version, clean=is_clean, since=since)


def forget(org_id: uuid.UUID | None = None) -> None:
    """Drop the cached copy of one organisation (all when None); the next use reads afresh."""
    if org_id is None:
        _cache.clear()
    else:
        _cache.pop(org_id, None)


async def load(session: AsyncSession, org_id: uuid.UUID, version: int, *, since: datetime | None = None) -> Reference:
    """Read the organisation's reference data (after its version was read: see the module notes)."""
    since = min(since, clock.now() - EXCEPTIONS_BEFORE) if since is not None else clock.now() - EXCEPTIONS_BEFORE
    offered: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    for service_id, practitioner_id in (await session.execute(
        select(service_practitioners.c.service_id, service_practitioners.c.practitioner_id)
        .join(Service, Service.id == service_practitioners.c.service_id).where(Service.org_id == org_id)
    )).all():
        offered[service_id].add(practitioner_id)
    services = {
        s.id: ServiceInfo(s.id, s.name, s.is_active, s.mode, s.duration_minutes, s.buffer_before_minutes,
                          s.buffer_after_minutes, s.min_notice_minutes, s.horizon_days, s.slot_step_minutes,
                          frozenset(offered.get(s.id, ())))
        for s in (await session.execute(select(
            Service.id, Service.name, Service.is_active, Service.mode, Service.duration_minutes,
            Service.buffer_before_minutes, Service.buffer_after_minutes, Service.min_notice_minutes,
            Service.horizon_days, Service.slot_step_minutes).where(Service.org_id == org_id))).all()
    }
    practitioners = {
        p.id: PractitionerInfo(p.id, p.name, p.timezone, p.is_active)
        for p in (await session.execute(select(
            Practitioner.id, Practitioner.name, Practitioner.timezone, Practitioner.is_active
        ).where(Practitioner.org_id == org_id))).all()
    }
    locations = {
        row.id: LocationInfo(row.id, row.name, row.timezone, row.is_active)
        for row in (await session.execute(select(
            Location.id, Location.name, Location.timezone, Location.is_active
        ).where(Location.org_id == org_id))).all()
    }
    rules: dict[uuid.UUID, list[RuleRow]] = defaultdict(list)
    for rule in (await session.scalars(select(AvailabilityRule).where(AvailabilityRule.org_id == org_id))).all():
        location = locations.get(rule.location_id)
        if location is not None and location.is_active:
            rules[rule.practitioner_id].append(rule_row(rule, location.timezone))
    exceptions: dict[uuid.UUID, list[ExceptionRow]] = defaultdict(list)
    for exc in (await session.scalars(select(AvailabilityException).where(
        AvailabilityException.org_id == org_id, AvailabilityException.end_at > since
    ))).all():
        zone = locations[exc.location_id].timezone if exc.location_id in locations else None
        exceptions[exc.practitioner_id].append(exception_row(exc, zone))
    return Reference(
        org_id=org_id, version=version, exceptions_since=since, services=services, practitioners=practitioners,
        locations=locations, settings=await identity.organisation_settings(session, org_id),
        rules=dict(rules), exceptions=dict(exceptions),
    )
