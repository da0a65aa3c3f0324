"""Practitioners' availability rules and exceptions (the plan's named scheduling tests), against real PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service
from prm.core import clock
from prm.identity.models import Organisation

from .conftest import NOW, Clinic, make_patient


async def test_provider_availability(
    session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient, other_org: Organisation, make_client
) -> None:  # type: ignore[no-untyped-def]
    vega, loc = clinic.vega, clinic.location
    base = f"/practitioners/{vega.id}/availability"
    with clock.frozen(NOW):
        # time off on Tuesday 10:00-11:00 local, given without an offset: read in the location's zone
        r = await client.post(
            f"{base}/exceptions",
            json={
                "kind": "time_off",
                "location_id": str(loc.id),
                "start_at": "2026-03-24T10:00:00",
                "end_at": "2026-03-24T11:00:00",
                "reason": "training",
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["start_at"] == "2026-03-24T09:00:00Z"
        # extra hours on Saturday afternoon
        r = await client.post(
            f"{base}/exceptions",
            json={
                "kind": "extra_hours",
                "location_id": str(loc.id),
                "start_at": "2026-03-28T15:00:00+01:00",
                "end_at": "2026-03-28T16:00:00+01:00",
            },
        )
        assert r.status_code == 201
        # extra hours need a location; a rule needs end after start; zones are validated
        r = await client.post(
            f"{base}/exceptions",
            json={
                "kind": "extra_hours",
                "start_at": "2026-03-28T15:00:00Z",
                "end_at": "2026-03-28T16:00:00Z",
            },
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "location_id"
        r = await client.post(
            f"{base}/rules",
            json={"location_id": str(loc.id), "weekday": 5, "start_time": "12:00", "end_time": "09:00"},
        )
        assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["end_time"]
        r = await client.post("/locations", json={"name": "Moon", "timezone": "Moon/Crater"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "timezone"

        tuesday = await service.available_slots(
            session,
            clinic.org_id,
            service_id=clinic.cleaning.id,
            start_date=date(2026, 3, 24),
            end_date=date(2026, 3, 24),
            practitioner_id=vega.id,
        )
        local = [s.local_start.strftime("%H:%M") for s in tuesday]
        assert "09:30" in local and "09:45" not in local and "10:45" not in local and "11:00" in local
        saturday = await service.available_slots(
            session,
            clinic.org_id,
            service_id=clinic.cleaning.id,
            start_date=date(2026, 3, 28),
            end_date=date(2026, 3, 28),
        )
        assert [s.local_start.strftime("%H:%M") for s in saturday] == ["15:00", "15:15", "15:30"]
        assert {s.practitioner_id for s in saturday} == {vega.id}
        # booking inside the time off is refused as outside availability
        patient = await make_patient(session, clinic.org_id)
        r = await client.post(
            "/appointments",
            json={
                "patient_id": str(patient.id),
                "service_id": str(clinic.cleaning.id),
                "practitioner_id": str(vega.id),
                "start_at": "2026-03-24T10:15:00+01:00",
            },
        )
        assert r.status_code == 422 and r.json()["code"] == "outside_availability"
        # a new weekly rule (Saturday mornings from April) shows up; removing it takes it away
        r = await client.post(
            f"{base}/rules",
            json={
                "location_id": str(loc.id),
                "weekday": 5,
                "start_time": "09:00",
                "end_time": "10:00",
                "valid_from": "2026-04-01",
            },
        )
        assert r.status_code == 201
        rule_id = r.json()["id"]
        rules = (await client.get(f"{base}/rules")).json()
        assert len(rules) == 6
        april = await service.available_slots(
            session,
            clinic.org_id,
            service_id=clinic.cleaning.id,
            start_date=date(2026, 4, 4),
            end_date=date(2026, 4, 4),
        )
        assert april and april[0].local_start.isoformat() == "2026-04-04T09:00:00+02:00"
        assert (await client.delete(f"{base}/rules/{rule_id}")).status_code == 204
        assert (await client.delete(f"{base}/rules/{rule_id}")).status_code == 404
        assert not await service.available_slots(
            session,
            clinic.org_id,
            service_id=clinic.cleaning.id,
            start_date=date(2026, 4, 4),
            end_date=date(2026, 4, 4),
        )
        exceptions = (await client.get(f"{base}/exceptions")).json()
        assert [e["kind"] for e in exceptions] == ["time_off", "extra_hours"]
        assert (await client.delete(f"{base}/exceptions/{exceptions[0]['id']}")).status_code == 204
        # the horizon (60 days) bounds what is offered
        late = await service.available_slots(
            session,
            clinic.org_id,
            service_id=clinic.cleaning.id,
            start_date=date(2026, 5, 20),
            end_date=date(2026, 5, 29),
        )
        assert late and max(s.start_at for s in late) == NOW + timedelta(days=60)  # Fri 22 May, 10:00 CEST
        # another organisation sees none of it
        stranger = await make_client("admin", for_org=other_org)
        assert (await stranger.get(f"{base}/rules")).status_code == 404
        r = await stranger.get(
            "/slots",
            params={
                "service_id": str(clinic.cleaning.id),
                "start_date": "2026-03-24",
                "end_date": "2026-03-24",
            },
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "service_id"
