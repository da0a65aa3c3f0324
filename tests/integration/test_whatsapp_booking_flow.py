"""The plan's first integration scenario: a patient books an appointment over WhatsApp, from the first
message to the confirmation. Driven only through signed Twilio webhook requests and the public API
(the job queue is drained the way the worker would, with the service clock frozen).

The assistant answers in the chat; the formal `appointment_confirmation` is sent once, by the
notifications module on the `appointment.booked` event (not by the assistant as well)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from prm.core import clock, jobs
from prm.settings import Settings
from tests.fixtures.conversation_fixtures import post_message, setup_clinic, twilio_signing

PHONE = "+34600123456"
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # Wednesday, 10:00 in Madrid


async def test_complete_whatsapp_booking_flow(
    session, settings: Settings, client: httpx.AsyncClient, anon_client: httpx.AsyncClient
) -> None:
    with clock.frozen(T0) as c, twilio_signing(settings):
        ids = await setup_clinic(client)
        r = await client.post(
            "/patients",
            json={
                "given_name": "Lucía",
                "family_name": "Martín",
                "phones": [{"number": PHONE, "is_primary": True}],
                "timezone": "Europe/Madrid",
            },
        )
        assert r.status_code == 201, r.text
        patient_id = r.json()["id"]

        notices: list[str] = []  # delivered messages that are not chat replies (notifications)

        async def patient_says(text: str) -> list[str]:
            """Send one signed WhatsApp message, let the worker run (the assistant, then the events
            it caused), return the replies it produced (in conversation order), checking each also
            reached the sandbox outbox."""
            before = await outbox_bodies()
            replied_before = len(await conversation_replies())
            await post_message(anon_client, text, from_phone=PHONE)
            await jobs.run_due(session)
            c.advance(timedelta(seconds=30))
            delivered = (await outbox_bodies())[len(before) :]
            replies = (await conversation_replies())[replied_before:]
            for reply in replies:  # every answer went out through the provider
                delivered.remove(reply)
            notices.extend(delivered)
            return replies

        async def outbox_bodies() -> list[str]:
            r = await client.get(
                "/communications/sandbox/outbox", params={"patient_id": patient_id, "limit": 200}
            )
            assert r.status_code == 200, r.text
            return [m["payload"].get("body", "") for m in reversed(r.json()["items"])]

        async def conversation_replies() -> list[str]:
            listed = (await client.get("/conversations", params={"patient_id": patient_id})).json()["items"]
            if not listed:
                return []
            r = await client.get(f"/conversations/{listed[0]['id']}/messages", params={"limit": 200})
            return [m["body"] for m in reversed(r.json()["items"]) if m["direction"] == "outbound"]

        replies = await patient_says("Hi!")
        assert replies == [
            "Hello Lucía! I'm the booking assistant of Test Clinic.",
            "What would you like to book? Tell me what the visit is for, or reply CANCEL or RESCHEDULE "
            "for an appointment you already have. Reply AGENT to talk to a person.",
        ]

        replies = await patient_says("I need a teeth cleaning")
        assert len(replies) == 1
        assert replies[0].startswith(
            "These times are open for Dental cleaning:\n1. Wed 25 Nov, 11:15 with Dr Vega"
        )  # 60 min notice

        replies = await patient_says("tomorrow morning")
        assert replies[0].splitlines()[1:3] == [
            "1. Thu 26 Nov, 09:00 with Dr Vega",
            "2. Thu 26 Nov, 09:15 with Dr Vega",
        ]

        replies = await patient_says("2")
        assert replies == ["Dental cleaning on Thu 26 Nov, 09:15 with Dr Vega. Shall I book it? (yes/no)"]

        assert notices == []
        replies = await patient_says("Yes")
        # the assistant's answer in the chat ...
        assert replies == [
            "Your appointment is booked: Dental cleaning on Thu 26 Nov, 09:15. "
            "Reply CANCEL or RESCHEDULE if you need to change it."
        ]
        # ... and exactly one confirmation: the `appointment_confirmation` notification
        assert notices == [
            "Hi Lucía, your Dental cleaning appointment with Dr Vega is booked for "
            "Thursday 26 November 2026, 09:15 at Centro."
        ]
        r = await client.get("/communications", params={"patient_id": patient_id, "limit": 200})
        assert [m["template_key"] for m in r.json()["items"]].count("appointment_confirmation") == 1
        await jobs.run_due(session)  # nothing left that would send it again
        assert len(await outbox_bodies()) == 6 + 1

        # the booked appointment
        r = await client.get("/appointments", params={"patient_id": patient_id})
        assert r.status_code == 200, r.text
        booked = r.json()["items"]
        assert len(booked) == 1
        appointment = booked[0]
        assert appointment["status"] == "booked" and appointment["source"] == "whatsapp"
        assert (
            appointment["service_id"] == ids.cleaning_id
            and appointment["practitioner_id"] == ids.practitioner_id
        )
        assert datetime.fromisoformat(appointment["start_at"]) == datetime(2026, 11, 26, 8, 15, tzinfo=UTC)

        # the confirmation in the sandbox outbox, addressed to the patient's WhatsApp (the patient
        # has no preferred channel; WhatsApp comes first and its 24-hour window is open)
        r = await client.get("/communications/sandbox/outbox", params={"patient_id": patient_id, "limit": 200})
        [confirmation] = [m for m in r.json()["items"] if "is booked for" in m["payload"].get("body", "")]
        assert confirmation["channel"] == "whatsapp" and confirmation["to_address"].endswith(PHONE)

        # the conversation's final state
        r = await client.get("/conversations", params={"patient_id": patient_id})
        conversations = r.json()["items"]
        assert len(conversations) == 1
        conversation = conversations[0]
        assert conversation["status"] == "open" and conversation["channel"] == "whatsapp"
        assert conversation["bot_active"] is True and conversation["bot_state"] == "done"
        assert conversation["assignee_id"] is None and conversation["unread_count"] == 5
        assert conversation["whatsapp_window_open"] is True
        detail = (await client.get(f"/conversations/{conversation['id']}")).json()
        assert detail["bot_context"] == {"updated_at": detail["bot_context"]["updated_at"]}
        history = (
            await client.get(f"/conversations/{conversation['id']}/messages", params={"limit": 100})
        ).json()
        assert history["total"] == 5 + 6  # five from the patient, six answers
        assert [m["direction"] for m in history["items"][:2]] == ["outbound", "inbound"]
        assert history["items"][0]["body"] == replies[0]
        events = (await client.get("/admin/events", params={"limit": 100})).json()["items"]
        assert "appointment.booked" in {e["type"] for e in events}


async def test_patient_timeline_shows_conversation_ticket_and_booking(
    session, settings: Settings, client: httpx.AsyncClient, anon_client: httpx.AsyncClient
) -> None:
    """After a WhatsApp handoff, the patient's timeline (patients API) lists the conversation, the
    ticket and the messages, contributed by each module through the registry."""
    with clock.frozen(T0) as c, twilio_signing(settings):
        await setup_clinic(client)
        await post_message(anon_client, "Hi", from_phone=PHONE)
        await jobs.run_due(session)
        c.advance(timedelta(minutes=1))
        await post_message(anon_client, "I want to talk to a person", from_phone=PHONE)
        await jobs.run_due(session)
        listed = (await client.get("/conversations")).json()["items"]
        patient_id = listed[0]["patient_id"]
        r = await client.get(f"/patients/{patient_id}/timeline")
        assert r.status_code == 200, r.text
        kinds = {(e["source"], e["kind"]) for e in r.json()["items"]}
        assert ("conversations", "conversation.opened") in kinds
        assert ("tickets", "ticket.opened") in kinds
