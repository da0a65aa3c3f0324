"""Helpers for the search tests: conversations with messages at known times, and a fixed embedder."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.adapters.embeddings import HashingEmbedder
from prm.communications import service as communications
from prm.conversations import service as conversations
from prm.core import clock
from prm.core.auth import Principal
from prm.vector.models import SearchChunk
from prm.vector.service import SearchConfig

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
CONFIG = SearchConfig()


class CountingEmbedder(HashingEmbedder):
    """The hashing embedder, counting the texts it was asked to embed."""

    def __init__(self) -> None:
        self.embedded: list[str] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.embedded.extend(texts)
        return await super().embed(texts)


class FixedEmbedder:
    """Vectors given in advance per text (for exact-recall tests); unknown texts get the hashing vector."""

    model = "fixed-test"
    dimensions = 384
    lexical_only = False

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors
        self._fallback = HashingEmbedder()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vectors.get(t) or self._fallback.embed_one(t) for t in texts]


async def conversation_with(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID,
                            lines: Sequence[tuple[float, str, str]], *, channel: str = "whatsapp") -> Any:
    """A conversation with messages (minutes after T0, "in"/"out", text); returns (conversation, messages)."""
    conversation = await conversations.open_for(session, org_id, patient_id, channel)
    stored = []
    for minutes, direction, body in lines:
        with clock.frozen(T0 + timedelta(minutes=minutes)):
            if direction == "in":
                comm = await communications.record_inbound(
                    session, org_id, patient_id=patient_id, channel=channel, body=body, from_address="+34600000000",
                    to_address="+34910000001", provider="sandbox", provider_message_id=None)
            else:
                comm = await communications.record_outbound_reply(
                    session, org_id, patient_id=patient_id, channel=channel, body=body, to_address="+34600000000",
                    from_address="+34910000001", provider="sandbox", details={})
                comm.created_at = clock.now()
            await conversations.add_message(session, conversation, comm)
            stored.append(comm)
    return conversation, stored


async def chunks_of(session: AsyncSession, org_id: uuid.UUID, **where: Any) -> list[SearchChunk]:
    stmt = select(SearchChunk).where(SearchChunk.org_id == org_id)
    for key, value in where.items():
        stmt = stmt.where(getattr(SearchChunk, key) == value)
    return list(await session.scalars(stmt.order_by(SearchChunk.source_type, SearchChunk.ordinal)
                                      .execution_options(populate_existing=True)))


def system(org_id: uuid.UUID) -> Principal:
    return Principal.system(org_id)
