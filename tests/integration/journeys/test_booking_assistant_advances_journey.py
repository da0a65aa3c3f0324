"""The plan's booking scenario ends with "journey stage advancement": a new patient writes on
WhatsApp, enters the new-patient journey, books with the assistant, and the `appointment.booked`
event the booking publishes advances the journey — the assistant never hears of journeys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import clock, jobs
from prm.identity.models import Organisation
from prm.settings import Settings
from tests.fixtures.conversation_fixtures import post_message, setup_clinic, twilio_signing
from tests.integration.journeys.conftest import add_templates, journey_body, new_patient_definition

PHONE = "+34600123987"
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # Wednesday, 10:00 in Madrid


def _auto_advancing() -> dict[str, Any]:
    definition = new_patient_definition()
    definition["steps"][0]["next"] = "to-booking"
    definition["steps"].append({"id": "to-booking", "kind": "advance_stage", "to": "booking"})
    return definition


async def test_a_booking_by_the_assistant_advances_the_journey(
    session: AsyncSession, org: Organisation, settings: Settings, client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
) -> None:
    with clock.frozen(T0) as c, twilio_signing(settings):
        await setup_clinic(client)
        await add_templates(session, org)
        r = await client.post("/journeys", json=journey_body(definition=_auto_advancing()))
        assert r.status_code == 201, r.text
        assert (await client.post(f"/journeys/{r.json()['id']}/publish")).status_code == 201

        async def says(text: str) -> None:
            await post_message(anon_client, text, from_phone=PHONE)
            await jobs.run_due(session)
            c.advance(timedelta(seconds=30))

        await says("Hi!")  # a new number: a provisional patient, whose patient.created enrols them
        patient_id = (await client.get("/conversations")).json()["items"][0]["patient_id"]
        [instance] = (await client.get("/journey-instances", params={"patient_id": patient_id})).json()["items"]
        assert instance["current_stage"] == "booking"

        await says("I need a teeth cleaning")
        await says("1")
        await says("Yes")
        r = await client.get("/appointments", params={"patient_id": patient_id})
        assert r.json()["total"] == 1 and r.json()["items"][0]["source"] == "whatsapp"

        r = await client.get(f"/journey-instances/{instance['id']}/timeline")
        assert r.json()["instance"]["status"] == "completed"
        moves = [(e["from_stage"], e["stage"], e["cause"], e["outcome"].get("event_type"))
                 for e in r.json()["entries"] if e["type"] == "stage_changed"]
        assert moves == [(None, "welcome", "enrol", "patient.created"), ("welcome", "booking", "step", None),
                         ("booking", "confirmation", "event", "appointment.booked"),
                         ("confirmation", "completed", "step", None)]
        r = await client.get("/communications", params={"patient_id": patient_id, "direction": "outbound",
                                                        "limit": 200})
        keys = [m["template_key"] for m in r.json()["items"] if m["template_key"]]
        assert sorted(keys) == ["appointment_confirmation", "journey_book_invite", "journey_visit_prep",
                                "journey_welcome"]
