"""Notifications: templates, preview, send by channel or preference with fallback, batches, reminders."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import sandbox
from prm.communications import service as communications
from prm.core import clock, events, jobs
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

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
APPT = {
    "service_name": "Cleaning",
    "practitioner_name": "Dr Ruiz",
    "location_name": "Main St",
    "when": "Tuesday 8 December 2026, 10:30",
}


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
        org.id,
        patient_id=patient.id,
        template_key="appointment_confirmation",
        variables=APPT,
        channel="sms",
        who=principal(org),
    )
    await jobs.run_due(session)
    [sent] = await sandbox.outbox(session, org.id, patient_id=patient.id)
    assert sent.channel == "sms" and sent.payload["body"].startswith("Hi Ben, your Cleaning appointment")
    assert (await communications.get(session, org.id, comm.id)).template_key == "appointment_confirmation"


async def test_send_email_notification(session: AsyncSession, org: Organisation, smtp_sink: SmtpSink) -> None:
    patient = await patient_with_contacts(session, org, given_name="Cleo", preferred_language="es")
    await notifications.send_notification(
        session,
        org.id,
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


async def test_notification_templating(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    draft = {
        "key": "lab_results",
        "channel": "email",
        "locale": "en",
        "subject": "Results for {{ patient_name }}",
        "body": "Your {{ test }} results are in.",
        "html_body": "<p>{{ test }}</p>",
        "variables": ["patient_name", "test"],
    }
    preview = await client.post(
        "/notifications/templates/preview",
        json={"draft": draft, "variables": {"patient_name": "Ana", "test": "<blood>"}},
    )
    assert preview.status_code == 200
    assert preview.json() | {"variables_used": None} == {
        "subject": "Results for Ana",
        "body": "Your <blood> results are in.",
        "html_body": "<p>&lt;blood&gt;</p>",
        "variables_used": None,
        "source": "draft",
    }
    missing = await client.post(
        "/notifications/templates/preview", json={"draft": draft, "variables": {"test": "x"}}
    )
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "variables.patient_name"
    undeclared = await client.post("/notifications/templates", json={**draft, "variables": ["test"]})
    assert undeclared.status_code == 422 and "patient_name" in undeclared.json()["detail"]
    created = await client.post("/notifications/templates", json=draft)
    assert created.status_code == 201
    dup = await client.post("/notifications/templates", json=draft)
    assert dup.status_code == 409
    stored = await client.post(
        "/notifications/templates/preview",
        json={"key": "lab_results", "channel": "email", "variables": {"patient_name": "B", "test": "x"}},
    )
    assert stored.json()["source"] == "organisation" and stored.json()["subject"] == "Results for B"
    builtin = await client.post(
        "/notifications/templates/preview",
        json={
            "key": "appointment_cancelled",
            "channel": "sms",
            "locale": "es-MX",
            "variables": {**APPT, "patient_name": "Ana"},
        },
    )
    assert builtin.json()["source"] == "builtin" and builtin.json()["body"].startswith("Hola Ana")
    tid = created.json()["id"]
    patched = await client.patch(f"/notifications/templates/{tid}", json={"body": "{{ nope }}"})
    assert patched.status_code == 422
    ok = await client.patch(f"/notifications/templates/{tid}", json={"body": "Results: {{ test }}"})
    assert ok.status_code == 200 and ok.json()["body"] == "Results: {{ test }}"
    listed = await client.get("/notifications/templates", params={"key": "lab_results"})
    assert listed.json()["total"] == 1
    assert len((await client.get("/notifications/templates/builtin")).json()) >= 24
    assert (await client.delete(f"/notifications/templates/{tid}")).status_code == 204
    assert (await client.get(f"/notifications/templates/{tid}")).status_code == 404
    sandboxed = await client.post(
        "/notifications/templates/preview",
        json={
            "draft": {**draft, "body": "{{ test.__class__.__mro__ }}"},
            "variables": {"patient_name": "a", "test": "x"},
        },
    )
    assert sandboxed.status_code == 422


async def test_preference_and_consent_aware_fallback(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    patient = await patient_with_contacts(session, org, preferred_channel="whatsapp")
    # whatsapp preferred, but its window is closed and it has no approved template → sms;
    # sms opted out → email
    await patients.set_consent(
        session, org.id, patient.id, channel="sms", purpose=None, granted=False, source="api"
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
    await patients.set_consent(
        session, org.id, patient.id, channel="email", purpose=None, granted=False, source="api"
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
        session, org.id, patient_id=patient.id, template_key="appointment_confirmation", variables=APPT
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


async def test_batch_notifications(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    people = [await patient_with_contacts(session, org, tags=["flu-2026"]) for _ in range(4)]
    await patient_with_contacts(session, org, tags=["other"])
    await patients.set_consent(
        session, org.id, people[0].id, channel="sms", purpose="marketing", granted=True, source="api"
    )
    r = await client.post(
        "/notifications/batches",
        json={
            "template_key": "flu_campaign",
            "variables": {},
            "channel": "sms",
            "purpose": "marketing",
            "filter": {"tags": ["flu-2026"]},
        },
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "template_key"
    await client.post(
        "/notifications/templates",
        json={
            "key": "flu_campaign",
            "channel": "sms",
            "body": "{{ patient_name }}, flu shots are here: {{ link }}",
            "variables": ["patient_name", "link"],
        },
    )
    r = await client.post(
        "/notifications/batches",
        json={
            "template_key": "flu_campaign",
            "variables": {"link": "https://clinic.example/flu"},
            "channel": "sms",
            "purpose": "marketing",
            "filter": {"tags": ["flu-2026"]},
        },
    )
    assert r.status_code == 202, r.text
    batch = r.json()
    assert batch["total"] == 4 and batch["counts"] == {"pending": 4} and batch["done"] is False
    await jobs.run_due(session)
    report = (await client.get(f"/notifications/batches/{batch['id']}")).json()
    # marketing needs an opt-in: only the patient who gave one receives it,
    # the others are refused with a reason
    assert report["counts"] == {"sent": 1, "refused": 3} and report["done"] is True
    assert report["completed_at"] is not None
    items = (await client.get(f"/notifications/batches/{batch['id']}/items")).json()
    refused = [i for i in items["items"] if i["status"] == "refused"]
    assert len(refused) == 3 and all(i["reason"].startswith("consent_refused") for i in refused)
    [sent] = await sandbox.outbox(session, org.id, patient_id=people[0].id)
    assert sent.payload["body"].endswith("https://clinic.example/flu")

    listed = await client.post(
        "/notifications/batches",
        json={
            "template_key": "appointment_reminder",
            "variables": APPT,
            "purpose": "reminders",
            "patient_ids": [str(p.id) for p in people[:2]],
        },
    )
    assert listed.json()["total"] == 2
    unknown = await client.post(
        "/notifications/batches",
        json={"template_key": "appointment_reminder", "variables": APPT, "patient_ids": [str(uuid.uuid4())]},
    )
    assert unknown.status_code == 422


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
            twilio_org.id,
            BatchCreate(
                template_key="appointment_reminder",
                variables=APPT,
                channel="sms",
                purpose="reminders",
                patient_ids=[a.id, b.id],
            ),
            principal(twilio_org),
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
            session, org.id, patient.id, channel=ch, purpose="reminders", granted=False, source="api"
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


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"body": None}, "body"),
        ({"variables": None}, "variables"),
        ({"subject": "s" * 501}, "subject"),
        ({"description": "d" * 501}, "description"),
    ],
)
async def test_template_update_with_null_or_oversized_field_is_422_and_changes_nothing(
    client: httpx.AsyncClient, change: dict, field: str
) -> None:
    created = await client.post(
        "/notifications/templates",
        json={"key": "fuzz_found", "channel": "email", "subject": "Hi", "body": "Hello {{ name }}",
              "variables": ["name"]},
    )
    assert created.status_code == 201, created.text
    url = f"/notifications/templates/{created.json()['id']}"
    r = await client.patch(url, json=change)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert (await client.get(url)).json() == created.json()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"locale": "pdm-" + "-".join(["abcdefgh"] * 5)}, "locale"),  # matches the pattern, longer than 35
        ({"channel": "whatsapp", "content_sid": "HX" + "a" * 64}, "content_sid"),  # 66 > the column's 64
    ],
)
async def test_template_fields_longer_than_their_columns_are_422(
    client: httpx.AsyncClient, change: dict, field: str
) -> None:
    """Found by fuzzing: values allowed by the pattern but longer than the column were a 500."""
    r = await client.post("/notifications/templates",
                          json={"key": "fuzz_long", "channel": "sms", "body": "Hello", **change})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert (await client.get("/notifications/templates", params={"key": "fuzz_long"})).json()["total"] == 0
