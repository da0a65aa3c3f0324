"""Sending one notification: channels, fallback, retries, reminders."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import sandbox
from prm.communications import service as communications
from prm.core import clock, events, jobs
from prm.core.auth import Principal
from prm.identity.models import Organisation
from prm.notifications import service as notifications
from prm.patients import service as patients
from prm.settings import Settings
from tests.fixtures.factories import principal
from tests.fixtures.messaging import (
    CLINIC_NUMBER,
    SmtpSink,
    TwilioFake,
    configure_channel,
    inbound,
    patient_with_contacts,
)

from .support import APPT, NOW


async def test_send_whatsapp_notification(
    session: AsyncSession,
    client: httpx.AsyncClient,
    twilio_org: Organisation,
    twilio_api: TwilioFake,
    messaging_settings: Settings,
) -> None:
    """Outside the 24 h window an approved template (Content SID + variables) is sent."""
    created = await client.post(
        "/notifications/templates",
        json={
            "key": "appointment_reminder",
            "channel": "whatsapp",
            "locale": "en",
            "body": "Hi {{ patient_name }}, see you {{ when }}",
            "variables": ["patient_name", "when"],
            "content_sid": "HX" + "c" * 32,
            "content_variables": {"1": "patient_name", "2": "when"},
        },
    )
    assert created.status_code == 201, created.text
    patient = await patient_with_contacts(session, twilio_org, given_name="Ana", preferred_channel="whatsapp")
    r = await client.post(
        "/notifications/send",
        json={
            "patient_id": str(patient.id),
            "channel": "whatsapp",
            "template_key": "appointment_reminder",
            "variables": APPT,
            "purpose": "reminders",
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["body"] == "Hi Ana, see you Tuesday 8 December 2026, 10:30"
    await jobs.run_due(session)
    form = twilio_api.sent_forms()[-1]
    assert form["ContentSid"] == ["HX" + "c" * 32] and "Body" not in form
    import json

    assert json.loads(form["ContentVariables"][0]) == {"1": "Ana", "2": APPT["when"]}


async def test_send_sms_notification(
    session: AsyncSession, org: Organisation, messaging_settings: Settings
) -> None:
    patient = await patient_with_contacts(session, org, given_name="Ben")
    comm = await notifications.send_notification(
        session,
        principal(org),
        patient_id=patient.id,
        template_key="appointment_confirmation",
        variables=APPT,
        channel="sms",
    )
    await jobs.run_due(session)
    [sent] = await sandbox.outbox(session, org.id, patient_id=patient.id)
    assert sent.channel == "sms" and sent.payload["body"].startswith("Hi Ben, your Cleaning appointment")
    assert (await communications.get(
        session,
        Principal.system(org.id),
        comm.id,
    )).template_key == "appointment_confirmation"


async def test_send_email_notification(session: AsyncSession, org: Organisation, smtp_sink: SmtpSink) -> None:
    patient = await patient_with_contacts(session, org, given_name="Cleo", preferred_language="es")
    await notifications.send_notification(
        session,
        Principal.system(org.id),
        patient_id=patient.id,
        template_key="appointment_reminder",
        variables=APPT,
        channel="email",
        purpose="reminders",
    )
    await jobs.run_due(session)
    [msg] = smtp_sink.messages
    assert msg["Subject"] == f"Recordatorio: Cleaning el {APPT['when']}"  # the patient's language
    html = (
        next(p for p in msg.walk() if p.get_content_type() == "text/html").get_payload(decode=True).decode()
    )
    assert "Hola Cleo" in html


async def test_preference_and_consent_aware_fallback(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    patient = await patient_with_contacts(session, org, preferred_channel="whatsapp")
    # whatsapp preferred, but its window is closed and it has no approved template → sms;
    # sms opted out → email
    await patients.set_consent(
        session,
        Principal.system(org.id),
        patient.id,
        channel="sms",
        purpose=None,
        granted=False,
        source="api",
    )
    r = await client.post(
        "/notifications/send",
        json={
            "patient_id": str(patient.id),
            "template_key": "appointment_reminder",
            "variables": APPT,
            "purpose": "reminders",
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["channel"] == "email"
    assert [s["channel"] for s in r.json()["details"]["fallback_from"]] == ["whatsapp", "sms"]
    # the row was written with its send job's id (and the job is there)
    job_args = (await session.execute(text("SELECT args FROM procrastinate_jobs WHERE id = :id"),
                                      {"id": r.json()["details"]["job_id"]})).scalar_one()
    assert job_args["communication_id"] == r.json()["id"]
    await patients.set_consent(
        session,
        Principal.system(org.id),
        patient.id,
        channel="email",
        purpose=None,
        granted=False,
        source="api",
    )
    none = await client.post(
        "/notifications/send",
        json={"patient_id": str(patient.id), "template_key": "appointment_reminder", "variables": APPT},
    )
    assert none.status_code == 409 and none.json()["code"] == "no_channel_available"
    assert {a["channel"]: a["reason"] for a in none.json()["attempts"]}["sms"] == "consent:opted_out"
    named = await client.post(
        "/notifications/send",
        json={
            "patient_id": str(patient.id),
            "channel": "sms",
            "template_key": "appointment_reminder",
            "variables": APPT,
        },
    )
    assert named.status_code == 409 and named.json()["code"] == "consent_refused"


async def test_whatsapp_preference_inside_the_window_sends_free_form(
    session: AsyncSession, org: Organisation, anon_client: httpx.AsyncClient, messaging_settings: Settings
) -> None:
    await configure_channel(session, org, "whatsapp", sender=CLINIC_NUMBER)
    patient = await patient_with_contacts(session, org, preferred_channel="whatsapp")
    await inbound(anon_client, messaging_settings, from_=patient.primary_phone, body="hi")
    comm = await notifications.send_notification(
        session,
        Principal.system(org.id),
        patient_id=patient.id,
        template_key="appointment_confirmation",
        variables=APPT,
    )
    assert comm.channel == "whatsapp" and comm.content_sid is None


async def test_invalid_channel(session: AsyncSession, client: httpx.AsyncClient, org: Organisation) -> None:
    patient = await patient_with_contacts(session, org)
    r = await client.post(
        "/notifications/send",
        json={
            "patient_id": str(patient.id),
            "channel": "telegram",
            "template_key": "appointment_reminder",
            "variables": APPT,
        },
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "channel"
    r = await client.post("/notifications/templates", json={"key": "x_y", "channel": "fax", "body": "b"})
    assert r.status_code == 422


async def test_notification_retry(
    session: AsyncSession, twilio_org: Organisation, twilio_api: TwilioFake
) -> None:
    """A transient provider failure is retried for that recipient only; the report follows it."""
    a = await patient_with_contacts(session, twilio_org)
    b = await patient_with_contacts(session, twilio_org)
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if a.primary_phone in request.content.decode().replace("%2B", "+") and calls["n"] == 1:
            return httpx.Response(503)
        return httpx.Response(201, json={"sid": f"SM{uuid.uuid4().hex}", "status": "queued"})

    twilio_api.messages.side_effect = flaky
    from prm.notifications.schemas import BatchCreate

    with clock.frozen(NOW) as c:
        batch = await notifications.create_batch(
            session,
            principal(twilio_org),
            BatchCreate(
                template_key="appointment_reminder",
                variables=APPT,
                channel="sms",
                purpose="reminders",
                patient_ids=[a.id, b.id],
            ),
        )
        await jobs.run_due(session)
        report = await notifications.batch_report(session, twilio_org.id, batch.id)
        assert report["counts"] == {"queued": 1, "sent": 1} and not report["done"]
        c.advance(timedelta(minutes=1))
        await jobs.run_due(session)
    report = await notifications.batch_report(session, twilio_org.id, batch.id)
    assert report["counts"] == {"sent": 2} and report["done"]


async def test_appointment_reminder_due_is_sent(
    session: AsyncSession, org: Organisation, messaging_settings: Settings
) -> None:
    patient = await patient_with_contacts(session, org, given_name="Dora", preferred_channel="sms")
    reminder_id = str(uuid.uuid4())
    payload = {
        "reminder_id": reminder_id,
        "appointment_id": str(uuid.uuid4()),
        "patient_id": str(patient.id),
        "offset_minutes": 1440,
        "start_at": "2026-12-08T09:30:00+00:00",
        "local_start": "2026-12-08T10:30:00",
        "timezone": "Europe/Madrid",
        "service_name": "Cleaning",
        "practitioner_name": "Dr Ruiz",
        "location_name": "Main St",
    }
    await events.publish(
        session, events.Event(type="appointment.reminder_due", org_id=org.id, payload=payload)
    )
    await events.publish(
        session, events.Event(type="appointment.reminder_due", org_id=org.id, payload=payload)
    )
    await jobs.run_due(session)
    [sent] = await sandbox.outbox(session, org.id, patient_id=patient.id)
    assert sent.channel == "sms"
    assert sent.payload["body"] == (
        "Hi Dora, this is a reminder of your Cleaning appointment with Dr Ruiz on "
        "Tuesday 8 December 2026, 10:30 at Main St."
    )


async def test_reminder_for_an_opted_out_patient_is_not_sent(
    session: AsyncSession, org: Organisation, messaging_settings: Settings
) -> None:
    patient = await patient_with_contacts(session, org)
    for ch in ("sms", "whatsapp", "email"):
        await patients.set_consent(
            session,
            Principal.system(org.id),
            patient.id,
            channel=ch,
            purpose="reminders",
            granted=False,
            source="api",
        )
    await events.publish(
        session,
        events.Event(
            type="appointment.reminder_due",
            org_id=org.id,
            payload={
                "reminder_id": str(uuid.uuid4()),
                "patient_id": str(patient.id),
                "local_start": "bad",
                "service_name": "x",
                "practitioner_name": "y",
                "location_name": "z",
            },
        ),
    )
    report = await jobs.run_due(session)
    assert report.failed == [] and await sandbox.outbox(session, org.id, patient_id=patient.id) == []
