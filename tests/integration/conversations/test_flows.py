"""Inbound routing and the booking assistant over real webhooks: handoffs, booking, cancelling, concurrency."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from prm.communications.models import Communication
from prm.conversations import service
from prm.conversations.models import Conversation
from prm.core.events import EventRecord
from prm.patients.models import Patient
from prm.tickets.models import Ticket
from tests.fixtures.conversation_fixtures import post_message, setup_clinic, twilio_signing
from tests.fixtures.factories import make_patient, make_user

from .support import PHONE, _bodies, _conversation_of, say


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
