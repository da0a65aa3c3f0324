"""Creating, listing, cancelling messages; idempotency; the patient-record hooks; the sandbox outbox."""

from __future__ import annotations

import base64
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import sandbox
from prm.communications import service as communications
from prm.communications.models import Communication
from prm.communications.schemas import CommunicationCreate, CommunicationFilters
from prm.core import audit, clock, jobs
from prm.core.auth import Principal
from prm.core.pagination import PageParams
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

from .support import NOW


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
    comm = await communications.get(session, Principal.system(twilio_org.id), r.json()["id"])
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
    comm = await communications.get(session, Principal.system(twilio_org.id), r.json()["id"])
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
    comm = await communications.get(session, Principal.system(org.id), r.json()["id"])
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
    comm = await communications.get(session, Principal.system(twilio_org.id), r.json()["id"])
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
        assert (await communications.get(session, Principal.system(org.id), r.json()["id"])).status == "queued"
        assert await sandbox.outbox(session, org.id, patient_id=patient.id) == []
        c.advance(timedelta(hours=3))
        await jobs.run_due(session)
    assert (await communications.get(session, Principal.system(org.id), r.json()["id"])).status == "sent"
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
    refused = await client.post("/communications", json={"patient_id": str(foreign.id), "channel": "sms", "body": "x"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "patient_id"  # an id in a body
    c = await client.post(f"/communications/{r.json()['id']}/cancel")
    assert c.status_code == 200 and c.json()["status"] == "cancelled"
    assert (await client.post(f"/communications/{r.json()['id']}/cancel")).status_code == 409


async def test_idempotency_key_returns_the_first_message(
    session: AsyncSession, org: Organisation, messaging_settings: Settings
) -> None:
    p = await patient_with_contacts(session, org)
    data = CommunicationCreate(patient_id=p.id, channel="sms", body="once", idempotency_key="k1")
    first = await communications.send(session, principal(org), data)
    again = await communications.send(session, principal(org), data)
    assert first.id == again.id


async def test_timeline_and_merge_hooks(session: AsyncSession, org: Organisation, messaging_settings: Settings) -> None:
    from prm.patients import registry

    a, b = await patient_with_contacts(session, org), await patient_with_contacts(session, org)
    await communications.send(
        session,
        Principal.system(org.id),
        CommunicationCreate(patient_id=b.id, channel="sms", body="x"),
    )
    entries = await registry.timeline_sources()["communications"](session, org.id, b.id, None, 10)
    assert entries[0].kind == "message.outbound" and "x" not in entries[0].summary.split()
    moved = await registry.merge_handlers()["communications"](session, org.id, b.id, a.id)
    assert moved == 1
    rows, _ = await communications.list_communications(
        session,
        Principal.system(org.id),
        CommunicationFilters(patient_id=a.id),
        PageParams(),
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


@pytest.mark.parametrize("first_ends", ["commit", "rollback"])
async def test_a_send_racing_one_with_its_key_waits_for_it(committed, messaging_settings, first_ends: str) -> None:
    """The second send of a key waits for the first transaction: it answers with the first message
    once that commits (leaving no job of its own behind), and inserts its own if that rolls back."""
    import asyncio

    from sqlalchemy import text

    from tests.fixtures.factories import make_patient

    organisation, _ = await committed.org()
    async with committed.session() as s:
        patient = await make_patient(s, organisation, phone="+34655000112")
        await s.commit()
    who = Principal.system(organisation.id)
    data = CommunicationCreate(patient_id=patient.id, channel="sms", body="once", idempotency_key="race:1")
    async with committed.session() as first, committed.session() as second:
        mine = (await communications.send(first, who, data)).id  # inserted, not committed
        theirs = asyncio.create_task(communications.send(second, who, data))
        await asyncio.sleep(0.3)
        assert not theirs.done()  # waiting on the key
        await (first.commit() if first_ends == "commit" else first.rollback())
        answer = (await asyncio.wait_for(theirs, 10)).id
        await second.commit()
    async with committed.session() as s:
        messages = list(await s.scalars(select(Communication.id).where(Communication.org_id == organisation.id)))
        queued = list(await s.scalars(text(
            "SELECT args->>'communication_id' FROM procrastinate_jobs "
            "WHERE task_name = 'communications.send' AND args->>'org_id' = :org"), {"org": str(organisation.id)}))
    assert messages == [answer]
    assert (answer == mine) is (first_ends == "commit")
    assert queued == [str(answer)]  # one job, the message's: the loser's was discarded
    await committed.cancel_queued_jobs(organisation.id)


async def test_recorded_inbound_and_outbound_reply_are_both_audited(
    session: AsyncSession, org: Organisation, messaging_settings: Settings
) -> None:
    p = await patient_with_contacts(session, org)
    assert p.primary_phone is not None
    inbound = await communications.record_inbound(
        session,
        org.id,
        patient_id=p.id,
        channel="sms",
        body="hello",
        from_address=p.primary_phone,
        to_address="+15550000000",
        provider="twilio",
        provider_message_id="SMaudit1",
    )
    reply = await communications.record_outbound_reply(
        session,
        org.id,
        patient_id=p.id,
        channel="sms",
        body="ok",
        to_address=p.primary_phone,
        from_address="+15550000000",
        provider="twilio",
        details={"delivered_via": "twiml"},
    )
    rows = (
        await session.execute(
            select(audit.AuditEntry.resource_id, audit.AuditEntry.details).where(
                audit.AuditEntry.org_id == org.id,
                audit.AuditEntry.resource_type == "communication",
                audit.AuditEntry.action == "create",
            )
        )
    ).all()
    assert {(rid, d["direction"]) for rid, d in rows} == {(str(inbound.id), "inbound"), (str(reply.id), "outbound")}
