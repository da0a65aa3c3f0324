"""Communications: create, schedule, send as a job, retry, list (the plan's named tests and more)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import sandbox
from prm.communications import service as communications
from prm.communications.models import Communication
from prm.communications.schemas import CommunicationCreate
from prm.core import audit, clock, jobs
from prm.identity.models import Organisation
from prm.settings import Settings
from tests.fixtures.factories import principal
from tests.fixtures.messaging import (
    CLINIC_NUMBER,
    SmtpSink,
    TwilioFake,
    inbound,
    patient_with_contacts,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def test_create_whatsapp_communication(
    session: AsyncSession,
    client: httpx.AsyncClient,
    twilio_org: Organisation,
    twilio_api: TwilioFake,
    messaging_settings: Settings,
    anon_client: httpx.AsyncClient,
) -> None:
    patient = await patient_with_contacts(session, twilio_org)
    with clock.frozen(NOW) as c:
        await inbound(anon_client, messaging_settings, from_=patient.primary_phone, body="Hola")
        c.advance(timedelta(hours=2))
        r = await client.post(
            "/communications",
            json={
                "patient_id": str(patient.id),
                "channel": "whatsapp",
                "body": "Your results are ready",
                "media_urls": ["https://files.example/r.pdf"],
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "queued" and r.json()["direction"] == "outbound"
        await jobs.run_due(session)
    comm = await communications.get(session, twilio_org.id, r.json()["id"])
    assert comm.status == "sent" and comm.provider == "twilio" and comm.provider_message_id.startswith("SM")
    form = twilio_api.sent_forms()[-1]
    assert form["To"] == [f"whatsapp:{patient.primary_phone}"] and form["From"] == [f"whatsapp:{CLINIC_NUMBER}"]
    assert form["Body"] == ["Your results are ready"] and form["MediaUrl"] == ["https://files.example/r.pdf"]
    assert form["StatusCallback"] == ["https://prm.test/webhooks/twilio/status"]


async def test_create_sms_communication(
    session: AsyncSession, client: httpx.AsyncClient, twilio_org: Organisation, twilio_api: TwilioFake
) -> None:
    patient = await patient_with_contacts(session, twilio_org)
    r = await client.post(
        "/communications",
        json={
            "patient_id": str(patient.id),
            "channel": "sms",
            "body": "See you tomorrow",
            "purpose": "reminders",
        },
    )
    assert r.status_code == 201, r.text
    await jobs.run_due(session)
    comm = await communications.get(session, twilio_org.id, r.json()["id"])
    assert (comm.status, comm.channel, comm.purpose, comm.attempts) == ("sent", "sms", "reminders", 1)
    assert twilio_api.sent_forms()[-1]["To"] == [patient.primary_phone]
    assert comm.sent_at is not None and comm.queued_at is not None


async def test_create_email_communication(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, smtp_sink: SmtpSink
) -> None:
    patient = await patient_with_contacts(session, org)
    ics = base64.b64encode(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n").decode()
    r = await client.post(
        "/communications",
        json={
            "patient_id": str(patient.id),
            "channel": "email",
            "subject": "Your visit",
            "body": "See you",
            "html_body": "<p>See you</p>",
            "attachments": [{"filename": "visit.ics", "content_type": "text/calendar", "content_base64": ics}],
        },
    )
    assert r.status_code == 201, r.text
    await jobs.run_due(session)
    comm = await communications.get(session, org.id, r.json()["id"])
    assert comm.status == "sent" and comm.provider == "smtp"
    [msg] = smtp_sink.messages
    assert msg["To"] == patient.primary_email and msg["Subject"] == "Your visit"
    types = [p.get_content_type() for p in msg.walk()]
    assert "text/plain" in types and "text/html" in types and "text/calendar" in types


async def test_create_voice_communication(
    session: AsyncSession, client: httpx.AsyncClient, twilio_org: Organisation, twilio_api: TwilioFake
) -> None:
    patient = await patient_with_contacts(session, twilio_org)
    r = await client.post(
        "/communications",
        json={
            "patient_id": str(patient.id),
            "channel": "voice",
            "body": "Your appointment is tomorrow at ten",
        },
    )
    assert r.status_code == 201, r.text
    await jobs.run_due(session)
    comm = await communications.get(session, twilio_org.id, r.json()["id"])
    assert comm.status == "sent" and comm.channel == "voice" and comm.provider_message_id.startswith("CA")
    from urllib.parse import parse_qs

    form = parse_qs(twilio_api.calls.calls.last.request.content.decode())
    assert "Your appointment is tomorrow at ten" in form["Twiml"][0] and form["To"] == [patient.primary_phone]


async def test_scheduled_communication(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    patient = await patient_with_contacts(session, org)
    with clock.frozen(NOW) as c:
        send_at = NOW + timedelta(hours=3)
        r = await client.post(
            "/communications",
            json={
                "patient_id": str(patient.id),
                "channel": "sms",
                "body": "Later",
                "send_at": send_at.isoformat(),
            },
        )
        assert r.status_code == 201 and r.json()["send_at"].startswith("2026-12-01T12:00")
        await jobs.run_due(session)
        assert (await communications.get(session, org.id, r.json()["id"])).status == "queued"
        assert await sandbox.outbox(session, org.id, patient_id=patient.id) == []
        c.advance(timedelta(hours=3))
        await jobs.run_due(session)
    assert (await communications.get(session, org.id, r.json()["id"])).status == "sent"
    [sent] = await sandbox.outbox(session, org.id, patient_id=patient.id)
    assert sent.payload["body"] == "Later" and sent.channel == "sms"


async def test_list_communications_by_patient(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    ana, ben = await patient_with_contacts(session, org), await patient_with_contacts(session, org)
    for p, n in ((ana, 2), (ben, 1)):
        for i in range(n):
            await client.post("/communications", json={"patient_id": str(p.id), "channel": "sms", "body": f"m{i}"})
    r = await client.get("/communications", params={"patient_id": str(ana.id)})
    assert r.status_code == 200 and r.json()["total"] == 2
    assert {i["patient_id"] for i in r.json()["items"]} == {str(ana.id)}
    audited = await session.scalar(
        select(func.count())
        .select_from(audit.AuditEntry)
        .where(audit.AuditEntry.patient_id == ana.id, audit.AuditEntry.action == "list")
    )
    assert audited == 1


async def test_list_communications_by_channel(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    p = await patient_with_contacts(session, org)
    await client.post("/communications", json={"patient_id": str(p.id), "channel": "sms", "body": "a"})
    await client.post(
        "/communications", json={"patient_id": str(p.id), "channel": "email", "subject": "s", "body": "b"}
    )
    r = await client.get("/communications", params={"channel": "email"})
    assert [i["channel"] for i in r.json()["items"]] == ["email"]
    r = await client.get("/communications", params={"channel": "sms", "status": "queued"})
    assert r.json()["total"] == 1
    assert (await client.get("/communications", params={"channel": "fax"})).status_code == 422


async def test_invalid_channel(session: AsyncSession, client: httpx.AsyncClient, org: Organisation) -> None:
    p = await patient_with_contacts(session, org)
    r = await client.post("/communications", json={"patient_id": str(p.id), "channel": "pigeon", "body": "x"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "channel"
    assert (
        await session.scalar(select(func.count()).select_from(Communication).where(Communication.org_id == org.id)) == 0
    )


async def test_send_communication_async(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    """Creating only queues a job; the job (not the request) hands the message to the provider."""
    p = await patient_with_contacts(session, org)
    r = await client.post("/communications", json={"patient_id": str(p.id), "channel": "sms", "body": "async"})
    assert r.json()["status"] == "queued"
    queued = await session.scalar(
        text(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = "
            "'communications.send' AND status = 'todo' AND args->>'communication_id' = :id"
        ),
        {"id": r.json()["id"]},
    )
    assert queued == 1 and await sandbox.outbox(session, org.id, patient_id=p.id) == []
    report = await jobs.run_due(session, names=["communications.send"])
    job_id = (await communications.get(session, org.id, r.json()["id"])).details["job_id"]
    assert job_id in report.succeeded
    got = (await client.get(f"/communications/{r.json()['id']}")).json()
    assert got["status"] == "sent" and got["provider"] == "sandbox"
    assert len(await sandbox.outbox(session, org.id, patient_id=p.id)) == 1
    # running again sends nothing twice
    await communications.deliver(session, org_id=str(org.id), communication_id=r.json()["id"])
    assert len(await sandbox.outbox(session, org.id, patient_id=p.id)) == 1


async def test_communication_retry_logic(
    session: AsyncSession, client: httpx.AsyncClient, twilio_org: Organisation, twilio_api: TwilioFake
) -> None:
    """5xx/429/timeouts retry with backoff up to the limit; a permanent error fails at once."""
    p = await patient_with_contacts(session, twilio_org)
    twilio_api.messages.side_effect = [
        httpx.Response(503),
        httpx.Response(429, json={"code": 20429}),
        httpx.Response(201, json={"sid": "SMok", "status": "queued"}),
    ]
    with clock.frozen(NOW) as c:
        r = await client.post("/communications", json={"patient_id": str(p.id), "channel": "sms", "body": "x"})
        await jobs.run_due(session)
        comm = await communications.get(session, twilio_org.id, r.json()["id"])
        assert (comm.status, comm.attempts, comm.error_code) == ("queued", 1, "http_503")
        assert comm.next_attempt_at == NOW + timedelta(seconds=30)
        c.advance(timedelta(seconds=30))
        await jobs.run_due(session)
        await session.refresh(comm)
        assert (comm.status, comm.attempts, comm.error_code) == ("queued", 2, "20429")
        c.advance(timedelta(seconds=60))
        await jobs.run_due(session)
        await session.refresh(comm)
    assert (comm.status, comm.attempts, comm.provider_message_id, comm.error_code) == (
        "sent",
        3,
        "SMok",
        None,
    )

    # the limit: three transient failures and it is failed
    twilio_api.messages.side_effect = None
    twilio_api.messages.return_value = httpx.Response(500)
    with clock.frozen(NOW) as c:
        r = await client.post("/communications", json={"patient_id": str(p.id), "channel": "sms", "body": "y"})
        for _ in range(3):
            await jobs.run_due(session)
            c.advance(timedelta(hours=1))
    comm = await communications.get(session, twilio_org.id, r.json()["id"])
    assert (comm.status, comm.attempts, comm.error_code) == ("failed", 3, "http_500")

    # permanent: invalid number fails on the first attempt with Twilio's reason
    twilio_api.messages.return_value = httpx.Response(400, json={"code": 21211, "message": "Invalid 'To'"})
    r = await client.post("/communications", json={"patient_id": str(p.id), "channel": "sms", "body": "z"})
    await jobs.run_due(session)
    comm = await communications.get(session, twilio_org.id, r.json()["id"])
    assert (comm.status, comm.attempts, comm.error_code) == ("failed", 1, "21211")
    assert "invalid" in comm.error_message.lower() and comm.failed_at is not None


async def test_consent_refusal_is_409_with_reason(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    from prm.patients import service as patients

    p = await patient_with_contacts(session, org)
    await patients.set_consent(session, org.id, p.id, channel="sms", purpose="care", granted=False, source="api")
    r = await client.post("/communications", json={"patient_id": str(p.id), "channel": "sms", "body": "x"})
    assert r.status_code == 409 and r.json()["code"] == "consent_refused" and r.json()["reason"] == "opted_out"
    r = await client.post(
        "/communications",
        json={
            "patient_id": str(p.id),
            "channel": "email",
            "subject": "s",
            "body": "offer",
            "purpose": "marketing",
        },
    )
    assert r.status_code == 409 and r.json()["reason"] == "not_opted_in"
    assert (
        await session.scalar(select(func.count()).select_from(Communication).where(Communication.patient_id == p.id))
        == 0
    )


async def test_consent_withdrawn_before_a_scheduled_send(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    from prm.patients import service as patients

    p = await patient_with_contacts(session, org)
    with clock.frozen(NOW) as c:
        r = await client.post(
            "/communications",
            json={
                "patient_id": str(p.id),
                "channel": "sms",
                "body": "x",
                "send_at": (NOW + timedelta(days=1)).isoformat(),
            },
        )
        await patients.set_consent(session, org.id, p.id, channel="sms", purpose=None, granted=False, source="api")
        c.advance(timedelta(days=1))
        await jobs.run_due(session)
    comm = await communications.get(session, org.id, r.json()["id"])
    assert comm.status == "failed" and comm.error_code == "consent_refused"
    assert await sandbox.outbox(session, org.id, patient_id=p.id) == []


async def test_whatsapp_free_form_outside_24h_window_is_422(
    session: AsyncSession,
    client: httpx.AsyncClient,
    org: Organisation,
    messaging_settings: Settings,
    anon_client: httpx.AsyncClient,
) -> None:
    await client.put("/communications/channels/whatsapp", json={"sender": CLINIC_NUMBER})
    p = await patient_with_contacts(session, org)
    r = await client.post("/communications", json={"patient_id": str(p.id), "channel": "whatsapp", "body": "hi"})
    assert r.status_code == 422 and r.json()["code"] == "whatsapp_window_closed"
    with clock.frozen(NOW) as c:
        await inbound(anon_client, messaging_settings, from_=p.primary_phone, body="hello")
        c.advance(timedelta(hours=23))
        ok = await client.post("/communications", json={"patient_id": str(p.id), "channel": "whatsapp", "body": "hi"})
        assert ok.status_code == 201
        c.advance(timedelta(hours=2))
        r = await client.post("/communications", json={"patient_id": str(p.id), "channel": "whatsapp", "body": "hi"})
        assert r.status_code == 422
        tpl = await client.post(
            "/communications",
            json={
                "patient_id": str(p.id),
                "channel": "whatsapp",
                "content_sid": "HX" + "a" * 32,
                "content_variables": {"1": "Ana"},
            },
        )
        assert tpl.status_code == 201, tpl.text
        await jobs.run_due(session)
    # the free-form one queued inside the window, but sent after it closed, fails rather than being sent
    assert (await communications.get(session, org.id, ok.json()["id"])).error_code == "whatsapp_window_closed"
    assert (await communications.get(session, org.id, tpl.json()["id"])).status == "sent"


async def test_other_org_message_is_not_found_and_cancel(
    session: AsyncSession,
    client: httpx.AsyncClient,
    org: Organisation,
    other_org: Organisation,
    make_client,
    messaging_settings: Settings,
) -> None:
    p = await patient_with_contacts(session, org)
    r = await client.post(
        "/communications",
        json={"patient_id": str(p.id), "channel": "sms", "body": "x", "send_at": "2099-01-01T00:00:00Z"},
    )
    other = await make_client("admin", for_org=other_org)
    assert (await other.get(f"/communications/{r.json()['id']}")).status_code == 404
    foreign = await patient_with_contacts(session, other_org)
    assert (
        await client.post("/communications", json={"patient_id": str(foreign.id), "channel": "sms", "body": "x"})
    ).status_code == 404
    c = await client.post(f"/communications/{r.json()['id']}/cancel")
    assert c.status_code == 200 and c.json()["status"] == "cancelled"
    assert (await client.post(f"/communications/{r.json()['id']}/cancel")).status_code == 409


async def test_idempotency_key_returns_the_first_message(
    session: AsyncSession, org: Organisation, messaging_settings: Settings
) -> None:
    p = await patient_with_contacts(session, org)
    data = CommunicationCreate(patient_id=p.id, channel="sms", body="once", idempotency_key="k1")
    first = await communications.send(session, org.id, data, principal(org))
    again = await communications.send(session, org.id, data, principal(org))
    assert first.id == again.id


async def test_shape_rules_name_the_field(session: AsyncSession, client: httpx.AsyncClient, org: Organisation) -> None:
    p = await patient_with_contacts(session, org)
    cases = [
        ({"channel": "sms", "body": "x", "subject": "s"}, "subject"),
        ({"channel": "email", "body": "x"}, "subject"),
        ({"channel": "sms", "content_sid": "HX" + "b" * 32}, "content_sid"),
        ({"channel": "email", "subject": "s", "body": "x", "media_urls": ["https://x.test/a"]}, "media_urls"),
        ({"channel": "sms"}, "body"),
    ]
    for payload, field in cases:
        r = await client.post("/communications", json={"patient_id": str(p.id), **payload})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, (payload, r.text)
    no_email = await patient_with_contacts(session, org, email=None)
    r = await client.post(
        "/communications",
        json={"patient_id": str(no_email.id), "channel": "email", "subject": "s", "body": "b"},
    )
    assert r.status_code == 422 and r.json()["code"] == "no_address"


async def test_channel_config_never_returns_the_secret(
    client: httpx.AsyncClient, org: Organisation, make_client, messaging_settings: Settings
) -> None:
    r = await client.put(
        "/communications/channels/voice",
        json={"provider": "twilio", "sender": "+34 910 00 00 09", "webhook_secret": "s" * 32},
    )
    assert r.status_code == 200, r.text
    assert r.json()["has_webhook_secret"] is True and "webhook_secret" not in r.json()
    assert r.json()["sender"] == "+34910000009"
    listed = (await client.get("/communications/channels")).json()
    assert {c["channel"]: c["effective_provider"] for c in listed} == {
        "sms": "sandbox",
        "whatsapp": "sandbox",
        "email": "sandbox",
        "voice": "twilio",
    }
    assert "s" * 32 not in str(listed)
    coordinator = await make_client("coordinator")
    assert (await coordinator.get("/communications/channels")).status_code == 403
    bad = await client.put("/communications/channels/sms", json={"provider": "smtp"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "provider"


async def test_timeline_and_merge_hooks(session: AsyncSession, org: Organisation, messaging_settings: Settings) -> None:
    from prm.patients import registry

    a, b = await patient_with_contacts(session, org), await patient_with_contacts(session, org)
    await communications.send(session, org.id, CommunicationCreate(patient_id=b.id, channel="sms", body="x"))
    entries = await registry.timeline_sources()["communications"](session, org.id, b.id, None, 10)
    assert entries[0].kind == "message.outbound" and "x" not in entries[0].summary.split()
    moved = await registry.merge_handlers()["communications"](session, org.id, b.id, a.id)
    assert moved == 1
    rows, _ = await communications.list_communications(
        session, org.id, communications.CommunicationFilters(patient_id=a.id), communications.PageParams()
    )
    assert len(rows) == 1


async def test_demo_seed_adds_templates_channels_and_conversations(
    session: AsyncSession, org: Organisation, messaging_settings: Settings
) -> None:
    from prm.communications import demo as communications_demo
    from prm.notifications import demo as notifications_demo

    context: dict = {}
    await notifications_demo.seed(session, org, context)
    await notifications_demo.seed(session, org, context)  # idempotent-ish: nothing added twice
    await communications_demo.seed(session, org, context)
    await jobs.run_due(session)
    assert context["notification_templates"] == []
    assert len(context["communications"]) == 4
    assert len(await sandbox.outbox(session, org.id, channel="whatsapp")) == 2


async def test_sandbox_outbox_api(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    p = await patient_with_contacts(session, org)
    await client.post("/communications", json={"patient_id": str(p.id), "channel": "voice", "body": "Call me"})
    await jobs.run_due(session)
    r = await client.get("/communications/sandbox/outbox", params={"patient_id": str(p.id)})
    assert r.status_code == 200 and r.json()["total"] == 1
    item = r.json()["items"][0]
    assert item["channel"] == "voice" and item["payload"]["say"] == "Call me" and item["to_address"] == p.primary_phone


async def test_concurrent_sends_with_one_idempotency_key_make_one_message(committed, messaging_settings) -> None:
    import asyncio

    from tests.fixtures.factories import make_patient

    organisation, key = await committed.org()
    async with committed.session() as s:
        patient = await make_patient(s, organisation, phone="+34655000111")
        await s.commit()
    client = committed.client(key)
    payload = {"patient_id": str(patient.id), "channel": "sms", "body": "once", "idempotency_key": "reminder:42"}
    responses = await asyncio.gather(*(client.post("/communications", json=payload) for _ in range(4)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
