"""Tables of semantic search.

* `search_chunks`: one row per chunk of a searchable source (a conversation, a call transcript, a
  ticket or one of its comments, a clinic document). It carries the organisation, the patient (none
  for clinic documents), the source's type and id, the channel, when it happened, the text, the
  embedding model's name and its `vector(384)` (HNSW, cosine), and a generated `tsvector`
  (`english` configuration, GIN). A B-tree on (org, patient) serves patient-filtered searches.
  `content_hash` lets re-ingestion keep the vectors of chunks whose text did not change.
* `search_documents`: knowledge documents uploaded by staff (clinic-wide, no patient).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import CheckConstraint, Computed, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from prm.adapters.embeddings import DIMENSIONS
from prm.core import clock
from prm.core.models import Base, IdMixin, OrgMixin, TimestampMixin, one_of

SOURCE_TYPES = ("conversation", "voice_call", "message", "ticket", "ticket_comment", "document")
TEXT_CONFIG = "english"
TSV_SQL = f"to_tsvector('{TEXT_CONFIG}'::regconfig, text)"


class SearchChunk(IdMixin, Base):
    __tablename__ = "search_chunks"
    __table_args__ = (
        CheckConstraint(one_of("source_type", SOURCE_TYPES), name="source_type"),
        UniqueConstraint("org_id", "source_type", "source_id", "ordinal", name="uq_search_chunks_source_ordinal"),
        Index("ix_search_chunks_org_patient", "org_id", "patient_id"),
        Index("ix_search_chunks_org_source", "org_id", "source_type", "source_id"),
        Index("ix_search_chunks_org_model", "org_id", "model"),
        Index("ix_search_chunks_tsv", "tsv", postgresql_using="gin"),
        Index(
            "ix_search_chunks_embedding_hnsw",
            "embedding",
            postgresql_using="hnsw",
            postgresql_with={"m": 16, "ef_construction": 64},
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    patient_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    source_type: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[uuid.UUID]
    ordinal: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str | None] = mapped_column(String(16))
    occurred_at: Mapped[datetime]
    text: Mapped[str] = mapped_column(Text)
    citation: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=sql_text("'{}'"))
    content_hash: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(100))
    embedding: Mapped[list[float]] = mapped_column(Vector(DIMENSIONS))
    tsv: Mapped[str] = mapped_column(TSVECTOR, Computed(TSV_SQL, persisted=True))
    created_at: Mapped[datetime] = mapped_column(default=clock.now, server_default=sql_text("now()"))
    embedded_at: Mapped[datetime] = mapped_column(default=clock.now, server_default=sql_text("now()"))


class SearchDocument(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "search_documents"

    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    created_by_kind: Mapped[str] = mapped_column(String(16))
    created_by_id: Mapped[uuid.UUID | None]
    chunk_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    indexed_at: Mapped[datetime | None]
