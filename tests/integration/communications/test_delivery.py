"""The send job: sending, retries with backoff, consent checked again at send time."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import sandbox
from prm.communications import service as communications
from prm.core import clock, jobs
from prm.core.auth import Principal
from prm.identity.models import Organisation
from prm.settings import Settings
from tests.fixtures.messaging import (
    TwilioFake,
    patient_with_contacts,
)

from .support import NOW


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
    job_id = (await communications.get(session, Principal.system(org.id), r.json()["id"])).details["job_id"]
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
        comm = await communications.get(session, Principal.system(twilio_org.id), r.json()["id"])
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
    comm = await communications.get(session, Principal.system(twilio_org.id), r.json()["id"])
    assert (comm.status, comm.attempts, comm.error_code) == ("failed", 3, "http_500")

    # permanent: invalid number fails on the first attempt with Twilio's reason
    twilio_api.messages.return_value = httpx.Response(400, json={"code": 21211, "message": "Invalid 'To'"})
    r = await client.post("/communications", json={"patient_id": str(p.id), "channel": "sms", "body": "z"})
    await jobs.run_due(session)
    comm = await communications.get(session, Principal.system(twilio_org.id), r.json()["id"])
    assert (comm.status, comm.attempts, comm.error_code) == ("failed", 1, "21211")
    assert "invalid" in comm.error_message.lower() and comm.failed_at is not None


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
        await patients.set_consent(
            session,
            Principal.system(org.id),
            p.id,
            channel="sms",
            purpose=None,
            granted=False,
            source="api",
        )
        c.advance(timedelta(days=1))
        await jobs.run_due(session)
    comm = await communications.get(session, Principal.system(org.id), r.json()["id"])
    assert comm.status == "failed" and comm.error_code == "consent_refused"
    assert await sandbox.outbox(session, org.id, patient_id=p.id) == []
