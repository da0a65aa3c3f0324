"""The staff inbox: conversations, history, state, filters, staff replies, the patient-record hooks."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlalchemy import select

from prm.communications.models import Communication, SandboxMessage
from prm.conversations import service
from prm.core import clock, jobs
from prm.core.auth import Principal
from prm.patients.registry import merge_handlers, timeline_sources
from tests.fixtures.conversation_fixtures import post_message, setup_clinic
from tests.fixtures.factories import make_patient, make_user
from tests.integration.conversations.conftest import T0

from .support import PHONE, _bodies, _conversation_of, say


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
    theirs = await service.create(session, Principal.system(other_org.id), theirs_patient.id, "whatsapp")
    assert (await client.get(f"/conversations/{theirs.id}")).status_code == 404


async def test_merge_and_timeline_hooks(session, org) -> None:
    keep = await make_patient(session, org)
    dup = await make_patient(session, org)
    who = Principal.system(org.id)
    kept = await service.create(session, who, keep.id, "whatsapp")
    moved = await service.create(session, who, dup.id, "whatsapp")
    moved_sms = await service.create(session, who, dup.id, "sms")
    assert await merge_handlers()["conversations"](session, org.id, dup.id, keep.id) == 2
    for c in (kept, moved, moved_sms):
        await session.refresh(c)
    assert moved.patient_id == keep.id and moved.status == "closed"  # the survivor's stays the open one
    assert moved_sms.status == "open" and kept.status == "open"
    entries = await timeline_sources()["conversations"](session, org.id, keep.id, None, 10)
    assert {e.resource_id for e in entries} == {str(kept.id), str(moved.id), str(moved_sms.id)}


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


async def test_opening_many_conversations_on_one_connection_keeps_working(session, org):
    # psycopg prepares a statement sent five times on a connection and PostgreSQL then plans it
    # generically: the insert's ON CONFLICT must still match the partial unique index (its predicate
    # written as a literal, not a bound parameter, or the insert fails from about the tenth time on)
    made = [await make_patient(session, org) for _ in range(15)]
    opened = [await service.open_for(session, org.id, patient.id, "whatsapp") for patient in made]
    assert len({c.id for c in opened}) == 15
    again = await service.open_for(session, org.id, made[0].id, "whatsapp")
    assert again.id == opened[0].id
