"""Helpers shared by the intake tests."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core.events import EventRecord
from prm.intake.schemas import QUESTIONNAIRE_EXAMPLE

PROBLEM = "application/problem+json"

# The API's documented example (reason, smoker, pain, visit) and a group with a required item.
QUESTIONNAIRE: dict[str, Any] = {**QUESTIONNAIRE_EXAMPLE, "item": [*QUESTIONNAIRE_EXAMPLE["item"], {
    "linkId": "travel", "type": "group",
    "item": [{"linkId": "travel.where", "text": "Where did you travel?", "type": "string", "required": True}]}]}


async def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


async def events_of(session: AsyncSession, org_id: Any, event_type: str) -> list[EventRecord]:
    return list(await session.scalars(select(EventRecord).where(EventRecord.org_id == org_id,
                                                                EventRecord.type == event_type)
                                      .order_by(EventRecord.occurred_at)))
