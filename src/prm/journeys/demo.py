"""Demo data: the demo clinic's care pathways, published, with the templates they send.

* `new-patient` (once per patient, on `patient.created`): welcome → booking (an invitation; after
  3 days without a booking, a ticket for the front desk) → booked (a visit note; the appointment
  reminders themselves are the notifications module's) → follow-up (after the visit is completed:
  the next morning at 10:00, ask for feedback) → end.
* `post-visit` (once per appointment, on `appointment.completed`): in 6 weeks, at 09:30 local time,
  invite the patient to book their follow-up.

They are seeded before the demo patients, so the patients' `patient.created` events enrol them in
`new-patient` as soon as the worker delivers them: `make run` shows running journeys at once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core.auth import Principal
from prm.journeys import service
from prm.journeys.models import Journey
from prm.journeys.schemas import JourneyCreate
from prm.notifications import service as notifications
from prm.notifications.schemas import TemplateCreate

TEMPLATES: dict[str, tuple[str, str]] = {  # key → (email subject, text)
    "journey_welcome": ("Welcome to {{ clinic }}",
                        "Welcome to {{ clinic }}, {{ patient_name }}! Reply to this message any time to book."),
    "journey_book_invite": ("Book your first visit",
                            "{{ patient_name }}, reply to this message to book your first visit with us."),
    "journey_visit_prep": ("Before your visit",
                           "{{ patient_name }}, your visit is booked: please arrive 10 minutes early."),
    "journey_feedback": ("How was your visit?", "{{ patient_name }}, how was your visit? Reply from 1 to 5."),
    "journey_follow_up": ("Time for your follow-up",
                          "{{ patient_name }}, it is time for your follow-up visit: reply to book it."),
}

NEW_PATIENT: dict[str, Any] = {
    "triggers": [{"event": "patient.created"}],
    "exit_rules": [{"event": "patient.updated",
                    "conditions": [{"field": "patient.status", "op": "eq", "value": "inactive"}],
                    "reason": "inactive"}],
    "stages": [
        {"key": "welcome", "name": "Welcome", "entry": "send-welcome", "transitions": ["booking"]},
        {"key": "booking", "name": "Booking", "entry": "invite", "transitions": ["booked"],
         "advance_on": [{"event": "appointment.booked", "to": "booked"}]},
        {"key": "booked", "name": "Booked (reminders by notifications)", "entry": "visit-prep",
         "transitions": ["booking", "follow-up"],
         "advance_on": [{"event": "appointment.completed", "to": "follow-up"},
                        {"event": "appointment.cancelled", "to": "booking"}]},
        {"key": "follow-up", "name": "Follow-up", "entry": "next-morning"},
    ],
    "steps": [
        {"id": "send-welcome", "kind": "send_notification", "template_key": "journey_welcome",
         "variables": {"clinic": "the Demo Clinic"}, "next": "to-booking"},
        {"id": "to-booking", "kind": "advance_stage", "to": "booking"},
        {"id": "invite", "kind": "send_notification", "template_key": "journey_book_invite",
         "next": "give-them-time"},
        {"id": "give-them-time", "kind": "wait", "days": 3, "next": "front-desk"},
        {"id": "front-desk", "kind": "create_ticket", "subject": "New patient has not booked yet",
         "description": "Call to help them book their first visit.", "category": "follow-up"},
        {"id": "visit-prep", "kind": "send_notification", "template_key": "journey_visit_prep"},
        {"id": "next-morning", "kind": "wait_until", "at": "10:00", "next": "feedback"},
        {"id": "feedback", "kind": "send_notification", "template_key": "journey_feedback", "next": "done"},
        {"id": "done", "kind": "end"},
    ],
}

POST_VISIT: dict[str, Any] = {
    "triggers": [{"event": "appointment.completed"}],
    "stages": [{"key": "follow-up", "name": "Follow-up booking", "entry": "six-weeks"}],
    "steps": [
        {"id": "six-weeks", "kind": "wait", "days": 42, "next": "morning"},
        {"id": "morning", "kind": "wait_until", "at": "09:30", "weekdays": ["mon", "tue", "wed", "thu", "fri"],
         "next": "invite"},
        {"id": "invite", "kind": "send_notification", "template_key": "journey_follow_up"},
    ],
}


async def _templates(session: AsyncSession, org: Any, who: Principal) -> None:
    for key, (subject, text) in TEMPLATES.items():
        variables = ["patient_name", "clinic"] if "clinic" in text else ["patient_name"]
        for channel in ("sms", "whatsapp", "email"):
            if await notifications.find_template(session, org.id, key, channel, "en") is not None:
                continue
            await notifications.create_template(
                session, who,
                TemplateCreate(key=key, channel=channel, body=text,  # type: ignore[arg-type]
                               subject=subject if channel == "email" else None, variables=variables,
                               description="Demo journey template"),
            )


async def seed(session: AsyncSession, org: Any, context: dict[str, Any]) -> None:
    if await session.scalar(select(Journey.id).where(Journey.org_id == org.id).limit(1)) is not None:
        return
    who = Principal.system(org.id)
    await _templates(session, org, who)
    created = []
    for key, name, description, definition, policy, key_field in (
        ("new-patient", "New patient", "Welcome, book, prepare, follow up.", NEW_PATIENT, "once_per_patient", None),
        ("post-visit", "Post-visit follow-up", "Invite to the follow-up visit six weeks later.", POST_VISIT,
         "once_per_key", "event.appointment_id"),
    ):
        journey = await service.create(session, who, JourneyCreate.model_validate({
            "key": key, "name": name, "description": description, "definition": definition,
            "entry_policy": policy, "entry_key_field": key_field,
        }))
        await service.publish(session, who, journey.id)
        created.append(journey)
    context["journeys"] = created
