"""Documentation and examples of scheduling: practitioners, locations, services, slots, appointments
(see docs/api-examples.md)."""

from __future__ import annotations

from prm.core.apidocs import Err, Op, ids, not_found

NOT_FOUND = {
    **not_found("practitioner", "practitioner_not_found", "practitioner"),
    **not_found("location", "location_not_found", "location"),
    **not_found("service", "service_not_found", "service"),
    **not_found("appointment", "appointment_not_found", "appointment"),
    **not_found("rule", "rule_not_found", "availability rule"),
    **not_found("exception", "exception_not_found", "availability exception"),
}
TRANSITION = Err(
    409,
    "invalid_transition",
    "Cannot check in an appointment that is cancelled; allowed: none (final status)",
    "The appointment's status does not allow this action (`allowed_actions` lists what does)",
    extra={"status_now": "cancelled", "action": "check_in", "allowed_actions": [], "allowed_transitions": []},
)
SLOT_TAKEN = Err(
    409,
    "slot_taken",
    "That time is already taken for this practitioner",
    "The practitioner is already booked at an overlapping time",
)
OUTSIDE = Err(
    422,
    "outside_availability",
    "start_at: outside the practitioner's availability",
    "The time is outside the practitioner's working hours or in time off",
)
BOOKING = {
    "patient_id": ids.patient,
    "service_id": ids.service,
    "practitioner_id": ids.practitioner,
    "location_id": ids.location,
    "start_at": "2026-03-24T11:00:00+01:00",
    "notes": "Prefers morning appointments",
    "source": "website",
}

OPERATIONS = {
    "GET /practitioners": Op("The organisation's practitioners, active and inactive, by name.", given=["practitioner"]),
    "POST /practitioners": Op(
        "Adds a practitioner; give them availability rules next, and link them to services.",
        body={
            "name": "Dr Elena Vega",
            "title": "Dentist",
            "email": "ana.ruiz@demo-clinic.example",
            "timezone": "Europe/Madrid",
            "user_id": ids.user,
        },
        errors=[
            Err(
                422,
                "unknown_user",
                "user_id: no staff user in this organisation",
                "`user_id` names no staff user of the organisation",
            )
        ],
    ),
    "GET /practitioners/{practitioner_id}": Op(
        "One practitioner: name, title, time zone, linked staff user and whether they take bookings."
    ),
    "PATCH /practitioners/{practitioner_id}": Op(
        "Changes only the fields sent; `is_active: false` stops new bookings (existing appointments stay).",
        body={"title": "Orthodontist", "is_active": True},
    ),
    "GET /practitioners/{practitioner_id}/availability/rules": Op(
        "The weekly working hours (weekday 0 = Monday), each at a location and in the practitioner's time zone."
    ),
    "POST /practitioners/{practitioner_id}/availability/rules": Op(
        "Adds weekly working hours: local times at a location, optionally between two dates.",
        body={
            "location_id": ids.location,
            "weekday": 5,
            "start_time": "09:00",
            "end_time": "13:00",
            "valid_from": "2026-04-01",
            "valid_until": "2026-06-30",
        },
    ),
    "DELETE /practitioners/{practitioner_id}/availability/rules/{rule_id}": Op(
        "Removes a weekly rule; booked appointments stay."
    ),
    "GET /practitioners/{practitioner_id}/availability/exceptions": Op(
        "Time off and extra hours: dated exceptions to the weekly rules.", given=["exception"]
    ),
    "POST /practitioners/{practitioner_id}/availability/exceptions": Op(
        "Adds time off (no slots then) or extra hours (slots at a location outside the weekly rules).",
        body={
            "kind": "time_off",
            "start_at": "2026-03-27T09:00:00+01:00",
            "end_at": "2026-03-27T14:00:00+01:00",
            "reason": "Training day",
        },
        errors=[
            Err(
                422,
                "location_required",
                "location_id: extra hours need a location",
                "`extra_hours` without `location_id`",
            )
        ],
    ),
    "DELETE /practitioners/{practitioner_id}/availability/exceptions/{exception_id}": Op(
        "Removes a time-off or extra-hours exception."
    ),
    "GET /locations": Op(
        "The organisation's locations (clinics, rooms, or a virtual location for video).", given=["location"]
    ),
    "POST /locations": Op(
        "Adds a location; its time zone is where its availability is read.",
        body={"name": "Clínica Centro", "address": "Calle Mayor 1, 28013 Madrid", "timezone": "Europe/Madrid"},
    ),
    "GET /locations/{location_id}": Op("One location: name, address, time zone, virtual or not, active or not."),
    "PATCH /locations/{location_id}": Op(
        "Changes only the fields sent; a new time zone applies to availability read from then on.",
        body={"address": "Calle Mayor 14, 28013 Madrid"},
    ),
    "GET /services": Op(
        "The bookable services; `q` searches names and keywords.", query={"q": "clean"}, given=["service"]
    ),
    "POST /services": Op(
        "Adds a bookable service: its duration, buffers, notice, horizon and who offers it.",
        body={
            "name": "Dental cleaning",
            "description": "Scale and polish",
            "duration_minutes": 30,
            "buffer_after_minutes": 5,
            "mode": "in_person",
            "min_notice_minutes": 120,
            "horizon_days": 60,
            "keywords": ["limpieza", "hygiene"],
            "practitioner_ids": [ids.practitioner],
        },
        errors=[
            Err(
                422,
                "unknown_practitioner",
                "practitioner_ids.0: no practitioner",
                "A practitioner id is unknown in the organisation",
            )
        ],
    ),
    "GET /services/{service_id}": Op(
        "One service: duration, buffers, notice, horizon, slot step, keywords and the practitioners offering it."
    ),
    "PATCH /services/{service_id}": Op(
        "Changes the fields sent; `practitioner_ids` replaces the list.",
        body={"duration_minutes": 45, "practitioner_ids": [ids.practitioner]},
    ),
    "GET /slots": Op(
        "Free start times for a service between two dates (inclusive, in the location's time zone), from "
        "the practitioners' rules minus exceptions, bookings, notice and buffers. The example asks for the "
        "compact shape (starts by practitioner and local day); without `shape` the answer is the full list "
        "of slot objects.",
        query={"service_id": ids.service, "start_date": "2026-03-24", "end_date": "2026-03-25", "limit": 5,
               "shape": "compact"},
    ),
    "POST /appointments": Op(
        "Books an appointment. Double booking is impossible (a database exclusion constraint): a taken time "
        "is a 409. Send an `Idempotency-Key` header to retry safely.",
        body=BOOKING,
        headers={"Idempotency-Key": "booking-7f3c2a"},
        errors=[
            SLOT_TAKEN,
            OUTSIDE,
            Err(
                409,
                "patient_overlap",
                "The patient already has an appointment at an overlapping time",
                "The patient is booked elsewhere at that time",
            ),
            Err(
                422,
                "too_short_notice",
                "start_at: needs at least 120 minutes' notice",
                "Too close to now for the service's `min_notice_minutes`",
            ),
            Err(
                422,
                "service_not_offered",
                "practitioner_id: this practitioner does not offer the service",
                "The practitioner is not linked to the service",
            ),
        ],
    ),
    "GET /appointments": Op(
        "Appointments, filtered by patient, practitioner or status.",
        query={"practitioner_id": ids.practitioner, "status": "booked"},
        given=["appointment"],
    ),
    "GET /appointments/{appointment_id}": Op(
        "One appointment: patient, service, practitioner, location, start and end (UTC), status and its stamps "
        "(confirmed, checked in, completed, cancelled with the reason)."
    ),
    "PATCH /appointments/{appointment_id}": Op(
        "Changes the notes (times change by rescheduling).", body={"notes": "Bring the previous X-rays"}
    ),
    "POST /appointments/{appointment_id}/confirm": Op(
        "The patient confirmed: `booked` → `confirmed`.", errors=[TRANSITION]
    ),
    "POST /appointments/{appointment_id}/check-in": Op(
        "The patient arrived at the front desk: `booked` or `confirmed` → `checked_in`.", errors=[TRANSITION]
    ),
    "POST /appointments/{appointment_id}/complete": Op(
        "The visit took place: `checked_in` → `completed`.",
        path={"appointment_id": ids.checked_in_appointment},
        errors=[TRANSITION],
    ),
    "POST /appointments/{appointment_id}/no-show": Op(
        "The patient did not come: → `no_show`, only once the appointment has started.",
        at="2026-03-24T10:20:00+01:00",
        errors=[
            TRANSITION,
            Err(
                409,
                "not_started",
                "A patient can only be marked as a no-show once the appointment has started",
                "The appointment has not started yet",
            ),
        ],
    ),
    "POST /appointments/{appointment_id}/cancel": Op(
        "Cancels; the time is free again and the patient is told (per the notification settings).",
        body={"reason": "Patient asked to cancel by WhatsApp"},
        errors=[TRANSITION],
    ),
    "POST /appointments/{appointment_id}/reschedule": Op(
        "Moves the appointment (and optionally to another practitioner or location) in one step; the old "
        "time is freed only if the new one is free.",
        body={"start_at": "2026-03-25T12:00:00+01:00", "reason": "Patient asked for Wednesday"},
        errors=[TRANSITION, SLOT_TAKEN, OUTSIDE],
    ),
    "GET /appointments/{appointment_id}/history": Op("Every status change and reschedule, oldest first."),
    "GET /appointments/{appointment_id}/invite.ics": Op(
        "The appointment as an iCalendar invitation (`text/calendar`) to attach or download.",
        response="BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//PRM//Appointments//EN\r\nMETHOD:REQUEST\r\n"
        "BEGIN:VEVENT\r\nSUMMARY:Dental cleaning\r\nDTSTART:20260324T090000Z\r\n"
        "DTEND:20260324T093000Z\r\nLOCATION:Clínica Centro\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    ),
    "GET /patients/{patient_id}/appointments": Op("A patient's appointments, upcoming first.", given=["appointment"]),
    "GET /practitioners/{practitioner_id}/agenda": Op(
        "A practitioner's day-by-day agenda: appointments with patient and service names.",
        query={"start_date": "2026-03-24", "days": 7},
        given=["appointment"],
    ),
}
