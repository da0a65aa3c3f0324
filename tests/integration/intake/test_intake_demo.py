"""The demo clinic seeds intake: its questionnaire and one intake in progress, complete and linked."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm import demo
from prm.identity.models import Organisation
from prm.intake import service as intake
from prm.intake.models import IntakeSession, Questionnaire


async def test_demo_clinic_has_a_questionnaire_and_a_submitted_intake(session: AsyncSession) -> None:
    if await session.scalar(select(Organisation.id).where(Organisation.slug == demo.DEMO_SLUG)) is None:
        assert await demo.seed_if_empty(session) is not None
    org_id = await session.scalar(select(Organisation.id).where(Organisation.slug == demo.DEMO_SLUG))
    assert await session.scalar(select(Questionnaire.key).where(Questionnaire.org_id == org_id)) == "first-visit"
    row = await session.scalar(select(IntakeSession).where(IntakeSession.org_id == org_id,
                                                          IntakeSession.external_ref == "demo-intake-1"))
    assert (row.status, row.link_status, row.questionnaire_version) == ("open", "linked", 1)
    assert await intake.missing(session, row) == []  # staff can submit it as it is
