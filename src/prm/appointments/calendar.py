"""An appointment as an iCalendar document (RFC 5545) for calendar invites. Pure: no I/O.

Times are written in UTC (`DTSTART:...Z`), which every client converts to its own zone; the
location's zone is named in the description for people reading the invite. The UID is stable per
appointment and SEQUENCE grows with each reschedule, so a re-sent invite updates the event instead
of adding a second one; a cancelled appointment is `STATUS:CANCELLED` with `METHOD:CANCEL`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from icalendar import Calendar, Event

PRODID = "-//PRM//appointments//EN"


@dataclass(frozen=True)
class Invite:
    appointment_id: uuid.UUID
    start_at: datetime
    end_at: datetime
    status: str
    sequence: int
    summary: str  # e.g. "Cleaning with Dr Vega"
    location: str
    timezone: str
    mode: str  # in_person | video
    stamp: datetime
    organizer_email: str | None = None


def uid(appointment_id: uuid.UUID, domain: str = "prm.dev") -> str:
    return f"appointment-{appointment_id}@{domain}"


def to_ics(invite: Invite, *, domain: str = "prm.dev") -> bytes:
    cancelled = invite.status in ("cancelled", "no_show")
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "CANCEL" if cancelled else "PUBLISH")
    event = Event()
    event.add("uid", uid(invite.appointment_id, domain))
    event.add("dtstamp", invite.stamp)
    event.add("dtstart", invite.start_at)
    event.add("dtend", invite.end_at)
    event.add("sequence", invite.sequence)
    event.add("summary", invite.summary)
    event.add("location", invite.location)
    where = "video call" if invite.mode == "video" else invite.location
    event.add(
        "description",
        f"{invite.summary} ({where}). Times shown in your calendar's zone; the clinic's zone is {invite.timezone}.",
    )
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("transp", "OPAQUE")
    if invite.organizer_email:
        event.add("organizer", f"mailto:{invite.organizer_email}")
    cal.add_component(event)
    return cal.to_ical()
