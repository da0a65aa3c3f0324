"""The read API's queries: read by id and search, per resource type, always within the caller's
organisation (another organisation's row is "not found"), audited like the rest of the API.

`read(...)` returns one resource; `search(...)` returns the page of resources and the total. Both
raise `NotFound` / `SearchError`, which the router answers as OperationOutcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from prm.appointments import service as appointments
from prm.appointments.service import Appointment, Location, Practitioner, Service
from prm.communications.service import Communication
from prm.core import audit, clock
from prm.core.auth import Principal
from prm.core.errors import NotFound
from prm.fhir import codes, mapping
from prm.fhir.search_params import (
    DateBound,
    Query,
    SearchError,
    TokenValue,
    date_only,
    parse_bool,
    parse_date,
    parse_id,
    parse_reference,
    parse_token,
)
from prm.identity import service as identity
from prm.patients import service as patients
from prm.patients.service import Patient, PatientEmail, PatientIdentifier, PatientPhone

PATIENT_DATA: tuple[str, ...] = ("Patient", "Appointment", "Communication")
MAX_SLOT_DAYS = 31


@dataclass(frozen=True)
class Page:
    resources: list[dict[str, Any]]
    total: int


def _not_found(resource_type: str, rid: str) -> NotFound:
    return NotFound(f"{resource_type}/{rid} is not known", code="fhir_resource_not_found")


# --- clause builders ----------------------------------------------------------------------------


def date_clause(column: Any, bound: DateBound, *, is_date: bool = False) -> ColumnElement[bool]:
    start: date | datetime
    end: date | datetime
    if is_date:
        start, end = date_only(bound)
    else:
        start, end = bound.start, bound.end
    match bound.prefix:
        case "eq":
            return and_(column >= start, column < end)
        case "ne":
            return or_(column < start, column >= end)
        case "gt" | "sa":
            return column >= end
        case "lt" | "eb":
            return column < start
        case "ge":
            return column >= start
        case _:  # "le"
            return column < end


def _any(values: Sequence[str], clause: Callable[[str], ColumnElement[bool]]) -> ColumnElement[bool]:
    return or_(*[clause(v) for v in values])


def _ids(values: Sequence[str]) -> list[uuid.UUID]:
    return [u for u in (parse_id("_id", v) for v in values) if u is not None]


def _own_token(param: str, token: TokenValue, resource_type: str) -> uuid.UUID | None:
    """Our identifier `urn:prm:<kind>|<uuid>` (or a bare uuid) → the id; None when it names another
    system (the caller matches those differently, or not at all)."""
    system = mapping.IDENTIFIER_SYSTEMS[resource_type]
    if token.system not in (None, system) or token.code is None:
        return None
    return parse_id(param, token.code)


def _own_ids(values: Sequence[str], resource_type: str) -> list[uuid.UUID]:
    """The ids named by `identifier` tokens in our own system (others match nothing here)."""
    return [i for i in (_own_token("identifier", parse_token("identifier", v), resource_type) for v in values)
            if i is not None]


def _folded(value: str) -> Any:
    return func.lower(func.prm_unaccent(value))


def _patient_name(modifier: str | None, v: str) -> ColumnElement[bool]:
    if modifier == "exact":
        return or_(Patient.given_name == v, Patient.family_name == v)
    return Patient.search_name.like(func.concat("%", _folded(_escape(v)), "%"), escape="\\")


def _name_part(column: Any, modifier: str | None, v: str) -> ColumnElement[bool]:
    if modifier == "exact":
        return column == v  # type: ignore[no-any-return]
    prefix = "%" if modifier == "contains" else ""
    return _folded(column).like(func.concat(prefix, _folded(_escape(v)), "%"), escape="\\")  # type: ignore[no-any-return]


def _contains(column: Any, value: str, *, modifier: str | None) -> ColumnElement[bool]:
    if modifier == "exact":
        return column == value  # type: ignore[no-any-return]
    return column.ilike(f"%{_escape(value)}%", escape="\\")  # type: ignore[no-any-return]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _common(stmt: Select[Any], model: Any, query: Query) -> Select[Any]:
    for _, values in query.values("_id"):
        stmt = stmt.where(model.id.in_(_ids(values)))
    for _, values in query.values("_lastUpdated"):
        stmt = stmt.where(_any(values, lambda v: date_clause(model.updated_at, parse_date("_lastUpdated", v))))
    return stmt


def _codes_in(param: str, values: Sequence[str], allowed: frozenset[str]) -> set[str]:
    """The codes of token values, each checked against the value set of the parameter."""
    wanted = set()
    for v in values:
        code = parse_token(param, v).code
        if code not in allowed:
            raise SearchError(param, f"{code!r} is not one of {', '.join(sorted(allowed))}", code="code-invalid")
        wanted.add(code)
    return wanted


def _bool_clause(param: str, values: Sequence[str], column: Any) -> ColumnElement[bool]:
    return or_(*[column.is_(parse_bool(param, v)) for v in values])


def _service_ids(param: str, values: Sequence[str]) -> list[uuid.UUID]:
    out = []
    for v in values:
        token = parse_token(param, v)
        if token.system not in (None, mapping.SERVICE_SYSTEM) or token.code is None:
            continue
        sid = parse_id(param, token.code)
        if sid is not None:
            out.append(sid)
    return out


async def _page(session: AsyncSession, stmt: Select[Any], query: Query) -> tuple[list[Any], int]:
    total = await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    rows = list((await session.execute(stmt.limit(query.count).offset(query.offset))).scalars().unique())
    return rows if query.count else [], int(total or 0)


# --- Patient --------------------------------------------------------------------------------------


def _patients(org_id: uuid.UUID) -> Select[Any]:
    return select(Patient).where(Patient.org_id == org_id, Patient.deleted_at.is_(None)).options(
        selectinload(Patient.phones), selectinload(Patient.emails), selectinload(Patient.identifiers))


def _patient_identifier(v: str) -> ColumnElement[bool]:
    token = parse_token("identifier", v)
    own = _own_token("identifier", token, "Patient")
    if own is not None:
        return Patient.id == own
    if token.code is None:
        return false()
    system = token.system
    stored_system = system[len("urn:prm:identifier:"):] if system and system.startswith("urn:prm:identifier:") \
        else system
    match = select(PatientIdentifier.patient_id).where(PatientIdentifier.org_id == Patient.org_id,
                                                       PatientIdentifier.value == token.code)
    if stored_system:
        match = match.where(PatientIdentifier.system == stored_system)
    return Patient.id.in_(match)


def _phone_clause(org_region: str, v: str) -> ColumnElement[bool]:
    number = patients.try_normalise(parse_token("phone", v).code or "", org_region)
    if number is None:
        return false()
    return or_(Patient.primary_phone == number, Patient.id.in_(
        select(PatientPhone.patient_id).where(PatientPhone.org_id == Patient.org_id, PatientPhone.number == number)))


def _email_clause(v: str) -> ColumnElement[bool]:
    email = (parse_token("email", v).code or "").strip().lower()
    return or_(func.lower(Patient.primary_email) == email, Patient.id.in_(
        select(PatientEmail.patient_id).where(PatientEmail.org_id == Patient.org_id,
                                              func.lower(PatientEmail.email) == email)))


async def _search_patients(session: AsyncSession, who: Principal, query: Query) -> tuple[list[Any], int]:
    stmt = _common(_patients(who.org_id), Patient, query)
    if not query.values("_id"):
        stmt = stmt.where(Patient.status != "merged")
    region = (await identity.organisation_settings(session, who.org_id)).phone_region
    for modifier, values in query.values("name"):
        stmt = stmt.where(_any(values, partial(_patient_name, modifier)))
    for name, column in (("family", Patient.family_name), ("given", Patient.given_name)):
        for modifier, values in query.values(name):
            stmt = stmt.where(_any(values, partial(_name_part, column, modifier)))
    for _, values in query.values("identifier"):
        stmt = stmt.where(_any(values, _patient_identifier))
    for _, values in query.values("birthdate"):
        stmt = stmt.where(_any(values, lambda v: date_clause(Patient.birth_date, parse_date("birthdate", v),
                                                             is_date=True)))
    for modifier, values in query.values("gender"):
        clause = Patient.gender.in_(sorted(_codes_in("gender", values, codes.ADMINISTRATIVE_GENDER)))
        stmt = stmt.where(not_(clause) if modifier == "not" else clause)
    for _, values in query.values("phone"):
        stmt = stmt.where(_any(values, lambda v: _phone_clause(region, v)))
    for _, values in query.values("email"):
        stmt = stmt.where(_any(values, _email_clause))
    for _, values in query.values("telecom"):
        stmt = stmt.where(_any(values, lambda v: or_(_email_clause(v), _phone_clause(region, v))
                               if "@" in v else _phone_clause(region, v)))
    for _, values in query.values("active"):
        active = Patient.status.in_(("active", "deceased"))
        stmt = stmt.where(or_(*[active if parse_bool("active", v) else not_(active) for v in values]))
    rows, total = await _page(session, stmt.order_by(Patient.family_name, Patient.given_name, Patient.id), query)
    return [mapping.patient(patients.to_fhir(p)) for p in rows], total


# --- Practitioner, Organization, Location, HealthcareService, Schedule ---------------------------


async def _search_practitioners(session: AsyncSession, who: Principal, query: Query) -> tuple[list[Any], int]:
    stmt = _common(select(Practitioner).where(Practitioner.org_id == who.org_id), Practitioner, query)
    for _, values in query.values("identifier"):
        stmt = stmt.where(Practitioner.id.in_(_own_ids(values, "Practitioner")))
    for modifier, values in query.values("name"):
        stmt = stmt.where(_any(values, partial(_contains, Practitioner.name, modifier=modifier)))
    for _, values in query.values("active"):
        stmt = stmt.where(_bool_clause("active", values, Practitioner.is_active))
    rows, total = await _page(session, stmt.order_by(Practitioner.name, Practitioner.id), query)
    return [mapping.practitioner(r) for r in rows], total


async def _search_organizations(session: AsyncSession, who: Principal, query: Query) -> tuple[list[Any], int]:
    org = await identity.get_organisation(session, who.org_id)
    ok = True
    for _, values in query.values("_id"):
        ok = ok and org.id in _ids(values)
    for _, values in query.values("identifier"):
        ok = ok and org.id in [_own_token("identifier", parse_token("identifier", v), "Organization")
                               for v in values]
    for modifier, values in query.values("name"):
        ok = ok and any((v == org.name) if modifier == "exact" else v.lower() in org.name.lower() for v in values)
    if not ok:
        return [], 0
    return ([mapping.organization(org)] if query.count and query.offset == 0 else []), 1


async def _search_locations(session: AsyncSession, who: Principal, query: Query) -> tuple[list[Any], int]:
    stmt = _common(select(Location).where(Location.org_id == who.org_id), Location, query)
    for _, values in query.values("identifier"):
        stmt = stmt.where(Location.id.in_(_own_ids(values, "Location")))
    for modifier, values in query.values("name"):
        stmt = stmt.where(_any(values, partial(_contains, Location.name, modifier=modifier)))
    for modifier, values in query.values("status"):
        wanted = _codes_in("status", values, codes.LOCATION_STATUS)
        clause = or_(false(), *([Location.is_active.is_(True)] if "active" in wanted else []),
                     *([Location.is_active.is_(False)] if "inactive" in wanted else []))
        stmt = stmt.where(not_(clause) if modifier == "not" else clause)
    rows, total = await _page(session, stmt.order_by(Location.name, Location.id), query)
    return [mapping.location(r, who.org_id) for r in rows], total


async def _search_services(session: AsyncSession, who: Principal, query: Query) -> tuple[list[Any], int]:
    stmt = _common(select(Service).where(Service.org_id == who.org_id), Service, query)
    for _, values in query.values("identifier"):
        stmt = stmt.where(Service.id.in_(_service_ids("identifier", values)))
    for modifier, values in query.values("name"):
        stmt = stmt.where(_any(values, partial(_contains, Service.name, modifier=modifier)))
    for _, values in query.values("active"):
        stmt = stmt.where(_bool_clause("active", values, Service.is_active))
    rows, total = await _page(session, stmt.order_by(Service.name, Service.id), query)
    return [mapping.healthcare_service(r) for r in rows], total


async def _schedule_of(session: AsyncSession, org_id: uuid.UUID, practitioner: Any,
                       services: Sequence[Any]) -> dict[str, Any]:
    rules = await appointments.list_rules(session, org_id, practitioner.id)
    offered = [(s.id, s.name) for s in services if any(p.id == practitioner.id for p in s.practitioners)]
    return mapping.schedule(practitioner, [r.location_id for r in rules], offered)


async def _search_schedules(session: AsyncSession, who: Principal, query: Query) -> tuple[list[Any], int]:
    stmt = _common(select(Practitioner).where(Practitioner.org_id == who.org_id), Practitioner, query)
    for _, values in query.values("active"):
        stmt = stmt.where(_bool_clause("active", values, Practitioner.is_active))
    location_filters: list[set[uuid.UUID]] = []
    for _, values in query.values("actor"):
        refs = [parse_reference("actor", v, allowed=("Practitioner", "Location")) for v in values]
        wanted_practitioners = [rid for rtype, rid in refs if rtype == "Practitioner"]
        wanted_locations = {rid for rtype, rid in refs if rtype == "Location"}
        if wanted_locations:
            location_filters.append(wanted_locations)
            if wanted_practitioners:
                raise SearchError("actor", "name practitioners or locations in one actor parameter, not both")
        else:
            stmt = stmt.where(Practitioner.id.in_(wanted_practitioners))
    services = list(await session.scalars(select(Service).where(Service.org_id == who.org_id)))
    schedules = [await _schedule_of(session, who.org_id, p, services)
                 for p in await session.scalars(stmt.order_by(Practitioner.name, Practitioner.id))]
    for wanted in location_filters:
        schedules = [s for s in schedules if {a["reference"] for a in s["actor"]} &
                     {f"Location/{lid}" for lid in wanted}]
    return schedules[query.offset:query.offset + query.count], len(schedules)


# --- Slot -------------------------------------------------------------------------------------------


async def _search_slots(session: AsyncSession, who: Principal, query: Query) -> tuple[list[Any], int]:
    service_values = [v for _, values in query.values("service-type") for v in values]
    if len(query.values("service-type")) != 1 or len(_service_ids("service-type", service_values)) != 1:
        raise SearchError("service-type", "exactly one HealthcareService is required (service-type=<id>)",
                          code="required")
    service_id = _service_ids("service-type", service_values)[0]
    practitioner_id: uuid.UUID | None = None
    for _, values in query.values("schedule"):
        if len(values) != 1:
            raise SearchError("schedule", "one schedule at a time")
        practitioner_id = parse_reference("schedule", values[0], allowed=("Schedule",))[1]
    for _, values in query.values("status"):
        if any(parse_token("status", v).code != "free" for v in values):
            return [], 0
    today = clock.now().astimezone(UTC).date()
    start, end = today, today + timedelta(days=7)
    for _, values in query.values("start"):
        for v in values:
            bound = parse_date("start", v)
            lo, hi = date_only(bound)
            if bound.prefix in ("ge", "gt", "sa"):
                start = lo if bound.prefix == "ge" else hi
            elif bound.prefix in ("le", "lt", "eb"):
                end = hi - timedelta(days=1) if bound.prefix == "le" else lo - timedelta(days=1)
            elif bound.prefix == "eq":
                start, end = lo, hi - timedelta(days=1)
            else:
                raise SearchError("start", "use ge/gt/le/lt/eq to bound slots")
    if end < start:
        return [], 0
    if (end - start).days >= MAX_SLOT_DAYS:
        raise SearchError("start", f"the range may span at most {MAX_SLOT_DAYS} days", code="too-costly")
    try:
        service = await appointments.get_service(session, who.org_id, service_id)
    except NotFound:
        return [], 0
    try:
        found = await appointments.available_slots(session, who.org_id, service_id=service_id, start_date=start,
                                                   end_date=end, practitioner_id=practitioner_id)
    except NotFound:
        return [], 0
    except Exception as exc:  # a practitioner of another organisation: nothing to show
        if getattr(exc, "code", None) == "unknown_reference":
            return [], 0
        raise
    page = found[query.offset:query.offset + query.count]
    return [mapping.slot(practitioner_id=s.practitioner_id, location_id=s.location_id, service_id=service.id,
                         service_name=service.name, start_at=s.start_at, end_at=s.end_at) for s in page], len(found)


# --- Appointment, Communication -----------------------------------------------------------------------


async def _service_names(session: AsyncSession, org_id: uuid.UUID, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await session.execute(select(Service.id, Service.name).where(Service.org_id == org_id,
                                                                          Service.id.in_(ids)))
    return {sid: name for sid, name in rows.all()}


async def appointments_as_fhir(session: AsyncSession, org_id: uuid.UUID, rows: Sequence[Any],
                               refs: dict[str, str] | None = None) -> list[dict[str, Any]]:
    names = await _service_names(session, org_id, {r.service_id for r in rows})
    return [mapping.appointment(r, service_name=names.get(r.service_id), refs=refs) for r in rows]


async def _search_appointments(session: AsyncSession, who: Principal, query: Query) -> tuple[list[Any], int]:
    stmt = _common(select(Appointment).where(Appointment.org_id == who.org_id), Appointment, query)
    for _, values in query.values("identifier"):
        stmt = stmt.where(Appointment.id.in_(_own_ids(values, "Appointment")))
    for param, column, kind in (("patient", Appointment.patient_id, "Patient"),
                                ("practitioner", Appointment.practitioner_id, "Practitioner"),
                                ("location", Appointment.location_id, "Location")):
        for _, values in query.values(param):
            stmt = stmt.where(column.in_([parse_reference(param, v, allowed=(kind,))[1] for v in values]))
    for _, values in query.values("date"):
        stmt = stmt.where(_any(values, lambda v: date_clause(Appointment.start_at, parse_date("date", v))))
    for modifier, values in query.values("status"):
        wanted = {s for v in values for s in _appointment_statuses(v)}
        clause = Appointment.status.in_(sorted(wanted)) if wanted else false()
        stmt = stmt.where(not_(clause) if modifier == "not" else clause)
    for _, values in query.values("service-type"):
        stmt = stmt.where(Appointment.service_id.in_(_service_ids("service-type", values)))
    rows, total = await _page(session, stmt.order_by(Appointment.start_at, Appointment.id), query)
    return await appointments_as_fhir(session, who.org_id, rows), total


def _appointment_statuses(v: str) -> tuple[str, ...]:
    token = parse_token("status", v)
    try:
        return codes.appointment_statuses_from_fhir(token.code or "")
    except codes.InvalidCode:
        raise SearchError("status", f"{token.code!r} is not an appointment status code",
                          code="code-invalid") from None


async def _search_communications(session: AsyncSession, who: Principal, query: Query) -> tuple[list[Any], int]:
    stmt = _common(select(Communication).where(Communication.org_id == who.org_id), Communication, query)
    for _, values in query.values("identifier"):
        stmt = stmt.where(Communication.id.in_(_own_ids(values, "Communication")))
    for param in ("patient", "subject"):
        for _, values in query.values(param):
            stmt = stmt.where(Communication.patient_id.in_(
                [parse_reference(param, v, allowed=("Patient",))[1] for v in values]))
    for modifier, values in query.values("status"):
        wanted: set[str] = set()
        for v in values:
            code = parse_token("status", v).code or ""
            try:
                wanted.update(codes.communication_statuses_from_fhir(code))
            except codes.InvalidCode:
                raise SearchError("status", f"{code!r} is not an event status code", code="code-invalid") from None
        clause = Communication.status.in_(sorted(wanted)) if wanted else false()
        stmt = stmt.where(not_(clause) if modifier == "not" else clause)
    for modifier, values in query.values("category"):
        purposes = sorted({p for v in values for p, c in codes.PURPOSE_CATEGORY.items()
                           if c == parse_token("category", v).code})
        clause = Communication.purpose.in_(purposes) if purposes else false()
        stmt = stmt.where(not_(clause) if modifier == "not" else clause)
    sent = func.coalesce(Communication.sent_at, Communication.received_at)
    for _, values in query.values("sent"):
        stmt = stmt.where(_any(values, lambda v: date_clause(sent, parse_date("sent", v))))
    rows, total = await _page(session, stmt.order_by(Communication.created_at.desc(), Communication.id), query)
    return [mapping.communication(r) for r in rows], total


Searcher = Callable[[AsyncSession, Principal, Query], Awaitable[tuple[list[Any], int]]]
SEARCHES: dict[str, Searcher] = {
    "Patient": _search_patients,
    "Practitioner": _search_practitioners,
    "Organization": _search_organizations,
    "Location": _search_locations,
    "HealthcareService": _search_services,
    "Schedule": _search_schedules,
    "Slot": _search_slots,
    "Appointment": _search_appointments,
    "Communication": _search_communications,
}


def _patient_of(resource: dict[str, Any]) -> str | None:
    if resource["resourceType"] == "Patient":
        return str(resource["id"])
    ref = (resource.get("subject") or resource.get("patient") or {}).get("reference") or next(
        (p["actor"]["reference"] for p in resource.get("participant") or []
         if p.get("actor", {}).get("reference", "").startswith("Patient/")), None)
    return ref.split("/", 1)[1] if ref else None


async def search(session: AsyncSession, who: Principal, resource_type: str, query: Query) -> Page:
    resources, total = await SEARCHES[resource_type](session, who, query)
    if resource_type in PATIENT_DATA:
        patient_ids = sorted({p for p in (_patient_of(r) for r in resources) if p})
        await audit.record(session, who, "search", f"fhir_{resource_type.lower()}", None,
                           details={"params": sorted({n for n, _, _ in query.params}), "patient_ids": patient_ids,
                                    "ids": [r["id"] for r in resources]})
    return Page(resources, total)


async def read(session: AsyncSession, who: Principal, resource_type: str, rid: str) -> dict[str, Any]:
    local = parse_id("_id", rid)
    if local is None or resource_type == "Slot":
        raise _not_found(resource_type, rid)
    query = Query(params=(("_id", None, (str(local),)),), count=1, offset=0)
    if resource_type == "Patient":
        # a merged patient is read (inactive, replaced-by link); a deleted one is not found
        rows = list((await session.execute(_patients(who.org_id).where(Patient.id == local))).scalars())
        resources = [mapping.patient(patients.to_fhir(p)) for p in rows]
    else:
        resources, _ = await SEARCHES[resource_type](session, who, query)
    if not resources:
        raise _not_found(resource_type, rid)
    resource = resources[0]
    if resource_type in PATIENT_DATA:
        patient_id = _patient_of(resource)
        await audit.record(session, who, "read", f"fhir_{resource_type.lower()}", resource["id"],
                           patient_id=uuid.UUID(patient_id) if patient_id else None)
    return resource


__all__ = ["Page", "appointments_as_fhir", "date_clause", "read", "search"]
