"""Scenario "Notification Dispatch": an appointment event travels to the patient and back.

appointment.booked / .rescheduled / .cancelled / .reminder_due → notifications renders the template
for the patient's language and picks the patient's channel (consent-aware fallback) → communications
sends through Twilio (faked at the HTTP layer) or the sandbox → Twilio's status callback marks it
delivered. Withdrawn consent moves the next notice to the next channel; a repeated event sends
nothing twice; an organisation can turn the notices off.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import sandbox
from prm.communications.models import Communication
from prm.core import clock, events, jobs
from prm.core.events import EventDelivery, EventRecord
from prm.identity.models import Organisation
from prm.notifications import service as notifications
from prm.notifications import subscribers
from prm.notifications.schemas import NotificationSettingsUpdate
from prm.settings import Settings
from tests.fixtures.factories import principal
from tests.fixtures.messaging import (  # noqa: F401  (fixtures)
    TWILIO_SID,
    TwilioFake,
    inbound,
    messaging_settings,
    new_phone,
    patient_with_contacts,
    post_twilio,
    twilio_api,
    twilio_org,
)
from tests.fixtures.settings_switch import use_settings
from tests.integration.appointments.conftest import NOW, Clinic, at_local, build_clinic


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


# --- appointment notices: booked, rescheduled, cancelled --------------------------------------------


async def _book(client: httpx.AsyncClient, clinic: Clinic, patient_id: uuid.UUID, day: int, hour: int) -> str:
    r = await client.post(
        "/appointments",
        json={
            "patient_id": str(patient_id),
            "service_id": str(clinic.cleaning.id),
            "practitioner_id": str(clinic.vega.id),
            "start_at": at_local(day, hour).isoformat(),
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _notices(session: AsyncSession, patient_id: uuid.UUID, template_key: str) -> list[Communication]:
    return list(
        await session.scalars(
            select(Communication)
            .where(Communication.patient_id == patient_id, Communication.template_key == template_key)
            .order_by(Communication.created_at, Communication.id)
        )
    )


async def test_multi_channel_notification_dispatch(
    session: AsyncSession,
    twilio_org: Organisation,  # noqa: F811
    twilio_api: TwilioFake,  # noqa: F811
    messaging_settings: Settings,  # noqa: F811
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
) -> None:
    """Booked through the API → `appointment.booked` → `appointment_confirmation` rendered and sent
    on the preferred channel (SMS over Twilio) → the status callback marks it delivered; with SMS
    consent withdrawn, the rescheduling notice falls back (WhatsApp: window closed) to email."""
    clinic = await build_clinic(session, twilio_org.id)
    patient = await patient_with_contacts(session, twilio_org, given_name="Eva", preferred_channel="sms")
    with clock.frozen(NOW):
        appointment_id = await _book(client, clinic, patient.id, 25, 10)
        await jobs.run_due(session)
        [confirmation] = await _notices(session, patient.id, "appointment_confirmation")
        assert (confirmation.channel, confirmation.purpose, confirmation.status, confirmation.provider) == (
            "sms",
            "care",
            "sent",
            "twilio",
        )
        [form] = twilio_api.sent_forms()
        assert form["To"] == [patient.primary_phone]
        assert form["Body"] == [
            "Hi Eva, your Cleaning appointment with Dr Vega is booked for Wednesday 25 March 2026, 10:00 "
            "at Centro."
        ]  # the location's local time (Madrid, UTC+1), not UTC

        # Twilio reports delivery
        r = await post_twilio(
            anon_client,
            messaging_settings,
            "/webhooks/twilio/status",
            {"MessageSid": confirmation.provider_message_id, "MessageStatus": "delivered", "AccountSid": TWILIO_SID},
        )
        assert r.status_code == 200
        r = await client.get(f"/communications/{confirmation.id}")
        assert r.json()["status"] == "delivered" and r.json()["delivered_at"] is not None

        # the patient withdraws SMS consent; the next notice goes on the next channel that can reach
        # them: WhatsApp is skipped (no conversation in the last 24 h, no approved template), email
        r = await client.post(
            f"/patients/{patient.id}/consent", json={"changes": [{"channel": "sms", "granted": False}]}
        )
        assert r.status_code == 200, r.text
        r = await client.post(
            f"/appointments/{appointment_id}/reschedule", json={"start_at": at_local(26, 11).isoformat()}
        )
        assert r.status_code == 200, r.text
        await jobs.run_due(session)
    [moved] = await _notices(session, patient.id, "appointment_rescheduled")
    assert moved.channel == "email" and moved.status == "sent"
    assert [s["channel"] for s in moved.details["fallback_from"]] == ["sms", "whatsapp"]
    [mail] = await sandbox.outbox(session, twilio_org.id, patient_id=patient.id, channel="email")
    assert mail.payload["to"] == patient.primary_email
    assert "Wednesday 25 March 2026, 10:00" in mail.payload["text"]
    assert "moved to Thursday 26 March 2026, 11:00" in mail.payload["text"]
    assert len(twilio_api.messages.calls) == 1  # nothing more went out by SMS


async def test_reschedule_and_cancel_notices(
    session: AsyncSession,
    org: Organisation,
    messaging_settings: Settings,  # noqa: F811
    client: httpx.AsyncClient,
) -> None:
    clinic = await build_clinic(session, org.id)
    ana = await patient_with_contacts(session, org, given_name="Ana", preferred_channel="sms")
    lola = await patient_with_contacts(
        session, org, given_name="Lola", preferred_channel="email", preferred_language="es"
    )
    with clock.frozen(NOW) as c:

        async def then(response: Any = None) -> None:
            if response is not None:
                assert response.status_code == 200, response.text
            await jobs.run_due(session)
            c.advance(timedelta(minutes=1))  # one message after the other in the outbox

        first = await _book(client, clinic, ana.id, 25, 10)
        second = await _book(client, clinic, lola.id, 26, 12)
        await then()
        moved = {"start_at": at_local(27, 9).isoformat()}
        await then(await client.post(f"/appointments/{first}/reschedule", json=moved))
        await then(await client.post(f"/appointments/{first}/cancel", json={"reason": "feeling better"}))
        await then(await client.post(f"/appointments/{second}/cancel", json={"reason": "viaje"}))

    sms = [m.payload["body"] for m in await sandbox.outbox(session, org.id, patient_id=ana.id)]
    assert sms == [
        "Hi Ana, your Cleaning appointment with Dr Vega is booked for Wednesday 25 March 2026, 10:00 at Centro.",
        "Hi Ana, your Cleaning appointment on Wednesday 25 March 2026, 10:00 has been moved to "
        "Friday 27 March 2026, 09:00 with Dr Vega at Centro.",
        "Hi Ana, your Cleaning appointment on Friday 27 March 2026, 09:00 has been cancelled. "
        "Reply to book a new time.",
    ]
    [cancelled] = await _notices(session, ana.id, "appointment_cancelled")
    assert (cancelled.channel, cancelled.purpose) == ("sms", "care")

    # a Spanish-speaking patient gets the Spanish templates, dates in Spanish, by email
    mails = await sandbox.outbox(session, org.id, patient_id=lola.id)
    assert [m.channel for m in mails] == ["email", "email"]
    assert mails[0].payload["subject"] == "Cita confirmada: Cleaning el jueves 26 de marzo de 2026, 12:00"
    assert mails[1].payload["subject"] == "Cita cancelada: Cleaning el jueves 26 de marzo de 2026, 12:00"
    assert "ha sido cancelada" in mails[1].payload["text"]


async def test_appointment_notice_is_sent_once_when_the_event_is_delivered_twice(
    session: AsyncSession,
    org: Organisation,
    messaging_settings: Settings,  # noqa: F811
    client: httpx.AsyncClient,
) -> None:
    clinic = await build_clinic(session, org.id)
    patient = await patient_with_contacts(session, org, preferred_channel="sms")
    with clock.frozen(NOW):
        await _book(client, clinic, patient.id, 25, 10)
        await jobs.run_due(session)
        record = await session.scalar(
            select(EventRecord).where(EventRecord.org_id == org.id, EventRecord.type == "appointment.booked")
        )
        assert record is not None
        event = await events.load(session, record.id)
        assert event is not None
        # at-least-once: the delivery job runs again, and the handler runs again as if the first
        # run's delivery record had been lost (the worker died before committing it)
        assert await events.deliver(
            session, event_id=str(event.id), subscriber="notifications.appointment_booked"
        ) is False
        await subscribers.send_appointment_notice(session, event)
        await subscribers.send_appointment_notice(session, event)
        await jobs.run_due(session)
    [confirmation] = await _notices(session, patient.id, "appointment_confirmation")
    assert confirmation.idempotency_key == f"appointment.booked:{event.id}"
    assert len(await sandbox.outbox(session, org.id, patient_id=patient.id)) == 1
    # the handler's repeats found the key at the insert and left no job of their own
    sends = list(await session.scalars(text(
        "SELECT args->>'communication_id' FROM procrastinate_jobs WHERE task_name = 'communications.send' "
        "AND args->>'org_id' = :org"), {"org": str(org.id)}))
    assert sends == [str(confirmation.id)]


async def test_organisation_can_turn_appointment_notices_off(
    session: AsyncSession,
    org: Organisation,
    messaging_settings: Settings,  # noqa: F811
    client: httpx.AsyncClient,
    make_client: Any,
) -> None:
    clinic = await build_clinic(session, org.id)
    patient = await patient_with_contacts(session, org, preferred_channel="sms")
    r = await client.get("/notifications/settings")
    assert r.status_code == 200
    assert r.json() == {
        "appointment_booked": True,
        "appointment_rescheduled": True,
        "appointment_cancelled": True,
        "overrides": {},
        "updated_at": None,
    }
    coordinator = await make_client("coordinator")
    assert (await coordinator.get("/notifications/settings")).status_code == 200
    r = await coordinator.patch("/notifications/settings", json={"appointment_booked": False})
    assert r.status_code == 403  # an organisation-wide choice: admins only
    r = await client.patch(
        "/notifications/settings", json={"appointment_booked": False, "appointment_rescheduled": False}
    )
    assert r.status_code == 200, r.text
    assert r.json()["appointment_booked"] is False and r.json()["appointment_cancelled"] is True
    assert r.json()["overrides"] == {"appointment_booked": False, "appointment_rescheduled": False}
    r = await client.patch("/notifications/settings", json={"nonsense": True})
    assert r.status_code == 422

    with clock.frozen(NOW):
        appointment_id = await _book(client, clinic, patient.id, 25, 10)
        r = await client.post(
            f"/appointments/{appointment_id}/reschedule", json={"start_at": at_local(26, 10).isoformat()}
        )
        assert r.status_code == 200, r.text
        await jobs.run_due(session)
        assert await sandbox.outbox(session, org.id, patient_id=patient.id) == []  # both turned off
        # `null` goes back to the service default (on); cancelling is still on
        r = await client.patch("/notifications/settings", json={"appointment_booked": None})
        assert r.json()["appointment_booked"] is True and r.json()["overrides"] == {"appointment_rescheduled": False}
        r = await client.post(f"/appointments/{appointment_id}/cancel", json={"reason": "no longer needed"})
        assert r.status_code == 200, r.text
        await jobs.run_due(session)
    [notice] = await sandbox.outbox(session, org.id, patient_id=patient.id)
    assert "has been cancelled" in notice.payload["body"]
    # nothing failed: the deliveries that sent nothing were recorded as done
    delivered = await session.scalar(
        select(func.count())
        .select_from(EventDelivery)
        .join(EventRecord, EventRecord.id == EventDelivery.event_id)
        .where(EventRecord.org_id == org.id, EventDelivery.subscriber.like("notifications.appointment_%"))
    )
    assert delivered == 3


async def test_service_default_applies_to_organisations_without_a_choice(
    session: AsyncSession,
    org: Organisation,
    other_org: Organisation,
    messaging_settings: Settings,  # noqa: F811
) -> None:
    """APPOINTMENT_NOTIFICATIONS=cancelled: only cancellations are told, unless an organisation chose."""
    only_cancelled = messaging_settings.model_copy(update={"appointment_notifications": "cancelled"})
    with use_settings(only_cancelled):
        await notifications.update_notification_settings(
            session,
            principal(other_org),
            NotificationSettingsUpdate(appointment_booked=True),
        )
        assert await notifications.appointment_notice_enabled(session, org.id, "booked") is False
        assert await notifications.appointment_notice_enabled(session, org.id, "cancelled") is True
        assert await notifications.appointment_notice_enabled(session, other_org.id, "booked") is True
        assert await notifications.appointment_notice_enabled(session, other_org.id, "rescheduled") is False
        assert (await notifications.notification_settings(session, other_org.id))["overrides"] == {
            "appointment_booked": True
        }


def _notice_event(org: Organisation, patient_id: uuid.UUID, **payload: Any) -> events.Event:
    return events.Event(
        type="appointment.cancelled",
        org_id=org.id,
        payload={
            "appointment_id": str(uuid.uuid4()),
            "patient_id": str(patient_id),
            "start_at": (NOW + timedelta(days=2)).isoformat(),
            "local_start": "2026-03-25T10:00:00+01:00",
            "timezone": "Europe/Madrid",
            "service_name": "Cleaning",
            "practitioner_name": "Dr Vega",
            "location_name": "Centro",
            "status": "cancelled",
            **payload,
        },
    )


async def test_patient_without_a_consented_channel_gets_no_notice_and_no_error(
    session: AsyncSession,
    org: Organisation,
    messaging_settings: Settings,  # noqa: F811
    client: httpx.AsyncClient,
) -> None:
    clinic = await build_clinic(session, org.id)
    phone = new_phone()
    patient = await patient_with_contacts(session, org, phone=phone, email=None, preferred_channel="sms")
    for channel in ("sms", "whatsapp"):
        r = await client.post(
            f"/patients/{patient.id}/consent", json={"changes": [{"channel": channel, "granted": False}]}
        )
        assert r.status_code == 200, r.text
    with clock.frozen(NOW), structlog.testing.capture_logs() as logs:
        await _book(client, clinic, patient.id, 25, 10)
        report = await jobs.run_due(session)
    assert await _notices(session, patient.id, "appointment_confirmation") == []
    assert not report.failed
    [refused] = [e for e in logs if e["event"] == "notifications.appointment_notice_refused"]
    assert refused["code"] == "no_channel_available" and refused["kind"] == "booked"
    assert phone not in repr(logs)  # logged by ids only


async def test_notices_the_patient_is_not_to_get_are_skipped(
    session: AsyncSession, org: Organisation, messaging_settings: Settings  # noqa: F811
) -> None:
    """A duplicate cancelled by a patient merge (`notify_patient: false`), an event without the
    appointment's names and local time (published before events carried them) and an event delivered
    after the appointment started send nothing."""
    patient = await patient_with_contacts(session, org, preferred_channel="sms")
    with clock.frozen(NOW) as c:
        await subscribers.send_appointment_notice(session, _notice_event(org, patient.id, notify_patient=False))
        await subscribers.send_appointment_notice(session, _notice_event(org, patient.id, local_start=None))
        c.advance(timedelta(days=3))
        await subscribers.send_appointment_notice(session, _notice_event(org, patient.id))
    assert await _notices(session, patient.id, "appointment_cancelled") == []
