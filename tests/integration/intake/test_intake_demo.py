"""The demo clinic seeds intake: its questionnaire and one submitted intake whose summary the worker writes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm import demo
from prm.core import jobs
from prm.identity.models import Organisation
from prm.intake.models import IntakeSession, IntakeSummary, Questionnaire


async def test_demo_clinic_has_a_questionnaire_and_a_submitted_intake(session: AsyncSession) -> None:
    if await session.scalar(select(Organisation.id).where(Organisation.slug == demo.DEMO_SLUG)) is None:
        assert await demo.seed_if_empty(session) is not None
    org_id = await session.scalar(select(Organisation.id).where(Organisation.slug == demo.DEMO_SLUG))
    assert await session.scalar(select(Questionnaire.key).where(Questionnaire.org_id == org_id)) == "first-visit"
    row = await session.scalar(select(IntakeSession).where(IntakeSession.org_id == org_id,
                                                          IntakeSession.external_ref == "demo-intake-1"))
    assert (row.status, row.link_status, row.questionnaire_version) == ("submitted", "linked", 1)
    await jobs.run_due(session, names=["intake.summarise"])
    written = await session.get(IntakeSummary, row.id)
    assert written is not None and written.content["allergies"] == ["Penicillin (rash, moderate)"]
