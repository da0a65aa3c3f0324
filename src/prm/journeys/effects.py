"""Everything journeys ask of other domains, through their published `service` modules only.

Kept in one place so a change of their calling convention touches one file.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from prm.core.auth import Principal
from prm.identity import service as identity
from prm.notifications import service as notifications
from prm.patients import service as patients
from prm.tickets import service as tickets
from prm.tickets.schemas import TicketCreate

CHANNELS = ("whatsapp", "sms", "email", "voice")


async def patient(session: AsyncSession, who: Principal, patient_id: uuid.UUID) -> Any:
    """The live patient of the caller's organisation (NotFound otherwise)."""
    return await patients.get(session, who.org_id, patient_id)


def patient_facts(p: Any) -> dict[str, Any]:
    """What conditions may test about a patient: no names, phones or emails."""
    return {
        "tags": list(p.tags or []),
        "preferred_channel": p.preferred_channel,
        "preferred_language": p.preferred_language,
        "is_provisional": p.is_provisional,
        "source": p.source,
        "status": p.status,
        "gender": p.gender,
    }


async def organisation_zone(session: AsyncSession, who: Principal) -> str | None:
    org = await identity.get_organisation(session, who.org_id)
    return str(org.timezone) if org.timezone else None


async def template_exists(session: AsyncSession, who: Principal, key: str, channel: str | None) -> bool:
    """Whether the organisation (or the built-in set) has template `key` on `channel` (any when None)."""
    for ch in [channel] if channel else CHANNELS:
        if await notifications.find_template(session, who.org_id, key, ch, None) is not None:
            return True
    return False


async def send_notification(
    session: AsyncSession,
    who: Principal,
    *,
    patient_id: uuid.UUID,
    template_key: str,
    channel: str | None,
    purpose: str,
    variables: dict[str, Any],
    idempotency_key: str,
) -> Any:
    return await notifications.send_notification(
        session,
        who,
        patient_id=patient_id,
        template_key=template_key,
        variables=variables,
        channel=channel,
        purpose=purpose,
        idempotency_key=idempotency_key,
    )


async def create_ticket(
    session: AsyncSession,
    who: Principal,
    *,
    patient_id: uuid.UUID,
    subject: str,
    description: str,
    category: str,
    priority: str,
    tags: list[str],
) -> Any:
    data = TicketCreate(
        subject=subject,
        description=description,
        category=category,
        priority=priority,  # type: ignore[arg-type]
        patient_id=patient_id,
        tags=tags,
    )
    return await tickets.create(session, who, data, source="system")
