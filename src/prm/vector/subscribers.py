"""Event handlers of semantic search: what was said gets indexed; what may no longer be used goes.

Each handler only queues a `vector.*` job (in the delivering transaction), so indexing is retried
on its own and bursts of messages for one conversation collapse into one job (queueing lock).
Consent is checked when the job runs, not here.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import events, jobs
from prm.core.auth import Principal
from prm.patients import registry as patient_registry
from prm.patients import service as patients
from prm.vector import service
from prm.vector.models import SearchChunk


@events.subscriber("conversation.message_added", name="vector.index_conversation")
async def on_conversation_message(session: AsyncSession, event: events.Event) -> None:
    """Any message added to a conversation (patient, staff or assistant): re-index that conversation."""
    conversation_id = str(event.payload["conversation_id"])
    await jobs.defer(session, "vector.index_conversation",
                     queueing_lock=f"vector.index_conversation:{conversation_id}",
                     org_id=str(event.org_id), conversation_id=conversation_id)


@events.subscriber("voice_call.completed", name="vector.index_call")
async def on_call(session: AsyncSession, event: events.Event) -> None:
    communication_id = str(event.payload["communication_id"])
    await jobs.defer(session, "vector.index_communication",
                     queueing_lock=f"vector.index_communication:{communication_id}",
                     org_id=str(event.org_id), communication_id=communication_id)


@events.subscriber("ticket.created", name="vector.index_new_ticket")
@events.subscriber("ticket.commented", name="vector.index_ticket_comment")
async def on_ticket(session: AsyncSession, event: events.Event) -> None:
    ticket_id = str(event.payload["ticket_id"])
    await jobs.defer(session, "vector.index_ticket", queueing_lock=f"vector.index_ticket:{ticket_id}",
                     org_id=str(event.org_id), ticket_id=ticket_id)


@events.subscriber("patient.consent_changed", name="vector.on_consent")
async def on_consent(session: AsyncSession, event: events.Event) -> None:
    """Withdrawn AI-processing consent removes the patient's chunks; granted again, they are re-indexed."""
    changes = [c for c in event.payload.get("changes", [])
               if c.get("channel") is None and c.get("purpose") == service.CONSENT_PURPOSE]
    if not changes:
        return
    patient_id = uuid.UUID(str(event.payload["patient_id"]))
    who = Principal.system(event.org_id)
    if changes[-1].get("granted"):
        await jobs.defer(session, "vector.reindex_patient", org_id=str(event.org_id), patient_id=str(patient_id))
    else:
        await service.remove_patient(session, who, patient_id, reason="consent_withdrawn")


@events.subscriber("patient.deleted", name="vector.on_patient_deleted")
async def on_deleted(session: AsyncSession, event: events.Event) -> None:
    await service.remove_patient(session, Principal.system(event.org_id),
                                 uuid.UUID(str(event.payload["patient_id"])), reason="patient_deleted")


@events.subscriber("patient.merged", name="vector.on_patient_merged")
async def on_merged(session: AsyncSession, event: events.Event) -> None:
    """The duplicate's chunks moved with the merge; keep them only if the survivor's consent allows."""
    survivor_id = uuid.UUID(str(event.payload["survivor_id"]))
    decision = await patients.data_sharing_allows(session, event.org_id, survivor_id,
                                                  purpose=service.CONSENT_PURPOSE)
    if not decision.allowed:
        await service.remove_patient(session, Principal.system(event.org_id), survivor_id,
                                     reason="merged_without_consent")


@patient_registry.on_merge("vector")
async def move_to_survivor(session: AsyncSession, org_id: uuid.UUID, duplicate_id: uuid.UUID,
                           survivor_id: uuid.UUID) -> int:
    return await patient_registry.reassign_patient(session, SearchChunk, org_id, duplicate_id, survivor_id)
