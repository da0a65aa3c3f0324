"""Media: stored files (one object per organisation and content) and the items that use them.

* `MediaBlob` is the bytes: unique per `(org_id, sha256)`, so a second upload of the same file is
  linked to the existing object instead of being stored twice. `pending` until an upload of it has
  been verified, then `stored` with the sniffed content type.
* `Media` is one file as a user sees it: a name, a declared type, who it belongs to (a patient) and
  where it came from (a conversation, a message, a ticket, an intake session). Those modules sit
  above media, so their ids are kept without foreign keys and checked through `media.links`.
  `status`: `pending` (waiting for the upload or the download), `available`, `rejected` (an inbound
  attachment that failed verification). Deletion is soft (`deleted_at`); the retention job removes
  the bytes later (`purged_at`).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, SmallInteger, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from prm.core.models import Base, IdMixin, OrgMixin, TimestampMixin, one_of

BLOB_STATES = ("pending", "stored")
STATUSES = ("pending", "available", "rejected")
SOURCES = ("upload", "whatsapp", "sms", "email", "voice")


class MediaBlob(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "media_blobs"
    __table_args__ = (
        CheckConstraint(one_of("state", BLOB_STATES), name="state"),
        Index("uq_media_blobs_org_sha256", "org_id", "sha256", unique=True),
    )

    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    content_type: Mapped[str | None] = mapped_column(String(100))  # sniffed, once stored
    stored_at: Mapped[datetime | None]


class Media(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "media"
    __table_args__ = (
        CheckConstraint(one_of("status", STATUSES), name="status"),
        CheckConstraint(one_of("source", SOURCES), name="source"),
        Index("ix_media_org_patient_created", "org_id", "patient_id", "created_at"),
        Index("ix_media_org_conversation", "org_id", "conversation_id"),
        Index("ix_media_org_message", "org_id", "message_id"),
        Index("ix_media_org_ticket", "org_id", "ticket_id"),
        Index("ix_media_org_intake_session", "org_id", "intake_session_id"),
        Index("ix_media_blob_id", "blob_id"),
        Index("ix_media_deleted_at", "deleted_at",
              postgresql_where=text("deleted_at IS NOT NULL AND purged_at IS NULL")),
        Index("uq_media_org_source_ref", "org_id", "source_ref", unique=True,
              postgresql_where=text("source_ref IS NOT NULL")),
    )

    blob_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("media_blobs.id", ondelete="SET NULL"))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))  # unknown for an inbound attachment until fetched
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    source: Mapped[str] = mapped_column(String(16), default="upload", server_default="upload")
    deduplicated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_detail: Mapped[str | None] = mapped_column(String(300))
    patient_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("patients.id", ondelete="SET NULL"))
    conversation_id: Mapped[uuid.UUID | None]
    message_id: Mapped[uuid.UUID | None]
    ticket_id: Mapped[uuid.UUID | None]
    intake_session_id: Mapped[uuid.UUID | None]
    # an inbound attachment: provider, message and position (idempotent fetch) and where to fetch it
    source_ref: Mapped[str | None] = mapped_column(String(200))
    source_url: Mapped[str | None] = mapped_column(String(2000))
    position: Mapped[int | None] = mapped_column(SmallInteger)
    fetch_attempts: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    created_by_kind: Mapped[str] = mapped_column(String(16), default="system", server_default="system")
    created_by_id: Mapped[uuid.UUID | None]
    verified_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    deleted_by_id: Mapped[uuid.UUID | None]
    purged_at: Mapped[datetime | None]

    blob: Mapped[MediaBlob | None] = relationship(lazy="raise")
