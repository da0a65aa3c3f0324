"""n8n: signed triggers a real n8n-like peer verifies (JWT + Standard Webhooks), token-authenticated
callbacks that act once through the normal services, retries, timeouts and fallbacks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments.models import Appointment
from prm.conversations import service as conversations
from prm.core import clock, jobs
from prm.identity.models import Organisation
from prm.integrations import n8n
from prm.integrations.models import WorkflowRun
from prm.tickets.models import Ticket
from tests.conftest import Committed
from tests.fixtures.factories import make_patient, principal
from tests.fixtures.integration_peers import N8nPeer
from tests.integration.appointments.conftest import NOW, at_local, build_clinic

RUN_JOBS = [n8n.CALL_JOB, n8n.EXPIRE_JOB, "events.deliver"]


async def _integration(client: httpx.AsyncClient, peer: N8nPeer, **overrides: Any) -> dict[str, Any]:
    peer.workflows = {"/webhook/triage": "triage", "/webhook/booking": "booking"}
    workflows = {"triage": "webhook/triage", "booking": "webhook/booking"}
    body = {"name": "main", "base_url": peer.url, "workflows": workflows,
            "callback_timeout_seconds": 600, "request_timeout_seconds": 2, **overrides}
    r = await client.post("/integrations/n8n/integrations", json=body)
    assert r.status_code == 201, r.text
    peer.secret = r.json()["secret"]
    return r.json()


async def _run(client: httpx.AsyncClient, key: str = "triage", **fields: Any) -> dict[str, Any]:
    body = {"workflow_key": key, "data": {"reason": "follow-up"}}
    body.update({k: str(v) for k, v in fields.items()})
    r = await client.post("/integrations/n8n/runs", json=body)
    assert r.status_code == 202, r.text
    return r.json()


def _callback_of(peer: N8nPeer, index: int = -1) -> dict[str, Any]:
    delivery = peer.verified[index]
    return delivery.json["callback"]  # type: ignore[no-any-return]


async def _call_back(client: httpx.AsyncClient, callback: dict[str, Any], body: dict[str, Any],
                     token: str | None = None, **headers: str) -> httpx.Response:
    return await client.post(callback["url"].removeprefix("https://prm.test"), json=body,
                             headers={"Authorization": f"Bearer {token or callback['token']}", **headers})


async def test_trigger_workflow(session: AsyncSession, client: httpx.AsyncClient, org: Organisation,
                                n8n_peer: N8nPeer) -> None:
    await _integration(client, n8n_peer)
    patient = await make_patient(session, org)
    run = await _run(client, patient_id=patient.id)
    assert run["status"] == "pending" and run["attempts"] == 0
    await jobs.run_due(session, names=RUN_JOBS)

    assert len(n8n_peer.deliveries) == 1
    delivery = n8n_peer.deliveries[0]
    assert delivery.verified, "n8n's JWT check and the Standard Webhooks signature must both pass"
    assert delivery.claims is not None and delivery.claims["aud"] == "triage"
    assert delivery.headers["webhook-id"] == run["id"]
    body = delivery.json
    assert body["type"] == "triage" and body["data"] == {"reason": "follow-up"}
    assert body["callback"]["url"] == f"https://prm.test/integrations/n8n/runs/{run['id']}/callback"
    assert body["callback"]["token"] and body["callback"]["expires_at"]
    detail = (await client.get(f"/integrations/n8n/runs/{run['id']}")).json()
    assert detail["status"] == "pending" and detail["attempts"] == 1
    assert [a["status_code"] for a in detail["attempt_log"]] == [202]
    listed = (await client.get("/integrations/n8n/integrations")).json()
    assert "secret" not in listed[0]


async def test_handle_booking_response(session: AsyncSession, client: httpx.AsyncClient, org: Organisation,
                                       n8n_peer: N8nPeer) -> None:
    with clock.frozen(NOW):
        clinic = await build_clinic(session, org.id)
        await _integration(client, n8n_peer)
        patient = await make_patient(session, org)
        conversation = await conversations.create(session, principal(org), patient.id, "whatsapp")
        run = await _run(client, "booking", patient_id=patient.id, conversation_id=conversation.id)
        await jobs.run_due(session, names=RUN_JOBS)
        slots = [{"start_at": at_local(24, 10).isoformat(), "practitioner_id": str(clinic.vega.id),
                  "service_id": str(clinic.cleaning.id)}]
        r = await _call_back(client, _callback_of(n8n_peer), {"action": "booking_response", "slots": slots})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded" and r.json()["result"]["slots"][0]["service_id"] == str(clinic.cleaning.id)
    await session.refresh(conversation)
    assert conversation.bot_context["external_offer"]["run_id"] == run["id"]


async def test_confirm_slot(session: AsyncSession, client: httpx.AsyncClient, org: Organisation,
                            n8n_peer: N8nPeer) -> None:
    with clock.frozen(NOW):
        clinic = await build_clinic(session, org.id)
        await _integration(client, n8n_peer)
        patient = await make_patient(session, org)
        other_patient = await make_patient(session, org)
        await _run(client, "booking", patient_id=patient.id)
        await _run(client, "booking", patient_id=other_patient.id)
        await jobs.run_due(session, names=RUN_JOBS)
        slot = {"action": "confirm_slot", "practitioner_id": str(clinic.vega.id), "service_id": str(clinic.cleaning.id),
                "start_at": at_local(24, 10).isoformat()}
        first = await _call_back(client, _callback_of(n8n_peer, 0), slot)
        again = await _call_back(client, _callback_of(n8n_peer, 0), slot)
        taken = await _call_back(client, _callback_of(n8n_peer, 1), slot)
    assert first.status_code == 200, first.text
    appointment_id = first.json()["result"]["appointment_id"]
    assert again.status_code == 200 and again.json() == first.json()  # the stored answer, nothing done again
    booked = (await session.scalars(select(Appointment).where(Appointment.org_id == org.id))).all()
    assert [str(a.id) for a in booked] == [appointment_id]
    assert booked[0].patient_id == patient.id and booked[0].source == "n8n"
    assert taken.status_code == 409 and taken.json()["code"] == "slot_taken"
    assert taken.headers["content-type"].startswith("application/problem+json")
    lost = await session.scalar(select(WorkflowRun).where(WorkflowRun.patient_id == other_patient.id))
    assert lost is not None and lost.status == "failed"
    told = (await session.scalars(select(Ticket).where(Ticket.org_id == org.id))).all()
    assert [t.patient_id for t in told] == [other_patient.id]  # staff will tell the patient


async def test_workflow_timeout(session: AsyncSession, client: httpx.AsyncClient, org: Organisation,
                                n8n_peer: N8nPeer) -> None:
    await _integration(client, n8n_peer, callback_timeout_seconds=60)
    patient = await make_patient(session, org)
    with clock.frozen(clock.now()) as frozen:
        run = await _run(client, patient_id=patient.id)
        await jobs.run_due(session, names=RUN_JOBS)
        assert (await client.get(f"/integrations/n8n/runs/{run['id']}")).json()["status"] == "pending"
        frozen.advance(timedelta(seconds=61))
        await jobs.run_due(session, names=RUN_JOBS)
        detail = (await client.get(f"/integrations/n8n/runs/{run['id']}")).json()
        late = await _call_back(client, _callback_of(n8n_peer), {"action": "triage", "subject": "late"})
    assert detail["status"] == "timed_out"
    fallback = (await session.scalars(select(Ticket).where(Ticket.org_id == org.id))).all()
    assert len(fallback) == 1 and fallback[0].patient_id == patient.id and "timed out" in fallback[0].subject
    assert late.status_code == 409 and late.json()["code"] == "run_expired"
    assert await session.scalar(select(func.count()).select_from(Ticket).where(Ticket.org_id == org.id)) == 1


async def test_retry_failed_workflow(session: AsyncSession, client: httpx.AsyncClient, org: Organisation,
                                     n8n_peer: N8nPeer) -> None:
    await _integration(client, n8n_peer)
    n8n_peer.answer(503, times=2)
    with clock.frozen(clock.now()) as frozen:
        run = await _run(client)
        for _ in range(3):
            await jobs.run_due(session, names=RUN_JOBS)
            frozen.advance(timedelta(seconds=40))
        detail = (await client.get(f"/integrations/n8n/runs/{run['id']}")).json()
        assert [a["status_code"] for a in detail["attempt_log"]] == [503, 503, 202]
        assert detail["status"] == "pending"

        # a 4xx is permanent: the run fails at once, the fallback runs, and staff can retry it
        n8n_peer.answer(404)
        second = await _run(client)
        await jobs.run_due(session, names=RUN_JOBS)
        failed = (await client.get(f"/integrations/n8n/runs/{second['id']}")).json()
        assert failed["status"] == "failed" and failed["attempts"] == 1 and "404" in failed["last_error"]
        r = await client.post(f"/integrations/n8n/runs/{second['id']}/retry")
        assert r.status_code == 202 and r.json()["status"] == "pending"
        await jobs.run_due(session, names=RUN_JOBS)
        again = (await client.get(f"/integrations/n8n/runs/{second['id']}")).json()
        assert again["status"] == "pending" and [a["status_code"] for a in again["attempt_log"]] == [404, 202]
        r = await client.post(f"/integrations/n8n/runs/{run['id']}/retry")
        assert r.status_code == 409 and r.json()["code"] == "run_not_retryable"


async def test_invalid_webhook_response(session: AsyncSession, client: httpx.AsyncClient, org: Organisation,
                                        n8n_peer: N8nPeer) -> None:
    await _integration(client, n8n_peer)
    run = await _run(client)
    await jobs.run_due(session, names=RUN_JOBS)
    callback = _callback_of(n8n_peer)
    r = await _call_back(client, callback, {"action": "confirm_slot", "service_id": "nope"})
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"confirm_slot.service_id", "confirm_slot.practitioner_id"} <= fields or \
        any("service_id" in f for f in fields)
    r = await _call_back(client, callback, {"action": "teleport"})
    assert r.status_code == 422
    r = await client.post(callback["url"].removeprefix("https://prm.test"), content=b"{not json",
                          headers={"Authorization": f"Bearer {callback['token']}"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body"
    r = await _call_back(client, callback, {"action": "confirm_slot", "practitioner_id": str(uuid.uuid4()),
                                            "service_id": str(uuid.uuid4()), "start_at": "2030-01-01T10:00:00Z"})
    assert r.status_code == 422  # no patient on the run, unknown references: nothing half-written
    detail = (await client.get(f"/integrations/n8n/runs/{run['id']}")).json()
    assert detail["status"] == "pending"  # a valid callback can still come
    r = await _call_back(client, callback, {"action": "triage", "subject": "Fasting question"})
    assert r.status_code == 200 and r.json()["result"]["created"] is True


async def test_forged_and_cross_org_callbacks_do_nothing(session: AsyncSession, client: httpx.AsyncClient,
                                                         org: Organisation, other_org: Organisation,
                                                         make_client: Any, n8n_peer: N8nPeer) -> None:
    await _integration(client, n8n_peer)
    my_secret = n8n_peer.secret
    assert my_secret is not None
    run = await _run(client)
    other = await make_client("admin", for_org=other_org)
    other_peer = N8nPeer()  # the other clinic's own n8n
    other_peer.start()
    try:
        await _integration(other, other_peer)
        other_secret = other_peer.secret
        assert other_secret is not None and other_secret != my_secret
        other_run = await _run(other)
        await jobs.run_due(session, names=RUN_JOBS)
    finally:
        other_peer.stop()
    bodies = [d.json for d in n8n_peer.verified + other_peer.verified]
    mine = next(b["callback"] for b in bodies if b["run_id"] == run["id"])
    theirs = next(b["callback"] for b in bodies if b["run_id"] == other_run["id"])
    triage = {"action": "triage", "subject": "forged"}
    path = mine["url"].removeprefix("https://prm.test")
    assert (await _call_back(client, mine, triage, token="forged")).status_code == 401
    assert (await client.post(path, json=triage)).status_code == 401
    # another organisation's run token does not open this run
    assert (await _call_back(client, mine, triage, token=theirs["token"])).status_code == 401
    unknown = f"/integrations/n8n/runs/{uuid.uuid4()}/callback"
    assert (await client.post(unknown, json=triage, headers={"Authorization": "Bearer x"})).status_code == 404
    # a body signature, when sent, must be made with this integration's secret
    raw = json.dumps(triage).encode()

    def signed(secret: str) -> dict[str, str]:
        digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        return {"Authorization": f"Bearer {mine['token']}", "X-PRM-Signature": f"sha256={digest}",
                "content-type": "application/json"}

    assert (await client.post(path, content=raw, headers=signed(other_secret))).status_code == 401
    assert await session.scalar(select(func.count()).select_from(Ticket).where(Ticket.org_id == org.id)) == 0
    assert (await client.get(f"/integrations/n8n/runs/{run['id']}")).json()["status"] == "pending"
    ok = await client.post(path, content=raw, headers=signed(my_secret))
    assert ok.status_code == 200 and ok.json()["status"] == "succeeded"
    # the other organisation cannot read our run; its own run is untouched
    assert (await other.get(f"/integrations/n8n/runs/{run['id']}")).status_code == 404
    assert (await other.get(f"/integrations/n8n/runs/{other_run['id']}")).json()["status"] == "pending"


async def test_event_triggers_run_once(session: AsyncSession, client: httpx.AsyncClient, org: Organisation,
                                       n8n_peer: N8nPeer) -> None:
    await _integration(client, n8n_peer, event_triggers={"ticket.created": "triage"})
    r = await client.post("/tickets", json={"subject": "Printer on fire", "auto_assign": False})
    assert r.status_code == 201
    await jobs.run_due(session, names=["events.deliver"])
    event_runs = (await session.scalars(select(WorkflowRun).where(WorkflowRun.org_id == org.id))).all()
    assert len(event_runs) == 1
    from prm.core import events as core_events
    event = await core_events.load(session, event_runs[0].source_event_id)  # type: ignore[arg-type]
    assert event is not None
    assert await n8n.trigger_on_event(session, event) == 0  # the same event again starts nothing
    await jobs.run_due(session, names=RUN_JOBS)
    assert n8n_peer.verified[0].json["data"]["event"]["type"] == "ticket.created"
    assert "subject" not in n8n_peer.verified[0].json["data"]["event"]  # thin: no free text
    r = await client.post("/integrations/n8n/integrations", json={
        "base_url": n8n_peer.url, "name": "bad", "workflows": {}, "event_triggers": {"ticket.created": "missing"}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "event_triggers.ticket.created"


async def test_slow_peer_times_the_run_out(session: AsyncSession, client: httpx.AsyncClient, org: Organisation,
                                           n8n_peer: N8nPeer) -> None:
    await _integration(client, n8n_peer, callback_timeout_seconds=60, request_timeout_seconds=1)
    n8n_peer.answer(202, delay=2.5, times=10)
    with clock.frozen(clock.now()) as frozen:
        run = await _run(client)
        await jobs.run_due(session, names=RUN_JOBS)
        detail = (await client.get(f"/integrations/n8n/runs/{run['id']}")).json()
        assert detail["attempt_log"][0]["error"] == "timeout" and detail["status"] == "pending"
        frozen.advance(timedelta(seconds=61))
        await jobs.run_due(session, names=RUN_JOBS)
    assert (await client.get(f"/integrations/n8n/runs/{run['id']}")).json()["status"] == "timed_out"


@pytest.mark.slow
async def test_duplicated_and_concurrent_callbacks_act_once(committed: Committed, n8n_peer: N8nPeer) -> None:
    organisation, key = await committed.org()
    client = committed.client(key)
    await _integration(client, n8n_peer)
    run = await _run(client)
    async with committed.session() as s:
        await jobs.run_due(s, names=[n8n.CALL_JOB])
        await s.commit()
    callback = _callback_of(n8n_peer)
    triage = {"action": "triage", "subject": "Asked about parking"}
    answers = await asyncio.gather(*[_call_back(committed.client(), callback, triage) for _ in range(6)])
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["result"]["ticket_id"] for a in answers}) == 1
    async with committed.session() as s:
        count = await s.scalar(select(func.count()).select_from(Ticket).where(Ticket.org_id == organisation.id))
        row = await s.get(WorkflowRun, uuid.UUID(run["id"]))
        await s.execute(jobs.text("UPDATE procrastinate_jobs SET status = 'cancelled' WHERE status = 'todo' "
                                  "AND args->>'org_id' = :org"), {"org": str(organisation.id)})
        await s.commit()
    assert count == 1 and row is not None and row.status == "succeeded"
