"""Other modules join the timeline and the merge through the registry, without patients importing them."""

from __future__ import annotations

from datetime import timedelta

from prm.core import clock
from prm.patients import registry
from prm.patients.registry import TimelineEntry


async def test_a_module_joins_the_timeline_and_the_merge(client, monkeypatch):
    monkeypatch.setitem(registry._timeline_sources, "appointments_fake", None)
    monkeypatch.setitem(registry._merge_handlers, "appointments_fake", None)
    booked: dict[str, list] = {}

    @registry.timeline_source("appointments_fake")
    async def appointments_timeline(session, org_id, patient_id, before, limit):
        entries = [e for e in booked.get(str(patient_id), []) if before is None or e.at < before]
        return sorted(entries, key=lambda e: e.at, reverse=True)[:limit]

    @registry.on_merge("appointments_fake")
    async def move_appointments(session, org_id, duplicate_id, survivor_id):
        moved = booked.pop(str(duplicate_id), [])
        booked.setdefault(str(survivor_id), []).extend(moved)
        return len(moved)

    a = (await client.post("/patients", json={"given_name": "Ana", "family_name": "Pérez"})).json()
    b = (await client.post("/patients", json={"given_name": "Ana", "family_name": "Perez"})).json()
    soon = clock.now() + timedelta(minutes=1)
    booked[b["id"]] = [TimelineEntry(at=soon, kind="appointment.booked", source="appointments_fake",
                                     resource_id="apt-1", summary="Appointment booked")]

    merged = await client.post(f"/patients/{a['id']}/merge", json={"duplicate_id": b["id"]})
    assert merged.json()["moved"]["appointments_fake"] == 1

    items = (await client.get(f"/patients/{a['id']}/timeline")).json()["items"]
    assert items[0]["kind"] == "appointment.booked" and items[0]["source"] == "appointments_fake"
    assert {i["kind"] for i in items} >= {"patient.merged", "patient.created"}
