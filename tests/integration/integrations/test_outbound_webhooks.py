"""Outbound event webhooks: signed deliveries a `standardwebhooks` receiver accepts, thin payloads,
retries, 410 and repeated failures disabling the endpoint, redelivery, replay, SSRF refusals."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import clock, events, jobs
from prm.identity.models import Organisation
from prm.integrations import outbound
from prm.integrations.models import WebhookEndpoint, WebhookMessage
from prm.settings import Settings
from prm.tickets.models import Ticket
from tests.conftest import ClientFactory
from tests.fixtures.integration_peers import WebhookReceiver
from tests.fixtures.settings_switch import use_settings

JOBS = ["events.deliver", outbound.DELIVER_JOB]


async def _endpoint(client: httpx.AsyncClient, receiver: WebhookReceiver,
                    types: list[str] | None = None) -> dict[str, Any]:
    r = await client.post("/integrations/webhooks/endpoints",
                          json={"url": receiver.url + "/hooks", "event_types": types or ["patient.*"]})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["secret"].startswith("whsec_")
    receiver.secret = body["secret"]
    return body


async def _publish(session: AsyncSession, org: Organisation, type_: str = "patient.created",
                   **payload: Any) -> events.Event:
    event = await events.publish(session, events.Event(type=type_, org_id=org.id, payload={
        "patient_id": str(uuid.uuid4()), "given_name": "Ana", "phone": "+34600000000", **payload}))
    return event


async def test_event_delivered_signed_and_thin(session: AsyncSession, client: httpx.AsyncClient, org: Organisation,
                                               receiver: WebhookReceiver) -> None:
    endpoint = await _endpoint(client, receiver)
    event = await _publish(session, org)
    await _publish(session, org, "ticket.created")  # not subscribed
    await jobs.run_due(session, names=JOBS)

    assert len(receiver.deliveries) == 1
    delivery = receiver.deliveries[0]
    assert delivery.verified, "the receiver's standardwebhooks verification must accept our signature"
    assert delivery.json["type"] == "patient.created"
    assert delivery.json["data"] == {"patient_id": event.payload["patient_id"]}  # no name, no phone
    assert delivery.headers["webhook-id"].startswith("msg_")

    listed = (await client.get(f"/integrations/webhooks/endpoints/{endpoint['id']}/messages")).json()
    assert listed["total"] == 1 and listed["items"][0]["status"] == "delivered"
    detail = (await client.get(f"/integrations/webhooks/messages/{listed['items'][0]['id']}")).json()
    assert [a["status_code"] for a in detail["attempt_log"]] == [200]
    assert detail["attempt_log"][0]["response_excerpt"].startswith("{")
    # the secret is never shown again
    read = (await client.get(f"/integrations/webhooks/endpoints/{endpoint['id']}")).json()
    assert "secret" not in read


async def test_same_event_delivered_twice_makes_one_message(session: AsyncSession, client: httpx.AsyncClient,
                                                            org: Organisation, receiver: WebhookReceiver) -> None:
    await _endpoint(client, receiver)
    event = await _publish(session, org)
    assert await outbound.fan_out(session, event) == 0 or True  # first fan-out may come from the job below
    await jobs.run_due(session, names=JOBS)
    assert await outbound.fan_out(session, event) == 0  # at-least-once event delivery: no duplicate message
    await jobs.run_due(session, names=JOBS)
    assert len(receiver.deliveries) == 1


async def test_retry_after_500_with_a_fresh_signature(session: AsyncSession, client: httpx.AsyncClient,
                                                      org: Organisation, receiver: WebhookReceiver) -> None:
    await _endpoint(client, receiver)
    receiver.answer(500)
    await _publish(session, org)
    with clock.frozen(clock.now()) as frozen:
        await jobs.run_due(session, names=JOBS)
        message = await session.scalar(select(WebhookMessage).where(WebhookMessage.org_id == org.id))
        assert message is not None and message.status == "pending" and message.attempts == 1
        assert message.next_attempt_at is not None
        frozen.advance(timedelta(seconds=10))
        await jobs.run_due(session, names=JOBS)
    await session.refresh(message)
    assert message.status == "delivered" and message.attempts == 2
    first, second = receiver.deliveries
    assert first.verified and second.verified
    assert first.headers["webhook-id"] == second.headers["webhook-id"]


async def test_retry_after_header_is_honoured(session: AsyncSession, client: httpx.AsyncClient, org: Organisation,
                                              receiver: WebhookReceiver) -> None:
    await _endpoint(client, receiver)
    receiver.answer(429, headers={"Retry-After": "600"})
    await _publish(session, org)
    await jobs.run_due(session, names=JOBS)
    message = await session.scalar(select(WebhookMessage).where(WebhookMessage.org_id == org.id))
    assert message is not None and message.next_attempt_at is not None
    assert message.next_attempt_at - clock.now() >= timedelta(seconds=590)


async def test_gone_disables_the_endpoint_and_tells_the_organisation(
        session: AsyncSession, client: httpx.AsyncClient, org: Organisation, receiver: WebhookReceiver) -> None:
    endpoint = await _endpoint(client, receiver)
    receiver.answer(410)
    await _publish(session, org)
    await jobs.run_due(session, names=JOBS)
    read = (await client.get(f"/integrations/webhooks/endpoints/{endpoint['id']}")).json()
    assert read["enabled"] is False and "410" in read["disabled_reason"]
    tickets = (await session.scalars(select(Ticket).where(Ticket.org_id == org.id))).all()
    assert [t.subject for t in tickets] == ["Webhook endpoint disabled"]
    await _publish(session, org)
    await jobs.run_due(session, names=JOBS)
    assert len(receiver.deliveries) == 1  # nothing more goes to a disabled endpoint


async def test_repeated_failures_disable_the_endpoint(session: AsyncSession, client: httpx.AsyncClient,
                                                      org: Organisation, receiver: WebhookReceiver,
                                                      settings: Settings) -> None:
    endpoint = await _endpoint(client, receiver)
    receiver.default_status = 500
    strict = settings.model_copy(update={"outbound_webhook_disable_after": 2})
    for _ in range(2):
        await _publish(session, org)
    await jobs.run_due(session, names=["events.deliver"])
    messages = (await session.scalars(select(WebhookMessage).where(WebhookMessage.org_id == org.id))).all()
    assert len(messages) == 2
    with clock.frozen(clock.now()) as frozen:
        for _ in range(10):
            for message in messages:
                await outbound.deliver(session, message.id, strict)
            frozen.advance(timedelta(hours=11))
    row = await session.get(WebhookEndpoint, uuid.UUID(endpoint["id"]))
    assert row is not None
    await session.refresh(row)
    assert row.enabled is False and "2 consecutive" in (row.disabled_reason or "")
    assert all(m.status == "failed" for m in messages)
    assert all(m.attempts == 1 + len(outbound.payloads.RETRY_SCHEDULE_SECONDS) for m in messages)
    # re-enabling resets the count
    r = await client.patch(f"/integrations/webhooks/endpoints/{endpoint['id']}", json={"enabled": True})
    assert r.status_code == 200 and r.json()["consecutive_failures"] == 0


async def test_redeliver_and_replay(session: AsyncSession, client: httpx.AsyncClient, org: Organisation,
                                    receiver: WebhookReceiver) -> None:
    endpoint = await _endpoint(client, receiver, ["*"])
    since = clock.now() - timedelta(seconds=1)
    await _publish(session, org)
    await _publish(session, org, "appointment.booked", appointment_id=str(uuid.uuid4()))
    await jobs.run_due(session, names=JOBS)
    assert len(receiver.verified) == 2
    listed = (await client.get(f"/integrations/webhooks/endpoints/{endpoint['id']}/messages")).json()
    message_id = listed["items"][0]["id"]
    r = await client.post(f"/integrations/webhooks/messages/{message_id}/redeliver")
    assert r.status_code == 202
    await jobs.run_due(session, names=JOBS)
    assert len(receiver.verified) == 3
    r = await client.post(f"/integrations/webhooks/endpoints/{endpoint['id']}/replay",
                          json={"since": since.isoformat()})
    assert r.status_code == 202 and r.json() == {"queued": 2}
    await jobs.run_due(session, names=JOBS)
    assert len(receiver.verified) == 5
    ids = {d.headers["webhook-id"] for d in receiver.deliveries}
    assert len(ids) == 2  # the receiver can deduplicate every repeat


async def test_rotation_signs_with_both_secrets(session: AsyncSession, client: httpx.AsyncClient, org: Organisation,
                                                receiver: WebhookReceiver) -> None:
    endpoint = await _endpoint(client, receiver)
    old = receiver.secret
    r = await client.post(f"/integrations/webhooks/endpoints/{endpoint['id']}/rotate-secret")
    assert r.status_code == 200 and r.json()["secret"] != old
    await _publish(session, org)
    await jobs.run_due(session, names=JOBS)
    assert receiver.deliveries[0].verified  # the receiver still has the old secret
    receiver.secret = r.json()["secret"]
    await _publish(session, org)
    await jobs.run_due(session, names=JOBS)
    assert receiver.deliveries[1].verified


async def test_private_targets_refused(app: Any, client: httpx.AsyncClient, settings: Settings) -> None:
    with use_settings(settings.model_copy(update={"outbound_allow_private_targets": False})):
        for url in ("http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.0.0.8/hook",
                    "http://169.254.169.254/latest/meta-data", "http://[::1]/x", "http://192.168.1.20/x"):
            r = await client.post("/integrations/webhooks/endpoints", json={"url": url, "event_types": ["*"]})
            assert r.status_code == 422, url
            assert r.json()["code"] == "unsafe_url"
            assert r.json()["errors"][0]["field"] == "url"


async def test_delivery_refuses_a_target_that_became_private(session: AsyncSession, client: httpx.AsyncClient,
                                                             org: Organisation, receiver: WebhookReceiver,
                                                             settings: Settings) -> None:
    await _endpoint(client, receiver)
    await _publish(session, org)
    await jobs.run_due(session, names=["events.deliver"])
    message = await session.scalar(select(WebhookMessage).where(WebhookMessage.org_id == org.id))
    assert message is not None
    strict = settings.model_copy(update={"outbound_allow_private_targets": False})
    assert await outbound.deliver(session, message.id, strict) == "retry_scheduled"
    assert receiver.deliveries == []
    detail = (await client.get(f"/integrations/webhooks/messages/{message.id}")).json()
    assert detail["attempt_log"][0]["error"].startswith("unsafe target")


async def test_other_organisation_cannot_see_or_use_endpoints(client: httpx.AsyncClient, make_client: ClientFactory,
                                                               other_org: Organisation,
                                                               receiver: WebhookReceiver) -> None:
    endpoint = await _endpoint(client, receiver)
    other = await make_client("admin", for_org=other_org)
    for method, path in (("GET", f"/integrations/webhooks/endpoints/{endpoint['id']}"),
                         ("PATCH", f"/integrations/webhooks/endpoints/{endpoint['id']}"),
                         ("POST", f"/integrations/webhooks/endpoints/{endpoint['id']}/rotate-secret"),
                         ("POST", f"/integrations/webhooks/endpoints/{endpoint['id']}/test"),
                         ("DELETE", f"/integrations/webhooks/endpoints/{endpoint['id']}")):
        r = await other.request(method, path, json={} if method == "PATCH" else None)
        assert r.status_code == 404, (method, path, r.text)
    assert (await other.get("/integrations/webhooks/endpoints")).json() == []


async def test_scopes_and_validation(make_client: ClientFactory, receiver: WebhookReceiver) -> None:
    agent = await make_client("support_agent")
    r = await agent.post("/integrations/webhooks/endpoints", json={"url": receiver.url, "event_types": ["*"]})
    assert r.status_code == 403
    admin = await make_client("admin")
    r = await admin.post("/integrations/webhooks/endpoints", json={"url": receiver.url, "event_types": ["Bad Type"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("event_types")
    r = await admin.post("/integrations/webhooks/endpoints", json={"url": "not a url", "event_types": ["*"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "url"


async def test_test_ping(session: AsyncSession, client: httpx.AsyncClient, org: Organisation,
                         receiver: WebhookReceiver) -> None:
    endpoint = await _endpoint(client, receiver)
    r = await client.post(f"/integrations/webhooks/endpoints/{endpoint['id']}/test")
    assert r.status_code == 202 and r.json()["event_type"] == "webhook.test"
    await jobs.run_due(session, names=JOBS)
    assert receiver.verified[0].json["type"] == "webhook.test"
    count = await session.scalar(
        select(func.count()).select_from(WebhookMessage).where(WebhookMessage.org_id == org.id))
    assert count == 1
