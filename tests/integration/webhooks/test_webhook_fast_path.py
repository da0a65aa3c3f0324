"""The signed-webhook fast path (issue 19, WEBHOOK_INGEST=deferred): the request verifies the
signature, stores the raw event and queues one job, and answers; the job then does what the inline
path does (patient, communication, event), once, and clears the stored payload."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import service as communications
from prm.communications.models import Communication, InboundEvent
from prm.core import jobs
from prm.core.events import EventRecord
from prm.identity.models import Organisation
from prm.patients import service as patients
from prm.settings import Settings
from prm.webhooks.service import PROCESS_MESSAGE_JOB
from prm.webhooks.tasks import process_twilio_message
from tests.conftest import Committed
from tests.fixtures.messaging import CLINIC_NUMBER, TWILIO_SID, inbound, new_phone, patient_with_contacts, post_twilio
from tests.fixtures.settings_switch import use_settings
from tests.fixtures.wire import DRIVER, on_the_wire


@pytest.fixture
def deferred(messaging_settings: Settings) -> Iterator[Settings]:
    configured = messaging_settings.model_copy(update={"webhook_ingest": "deferred"})
    with use_settings(configured):
        yield configured


async def _jobs(session: AsyncSession) -> int:
    return int(await session.scalar(
        text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = :t AND status = 'todo'"),
        {"t": PROCESS_MESSAGE_JOB}) or 0)


async def _comms(session: AsyncSession, org: Organisation) -> list[Communication]:
    return list(await session.scalars(select(Communication).where(Communication.org_id == org.id)))


def test_the_fast_path_is_the_production_default(settings: Settings) -> None:
    assert settings.model_copy(update={"environment": "production"}).webhooks_deferred
    assert not settings.model_copy(update={"environment": "development"}).webhooks_deferred
    assert settings.model_copy(update={"webhook_ingest": "deferred"}).webhooks_deferred


async def test_a_message_is_stored_and_queued_then_processed_once_by_its_job(
    session: AsyncSession, anon_client: httpx.AsyncClient, twilio_org: Organisation, deferred: Settings,
) -> None:
    patient = await patient_with_contacts(session, twilio_org)
    r = await inbound(anon_client, deferred, from_=patient.primary_phone, body="Can I come earlier?", sid="SMfast1")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    assert "<Message>" not in r.text
    stored = await session.scalar(select(InboundEvent).where(InboundEvent.external_id == "SMfast1"))
    assert stored is not None and stored.outcome == "received" and stored.payload["Body"] == "Can I come earlier?"
    assert await _comms(session, twilio_org) == [] and await _jobs(session) == 1

    again = await inbound(anon_client, deferred, from_=patient.primary_phone, body="Can I come earlier?",
                          sid="SMfast1")  # Twilio retrying: acknowledged, nothing more queued
    assert again.status_code == 200 and await _jobs(session) == 1

    report = await jobs.run_due(session, names=[PROCESS_MESSAGE_JOB])
    assert len(report.succeeded) == 1
    [comm] = await _comms(session, twilio_org)
    assert (comm.direction, comm.channel, comm.patient_id, comm.body) == (
        "inbound", "whatsapp", patient.id, "Can I come earlier?")
    [event] = await session.scalars(select(EventRecord).where(EventRecord.org_id == twilio_org.id,
                                                               EventRecord.type == "message.received"))
    assert event.payload["communication_id"] == str(comm.id)
    await session.refresh(stored)
    assert stored.outcome == "processed" and stored.communication_id == comm.id and stored.payload is None

    # the job run again (a retry after a lost commit) finds nothing left to do
    assert await process_twilio_message(session, event_id=str(stored.id)) is None
    assert len(await _comms(session, twilio_org)) == 1


async def test_an_unknown_sender_gets_a_provisional_patient_from_the_job(
    session: AsyncSession, anon_client: httpx.AsyncClient, twilio_org: Organisation, deferred: Settings,
) -> None:
    number = new_phone()
    assert (await inbound(anon_client, deferred, from_=number, body="Hello?", channel="sms")).status_code == 200
    assert await patients.find_by_phone(session, twilio_org.id, number) is None
    await jobs.run_due(session, names=[PROCESS_MESSAGE_JOB])
    patient = await patients.find_by_phone(session, twilio_org.id, number)
    assert patient is not None and patient.is_provisional and patient.source == "sms"


async def test_stop_is_still_answered_in_the_request_and_bad_input_still_refused(
    session: AsyncSession, anon_client: httpx.AsyncClient, twilio_org: Organisation, deferred: Settings,
) -> None:
    patient = await patient_with_contacts(session, twilio_org)
    r = await inbound(anon_client, deferred, from_=patient.primary_phone, body="STOP", channel="sms")
    assert r.status_code == 200 and "<Message>" in r.text  # the acknowledgement is the TwiML reply
    assert await _jobs(session) == 0
    assert await session.scalar(select(func.count()).select_from(Communication).where(
        Communication.org_id == twilio_org.id, Communication.direction == "inbound")) == 1

    params = {"MessageSid": "SMbad", "AccountSid": "AC", "From": "whatsapp:+34600000000", "To": "whatsapp:nope",
              "Body": "hi", "NumMedia": "0"}
    bad = await post_twilio(anon_client, deferred, "/webhooks/twilio/messaging", params)
    assert bad.status_code == 400 and bad.json()["code"] == "malformed_webhook"
    forged = await post_twilio(anon_client, deferred, "/webhooks/twilio/messaging",
                               {**params, "To": "whatsapp:+34910000001"}, signature="forged")
    assert forged.status_code == 403
    assert await _jobs(session) == 0


async def _stored(session: AsyncSession, sid: str) -> list[InboundEvent]:
    return list(await session.scalars(select(InboundEvent).where(InboundEvent.provider == "twilio",
                                                                 InboundEvent.external_id == sid)))


async def test_a_forged_or_unsigned_delivery_is_refused_before_anything_is_stored(
    session: AsyncSession, anon_client: httpx.AsyncClient, twilio_org: Organisation, deferred: Settings,
) -> None:
    params = {"MessageSid": "SMforged1", "AccountSid": TWILIO_SID, "From": f"whatsapp:{new_phone()}",
              "To": f"whatsapp:{CLINIC_NUMBER}", "Body": "hi", "NumMedia": "0"}
    signed = (await post_twilio(anon_client, deferred, "/webhooks/twilio/messaging", params)).request
    tampered = await anon_client.post("/webhooks/twilio/messaging", data={**params, "Body": "hi!"},
                                      headers={"X-Twilio-Signature": signed.headers["X-Twilio-Signature"]})
    unsigned = await post_twilio(anon_client, deferred, "/webhooks/twilio/messaging",
                                 {**params, "MessageSid": "SMforged2"}, signature=None)
    assert (tampered.status_code, unsigned.status_code) == (403, 403)
    assert tampered.json()["code"] == "invalid_signature"
    assert await _stored(session, "SMforged2") == []
    [event] = await _stored(session, "SMforged1")  # the genuine one only, with its own body
    assert event.payload is not None and event.payload["Body"] == "hi" and await _jobs(session) == 1


async def test_a_replayed_delivery_is_answered_like_the_first_and_stores_nothing_more(
    session: AsyncSession, anon_client: httpx.AsyncClient, twilio_org: Organisation, deferred: Settings,
) -> None:
    sender = new_phone()
    first = await inbound(anon_client, deferred, from_=sender, body="Running late", sid="SMreplay1")
    again = await inbound(anon_client, deferred, from_=sender, body="Running late", sid="SMreplay1")
    assert first.status_code == again.status_code == 200
    assert first.text == again.text and "<Message>" not in again.text  # Twilio wants a 200 and no reply
    assert again.headers["content-type"].startswith("application/xml")
    assert len(await _stored(session, "SMreplay1")) == 1 and await _jobs(session) == 1


async def test_storing_and_queueing_is_one_unit_a_rolled_back_request_leaves_neither(
    session: AsyncSession, deferred: Settings,
) -> None:
    async with session.begin_nested() as savepoint:
        event_id = await communications.store_inbound_event(
            session, provider="twilio", external_id="SMrolledback", kind="message", payload={"Body": "x"},
            then=PROCESS_MESSAGE_JOB)
        assert event_id is not None and await _jobs(session) == 1
        await savepoint.rollback()
    assert await _stored(session, "SMrolledback") == [] and await _jobs(session) == 0


async def test_concurrent_deliveries_of_one_message_store_one_event_and_queue_one_job(
    committed: Committed, deferred: Settings,
) -> None:
    sid = f"SM{uuid.uuid4().hex}"
    params = {"MessageSid": sid, "AccountSid": TWILIO_SID, "From": f"whatsapp:{new_phone()}",
              "To": f"whatsapp:{CLINIC_NUMBER}", "Body": "Is the clinic open today?", "NumMedia": "0"}
    client = committed.client()
    try:
        answers = await asyncio.gather(*(post_twilio(client, deferred, "/webhooks/twilio/messaging", params)
                                         for _ in range(8)))
        assert [r.status_code for r in answers] == [200] * 8
        async with committed.session() as s:
            [event] = await _stored(s, sid)
            queued = (await s.execute(text(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = :t AND args->>'event_id' = :e"),
                {"t": PROCESS_MESSAGE_JOB, "e": str(event.id)})).scalar_one()
            assert queued == 1 and event.outcome == "received"
    finally:  # committed rows: leave nothing for other tests' workers
        async with committed.session() as s:
            await s.execute(text("DELETE FROM procrastinate_jobs WHERE task_name = :t AND args->>'event_id' IN "
                                 "(SELECT id::text FROM inbound_events WHERE external_id = :sid)"),
                            {"t": PROCESS_MESSAGE_JOB, "sid": sid})
            await s.execute(text("DELETE FROM inbound_events WHERE external_id = :sid"), {"sid": sid})
            await s.commit()


async def test_storing_and_queueing_is_one_statement_without_begin_or_commit(
    committed: Committed, deferred: Settings,
) -> None:
    """The request writes nothing else, so its one statement is its own transaction: psycopg sends no
    `BEGIN` before it and no `COMMIT` after it; a STOP still runs in a transaction of its own."""
    sid = f"SM{uuid.uuid4().hex}"
    params = {"MessageSid": sid, "AccountSid": TWILIO_SID, "From": f"whatsapp:{new_phone()}",
              "To": f"whatsapp:{CLINIC_NUMBER}", "Body": "Can I move my appointment?", "NumMedia": "0"}
    stop = {**params, "MessageSid": f"SM{uuid.uuid4().hex}", "Body": "STOP"}
    client = committed.client()
    try:
        with on_the_wire(committed.db.engine) as wire:
            r = await post_twilio(client, deferred, "/webhooks/twilio/messaging", params)
            again = await post_twilio(client, deferred, "/webhooks/twilio/messaging", params)  # a retry
        assert r.status_code == again.status_code == 200
        assert [c.sent for c in wire] == [[DRIVER], [DRIVER]], [c.sent for c in wire]
        assert not any(c.autocommit_in_pool for c in wire)  # back in transaction mode in the pool
        async with committed.session() as s:
            [event] = await _stored(s, sid)  # committed, once
            queued = (await s.execute(text(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = :t AND args->>'event_id' = :e"),
                {"t": PROCESS_MESSAGE_JOB, "e": str(event.id)})).scalar_one()
            assert queued == 1

        with on_the_wire(committed.db.engine) as wire:
            r = await post_twilio(client, deferred, "/webhooks/twilio/messaging", stop)
        assert r.status_code == 200
        sent = [statement for c in wire for statement in c.sent]
        assert sent[0].startswith("BEGIN") and sent[-1] == "COMMIT", sent
    finally:
        async with committed.session() as s:
            await s.execute(text("DELETE FROM procrastinate_jobs WHERE task_name = :t AND args->>'event_id' IN "
                                 "(SELECT id::text FROM inbound_events WHERE external_id IN (:sid, :stop))"),
                            {"t": PROCESS_MESSAGE_JOB, "sid": sid, "stop": stop["MessageSid"]})
            await s.execute(text("DELETE FROM inbound_events WHERE external_id IN (:sid, :stop)"),
                            {"sid": sid, "stop": stop["MessageSid"]})
            await s.commit()
