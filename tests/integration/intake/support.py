"""Helpers shared by the intake tests."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core.events import EventRecord

PROBLEM = "application/problem+json"

QUESTIONNAIRE: dict[str, Any] = {
    "key": "new-patient",
    "title": "New patient intake",
    "item": [
        {"linkId": "reason", "text": "What brings you in?", "type": "text", "required": True},
        {"linkId": "smoker", "text": "Do you smoke?", "type": "boolean", "required": True},
        {"linkId": "pain", "text": "Pain today (0-10)", "type": "integer"},
        {"linkId": "visit", "text": "Visit type", "type": "choice",
         "answerOption": [{"valueString": "in person"}, {"valueString": "video"}]},
        {"linkId": "travel", "type": "group", "item": [
            {"linkId": "travel.where", "text": "Where did you travel?", "type": "string", "required": True}]},
    ],
}


async def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json() if r.content else None


async def events_of(session: AsyncSession, org_id: Any, event_type: str) -> list[EventRecord]:
    return list(await session.scalars(select(EventRecord).where(EventRecord.org_id == org_id,
                                                                EventRecord.type == event_type)
                                      .order_by(EventRecord.occurred_at)))
