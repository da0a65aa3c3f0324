"""Helpers shared by the conversation service tests."""

from __future__ import annotations

from sqlalchemy import select

from prm.communications.models import Communication
from prm.conversations.models import Conversation
from prm.core import jobs
from prm.patients.models import Patient
from tests.fixtures.conversation_fixtures import post_message

PHONE = "+34600111222"


async def _conversation_of(session, org_id, phone: str = PHONE) -> Conversation:
    patient = await session.scalar(select(Patient).where(Patient.org_id == org_id, Patient.primary_phone == phone))
    assert patient is not None
    conversation = await session.scalar(
        select(Conversation).where(Conversation.patient_id == patient.id).execution_options(populate_existing=True)
    )
    assert conversation is not None
    return conversation


async def _bodies(session, conversation_id, direction: str = "outbound") -> list[str]:
    rows = await session.scalars(
        select(Communication)
        .where(Communication.conversation_id == conversation_id, Communication.direction == direction)
        .order_by(Communication.created_at, Communication.id)
    )
    return [r.body or "" for r in rows]


async def say(session, anon_client, text: str, phone: str = PHONE) -> None:
    await post_message(anon_client, text, from_phone=phone)
    await jobs.run_due(session)
