"""Shared builders for journey tests: the plan's new-patient pathway and its templates."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from prm.identity.models import Organisation
from prm.notifications import service as notifications
from prm.notifications.schemas import TemplateCreate
from tests.fixtures.factories import principal
from tests.fixtures.messaging import messaging_settings  # noqa: F401  (fixture)

JOURNEY_TEMPLATES = {
    "journey_welcome": "Welcome to the clinic, {{ patient_name }}!",
    "journey_book_invite": "{{ patient_name }}, reply to this message to book your first visit.",
    "journey_feedback": "{{ patient_name }}, how was your visit? Reply 1-5.",
    "journey_visit_prep": "{{ patient_name }}, your visit is confirmed: please arrive 10 minutes early.",
}


async def add_templates(session: AsyncSession, org: Organisation) -> None:
    for key, body in JOURNEY_TEMPLATES.items():
        for channel in ("sms", "whatsapp"):
            await notifications.create_template(
                session, principal(org),
                TemplateCreate(key=key, channel=channel, body=body, variables=["patient_name"]),  # type: ignore[arg-type]
            )


@pytest.fixture
async def templates(session: AsyncSession, org: Organisation) -> None:
    await add_templates(session, org)


def new_patient_definition(*, trigger: bool = True) -> dict[str, Any]:
    """welcome (send welcome → advance) → booking (invite; booked → confirmation) →
    confirmation (send confirmation → advance) → completed (final)."""
    return {
        "triggers": [{"event": "patient.created"}] if trigger else [],
        "exit_rules": [{"event": "patient.updated", "conditions": [
            {"field": "patient.status", "op": "eq", "value": "inactive"}], "reason": "inactive"}],
        "stages": [
            {"key": "welcome", "name": "Welcome", "entry": "send-welcome", "transitions": ["booking"]},
            {"key": "booking", "name": "Booking", "entry": "invite", "transitions": ["confirmation"],
             "advance_on": [{"event": "appointment.booked", "to": "confirmation"}]},
            {"key": "confirmation", "name": "Confirmation", "entry": "confirm", "transitions": ["completed"]},
            {"key": "completed", "name": "Completed"},
        ],
        "steps": [
            {"id": "send-welcome", "kind": "send_notification", "template_key": "journey_welcome"},
            {"id": "invite", "kind": "send_notification", "template_key": "journey_book_invite"},
            {"id": "confirm", "kind": "send_notification", "template_key": "journey_visit_prep",
             "next": "to-completed"},
            {"id": "to-completed", "kind": "advance_stage", "to": "completed"},
        ],
    }


def journey_body(key: str = "new-patient", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": key,
        "name": "New patient",
        "description": "Welcome, book, confirm",
        "entry_policy": "once_per_patient",
        "definition": new_patient_definition(),
    }
    body.update(overrides)
    return body
