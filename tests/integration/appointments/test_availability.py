"""Slot queries (the plan's named scheduling tests), against real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import jsonschema
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service
from prm.appointments.schemas import AppointmentCreate, ExceptionCreate, SlotsCompactRead
from prm.core import clock
from prm.identity.models import Organisation
from tests.fixtures.factories import principal

from .conftest import NOW, Clinic, make_patient
from .support import at


async def test_get_available_slots(session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient) -> None:
    with clock.frozen(NOW):
        slots = await service.available_slots(
            session,
            clinic.org_id,
            service_id=clinic.cleaning.id,
            start_date=date(2026, 3, 24),
            end_date=date(2026, 3, 24),
            practitioner_id=clinic.vega.id,
        )
        # 09:00-13:00, 30 min, every 15 min: 09:00 ... 12:30
        assert len(slots) == 15
        assert slots[0].start_at == at(24, 9) and slots[0].local_start.isoformat() == "2026-03-24T09:00:00+01:00"
        assert slots[-1].end_at == at(24, 13)
        # over HTTP, both practitioners, across the DST change: Monday 30 March is CEST
        r = await client.get(
            "/slots",
            params={
                "service_id": str(clinic.cleaning.id),
                "start_date": "2026-03-27",
                "end_date": "2026-03-30",
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert {s["practitioner_id"] for s in body} == {str(clinic.vega.id), str(clinic.ruiz.id)}
        monday = [s for s in body if s["local_start"].startswith("2026-03-30")]
        assert monday[0]["local_start"] == "2026-03-30T09:00:00+02:00"
        assert monday[0]["start_at"] == "2026-03-30T07:00:00Z"
        assert not [s for s in body if s["local_start"][:10] in ("2026-03-28", "2026-03-29")]  # weekend
        # minimum notice: today (now 09:00 local) starts at 10:00
        today = await service.available_slots(
            session,
            clinic.org_id,
            service_id=clinic.cleaning.id,
            start_date=date(2026, 3, 23),
            end_date=date(2026, 3, 23),
            practitioner_id=clinic.vega.id,
            limit=2,
        )
        assert [s.start_at for s in today] == [at(23, 10), at(23, 10, 15)]
        # bad ranges name the field
        r = await client.get(
            "/slots",
            params={
                "service_id": str(clinic.cleaning.id),
                "start_date": "2026-03-27",
                "end_date": "2026-03-20",
            },
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "end_date"


def _expand(compact: dict[str, Any]) -> list[tuple[str, str, datetime, datetime]]:
    """The compact answer read back as a client would: (practitioner, location, start UTC, end UTC)."""
    duration = timedelta(minutes=compact["duration_minutes"])
    rows = []
    for entry in compact["schedules"]:
        for day, walls in entry["days"].items():
            for wall in walls:
                start = datetime.fromisoformat(f"{day}T{wall}")
                assert start.utcoffset() == start.astimezone(ZoneInfo(entry["timezone"])).utcoffset()
                rows.append((entry["practitioner_id"], entry["location_id"], start, start + duration))
    return sorted(rows, key=lambda row: row[2])


def _rows(full: list[dict[str, Any]]) -> list[tuple[str, str, datetime, datetime]]:
    return sorted(
        ((s["practitioner_id"], s["location_id"], datetime.fromisoformat(s["start_at"]),
          datetime.fromisoformat(s["end_at"])) for s in full),
        key=lambda row: row[2],
    )


async def test_compact_slots_describe_the_same_slots_as_the_full_list(
    session: AsyncSession, org: Organisation, clinic: Clinic, client: httpx.AsyncClient, app: Any
) -> None:
    """Across the spring change (Sunday 29 March), with time off, extra hours, a booking and `limit`."""
    who = principal(org)
    with clock.frozen(NOW):
        await service.add_exception(session, clinic.org_id, clinic.vega.id, ExceptionCreate(
            kind="time_off", start_at=at(27, 10), end_at=at(27, 11, 30)))
        await service.add_exception(session, clinic.org_id, clinic.ruiz.id, ExceptionCreate(
            kind="extra_hours", location_id=clinic.location.id,  # Sunday 29 March 01:00-04:00 local
            start_at=datetime(2026, 3, 29, 0, tzinfo=UTC), end_at=datetime(2026, 3, 29, 2, tzinfo=UTC)))
        patient = await make_patient(session, clinic.org_id)
        await service.book(session, who, AppointmentCreate(
            patient_id=patient.id, service_id=clinic.cleaning.id, practitioner_id=clinic.ruiz.id,
            start_at=datetime(2026, 3, 30, 8, tzinfo=UTC)))
        base = {"service_id": str(clinic.cleaning.id), "start_date": "2026-03-27", "end_date": "2026-03-30"}
        schema = app.openapi()["paths"]["/slots"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        validator = jsonschema.Draft202012Validator({**schema, "components": app.openapi()["components"]},
                                                    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        for extra in ({}, {"limit": 7}, {"practitioner_id": str(clinic.ruiz.id)}):
            full = await client.get("/slots", params={**base, **extra})
            compact = await client.get("/slots", params={**base, **extra, "shape": "compact"})
            assert full.status_code == compact.status_code == 200, (full.text, compact.text)
            validator.validate(full.json())
            validator.validate(compact.json())
            SlotsCompactRead.model_validate_json(compact.content)
            assert _expand(compact.json()) == _rows(full.json()) != []
            assert [s["start_at"] for s in full.json()] == sorted(s["start_at"] for s in full.json())
        assert full.json() == (await client.get("/slots", params={**base, **extra, "shape": "full"})).json()
        body = (await client.get("/slots", params={**base, "shape": "compact"})).json()
    assert body["duration_minutes"] == 30 and (body["start_date"], body["end_date"]) == ("2026-03-27", "2026-03-30")
    days = {e["practitioner_id"]: e["days"] for e in body["schedules"]}
    vega, ruiz = days[str(clinic.vega.id)], days[str(clinic.ruiz.id)]
    assert all(e["timezone"] == "Europe/Madrid" for e in body["schedules"])
    assert set(vega) == {"2026-03-27", "2026-03-30"}  # no weekend rule
    # Friday CET: time off 10:00-11:30 (buffers may reach into time off, appointments may not)
    assert vega["2026-03-27"][:5] == ["09:00:00+01:00", "09:15:00+01:00", "09:30:00+01:00", "11:30:00+01:00",
                                      "11:45:00+01:00"]
    # Sunday: extra hours 01:00-04:00 local lose the skipped hour 02:00-03:00
    assert ruiz["2026-03-29"] == ["01:00:00+01:00", "01:15:00+01:00", "01:30:00+01:00", "01:45:00+01:00",
                                  "03:00:00+02:00", "03:15:00+02:00", "03:30:00+02:00"]
    # Monday CEST: Ruiz is booked 10:00-10:30 (blocked 09:55-10:40)
    assert vega["2026-03-30"][0] == "09:00:00+02:00" and vega["2026-03-30"][-1] == "12:30:00+02:00"
    assert "09:45:00+02:00" not in ruiz["2026-03-30"] and "10:30:00+02:00" not in ruiz["2026-03-30"]
    assert "09:15:00+02:00" in ruiz["2026-03-30"] and "10:45:00+02:00" in ruiz["2026-03-30"]


async def test_slot_shape_is_checked(clinic: Clinic, client: httpx.AsyncClient) -> None:
    params = {"service_id": str(clinic.cleaning.id), "start_date": "2026-03-27", "end_date": "2026-03-30"}
    r = await client.get("/slots", params={**params, "shape": "list"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "shape"
    r = await client.get("/slots", params={**params, "end_date": "2026-03-20", "shape": "compact"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "end_date"
