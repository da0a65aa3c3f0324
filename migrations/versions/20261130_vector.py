"""semantic search: chunks with a pgvector embedding (HNSW, cosine) and a generated tsvector (GIN),
and the clinic's knowledge documents.

Revision ID: 20261130_vector
Revises: 20261130_reminder_offsets
Create Date: 2026-11-30 05:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision = "20261130_vector"
down_revision = "20261130_reminder_offsets"
branch_labels = None
depends_on = None

SOURCE_TYPES = ("conversation", "voice_call", "message", "ticket", "ticket_comment", "document")


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "search_chunks",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=True),
        sa.Column("source_type", sa.String(32), nullable=False),
        sa.Column("source_id", sa.UUID(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("citation", postgresql.JSONB(), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("embedding", Vector(384), nullable=False),
        sa.Column("tsv", postgresql.TSVECTOR(),
                  sa.Computed("to_tsvector('english'::regconfig, text)", persisted=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("embedded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("source_type IN (" + ", ".join(f"'{s}'" for s in SOURCE_TYPES) + ")",
                           name=op.f("ck_search_chunks_source_type")),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f("fk_search_chunks_org_id_organisations"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_search_chunks_patient_id_patients"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_chunks")),
        sa.UniqueConstraint("org_id", "source_type", "source_id", "ordinal", name="uq_search_chunks_source_ordinal"),
    )
    op.create_index("ix_search_chunks_org_patient", "search_chunks", ["org_id", "patient_id"])
    op.create_index("ix_search_chunks_org_source", "search_chunks", ["org_id", "source_type", "source_id"])
    op.create_index("ix_search_chunks_org_model", "search_chunks", ["org_id", "model"])
    op.create_index("ix_search_chunks_tsv", "search_chunks", ["tsv"], postgresql_using="gin")
    op.create_index("ix_search_chunks_embedding_hnsw", "search_chunks", ["embedding"], postgresql_using="hnsw",
                    postgresql_with={"m": 16, "ef_construction": 64},
                    postgresql_ops={"embedding": "vector_cosine_ops"})

    op.create_table(
        "search_documents",
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_by_kind", sa.String(16), nullable=False),
        sa.Column("created_by_id", sa.UUID(), nullable=True),
        sa.Column("chunk_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"],
                                name=op.f("fk_search_documents_org_id_organisations"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_documents")),
    )
    op.create_index(op.f("ix_search_documents_org_id"), "search_documents", ["org_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_search_documents_org_id"), table_name="search_documents")
    op.drop_table("search_documents")
    op.drop_table("search_chunks")  # drops its indexes with it
