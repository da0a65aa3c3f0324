"""Slot queries (the plan's named scheduling tests), against real PostgreSQL."""

from __future__ import annotations

from datetime import date

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service
from prm.core import clock

from .conftest import NOW, Clinic
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
