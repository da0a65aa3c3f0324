"""Demo data: a few tickets in the demo clinic's queue (one urgent, one overdue-to-be)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core.auth import Principal
from prm.tickets import service
from prm.tickets.models import Ticket
from prm.tickets.schemas import TicketCreate

TICKETS = [
    ("Question about an invoice", "Charged twice for the last visit.", "billing", "normal", ["invoice"]),
    ("Patient called: chest pain after exercise", "Asked for a call back today.", "clinical", "normal", []),
    ("Prescription renewal", "Needs the usual prescription renewed before Friday.", "clinical", "low", []),
]


async def seed(session: AsyncSession, org: Any, context: dict[str, Any]) -> None:
    if await session.scalar(select(Ticket.id).where(Ticket.org_id == org.id).limit(1)) is not None:
        return
    patients = context.get("patients") or []
    conversations = context.get("conversations") or []
    who = Principal.system(org.id)
    created = []
    for i, (subject, description, category, priority, tags) in enumerate(TICKETS):
        patient_id = patients[i % len(patients)].id if patients else None
        conversation_id = None
        if i == 0 and conversations:  # the first one came out of a WhatsApp conversation
            patient_id, conversation_id = conversations[0].patient_id, conversations[0].id
        data = TicketCreate(subject=subject, description=description, category=category,
                            priority=priority, tags=tags, patient_id=patient_id,  # type: ignore[arg-type]
                            conversation_id=conversation_id)
        created.append(await service.create(session, who, data, source="system"))
    context["tickets"] = created
