"""Scenario: an appointment reminder travels from the event to the patient and back.

appointment.reminder_due → notifications picks the patient's channel → communications sends through
Twilio (faked at the HTTP layer) → Twilio's status callback marks it delivered; a patient who then
replies STOP gets no more reminders on that channel, and the next reminder falls back to email.
"""

from __future__ import annotations

import uuid

import httpx
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import sandbox
from prm.communications.models import Communication
from prm.core import events, jobs
from prm.identity.models import Organisation
from prm.settings import Settings
from tests.fixtures.messaging import (  # noqa: F401  (fixtures)
    TWILIO_SID,
    TwilioFake,
    inbound,
    messaging_settings,
    patient_with_contacts,
    post_twilio,
    twilio_api,
    twilio_org,
)


def _reminder(patient_id: uuid.UUID) -> dict[str, object]:
    return {
        "reminder_id": str(uuid.uuid4()),
        "appointment_id": str(uuid.uuid4()),
        "patient_id": str(patient_id),
        "offset_minutes": 1440,
        "start_at": "2026-12-08T09:30:00+00:00",
        "local_start": "2026-12-08T10:30:00",
        "timezone": "Europe/Madrid",
        "service_name": "Cleaning",
        "practitioner_name": "Dr Ruiz",
        "location_name": "Main St",
    }


async def test_reminder_is_sent_delivered_and_respects_stop(
    session: AsyncSession,
    twilio_org: Organisation,  # noqa: F811
    twilio_api: TwilioFake,  # noqa: F811
    messaging_settings: Settings,  # noqa: F811
    anon_client: httpx.AsyncClient,
) -> None:
    patient = await patient_with_contacts(session, twilio_org, given_name="Eva", preferred_channel="sms")
    with structlog.testing.capture_logs() as logs:
        await events.publish(
            session,
            events.Event(
                type="appointment.reminder_due", org_id=twilio_org.id, payload=_reminder(patient.id)
            ),
        )
        await jobs.run_due(session)
        [comm] = await session.scalars(select(Communication).where(Communication.patient_id == patient.id))
        assert (comm.channel, comm.purpose, comm.status, comm.provider) == (
            "sms",
            "reminders",
            "sent",
            "twilio",
        )
        assert "Hi Eva" in twilio_api.sent_forms()[-1]["Body"][0]

        r = await post_twilio(
            anon_client,
            messaging_settings,
            "/webhooks/twilio/status",
            {"MessageSid": comm.provider_message_id, "MessageStatus": "delivered", "AccountSid": TWILIO_SID},
        )
        assert r.status_code == 200
        await session.refresh(comm)
        assert comm.status == "delivered"

        await inbound(
            anon_client, messaging_settings, from_=patient.primary_phone, body="Stop", channel="sms"
        )
        await events.publish(
            session,
            events.Event(
                type="appointment.reminder_due", org_id=twilio_org.id, payload=_reminder(patient.id)
            ),
        )
        await jobs.run_due(session)
    [fallback] = await sandbox.outbox(session, twilio_org.id, patient_id=patient.id)
    assert fallback.channel == "email" and fallback.payload["to"] == patient.primary_email
    assert len(twilio_api.messages.calls) == 1
    # logs name ids and codes, never the patient's number, address or the message text
    text = repr(logs)
    assert patient.primary_phone not in text and patient.primary_email not in text and "Hi Eva" not in text
