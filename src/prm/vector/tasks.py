"""Jobs of semantic search: index a source, re-embed after a model change.

Every job acts as `Principal.system(org_id)`. The embedder and the tuning come from the settings
the app or worker was configured with, through the session's context (`runtime(session)`).
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from prm import context
from prm.adapters import embeddings
from prm.core import jobs
from prm.core.auth import Principal
from prm.vector import service
from prm.vector.sources import NotRoutedYet

log = structlog.get_logger(__name__)

REEMBED_BATCH = 256


def runtime(session: AsyncSession) -> tuple[embeddings.Embedder, service.SearchConfig]:
    """The embedder and search tuning of the settings this unit of work runs with."""
    ctx = context.of(session)
    return ctx.adapters.embedder(), service.SearchConfig.from_settings(ctx.settings)


@jobs.job("vector.index_communication", retry_on=(Exception,))
async def index_communication(session: AsyncSession, *, org_id: str, communication_id: str) -> int:
    """Index the conversation, call transcript or email a message belongs to.

    An inbound WhatsApp/SMS message not yet routed into its conversation fails with NotRoutedYet
    and is retried by the job's backoff.
    """
    embedder, config = runtime(session)
    try:
        return await service.index_communication(session, Principal.system(uuid.UUID(org_id)),
                                                  uuid.UUID(communication_id), embedder, config)
    except NotRoutedYet:
        log.info("search.not_routed_yet", communication_id=communication_id)
        raise


@jobs.job("vector.index_conversation")
async def index_conversation(session: AsyncSession, *, org_id: str, conversation_id: str) -> int:
    embedder, config = runtime(session)
    return await service.index_conversation(session, Principal.system(uuid.UUID(org_id)),
                                            uuid.UUID(conversation_id), embedder, config)


@jobs.job("vector.index_ticket")
async def index_ticket(session: AsyncSession, *, org_id: str, ticket_id: str) -> int:
    embedder, config = runtime(session)
    return await service.index_ticket(session, Principal.system(uuid.UUID(org_id)), uuid.UUID(ticket_id),
                                      embedder, config)


@jobs.job("vector.index_document")
async def index_document(session: AsyncSession, *, org_id: str, document_id: str) -> int:
    embedder, config = runtime(session)
    return await service.index_document(session, Principal.system(uuid.UUID(org_id)), uuid.UUID(document_id),
                                        embedder, config)


@jobs.job("vector.reindex_patient")
async def reindex_patient(session: AsyncSession, *, org_id: str, patient_id: str) -> int:
    return await service.reindex_patient(session, Principal.system(uuid.UUID(org_id)), uuid.UUID(patient_id))


@jobs.job("vector.reembed", periodic="*/5 * * * *")
async def reembed(session: AsyncSession, **_: Any) -> int:
    """Every 5 minutes (and again at once while work remains): re-embed chunks of another model."""
    embedder, _config = runtime(session)
    done = await service.reembed(session, embedder, batch=REEMBED_BATCH)
    if done == REEMBED_BATCH:
        await jobs.defer(session, "vector.reembed", queueing_lock="vector.reembed")
    if done:
        log.info("search.reembedded", chunks=done, model=embedder.model)
    return done
