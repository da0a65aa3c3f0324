"""The demo seeder builds a usable schedule and books the demo patients it is given."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import demo, service
from prm.core import clock
from prm.identity.models import Organisation

from .conftest import NOW, make_patient


async def test_demo_seed_is_bookable_and_idempotent(session: AsyncSession, org: Organisation) -> None:
    patients = [await make_patient(session, org.id, given=f"Demo{i}") for i in range(3)]
    context: dict = {"patients": patients}
    with clock.frozen(NOW):
        await demo.seed(session, org, context)
        assert len(context["practitioners"]) == 2 and len(context["services"]) == 2
        assert len(context["appointments"]) == 3
        assert {a.patient_id for a in context["appointments"]} == {p.id for p in patients}
        slots = await service.available_slots(
            session,
            org.id,
            service_id=context["services"][0].id,
            start_date=NOW.date() + timedelta(days=1),
            end_date=NOW.date() + timedelta(days=1),
        )
        assert slots
        await demo.seed(session, org, {})  # a second run adds nothing
        assert len(await service.list_locations(session, org.id)) == 1
