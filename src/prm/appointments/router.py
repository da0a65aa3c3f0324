"""HTTP API of scheduling: setup (practitioners, locations, services, availability), slots,
appointments and their lifecycle, agendas, patient history and calendar invites."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Query, Response

from prm.appointments import service
from prm.appointments.models import Appointment
from prm.appointments.schemas import (
    Agenda,
    AgendaEntry,
    AppointmentCreate,
    AppointmentDetail,
    AppointmentRead,
    AppointmentUpdate,
    CancelBody,
    ChangeRead,
    ExceptionCreate,
    ExceptionRead,
    LocationCreate,
    LocationRead,
    LocationUpdate,
    PractitionerCreate,
    PractitionerRead,
    PractitionerUpdate,
    ReminderRead,
    RescheduleBody,
    RuleCreate,
    RuleRead,
    ServiceCreate,
    ServiceRead,
    ServiceUpdate,
    SlotRead,
    SlotsCompactRead,
    Status,
)
from prm.appointments.slots import Slot
from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.pagination import Page, Paging
from prm.patients.service import PatientMoved

setup = APIRouter(tags=["scheduling setup"])
booking = APIRouter(tags=["appointments"])
routers = [setup, booking]


CONFLICTS: dict[int | str, dict[str, Any]] = {
    409: {"description": "Slot taken, patient overlap, or a transition not allowed from this status"}
}

# --- practitioners ------------------------------------------------------------------------------


@setup.get("/practitioners", response_model=list[PractitionerRead], summary="List practitioners")
async def list_practitioners(session: Session, who: Principal = Requires("schedule:read")) -> list[PractitionerRead]:
    return [PractitionerRead.model_validate(p) for p in await service.list_practitioners(session, who.org_id)]


@setup.post(
    "/practitioners",
    status_code=201,
    response_model=PractitionerRead,
    summary="Create a practitioner (optionally linked to a staff user)",
)
async def create_practitioner(
    body: PractitionerCreate, session: Session, who: Principal = Requires("schedule:write")
) -> PractitionerRead:
    return PractitionerRead.model_validate(await service.create_practitioner(session, who.org_id, body))


@setup.get("/practitioners/{practitioner_id}", response_model=PractitionerRead, summary="Get a practitioner")
async def get_practitioner(
    practitioner_id: uuid.UUID, session: Session, who: Principal = Requires("schedule:read")
) -> PractitionerRead:
    return PractitionerRead.model_validate(await service.get_practitioner(session, who.org_id, practitioner_id))


@setup.patch("/practitioners/{practitioner_id}", response_model=PractitionerRead, summary="Update a practitioner")
async def update_practitioner(
    practitioner_id: uuid.UUID,
    body: PractitionerUpdate,
    session: Session,
    who: Principal = Requires("schedule:write"),
) -> PractitionerRead:
    row = await service.update_practitioner(session, who.org_id, practitioner_id, body)
    return PractitionerRead.model_validate(row)


@setup.get(
    "/practitioners/{practitioner_id}/availability/rules",
    response_model=list[RuleRead],
    summary="Weekly availability rules (local time at each location)",
)
async def list_rules(
    practitioner_id: uuid.UUID, session: Session, who: Principal = Requires("schedule:read")
) -> list[RuleRead]:
    return [RuleRead.model_validate(r) for r in await service.list_rules(session, who.org_id, practitioner_id)]


@setup.post(
    "/practitioners/{practitioner_id}/availability/rules",
    status_code=201,
    response_model=RuleRead,
    summary="Add a weekly availability rule at a location",
)
async def add_rule(
    practitioner_id: uuid.UUID,
    body: RuleCreate,
    session: Session,
    who: Principal = Requires("schedule:write"),
) -> RuleRead:
    return RuleRead.model_validate(await service.add_rule(session, who.org_id, practitioner_id, body))


@setup.delete("/practitioners/{practitioner_id}/availability/rules/{rule_id}", status_code=204, summary="Remove a rule")
async def delete_rule(
    practitioner_id: uuid.UUID,
    rule_id: uuid.UUID,
    session: Session,
    who: Principal = Requires("schedule:write"),
) -> Response:
    await service.delete_rule(session, who.org_id, practitioner_id, rule_id)
    return Response(status_code=204)


@setup.get(
    "/practitioners/{practitioner_id}/availability/exceptions",
    response_model=list[ExceptionRead],
    summary="Time off and extra hours",
)
async def list_exceptions(
    practitioner_id: uuid.UUID, session: Session, who: Principal = Requires("schedule:read")
) -> list[ExceptionRead]:
    rows = await service.list_exceptions(session, who.org_id, practitioner_id)
    return [ExceptionRead.model_validate(r) for r in rows]


@setup.post(
    "/practitioners/{practitioner_id}/availability/exceptions",
    status_code=201,
    response_model=ExceptionRead,
    summary="Add time off or extra hours (naive times are read in the location's zone)",
)
async def add_exception(
    practitioner_id: uuid.UUID,
    body: ExceptionCreate,
    session: Session,
    who: Principal = Requires("schedule:write"),
) -> ExceptionRead:
    return ExceptionRead.model_validate(await service.add_exception(session, who.org_id, practitioner_id, body))


@setup.delete(
    "/practitioners/{practitioner_id}/availability/exceptions/{exception_id}",
    status_code=204,
    summary="Remove time off or extra hours",
)
async def delete_exception(
    practitioner_id: uuid.UUID,
    exception_id: uuid.UUID,
    session: Session,
    who: Principal = Requires("schedule:write"),
) -> Response:
    await service.delete_exception(session, who.org_id, practitioner_id, exception_id)
    return Response(status_code=204)


# --- locations ----------------------------------------------------------------------------------


@setup.get("/locations", response_model=list[LocationRead], summary="List locations")
async def list_locations(session: Session, who: Principal = Requires("schedule:read")) -> list[LocationRead]:
    return [LocationRead.model_validate(loc) for loc in await service.list_locations(session, who.org_id)]


@setup.post("/locations", status_code=201, response_model=LocationRead, summary="Create a location (IANA zone)")
async def create_location(
    body: LocationCreate, session: Session, who: Principal = Requires("schedule:write")
) -> LocationRead:
    return LocationRead.model_validate(await service.create_location(session, who.org_id, body))


@setup.get("/locations/{location_id}", response_model=LocationRead, summary="Get a location")
async def get_location(
    location_id: uuid.UUID, session: Session, who: Principal = Requires("schedule:read")
) -> LocationRead:
    return LocationRead.model_validate(await service.get_location(session, who.org_id, location_id))


@setup.patch("/locations/{location_id}", response_model=LocationRead, summary="Update a location")
async def update_location(
    location_id: uuid.UUID,
    body: LocationUpdate,
    session: Session,
    who: Principal = Requires("schedule:write"),
) -> LocationRead:
    return LocationRead.model_validate(await service.update_location(session, who.org_id, location_id, body))


# --- services -----------------------------------------------------------------------------------


@setup.get(
    "/services",
    response_model=list[ServiceRead],
    summary="List services (appointment types); `q` matches names and keywords",
)
async def list_services(
    session: Session,
    q: Annotated[str | None, Query(max_length=200, description="Free text, e.g. 'a cleaning please'")] = None,
    include_inactive: bool = False,
    who: Principal = Requires("schedule:read"),
) -> list[ServiceRead]:
    if q:
        rows = await service.find_services(session, who.org_id, q)
    else:
        rows = await service.list_services(session, who.org_id, include_inactive=include_inactive)
    return [ServiceRead.model_validate(s) for s in rows]


@setup.post("/services", status_code=201, response_model=ServiceRead, summary="Create a service")
async def create_service(
    body: ServiceCreate, session: Session, who: Principal = Requires("schedule:write")
) -> ServiceRead:
    return ServiceRead.model_validate(await service.create_service(session, who.org_id, body))


@setup.get("/services/{service_id}", response_model=ServiceRead, summary="Get a service")
async def get_service(
    service_id: uuid.UUID, session: Session, who: Principal = Requires("schedule:read")
) -> ServiceRead:
    return ServiceRead.model_validate(await service.get_service(session, who.org_id, service_id))


@setup.patch("/services/{service_id}", response_model=ServiceRead, summary="Update a service")
async def update_service(
    service_id: uuid.UUID, body: ServiceUpdate, session: Session, who: Principal = Requires("schedule:write")
) -> ServiceRead:
    return ServiceRead.model_validate(await service.update_service(session, who.org_id, service_id, body))


# --- slots --------------------------------------------------------------------------------------


SlotShape = Literal["full", "compact"]


def _json(content: Any) -> Response:
    """A large answer encoded by orjson directly (UTC as `Z`, like pydantic), not validated object by object."""
    return Response(orjson.dumps(content, option=orjson.OPT_UTC_Z), media_type="application/json")


@booking.get(
    "/slots",
    response_model=list[SlotRead] | SlotsCompactRead,
    summary="Available slots of a service between two local dates",
    description="Availability minus bookings (with buffers), time off, minimum notice and horizon, earliest first.\n\n"
    "`shape=full` (the default) answers a list of slots: `start_at`/`end_at` are UTC, `local_start`/`local_end` "
    "the same instants in the location's zone. `shape=compact` answers the same slots (the same `limit` earliest) "
    "grouped by practitioner, location and local day, each start a local time with its offset and the duration "
    "given once: about a twentieth of the bytes, for calendars and long ranges.",
)
async def get_slots(
    session: Session,
    service_id: uuid.UUID,
    start_date: date,
    end_date: date,
    practitioner_id: uuid.UUID | None = None,
    location_id: uuid.UUID | None = None,
    limit: Annotated[int | None, Query(ge=1, le=5000)] = None,
    shape: Annotated[SlotShape, Query(description="`full`: a list of slots; `compact`: starts by local day")] = "full",
    who: Principal = Requires("schedule:read"),
) -> Response:
    scope: dict[str, Any] = {
        "service_id": service_id,
        "start_date": start_date,
        "end_date": end_date,
        "practitioner_id": practitioner_id,
        "location_id": location_id,
        "limit": limit,
    }
    if shape == "compact":
        duration, schedules = await service.available_start_times(session, who.org_id, **scope)
        return _json(
            {
                "service_id": service_id,
                "duration_minutes": duration // timedelta(minutes=1),
                "start_date": start_date,
                "end_date": end_date,
                "schedules": [s._asdict() for s in schedules],
            }
        )
    return full_answer(await service.available_slots(session, who.org_id, **scope), service_id)


def full_answer(found: list[Slot], service_id: uuid.UUID) -> Response:
    """`shape=full`: `list[SlotRead]` as pydantic would write it, encoded by orjson straight from the slots."""
    return _json(
        [
            {
                "start_at": s.start_at,
                "end_at": s.end_at,
                "local_start": s.local_start,
                "local_end": s.local_end,
                "timezone": s.timezone,
                "practitioner_id": s.practitioner_id,
                "location_id": s.location_id,
                "service_id": service_id,
            }
            for s in found
        ]
    )


# --- appointments -------------------------------------------------------------------------------


def _read(row: Appointment) -> AppointmentRead:
    return AppointmentRead.model_validate(row)


@booking.post(
    "/appointments",
    status_code=201,
    response_model=AppointmentRead,
    responses={
        409: {"description": "`slot_taken` or `patient_overlap`"},
        422: {"description": "Outside availability"},
    },
    summary="Book an appointment (honours Idempotency-Key)",
)
async def book(
    body: AppointmentCreate, session: Session, who: Principal = Requires("appointments:write")
) -> AppointmentRead:
    # the booking is the request's whole transaction: its one statement may run without BEGIN/COMMIT
    return _read(await service.book(session, who, body, standalone=True))


@booking.get("/appointments", response_model=Page[AppointmentRead], summary="List appointments (filters)")
async def list_appointments(
    session: Session,
    paging: Paging,
    patient_id: uuid.UUID | None = None,
    practitioner_id: uuid.UUID | None = None,
    status: Status | None = None,
    who: Principal = Requires("appointments:read"),
) -> Page[AppointmentRead]:
    rows, total = await service.list_appointments(
        session,
        who,
        limit=paging.limit,
        offset=paging.offset,
        patient_id=patient_id,
        practitioner_id=practitioner_id,
        status=status,
    )
    return Page(items=[_read(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset)


@booking.get(
    "/appointments/{appointment_id}",
    response_model=AppointmentDetail,
    summary="An appointment with its history and reminders",
)
async def get_appointment(
    appointment_id: uuid.UUID, session: Session, who: Principal = Requires("appointments:read")
) -> AppointmentDetail:
    row = await service.get_appointment(session, who, appointment_id)
    history = [ChangeRead.model_validate(c) for c in await service.history_of(session, row.id)]
    reminders = [ReminderRead.model_validate(r) for r in await service.reminders_of(session, row.id)]
    return AppointmentDetail(**_read(row).model_dump(), history=history, reminders=reminders)


@booking.patch("/appointments/{appointment_id}", response_model=AppointmentRead, summary="Update notes")
async def update_appointment(
    appointment_id: uuid.UUID,
    body: AppointmentUpdate,
    session: Session,
    who: Principal = Requires("appointments:write"),
) -> AppointmentRead:
    return _read(await service.update_appointment(session, who, appointment_id, notes=body.notes))


def _action_route(action: str, path: str, summary: str) -> None:
    async def endpoint(
        appointment_id: uuid.UUID, session: Session, who: Principal = Requires("appointments:write")
    ) -> AppointmentRead:
        return _read(await service.transition(session, who, appointment_id, action))

    endpoint.__name__ = f"appointment_{action}"
    booking.post(
        f"/appointments/{{appointment_id}}/{path}",
        response_model=AppointmentRead,
        responses=CONFLICTS,
        summary=summary,
    )(endpoint)


_action_route("confirm", "confirm", "Confirm a booked appointment")
_action_route("check_in", "check-in", "Check the patient in")
_action_route("complete", "complete", "Mark a checked-in appointment completed")
_action_route("no_show", "no-show", "Mark that the patient did not come")


@booking.post(
    "/appointments/{appointment_id}/cancel",
    response_model=AppointmentRead,
    responses=CONFLICTS,
    summary="Cancel, with a reason",
)
async def cancel(
    appointment_id: uuid.UUID,
    body: CancelBody,
    session: Session,
    who: Principal = Requires("appointments:write"),
) -> AppointmentRead:
    return _read(await service.cancel(session, who, appointment_id, reason=body.reason))


@booking.post(
    "/appointments/{appointment_id}/reschedule",
    response_model=AppointmentRead,
    responses=CONFLICTS,
    summary="Move to another start (and optionally practitioner) atomically, keeping history",
)
async def reschedule(
    appointment_id: uuid.UUID,
    body: RescheduleBody,
    session: Session,
    who: Principal = Requires("appointments:write"),
) -> AppointmentRead:
    row = await service.reschedule(
        session,
        who,
        appointment_id,
        start_at=body.start_at,
        practitioner_id=body.practitioner_id,
        location_id=body.location_id,
        reason=body.reason,
    )
    return _read(row)


@booking.get(
    "/appointments/{appointment_id}/history",
    response_model=list[ChangeRead],
    summary="Every change, oldest first",
)
async def history(
    appointment_id: uuid.UUID, session: Session, who: Principal = Requires("appointments:read")
) -> list[ChangeRead]:
    row = await service.get_appointment(session, who, appointment_id)
    return [ChangeRead.model_validate(c) for c in await service.history_of(session, row.id)]


@booking.get(
    "/appointments/{appointment_id}/invite.ics",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}, "description": "iCalendar (RFC 5545)"}},
    summary="The appointment as an iCalendar invite",
)
async def invite(
    appointment_id: uuid.UUID, session: Session, who: Principal = Requires("appointments:read")
) -> Response:
    body = await service.ics(session, who, appointment_id)
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="appointment-{appointment_id}.ics"'},
    )


@booking.get(
    "/patients/{patient_id}/appointments",
    response_model=Page[AppointmentRead],
    summary="A patient's appointment history, newest first",
)
async def patient_history(
    patient_id: uuid.UUID, session: Session, paging: Paging, who: Principal = Requires("appointments:read")
) -> Page[AppointmentRead]:
    try:
        rows, total = await service.patient_history(
            session,
            who,
            patient_id,
            limit=paging.limit,
            offset=paging.offset,
        )
    except PatientMoved as moved:
        moved.headers["Location"] = f"/patients/{moved.survivor_id}/appointments"
        raise
    return Page(items=[_read(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset)


@booking.get(
    "/practitioners/{practitioner_id}/agenda",
    response_model=Agenda,
    summary="A practitioner's agenda for a day or a week (in the practitioner's zone)",
)
async def agenda(
    practitioner_id: uuid.UUID,
    session: Session,
    start_date: date,
    days: Annotated[int, Query(ge=1, le=31, description="1 for a day, 7 for a week")] = 1,
    who: Principal = Requires("appointments:read"),
) -> Agenda:
    _, zone, rows = await service.agenda(
        session,
        who,
        practitioner_id,
        start_date=start_date,
        days=days,
    )
    entries = [
        AgendaEntry(
            appointment=_read(a),
            local_start=a.start_at.astimezone(ZoneInfo(loc.timezone)),
            local_end=a.end_at.astimezone(ZoneInfo(loc.timezone)),
            timezone=loc.timezone,
            service_name=s.name,
            location_name=loc.name,
        )
        for a, s, loc in rows
    ]
    return Agenda(
        practitioner_id=practitioner_id,
        start_date=start_date,
        end_date=date.fromordinal(start_date.toordinal() + days - 1),
        timezone=zone,
        entries=entries,
    )
