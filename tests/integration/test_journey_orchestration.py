"""The plan's second integration scenario: a patient's progression through a multi-stage journey.

Everything through the public API, with committed transactions and the real procrastinate worker
(no direct service calls): new patient → welcome sent → advanced to booking → books → the booking
event advances to confirmation → confirmation sent (the notifications module's appointment
confirmation and the journey's own visit note) → completed.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from tests.fixtures.conversation_fixtures import setup_clinic
from tests.fixtures.messaging import new_phone
from tests.integration.journeys.conftest import JOURNEY_TEMPLATES, journey_body


async def _delivered(client: httpx.AsyncClient, patient_id: str) -> list[str]:
    """Template keys of the patient's outbound messages that reached the (sandbox) provider."""
    r = await client.get("/communications", params={"patient_id": patient_id, "direction": "outbound",
                                                    "limit": 200})
    assert r.status_code == 200, r.text
    comms = {c["id"]: c for c in r.json()["items"]}
    r = await client.get("/communications/sandbox/outbox", params={"patient_id": patient_id, "limit": 200})
    assert r.status_code == 200, r.text
    recorded = [m["communication_id"] for m in sorted(r.json()["items"], key=lambda m: m["recorded_at"])]
    assert all(comms[c]["status"] in ("sent", "delivered") for c in recorded)
    return [comms[c]["template_key"] for c in recorded]


async def drain(committed: Any, org_id: Any) -> None:
    """Run the real worker until none of the organisation's jobs is due (a job can defer the next
    one just after a worker found the queue empty)."""
    for _ in range(10):
        await committed.run_worker()
        async with committed.session() as s:
            due = await s.scalar(text(
                "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') "
                "AND (scheduled_at IS NULL OR scheduled_at <= now()) AND args->>'org_id' = :org"
            ), {"org": str(org_id)})
        if not due:
            return
    raise AssertionError("the worker did not drain the queue")


async def test_patient_journey_orchestration(committed: Any) -> None:
    org, key = await committed.org()
    client = committed.client(key)
    clinic = await setup_clinic(client)
    for template_key, body in JOURNEY_TEMPLATES.items():
        r = await client.post("/notifications/templates", json={
            "key": template_key, "channel": "sms", "body": body, "variables": ["patient_name"]})
        assert r.status_code == 201, r.text

    r = await client.post("/journeys", json=journey_body())
    assert r.status_code == 201, r.text
    journey = r.json()
    assert journey["status"] == "draft"
    r = await client.post(f"/journeys/{journey['id']}/publish")
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1 and r.json()["trigger_events"] == ["patient.created"]

    # 1. a new patient: the patient.created trigger creates the instance; 2. the welcome goes out
    r = await client.post("/patients", json={"given_name": "Nora", "family_name": "Quintana",
                                             "phones": [{"number": new_phone(), "is_primary": True}],
                                             "preferred_channel": "sms", "timezone": "Europe/Madrid"})
    assert r.status_code == 201, r.text
    patient_id = r.json()["id"]
    await drain(committed, org.id)
    r = await client.get("/journey-instances", params={"patient_id": patient_id})
    assert r.status_code == 200 and r.json()["total"] == 1, r.text
    instance = r.json()["items"][0]
    assert instance["current_stage"] == "welcome" and instance["status"] == "active"
    assert instance["source_event_type"] == "patient.created" and instance["allowed_transitions"] == ["booking"]
    assert await _delivered(client, patient_id) == ["journey_welcome"]

    # 3. advanced to the booking stage by the coordinator: the invitation goes out
    r = await client.post(f"/journey-instances/{instance['id']}/advance", json={"to_stage": "booking"})
    assert r.status_code == 200, r.text
    assert r.json()["current_stage"] == "booking"
    await drain(committed, org.id)
    assert await _delivered(client, patient_id) == ["journey_welcome", "journey_book_invite"]

    # 4. the patient books; 5. the booking event advances the journey to confirmation
    today = date.today()
    r = await client.get("/slots", params={"service_id": clinic.cleaning_id, "start_date": str(today),
                                           "end_date": str(today + timedelta(days=14)), "limit": 1})
    assert r.status_code == 200 and r.json(), r.text
    slot = r.json()[0]
    r = await client.post("/appointments", json={"patient_id": patient_id, "service_id": clinic.cleaning_id,
                                                 "practitioner_id": clinic.practitioner_id,
                                                 "start_at": slot["start_at"]})
    assert r.status_code == 201, r.text
    await drain(committed, org.id)

    # 6. confirmation sent (once by notifications, plus the journey's visit note); 7. completed
    delivered = await _delivered(client, patient_id)
    assert delivered[:2] == ["journey_welcome", "journey_book_invite"]
    assert sorted(delivered[2:]) == ["appointment_confirmation", "journey_visit_prep"]
    r = await client.get(f"/journey-instances/{instance['id']}")
    assert r.status_code == 200
    done = r.json()
    assert done["status"] == "completed" and done["current_stage"] == "completed" and done["completed_at"]

    r = await client.get(f"/journey-instances/{instance['id']}/timeline")
    assert r.status_code == 200, r.text
    entries = r.json()["entries"]
    moves = [(e["from_stage"], e["stage"], e["cause"]) for e in entries if e["type"] == "stage_changed"]
    assert moves == [(None, "welcome", "enrol"), ("welcome", "booking", "manual"),
                     ("booking", "confirmation", "event"), ("confirmation", "completed", "step")]
    sends = [e for e in entries if e["kind"] == "send_notification"]
    assert [e["step_id"] for e in sends] == ["send-welcome", "invite", "confirm"]
    assert all(e["status"] == "succeeded" and e["outcome"]["communication_id"] for e in sends)
