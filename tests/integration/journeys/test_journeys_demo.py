"""The demo clinic's journeys: seeded, published, and the demo patients enter the new-patient one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications.models import Communication
from prm.core import clock, jobs
from prm.identity.models import Organisation
from prm.journeys import demo as journeys_demo
from prm.journeys.models import Journey, JourneyInstance
from prm.notifications import demo as notifications_demo
from prm.patients import demo as patients_demo


async def test_demo_journeys_are_published_and_enrol_the_demo_patients(
    session: AsyncSession, org: Organisation, messaging_settings: Any
) -> None:
    with clock.frozen(datetime(2026, 11, 25, 9, 0, tzinfo=UTC)):
        context: dict[str, Any] = {}
        # in the demo's order: the journeys go live before the patients are created
        await journeys_demo.seed(session, org, context)
        await journeys_demo.seed(session, org, context)  # a second start seeds nothing more
        await patients_demo.seed(session, org, context)
        await notifications_demo.seed(session, org, context)
        journeys = list(await session.scalars(select(Journey).where(Journey.org_id == org.id).order_by(Journey.key)))
        assert [(j.key, j.active_version) for j in journeys] == [("new-patient", 1), ("post-visit", 1)]
        await jobs.run_due(session)
        instances = list(await session.scalars(select(JourneyInstance).where(JourneyInstance.org_id == org.id)))
        assert len(instances) == len(context["patients"]) > 0
        assert {i.current_stage for i in instances} == {"booking"}
        welcomed = await session.scalars(select(Communication.patient_id).where(
            Communication.org_id == org.id, Communication.template_key == "journey_welcome"))
        assert len(set(welcomed)) >= 1  # every reachable patient (consent and channels permitting)
