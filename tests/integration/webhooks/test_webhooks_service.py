"""Inbound webhooks: Twilio messaging and status callbacks, the voice agent (the plan's named tests)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import respx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import sandbox
from prm.communications import service as communications
from prm.communications.models import Communication, InboundEvent
from prm.conversations.models import Conversation
from prm.core import jobs
from prm.core.auth import Principal
from prm.core.events import EventRecord
from prm.identity.models import Organisation
from prm.patients import service as patients
from prm.patients.models import Patient
from prm.settings import Settings
from prm.webhooks.twilio_inbound import hmac_signature
from tests.fixtures import media_samples
from tests.fixtures.messaging import (
    CLINIC_NUMBER,
    TWILIO_SID,
    TwilioFake,
    configure_channel,
    inbound,
    new_phone,
    patient_with_contacts,
    post_twilio,
    sign,
)


async def _events(session: AsyncSession, org: Organisation, type_: str) -> list[EventRecord]:
    return list(
        await session.scalars(select(EventRecord).where(EventRecord.org_id == org.id, EventRecord.type == type_))
    )


async def test_process_incoming_whatsapp(
    session: AsyncSession,
    anon_client: httpx.AsyncClient,
    twilio_org: Organisation,
    messaging_settings: Settings,
) -> None:
    patient = await patient_with_contacts(session, twilio_org)
    r = await inbound(
        anon_client,
        messaging_settings,
        from_=patient.primary_phone,
        body="I need to reschedule",
        sid="SM0001",
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    assert "<Message>" not in r.text
    [comm] = await session.scalars(select(Communication).where(Communication.org_id == twilio_org.id))
    assert (comm.direction, comm.channel, comm.status, comm.patient_id) == (
        "inbound",
        "whatsapp",
        "received",
        patient.id,
    )
    assert comm.body == "I need to reschedule" and comm.provider_message_id == "SM0001"
    assert comm.conversation_id is None
    [event] = await _events(session, twilio_org, "message.received")
    assert event.payload == {
        "communication_id": str(comm.id),
        "patient_id": str(patient.id),
        "channel": "whatsapp",
        "org_id": str(twilio_org.id),
    }
    # a retried delivery is acknowledged, not processed twice
    again = await inbound(
        anon_client,
        messaging_settings,
        from_=patient.primary_phone,
        body="I need to reschedule",
        sid="SM0001",
    )
    assert again.status_code == 200
    assert (
        await session.scalar(
            select(func.count()).select_from(Communication).where(Communication.org_id == twilio_org.id)
        )
        == 1
    )
    assert len(await _events(session, twilio_org, "message.received")) == 1
    stored = await session.scalar(select(InboundEvent).where(InboundEvent.external_id == "SM0001"))
    assert stored.outcome == "processed" and stored.communication_id == comm.id


async def test_unknown_sender_creates_provisional_patient(
    session: AsyncSession,
    anon_client: httpx.AsyncClient,
    twilio_org: Organisation,
    messaging_settings: Settings,
) -> None:
    number = new_phone()
    r = await inbound(anon_client, messaging_settings, from_=number, body="Hello?", channel="sms")
    assert r.status_code == 200
    patient = await patients.find_by_phone(session, twilio_org.id, number)
    assert patient is not None and patient.is_provisional and patient.source == "sms"


async def test_message_to_an_unknown_number_is_stored_but_unroutable(
    session: AsyncSession, anon_client: httpx.AsyncClient, messaging_settings: Settings
) -> None:
    r = await inbound(anon_client, messaging_settings, from_=new_phone(), to="+34919999999", body="hi", sid="SMlost")
    assert r.status_code == 200
    stored = await session.scalar(select(InboundEvent).where(InboundEvent.external_id == "SMlost"))
    assert stored.outcome == "unroutable" and stored.org_id is None


async def test_validate_twilio_signature(
    session: AsyncSession,
    anon_client: httpx.AsyncClient,
    twilio_org: Organisation,
    messaging_settings: Settings,
    app: Any,
) -> None:
    """Signed for PUBLIC_BASE_URL + path, or for the URL a trusted proxy's headers describe."""
    params = {
        "MessageSid": "SMsig1",
        "From": f"whatsapp:{new_phone()}",
        "To": f"whatsapp:{CLINIC_NUMBER}",
        "Body": "hi",
        "NumMedia": "0",
        "AccountSid": TWILIO_SID,
    }
    ok = await post_twilio(anon_client, messaging_settings, "/webhooks/twilio/messaging", params)
    assert ok.status_code == 200
    from twilio.request_validator import RequestValidator

    token = messaging_settings.twilio_auth_token.get_secret_value()
    params["MessageSid"] = "SMsig2"
    proxied = RequestValidator(token).compute_signature("https://clinic.example.org/webhooks/twilio/messaging", params)
    headers = {"X-Twilio-Signature": proxied, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "clinic.example.org"}
    untrusted = await anon_client.post("/webhooks/twilio/messaging", data=params, headers=headers)
    assert untrusted.status_code == 403  # the test client (127.0.0.1) is no configured proxy
    app.state.settings.trusted_proxies = ["127.0.0.1"]
    try:
        r = await anon_client.post("/webhooks/twilio/messaging", data=params, headers=headers)
    finally:
        app.state.settings.trusted_proxies = []
    assert r.status_code == 200
    assert (
        await session.scalar(
            select(func.count()).select_from(InboundEvent).where(InboundEvent.external_id.in_(["SMsig1", "SMsig2"]))
        )
        == 2
    )


async def test_invalid_signature(
    session: AsyncSession,
    anon_client: httpx.AsyncClient,
    twilio_org: Organisation,
    messaging_settings: Settings,
) -> None:
    params = {
        "MessageSid": "SMbad",
        "From": f"whatsapp:{new_phone()}",
        "To": f"whatsapp:{CLINIC_NUMBER}",
        "Body": "hi",
    }
    good = sign(messaging_settings, "/webhooks/twilio/messaging", params)
    forged = await post_twilio(
        anon_client,
        messaging_settings,
        "/webhooks/twilio/messaging",
        {**params, "Body": "tampered"},
        signature=good,
    )
    missing = await post_twilio(anon_client, messaging_settings, "/webhooks/twilio/messaging", params, signature=None)
    wrong_url = await anon_client.post("/webhooks/twilio/status", data=params, headers={"X-Twilio-Signature": good})
    assert (forged.status_code, missing.status_code, wrong_url.status_code) == (403, 403, 403)
    assert forged.json()["code"] == "invalid_signature"
    assert (
        await session.scalar(select(func.count()).select_from(InboundEvent).where(InboundEvent.external_id == "SMbad"))
        == 0
    )


async def test_extract_message_data(
    session: AsyncSession,
    anon_client: httpx.AsyncClient,
    twilio_org: Organisation,
    messaging_settings: Settings,
) -> None:
    """From, To, body and channel are taken from Twilio's form; SMS numbers carry no prefix."""
    patient = await patient_with_contacts(session, twilio_org)
    r = await inbound(
        anon_client,
        messaging_settings,
        from_=patient.primary_phone,
        body="  Is parking free? ",
        channel="sms",
        ProfileName="Ana",
    )
    assert r.status_code == 200
    [comm] = await session.scalars(select(Communication).where(Communication.patient_id == patient.id))
    assert (comm.channel, comm.from_address, comm.to_address) == ("sms", patient.primary_phone, CLINIC_NUMBER)
    assert comm.body == "  Is parking free? " and comm.provider == "twilio" and comm.received_at is not None


async def test_route_to_conversation(
    session: AsyncSession,
    anon_client: httpx.AsyncClient,
    twilio_org: Organisation,
    messaging_settings: Settings,
) -> None:
    """An inbound WhatsApp message ends up in the patient's conversation: the `message.received` event
    (ids only, no body) is delivered to the conversations module, which opens the conversation row and
    attaches the message to it."""
    patient = await patient_with_contacts(session, twilio_org)
    await inbound(anon_client, messaging_settings, from_=patient.primary_phone, body="Book me in please")
    [comm] = await session.scalars(
        select(Communication).where(Communication.org_id == twilio_org.id, Communication.patient_id == patient.id)
    )
    assert comm.conversation_id is None  # routing happens when the event is delivered, not in the webhook
    [event] = await _events(session, twilio_org, "message.received")
    assert event.payload["communication_id"] == str(comm.id) and "body" not in event.payload

    await jobs.run_due(session, names=["events.deliver"])

    conversations = list(
        await session.scalars(
            select(Conversation).where(Conversation.org_id == twilio_org.id, Conversation.patient_id == patient.id)
        )
    )
    assert len(conversations) == 1
    [conversation] = conversations
    assert (conversation.channel, conversation.status) == ("whatsapp", "open")
    assert conversation.unread_count == 1 and conversation.last_inbound_at is not None
    await session.refresh(comm, ["conversation_id"])
    assert comm.conversation_id == conversation.id


async def test_handle_media_webhook(
    session: AsyncSession,
    anon_client: httpx.AsyncClient,
    client: httpx.AsyncClient,
    twilio_org: Organisation,
    messaging_settings: Settings,
) -> None:
    patient = await patient_with_contacts(session, twilio_org)
    photo, letter = media_samples.jpeg(6000), media_samples.pdf(3000)
    media_base = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages/MM1/Media"
    cdn = "https://mms.twiliocdn.test/ME1-signed?Expires=1"
    with respx.mock(assert_all_called=True) as twilio:
        # Twilio answers the media URL with a redirect to its CDN, which serves the bytes
        first = twilio.get(f"{media_base}/ME1").mock(return_value=httpx.Response(307, headers={"Location": cdn}))
        served = twilio.get(cdn).mock(return_value=httpx.Response(200, content=photo,
                                                                  headers={"Content-Type": "image/jpeg"}))
        twilio.get(f"{media_base}/ME2").mock(return_value=httpx.Response(200, content=letter))
        r = await inbound(
            anon_client,
            messaging_settings,
            from_=patient.primary_phone,
            body="",
            NumMedia="2",
            MediaUrl0=f"{media_base}/ME1",
            MediaContentType0="image/jpeg",
            MediaUrl1=f"{media_base}/ME2",
            MediaContentType1="application/pdf",
        )
        assert r.status_code == 200, r.text
        [comm] = await session.scalars(select(Communication).where(Communication.patient_id == patient.id))
        assert [m["content_type"] for m in comm.media] == ["image/jpeg", "application/pdf"]
        assert comm.media[0]["url"].endswith("/ME1") and comm.details["num_media"] == 2
        report = await jobs.run_due(session, names=["media.fetch_inbound", "events.deliver"])
    assert len(report.succeeded) >= 2 and report.failed == []
    # Twilio's account credentials go to Twilio's API only, never to the host it redirects to
    assert messaging_settings.twilio_auth_token is not None
    expected = httpx.BasicAuth(TWILIO_SID, messaging_settings.twilio_auth_token.get_secret_value())
    assert first.calls[0].request.headers["authorization"] == expected._auth_header
    assert "authorization" not in served.calls[0].request.headers
    # the attachments are now our media: verified, linked to the message and the patient, served by our URLs
    listed = await client.get("/media", params={"message_id": str(comm.id)})
    items = sorted(listed.json()["items"], key=lambda m: m["content_type"] != "image/jpeg")
    assert [(m["content_type"], m["status"], m["source"], m["patient_id"]) for m in items] == [
        ("image/jpeg", "available", "whatsapp", str(patient.id)),
        ("application/pdf", "available", "whatsapp", str(patient.id)),
    ]
    link = (await client.get(f"/media/{items[0]['id']}/download-url")).json()
    assert link["url"].startswith(messaging_settings.public_base_url + "/media/local/")
    fetched = await anon_client.get(link["url"])
    assert fetched.status_code == 200 and fetched.content == photo
    # the messaging and conversation APIs hand out our URLs, never Twilio's
    message = (await client.get(f"/communications/{comm.id}")).json()
    assert [(m["content_type"], m["status"]) for m in message["media"]] == [
        ("image/jpeg", "available"), ("application/pdf", "available")]
    assert all(m["url"].startswith(messaging_settings.public_base_url + "/media/local/") for m in message["media"])
    assert "twilio" not in str(message["media"])
    served_again = await anon_client.get(message["media"][1]["url"])
    assert served_again.content == letter
    await session.refresh(comm)
    assert comm.conversation_id is not None
    history = (await client.get(f"/conversations/{comm.conversation_id}/messages")).json()
    [received] = [m for m in history["items"] if m["id"] == str(comm.id)]
    assert [m["media_id"] for m in received["media"]] == [m["media_id"] for m in message["media"]]
    assert "twilio" not in str(received["media"])
    in_conversation = (await client.get("/media", params={"conversation_id": str(comm.conversation_id)})).json()
    assert in_conversation["total"] == 2


async def test_malformed_webhook_data(
    session: AsyncSession,
    anon_client: httpx.AsyncClient,
    twilio_org: Organisation,
    messaging_settings: Settings,
) -> None:
    cases = [
        {"From": f"whatsapp:{new_phone()}", "To": f"whatsapp:{CLINIC_NUMBER}", "Body": "no sid"},
        {
            "MessageSid": "SMm2",
            "From": f"whatsapp:{new_phone()}",
            "To": f"whatsapp:{CLINIC_NUMBER}",
            "NumMedia": "many",
        },
        {"MessageSid": "SMm3", "From": "not-a-number", "To": CLINIC_NUMBER, "Body": "x"},
    ]
    for params in cases:
        r = await post_twilio(anon_client, messaging_settings, "/webhooks/twilio/messaging", params)
        assert r.status_code == 400 and r.json()["code"] == "malformed_webhook", r.text
    r = await post_twilio(anon_client, messaging_settings, "/webhooks/twilio/status", {"MessageSid": "SMx"})
    assert r.status_code == 400
    assert (
        await session.scalar(
            select(func.count()).select_from(InboundEvent).where(InboundEvent.external_id.in_(["SMm2", "SMm3"]))
        )
        == 0
    )


async def test_stop_and_start_keywords_change_consent_and_are_acknowledged(
    session: AsyncSession,
    anon_client: httpx.AsyncClient,
    client: httpx.AsyncClient,
    twilio_org: Organisation,
    messaging_settings: Settings,
    twilio_api: TwilioFake,
) -> None:
    patient = await patient_with_contacts(session, twilio_org)
    r = await inbound(anon_client, messaging_settings, from_=patient.primary_phone, body="STOP", channel="sms")
    assert r.status_code == 200 and "<Message>You have been unsubscribed" in r.text
    for purpose in ("care", "reminders"):
        decision = await patients.consent_allows(session, twilio_org.id, patient.id, channel="sms", purpose=purpose)
        assert not decision.allowed and decision.reason == "opted_out"
    assert (
        await patients.consent_allows(session, twilio_org.id, patient.id, channel="whatsapp", purpose="care")
    ).allowed
    refused = await client.post("/communications", json={"patient_id": str(patient.id), "channel": "sms", "body": "x"})
    assert refused.status_code == 409
    ack = await session.scalar(
        select(Communication).where(Communication.patient_id == patient.id, Communication.direction == "outbound")
    )
    assert ack.details["kind"] == "consent_acknowledgement" and ack.status == "sent"
    assert await _events(session, twilio_org, "message.received") == []

    r = await inbound(anon_client, messaging_settings, from_=patient.primary_phone, body="start", channel="sms")
    assert "subscribed again" in r.text
    ok = await client.post("/communications", json={"patient_id": str(patient.id), "channel": "sms", "body": "x"})
    assert ok.status_code == 201


async def test_status_callbacks_update_status(
    session: AsyncSession,
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    twilio_org: Organisation,
    twilio_api: TwilioFake,
    messaging_settings: Settings,
) -> None:
    patient = await patient_with_contacts(session, twilio_org)
    r = await client.post("/communications", json={"patient_id": str(patient.id), "channel": "sms", "body": "x"})
    await jobs.run_due(session)
    comm = await communications.get(session, Principal.system(twilio_org.id), r.json()["id"])
    sid = comm.provider_message_id

    async def status(value: str, **extra: str) -> httpx.Response:
        return await post_twilio(
            anon_client,
            messaging_settings,
            "/webhooks/twilio/status",
            {"MessageSid": sid, "MessageStatus": value, "AccountSid": TWILIO_SID, **extra},
        )

    assert (await status("delivered")).status_code == 200
    assert (await status("sent")).status_code == 200  # late and out of order: ignored
    await session.refresh(comm)
    assert comm.status == "delivered" and comm.delivered_at is not None
    await status("read")
    await session.refresh(comm)
    assert comm.status == "read" and comm.read_at is not None

    r = await client.post("/communications", json={"patient_id": str(patient.id), "channel": "sms", "body": "y"})
    await jobs.run_due(session)
    other = await communications.get(session, Principal.system(twilio_org.id), r.json()["id"])
    sid = other.provider_message_id
    await status("undelivered", ErrorCode="30003", ErrorMessage="Unreachable destination handset")
    await session.refresh(other)
    assert (other.status, other.error_code) == ("undelivered", "30003")
    unknown = await post_twilio(
        anon_client,
        messaging_settings,
        "/webhooks/twilio/status",
        {"MessageSid": "SMnobody", "MessageStatus": "delivered"},
    )
    assert unknown.status_code == 200


def _voice_payload(caller: str, call_id: str = "call-1") -> bytes:
    return json.dumps(
        {
            "call_id": call_id,
            "caller": caller,
            "callee": CLINIC_NUMBER,
            "transcript": "Agent: How can I help?\nCaller: I'd like a cleaning next week.",
            "extracted": {"intent": "book", "service": "cleaning"},
            "duration_seconds": 95,
            "started_at": datetime(2026, 12, 1, 9, tzinfo=UTC).isoformat(),
        }
    ).encode()


async def test_handle_voice_agent_webhook(
    session: AsyncSession, anon_client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    secret = uuid.uuid4().hex
    await configure_channel(session, org, "voice", webhook_secret=secret)
    caller = new_phone()
    body = _voice_payload(caller)
    path = f"/webhooks/voice-agent/{org.id}"
    r = await anon_client.post(
        path,
        content=body,
        headers={"Content-Type": "application/json", "X-Signature": f"sha256={hmac_signature(secret, body)}"},
    )
    assert r.status_code == 200 and r.json()["status"] == "processed", r.text
    comm = await communications.get(session, Principal.system(org.id), uuid.UUID(r.json()["communication_id"]))
    assert (comm.channel, comm.direction, comm.provider) == ("voice", "inbound", "voice_agent")
    assert "cleaning" in comm.body and comm.details["extracted"] == {"intent": "book", "service": "cleaning"}
    patient = await session.get(Patient, comm.patient_id)
    assert patient.primary_phone == caller and patient.is_provisional
    [event] = await _events(session, org, "voice_call.completed")
    assert event.payload["communication_id"] == str(comm.id) and event.payload["call_id"] == "call-1"
    # replay: acknowledged, not stored twice
    again = await anon_client.post(path, content=body, headers={"X-Signature": hmac_signature(secret, body)})
    assert again.json()["status"] == "duplicate"
    # forged, unsigned, other org, malformed
    forged = await anon_client.post(
        path,
        content=body.replace(b"cleaning", b"surgery"),
        headers={"X-Signature": hmac_signature(secret, body)},
    )
    unsigned = await anon_client.post(path, content=body)
    elsewhere = await anon_client.post(
        f"/webhooks/voice-agent/{uuid.uuid4()}",
        content=body,
        headers={"X-Signature": hmac_signature(secret, body)},
    )
    bad = b'{"caller": 12}'
    malformed = await anon_client.post(path, content=bad, headers={"X-Signature": hmac_signature(secret, bad)})
    assert (forged.status_code, unsigned.status_code, elsewhere.status_code, malformed.status_code) == (
        403,
        403,
        403,
        400,
    )
    assert len(await _events(session, org, "voice_call.completed")) == 1


async def test_webhooks_are_rate_limited(anon_client: httpx.AsyncClient, app, messaging_settings: Settings) -> None:
    original = app.state.settings.rate_limit_webhooks
    app.state.settings.rate_limit_webhooks = "2/minute"
    try:
        codes = [(await anon_client.post("/webhooks/twilio/status", data={})).status_code for _ in range(3)]
    finally:
        app.state.settings.rate_limit_webhooks = original
    assert codes == [403, 403, 429]


async def test_inbound_messages_go_to_the_org_owning_the_number(
    session: AsyncSession,
    anon_client: httpx.AsyncClient,
    org: Organisation,
    other_org: Organisation,
    messaging_settings: Settings,
) -> None:
    await configure_channel(session, org, "sms", sender="+34910000101")
    await configure_channel(session, other_org, "sms", sender="+34910000102")
    phone = new_phone()
    await inbound(anon_client, messaging_settings, from_=phone, to="+34910000102", body="hi", channel="sms")
    assert await patients.find_by_phone(session, org.id, phone) is None
    assert await patients.find_by_phone(session, other_org.id, phone) is not None
    assert await sandbox.outbox(session, other_org.id) == []


async def test_concurrent_retries_of_one_message_are_processed_once(committed, messaging_settings: Settings) -> None:
    """Twilio retrying while the first delivery is still in flight: one message, one event."""
    import asyncio

    organisation, _ = await committed.org()
    clinic = f"+3491{uuid.uuid4().int % 10**7:07d}"
    async with committed.session() as s:
        await configure_channel(s, organisation, "whatsapp", sender=clinic)
        await s.commit()
    client = committed.client()
    sid = f"SM{uuid.uuid4().hex}"
    sender = new_phone()
    responses = await asyncio.gather(
        *(inbound(client, messaging_settings, from_=sender, to=clinic, body="hello", sid=sid) for _ in range(4))
    )
    assert [r.status_code for r in responses] == [200] * 4
    async with committed.session() as s:
        count = await s.scalar(
            select(func.count()).select_from(Communication).where(Communication.org_id == organisation.id)
        )
        received = await s.scalar(
            select(func.count())
            .select_from(EventRecord)
            .where(EventRecord.org_id == organisation.id, EventRecord.type == "message.received")
        )
        patients_with_number = await s.scalar(
            select(func.count())
            .select_from(Patient)
            .where(Patient.org_id == organisation.id, Patient.primary_phone == sender)
        )
    assert (count, received, patients_with_number) == (1, 1, 1)


async def test_status_callback_before_the_send_job_commits_is_applied_later(
    session: AsyncSession,
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    twilio_org: Organisation,
    twilio_api: TwilioFake,
    messaging_settings: Settings,
) -> None:
    patient = await patient_with_contacts(session, twilio_org)
    twilio_api.messages.side_effect = None
    twilio_api.messages.return_value = httpx.Response(201, json={"sid": "SMearly0001", "status": "queued"})
    r = await client.post("/communications", json={"patient_id": str(patient.id), "channel": "sms", "body": "x"})
    # Twilio is fast: its "delivered" arrives while our job has not stored the message id yet
    early = await post_twilio(
        anon_client,
        messaging_settings,
        "/webhooks/twilio/status",
        {"MessageSid": "SMearly0001", "MessageStatus": "delivered"},
    )
    assert early.status_code == 200
    await jobs.run_due(session)
    comm = await communications.get(session, Principal.system(twilio_org.id), uuid.UUID(r.json()["id"]))
    assert comm.status == "delivered" and comm.delivered_at is not None


async def test_disabled_channel_refuses_to_send(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    await configure_channel(session, org, "sms", enabled=False)
    patient = await patient_with_contacts(session, org)
    r = await client.post("/communications", json={"patient_id": str(patient.id), "channel": "sms", "body": "x"})
    assert r.status_code == 409 and r.json()["code"] == "channel_disabled"


async def test_sms_to_a_number_configured_for_whatsapp_reaches_that_org_and_can_join_a_conversation(
    session: AsyncSession,
    anon_client: httpx.AsyncClient,
    client: httpx.AsyncClient,
    org: Organisation,
    messaging_settings: Settings,
) -> None:
    await configure_channel(session, org, "whatsapp", sender="+34910000201")
    phone = new_phone()
    r = await inbound(anon_client, messaging_settings, from_=phone, to="+34910000201", body="hi", channel="sms")
    assert r.status_code == 200
    [comm] = await session.scalars(select(Communication).where(Communication.org_id == org.id))
    assert comm.channel == "sms"
    # communications.conversation_id references conversations (foreign key of the conversations module)
    from prm.conversations import service as conversations

    conversation_id = (await conversations.open_for(session, org.id, comm.patient_id, "sms")).id
    await communications.attach_conversation(session, org.id, comm.id, conversation_id)
    listed = await client.get("/communications", params={"conversation_id": str(conversation_id)})
    assert [i["id"] for i in listed.json()["items"]] == [str(comm.id)]
