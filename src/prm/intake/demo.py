"""Demo data: the demo clinic's first-visit questionnaire and one submitted intake (its summary is
written by the worker like any other)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core.auth import Principal
from prm.intake import questionnaires, records, sessions, submission
from prm.intake.models import Questionnaire
from prm.intake.schemas import QUESTIONNAIRE_EXAMPLE, QuestionnairePublish, RecordItem, SessionCreate
from prm.patients import service as patients

ANSWERS = [("reason", "Yearly check-up; some knee pain when running"), ("smoker", False), ("pain", 3),
           ("visit", "in person")]
RECORDS = [
    RecordItem(client_item_id="med-1", type="medication",
               data={"name": "Ibuprofen", "dose": "400 mg", "frequency": "as needed"}),
    RecordItem(client_item_id="allergy-1", type="allergy",
               data={"substance": "Penicillin", "reaction": "rash", "severity": "moderate"}),
]


async def seed(session: AsyncSession, org: Any, context: dict[str, Any]) -> None:
    if await session.scalar(select(Questionnaire.id).where(Questionnaire.org_id == org.id).limit(1)) is not None:
        return
    who = Principal.system(org.id)
    await questionnaires.publish(session, who, QuestionnairePublish.model_validate(
        {**QUESTIONNAIRE_EXAMPLE, "key": "first-visit", "title": "First visit"}))
    demo_patients = context.get("patients") or []
    if not demo_patients:
        return
    patient = demo_patients[0]
    await patients.set_consent(session, who, patient.id, channel=None, purpose="intake", granted=True,
                               source="demo:written")
    row, _ = await sessions.create(session, who, SessionCreate(source="web_form", questionnaire_key="first-visit",
                                                               patient_id=patient.id, external_ref="demo-intake-1"))
    items = [RecordItem(client_item_id=f"answer-{link_id}", type="answer", data={"link_id": link_id, "value": value})
             for link_id, value in ANSWERS] + RECORDS
    await records.upsert(session, who, row.id, items, None)
    await submission.submit(session, who, row.id, None)
