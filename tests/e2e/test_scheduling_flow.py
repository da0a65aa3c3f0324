"""A clinic sets up its schedule and books, moves and cancels an appointment, all through HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from icalendar import Calendar

from prm.core import clock

NOW = datetime(2026, 10, 19, 8, 0, tzinfo=UTC)  # Monday; New York changes clocks on Sunday 1 November


async def test_setup_slots_book_confirm_move_invite_cancel(client: httpx.AsyncClient) -> None:
    async def ok(r: httpx.Response, status: int = 200) -> dict:
        assert r.status_code == status, r.text
        return r.json()

    with clock.frozen(NOW):
        loc = await ok(await client.post("/locations", json={"name": "Midtown", "timezone": "America/New_York"}), 201)
        doc = await ok(
            await client.post("/practitioners", json={"name": "Dr Kim", "timezone": "America/New_York"}), 201
        )
        for weekday in range(5):
            await ok(
                await client.post(
                    f"/practitioners/{doc['id']}/availability/rules",
                    json={"location_id": loc["id"], "weekday": weekday, "start_time": "09:00", "end_time": "12:00"},
                ),
                201,
            )
        svc = await ok(
            await client.post(
                "/services",
                json={
                    "name": "Consultation",
                    "duration_minutes": 30,
                    "buffer_after_minutes": 15,
                    "keywords": ["consult"],
                    "practitioner_ids": [doc["id"]],
                },
            ),
            201,
        )
        patient = await ok(await client.post("/patients", json={"given_name": "Lee", "family_name": "Park"}), 201)

        # slots on both sides of the autumn change stay at 09:00 local
        slots = await ok(
            await client.get(
                "/slots", params={"service_id": svc["id"], "start_date": "2026-10-30", "end_date": "2026-11-02"}
            )
        )
        firsts = sorted(
            {s["local_start"] for s in slots if s["local_start"].endswith(("09:00:00-04:00", "09:00:00-05:00"))}
        )
        assert firsts == ["2026-10-30T09:00:00-04:00", "2026-11-02T09:00:00-05:00"]
        assert {s["start_at"] for s in slots if s["local_start"] in firsts} == {
            "2026-10-30T13:00:00Z",
            "2026-11-02T14:00:00Z",
        }

        appt = await ok(
            await client.post(
                "/appointments",
                headers={"Idempotency-Key": "e2e-1"},
                json={
                    "patient_id": patient["id"],
                    "service_id": svc["id"],
                    "practitioner_id": doc["id"],
                    "start_at": "2026-10-30T13:00:00Z",
                },
            ),
            201,
        )
        await ok(await client.post(f"/appointments/{appt['id']}/confirm"))
        moved = await ok(
            await client.post(f"/appointments/{appt['id']}/reschedule", json={"start_at": "2026-11-02T09:00:00-05:00"})
        )
        assert moved["status"] == "booked" and moved["start_at"] == "2026-11-02T14:00:00Z"
        # the freed Friday slot is offered again; the taken Monday one (with its buffer) is not
        again = await ok(
            await client.get(
                "/slots", params={"service_id": svc["id"], "start_date": "2026-10-30", "end_date": "2026-11-02"}
            )
        )
        starts = {s["start_at"] for s in again}
        assert "2026-10-30T13:00:00Z" in starts
        assert not {"2026-11-02T14:00:00Z", "2026-11-02T14:15:00Z", "2026-11-02T14:30:00Z"} & starts
        assert "2026-11-02T14:45:00Z" in starts

        invite = Calendar.from_ical((await client.get(f"/appointments/{appt['id']}/invite.ics")).content)
        event = invite.walk("VEVENT")[0]
        assert int(event["sequence"]) == 1 and event.decoded("dtstart") == datetime(2026, 11, 2, 14, tzinfo=UTC)
        agenda = await ok(await client.get(f"/practitioners/{doc['id']}/agenda", params={"start_date": "2026-11-02"}))
        assert [e["local_start"] for e in agenda["entries"]] == ["2026-11-02T09:00:00-05:00"]

        cancelled = await ok(await client.post(f"/appointments/{appt['id']}/cancel", json={"reason": "sick"}))
        assert cancelled["status"] == "cancelled"
        history = await ok(await client.get(f"/patients/{patient['id']}/appointments"))
        assert [a["status"] for a in history["items"]] == ["cancelled"]
        steps = await ok(await client.get(f"/appointments/{appt['id']}/history"))
        assert [h["action"] for h in steps] == ["book", "confirm", "reschedule", "cancel"]
