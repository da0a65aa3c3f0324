"""The whole demo clinic (every domain's seeder, in order) seeds with appointments for its patients."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm import demo
from prm.appointments.models import Appointment
from prm.identity.models import Organisation


async def test_demo_clinic_has_bookable_schedule_and_appointments(session: AsyncSession) -> None:
    existing = await session.scalar(select(Organisation.id).where(Organisation.slug == demo.DEMO_SLUG))
    if existing is None:
        created = await demo.seed_if_empty(session)
        assert created is not None
    org_id = await session.scalar(select(Organisation.id).where(Organisation.slug == demo.DEMO_SLUG))
    booked = await session.scalar(select(func.count()).select_from(Appointment).where(Appointment.org_id == org_id))
    assert booked and booked >= 1
