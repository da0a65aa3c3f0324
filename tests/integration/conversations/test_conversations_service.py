"""Conversations end to end: inbound routing, the assistant's executor, the inbox API, handoff."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from prm.communications.models import Communication, SandboxMessage
from prm.conversations import service
from prm.conversations.models import Conversation
from prm.core import clock, jobs
from prm.core.auth import Principal
from prm.core.events import EventRecord
from prm.patients.models import Patient
from prm.patients.registry import merge_handlers, timeline_sources
from prm.tickets.models import Ticket
from tests.fixtures.conversation_fixtures import post_message, setup_clinic, twilio_signing
from tests.fixtures.factories import make_patient, make_user
from tests.integration.conversations.conftest import T0

PHONE = "+34600111222"


async def _conversation_of(session, org_id, phone: str = PHONE) -> Conversation:
    patient = await session.scalar(select(Patient).where(Patient.org_id == org_id, Patient.primary_phone == phone))
    assert patient is not None
    conversation = await session.scalar(
        select(Conversation).where(Conversation.patient_id == patient.id).execution_options(populate_existing=True)
    )
    assert conversation is not None
    return conversation


async def _bodies(session, conversation_id, direction: str = "outbound") -> list[str]:
    rows = await session.scalars(
        select(Communication)
        .where(Communication.conversation_id == conversation_id, Communication.direction == direction)
        .order_by(Communication.created_at, Communication.id)
    )
    return [r.body or "" for r in rows]


async def say(session, anon_client, text: str, phone: str = PHONE) -> None:
    await post_message(anon_client, text, from_phone=phone)
    await jobs.run_due(session)


async def test_create_conversation(session, org, other_org, client: httpx.AsyncClient) -> None:
    patient = await make_patient(session, org, phone="+34600999888")
    r = await client.post("/conversations", json={"patient_id": str(patient.id), "channel": "whatsapp"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "open" and body["bot_active"] is True and body["bot_state"] == "idle"
    assert body["unread_count"] == 0 and body["whatsapp_window_open"] is False
    again = await client.post("/conversations", json={"patient_id": str(patient.id), "channel": "whatsapp"})
    assert again.json()["id"] == body["id"]  # one open conversation per patient and channel
    sms = await client.post("/conversations", json={"patient_id": str(patient.id), "channel": "sms"})
    assert sms.json()["id"] != body["id"]
    await client.post(f"/conversations/{body['id']}/status", json={"status": "closed"})
    fresh = await client.post("/conversations", json={"patient_id": str(patient.id), "channel": "whatsapp"})
    assert fresh.json()["id"] != body["id"]  # a closed one is not reused
    foreign = await make_patient(session, other_org)
    r = await client.post("/conversations", json={"patient_id": str(foreign.id)})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "patient_id"
    assert (
        await client.post("/conversations", json={"patient_id": str(patient.id), "channel": "email"})
    ).status_code == 422


async def test_add_message_to_conversation(session, org, client, anon_client, signing, frozen) -> None:
    await setup_clinic(client)
    await post_message(anon_client, "Hello", from_phone=PHONE)
    # stored by the webhook, not yet routed: the subscriber runs as a job
    inbound = await session.scalar(
        select(Communication).where(Communication.org_id == org.id, Communication.direction == "inbound")
    )
    assert inbound is not None and inbound.conversation_id is None
    await jobs.run_due(session)
    conversation = await _conversation_of(session, org.id)
    await session.refresh(inbound)
    assert inbound.conversation_id == conversation.id
    assert conversation.unread_count == 1 and conversation.last_inbound_at == T0
    assert conversation.bot_state == "ask_reason"
    replies = await _bodies(session, conversation.id)
    assert replies[0] == "Hello! I'm the booking assistant of Test Clinic."
    assert replies[1].startswith("What would you like to book?")
    outbox = await session.scalars(select(SandboxMessage).where(SandboxMessage.org_id == org.id))
    assert len(list(outbox)) == 2  # both replies went out through the sandbox provider
    # a redelivered event does not attach or answer twice
    assert await service.route_inbound(session, org.id, inbound.id) is not None
    assert len(await _bodies(session, conversation.id)) == 2


async def test_get_conversation_history(session, org, client, anon_client, signing, frozen) -> None:
    await setup_clinic(client)
    for text in ("hi", "cleaning"):
        await say(session, anon_client, text)
        frozen.advance(timedelta(minutes=1))
    conversation = await _conversation_of(session, org.id)
    r = await client.get(f"/conversations/{conversation.id}/messages", params={"limit": 2})
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["total"] == 5  # hi, greeting, question, cleaning, offer
    assert [m["direction"] for m in page["items"]] == ["outbound", "inbound"]  # newest first
    assert page["items"][0]["body"].startswith("These times are open for Dental cleaning")
    assert page["items"][0]["created_by"] == "assistant"
    assert page["items"][1]["body"] == "cleaning"
    older = (await client.get(f"/conversations/{conversation.id}/messages", params={"limit": 2, "offset": 4})).json()[
        "items"
    ]
    assert [m["body"] for m in older] == ["hi"]
    detail = (await client.get(f"/conversations/{conversation.id}")).json()
    assert detail["bot_state"] == "choose_slot" and len(detail["bot_context"]["offered"]) == 5
    assert detail["whatsapp_window_open"] is True and detail["unread_count"] == 2


async def test_update_conversation_state(session, org, client, anon_client, signing, frozen) -> None:
    await setup_clinic(client)
    await say(session, anon_client, "hi")
    conversation = await _conversation_of(session, org.id)
    path = f"/conversations/{conversation.id}"
    agent = await make_user(session, org, role="support_agent")

    r = await client.post(f"{path}/read")
    assert r.json()["unread_count"] == 0
    r = await client.post(f"{path}/assign", json={"assignee_id": str(agent.id)})
    assert r.json()["assignee_id"] == str(agent.id) and r.json()["bot_active"] is False
    assert (await client.post(f"{path}/assign", json={"assignee_id": str(uuid.uuid4())})).status_code == 422
    r = await client.post(f"{path}/status", json={"status": "pending"})
    assert r.json()["status"] == "pending"
    # the patient writes while a person has it: no bot answer, back to open, unread counts
    await say(session, anon_client, "are you there?")
    conversation = await _conversation_of(session, org.id)
    assert conversation.status == "open" and conversation.unread_count == 1
    assert len(await _bodies(session, conversation.id)) == 2  # only the first greeting + question

    # a staff reply goes out through communications
    r = await client.post(f"{path}/messages", json={"body": "Yes, how can I help?"})
    assert r.status_code == 201 and r.json()["direction"] == "outbound"
    await jobs.run_due(session)
    assert (await _bodies(session, conversation.id))[-1] == "Yes, how can I help?"

    # snooze, then wake when the time comes
    r = await client.post(f"{path}/status", json={"status": "snoozed"})
    assert r.status_code == 422
    until = (clock.now() + timedelta(hours=1)).isoformat()
    r = await client.post(f"{path}/status", json={"status": "snoozed", "snoozed_until": until})
    assert r.json()["status"] == "snoozed"
    frozen.advance(timedelta(hours=2))
    assert await service.wake_snoozed(session) == 1
    assert (await client.get(path)).json()["status"] == "open"

    # hand back to the bot: it answers again, from the start
    r = await client.post(f"{path}/bot")
    assert r.json()["bot_active"] is True and r.json()["assignee_id"] is None and r.json()["bot_state"] == "idle"
    await say(session, anon_client, "cleaning please")
    assert (await client.get(path)).json()["bot_state"] == "choose_slot"

    # close: final; the next message opens a new conversation
    assert (await client.post(f"{path}/status", json={"status": "closed"})).json()["status"] == "closed"
    assert (await client.post(f"{path}/status", json={"status": "open"})).status_code == 409
    assert (await client.post(f"{path}/messages", json={"body": "x"})).status_code == 409
    assert (await client.post(f"{path}/bot")).status_code == 409
    await say(session, anon_client, "hello again")
    listed = (await client.get("/conversations", params={"status": ["open"]})).json()["items"]
    assert len(listed) == 1 and listed[0]["id"] != str(conversation.id)


async def test_inbox_filters(session, org, client, anon_client, signing, frozen) -> None:
    await setup_clinic(client)
    await say(session, anon_client, "hi", phone="+34600000001")
    frozen.advance(timedelta(minutes=1))
    await say(session, anon_client, "agent", phone="+34600000002")
    first = await _conversation_of(session, org.id, "+34600000001")
    second = await _conversation_of(session, org.id, "+34600000002")
    await client.post(f"/conversations/{first.id}/read")

    async def ids(**params) -> list[str]:
        r = await client.get("/conversations", params=params)
        assert r.status_code == 200, r.text
        return [c["id"] for c in r.json()["items"]]

    assert await ids() == [str(second.id), str(first.id)]  # latest activity first
    assert await ids(unread="true") == [str(second.id)]
    assert await ids(bot_active="false") == [str(second.id)]
    assert await ids(channel="sms") == []
    assert await ids(patient_id=str(first.patient_id)) == [str(first.id)]
    assert await ids(unassigned="true") == [str(second.id), str(first.id)]  # no eligible staff to assign


async def test_conversation_not_found(session, org, other_org, client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()
    for method, path, body in [
        ("GET", f"/conversations/{missing}", None),
        ("GET", f"/conversations/{missing}/messages", None),
        ("POST", f"/conversations/{missing}/messages", {"body": "hi"}),
        ("POST", f"/conversations/{missing}/assign", {"assignee_id": None}),
        ("POST", f"/conversations/{missing}/status", {"status": "closed"}),
        ("POST", f"/conversations/{missing}/read", None),
        ("POST", f"/conversations/{missing}/bot", None),
    ]:
        r = await client.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["code"] == "conversation_not_found"
    theirs_patient = await make_patient(session, other_org)
    theirs = await service.create(session, other_org.id, theirs_patient.id, "whatsapp", Principal.system(other_org.id))
    assert (await client.get(f"/conversations/{theirs.id}")).status_code == 404


async def test_handoff_on_request_opens_assigned_ticket_and_silences_bot(
    session, org, client, anon_client, signing, frozen
) -> None:
    await setup_clinic(client)
    agent = await make_user(session, org, role="support_agent")
    await say(session, anon_client, "hi")
    await say(session, anon_client, "I want to talk to a human")
    conversation = await _conversation_of(session, org.id)
    assert conversation.bot_active is False and conversation.bot_state == "handoff"
    assert conversation.handoff_reason == "requested" and conversation.assignee_id == agent.id
    ticket = await session.scalar(select(Ticket).where(Ticket.conversation_id == conversation.id))
    assert ticket is not None and ticket.source == "bot_handoff" and ticket.assignee_id == agent.id
    assert ticket.patient_id == conversation.patient_id and ticket.category == "conversations"
    assert "talk to a human" in ticket.description
    replies = await _bodies(session, conversation.id)
    assert replies[-1].startswith("I'm passing you to a member of our team")
    await say(session, anon_client, "hello??")
    assert len(await _bodies(session, conversation.id)) == len(replies)  # silent
    handed = await session.scalar(
        select(EventRecord).where(EventRecord.type == "conversation.handed_off", EventRecord.org_id == org.id)
    )
    assert handed is not None and handed.payload["ticket_id"] == str(ticket.id)


async def test_urgent_message_goes_to_a_person(session, org, client, anon_client, signing, frozen) -> None:
    await setup_clinic(client)
    await say(session, anon_client, "I have chest pain since this morning")
    conversation = await _conversation_of(session, org.id)
    assert conversation.bot_active is False and conversation.handoff_reason == "urgent"
    ticket = await session.scalar(select(Ticket).where(Ticket.conversation_id == conversation.id))
    assert ticket is not None and ticket.priority == "urgent" and ticket.urgent_keywords == ["chest pain"]


async def test_repeated_misunderstanding_hands_off(session, org, client, anon_client, signing, frozen) -> None:
    await setup_clinic(client)
    await say(session, anon_client, "cleaning")
    for text in ("blorp", "zzz", "???"):
        await say(session, anon_client, text)
    conversation = await _conversation_of(session, org.id)
    assert conversation.handoff_reason == "not_understood"
    assert (
        await session.scalar(select(func.count()).select_from(Ticket).where(Ticket.conversation_id == conversation.id))
        == 1
    )


async def test_slot_taken_between_offer_and_confirmation(session, org, client, anon_client, signing, frozen) -> None:
    ids = await setup_clinic(client)
    await say(session, anon_client, "cleaning")
    conversation = await _conversation_of(session, org.id)
    offered = conversation.bot_context["offered"]
    await say(session, anon_client, "1")
    # someone else books the first offered slot through the API meanwhile
    rival = await make_patient(session, org, phone="+34600777666")
    r = await client.post(
        "/appointments",
        json={
            "patient_id": str(rival.id),
            "service_id": ids.cleaning_id,
            "practitioner_id": ids.practitioner_id,
            "start_at": offered[0]["start_at"],
        },
    )
    assert r.status_code == 201, r.text
    await say(session, anon_client, "yes")
    conversation = await _conversation_of(session, org.id)
    replies = await _bodies(session, conversation.id)
    assert replies[-2].startswith("Sorry, that time was just taken")
    assert replies[-1].startswith("These times are open for Dental cleaning")
    assert conversation.bot_state == "choose_slot"
    assert offered[0]["start_at"] not in [s["start_at"] for s in conversation.bot_context["offered"]]
    await say(session, anon_client, "1")
    await say(session, anon_client, "yes")
    mine = (await client.get("/appointments", params={"patient_id": str(conversation.patient_id)})).json()
    assert mine["total"] == 1


async def test_cancel_and_reschedule_over_whatsapp(session, org, client, anon_client, signing, frozen) -> None:
    ids = await setup_clinic(client)
    await say(session, anon_client, "hi")
    conversation = await _conversation_of(session, org.id)
    r = await client.post(
        "/appointments",
        json={
            "patient_id": str(conversation.patient_id),
            "service_id": ids.checkup_id,
            "practitioner_id": ids.practitioner_id,
            "start_at": "2026-11-27T10:00:00+01:00",
        },
    )
    assert r.status_code == 201, r.text
    appointment_id = r.json()["id"]

    await say(session, anon_client, "reschedule")
    conversation = await _conversation_of(session, org.id)
    assert conversation.bot_state == "choose_slot"
    await say(session, anon_client, "tomorrow morning")
    conversation = await _conversation_of(session, org.id)
    first = conversation.bot_context["offered"][0]["start_at"]
    assert first.startswith("2026-11-26T08:00")  # 09:00 in Madrid
    await say(session, anon_client, "1")
    await say(session, anon_client, "yes")
    moved = (await client.get(f"/appointments/{appointment_id}")).json()
    assert moved["start_at"].startswith("2026-11-26T08:00")
    replies = await _bodies(session, conversation.id)
    assert replies[-1] == "Your appointment is moved: Check-up is now on Thu 26 Nov, 09:00."

    await say(session, anon_client, "cancel")
    await say(session, anon_client, "yes")
    cancelled = (await client.get(f"/appointments/{appointment_id}")).json()
    assert cancelled["status"] == "cancelled"
    replies = await _bodies(session, conversation.id)
    assert replies[-1] == "Your appointment for Check-up on Thu 26 Nov, 09:00 is cancelled."


async def test_consent_refusal_does_not_break_routing(session, org, client, anon_client, signing, frozen) -> None:
    await setup_clinic(client)
    await say(session, anon_client, "STOP")  # consent keyword: handled by messaging, not routed
    await say(session, anon_client, "hi")
    conversation = await _conversation_of(session, org.id)
    assert conversation.unread_count == 1 and await _bodies(session, conversation.id) == []


async def test_merge_and_timeline_hooks(session, org) -> None:
    keep = await make_patient(session, org)
    dup = await make_patient(session, org)
    who = Principal.system(org.id)
    kept = await service.create(session, org.id, keep.id, "whatsapp", who)
    moved = await service.create(session, org.id, dup.id, "whatsapp", who)
    moved_sms = await service.create(session, org.id, dup.id, "sms", who)
    assert await merge_handlers()["conversations"](session, org.id, dup.id, keep.id) == 2
    for c in (kept, moved, moved_sms):
        await session.refresh(c)
    assert moved.patient_id == keep.id and moved.status == "closed"  # the survivor's stays the open one
    assert moved_sms.status == "open" and kept.status == "open"
    entries = await timeline_sources()["conversations"](session, org.id, keep.id, None, 10)
    assert {e.resource_id for e in entries} == {str(kept.id), str(moved.id), str(moved_sms.id)}


@pytest.mark.slow
async def test_concurrent_messages(committed, settings) -> None:
    """Six webhook deliveries for one patient at the same moment, routed by six concurrent transactions
    and then by a real worker: the row lock makes them strictly sequential (and redelivery a no-op),
    so counters and the assistant's state add up exactly."""
    _, key = await committed.org()
    api = committed.client(key)
    number = f"+3491{uuid.uuid4().int % 10_000_000:07d}"
    phone = f"+3460{uuid.uuid4().int % 10_000_000:07d}"
    with twilio_signing(settings):
        await setup_clinic(api, whatsapp_number=number)
        anon = committed.client()
        results = await asyncio.gather(
            *[post_message(anon, "blorp", from_phone=phone, to_phone=number) for _ in range(6)]
        )
        assert all(r.status_code == 200 for r in results)
        # Route all six at once, each in its own transaction (as six workers would) ...
        async with committed.session() as s:
            org_id, inbound_ids = None, []
            for comm in await s.scalars(select(Communication).where(Communication.from_address == phone)):
                org_id = comm.org_id
                inbound_ids.append(comm.id)
        assert org_id is not None and len(inbound_ids) == 6

        async def route(communication_id: uuid.UUID) -> None:
            async with committed.session() as s, s.begin():
                await service.route_inbound(s, org_id, communication_id)

        await asyncio.gather(*[route(i) for i in inbound_ids])
        # ... then let the real worker deliver the six message.received events: all already done.
        await committed.run_worker()

    async with committed.session() as s:
        patient_ids = list(await s.scalars(select(Patient.id).where(Patient.primary_phone == phone)))
        assert len(patient_ids) == 1
        conversations = list(await s.scalars(select(Conversation).where(Conversation.patient_id == patient_ids[0])))
        assert len(conversations) == 1  # one conversation, never two opened in a race
        conversation = conversations[0]
        assert conversation.unread_count == 6  # no lost update
        inbound = await s.scalar(
            select(func.count())
            .select_from(Communication)
            .where(Communication.conversation_id == conversation.id, Communication.direction == "inbound")
        )
        assert inbound == 6
        # Sequential processing: 1st → service list (2 replies), 2nd and 3rd → re-prompt (2 each),
        # 4th → third miss: handoff (1), 5th and 6th → silence. Interleaving would lose counts.
        outbound = await s.scalar(
            select(func.count())
            .select_from(Communication)
            .where(Communication.conversation_id == conversation.id, Communication.direction == "outbound")
        )
        assert outbound == 7
        assert conversation.bot_state == "handoff" and conversation.handoff_reason == "not_understood"
        tickets = await s.scalar(
            select(func.count()).select_from(Ticket).where(Ticket.conversation_id == conversation.id)
        )
        assert tickets == 1


async def test_no_online_booking_leaves_messages_to_staff(session, org, client, anon_client, signing, frozen) -> None:
    r = await client.put("/communications/channels/whatsapp", json={"provider": "sandbox", "sender": "+34910000001"})
    assert r.status_code == 200
    await say(session, anon_client, "hello, can I book?")
    conversation = await _conversation_of(session, org.id)
    assert conversation.unread_count == 1 and conversation.bot_state == "idle"
    assert await _bodies(session, conversation.id) == []  # no services: the assistant stays quiet


async def test_staff_reply_follows_the_whatsapp_24_hour_rule(session, org, client, anon_client, signing, frozen):
    await setup_clinic(client)
    await say(session, anon_client, "agent")
    conversation = await _conversation_of(session, org.id)
    path = f"/conversations/{conversation.id}"
    assert (await client.get(path)).json()["whatsapp_window_open"] is True
    frozen.advance(timedelta(hours=25))
    assert (await client.get(path)).json()["whatsapp_window_open"] is False
    r = await client.post(f"{path}/messages", json={"body": "Sorry for the delay"})
    assert r.status_code == 422 and r.json()["code"] == "whatsapp_window_closed"
    assert (await _bodies(session, conversation.id))[-1].startswith("I'm passing you")  # nothing written


async def test_spanish_speaking_patient_books_in_spanish(session, org, client, anon_client, signing, frozen):
    await setup_clinic(client)
    r = await client.post(
        "/patients",
        json={
            "given_name": "Lucía",
            "family_name": "Martín",
            "preferred_language": "es",
            "phones": [{"number": PHONE, "is_primary": True}],
        },
    )
    assert r.status_code == 201, r.text
    for text in ("Hola, quiero una limpieza", "mañana por la mañana", "1", "sí"):
        await say(session, anon_client, text)
        frozen.advance(timedelta(seconds=30))
    conversation = await _conversation_of(session, org.id)
    replies = await _bodies(session, conversation.id)
    assert replies[0] == "¡Hola Lucía! Soy el asistente de citas de Test Clinic."
    assert replies[2].startswith("Estos horarios están libres para Dental cleaning:\n1. jue 26 de nov, 09:00")
    assert replies[-1] == (
        "Su cita está reservada: Dental cleaning el jue 26 de nov, 09:00. "
        "Responda CANCELAR o CAMBIAR si necesita modificarla."
    )
    assert conversation.bot_state == "done"
    # the formal confirmation is the notifications module's, in Spanish, sent once
    [confirmation] = await session.scalars(
        select(Communication).where(
            Communication.org_id == org.id, Communication.template_key == "appointment_confirmation"
        )
    )
    assert confirmation.channel == "whatsapp" and confirmation.body == (
        "Hola Lucía, su cita de Dental cleaning con Dr Vega queda reservada para el "
        "jueves 26 de noviembre de 2026, 09:00 en Centro."
    )
