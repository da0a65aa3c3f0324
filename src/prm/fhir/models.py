"""Tables of the FHIR domain.

* `fhir_ehr_connections`: an organisation's EHRs (base URL, server family, auth: SMART Backend
  Services with our own signing key per connection, or a static bearer token).
* `fhir_ehr_links`: which EHR resource (id, version) each of our records became, per connection.
* `fhir_sync_runs`: the sync log, one row per push of one patient's chart to one connection; at most
  one run per (connection, patient) is waiting (`queued`/`retrying`), so triggers coalesce into it.
* `fhir_bulk_exports`: Bulk Data `$export` requests; at most one in progress per client.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from prm.core.models import Base, IdMixin, OrgMixin, TimestampMixin, one_of

SERVER_FAMILIES = ("transaction", "per_resource")
AUTH_KINDS = ("smart", "bearer")
SIGNING_ALGS = ("ES384", "RS384")
RUN_STATUSES = ("queued", "retrying", "running", "succeeded", "failed", "skipped")
WAITING = ("queued", "retrying")
# the predicate of the one-waiting-run index, as SQL with literals (an ON CONFLICT naming the index
# repeats it: with bound parameters a prepared statement's generic plan cannot match the index)
WAITING_SQL = "status IN (" + ", ".join(f"'{status}'" for status in WAITING) + ")"
EXPORT_STATUSES = ("queued", "running", "completed", "failed", "cancelled")
EXPORT_ACTIVE = ("queued", "running")
EXPORT_LEVELS = ("system", "patient", "group")


class EhrConnection(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "fhir_ehr_connections"
    __table_args__ = (
        CheckConstraint(one_of("server_family", SERVER_FAMILIES), name="server_family"),
        CheckConstraint(one_of("auth", AUTH_KINDS), name="auth"),
        CheckConstraint(one_of("signing_alg", SIGNING_ALGS), name="signing_alg"),
        CheckConstraint("auth <> 'smart' OR (token_url IS NOT NULL AND client_id IS NOT NULL "
                        "AND private_key_pem IS NOT NULL)", name="smart_complete"),
        CheckConstraint("auth <> 'bearer' OR bearer_token IS NOT NULL", name="bearer_complete"),
        UniqueConstraint("key_id", name="uq_fhir_ehr_connections_key_id"),
    )

    name: Mapped[str] = mapped_column(String(200))
    base_url: Mapped[str] = mapped_column(String(2000))
    server_family: Mapped[str] = mapped_column(String(16), default="transaction")
    auth: Mapped[str] = mapped_column(String(16))
    token_url: Mapped[str | None] = mapped_column(String(2000))
    client_id: Mapped[str | None] = mapped_column(String(255))
    scope: Mapped[str] = mapped_column(String(1000), default="system/*.write system/*.read")
    signing_alg: Mapped[str] = mapped_column(String(8), default="ES384")
    key_id: Mapped[str] = mapped_column(String(64))
    private_key_pem: Mapped[str | None] = mapped_column(Text)  # never returned by the API
    bearer_token: Mapped[str | None] = mapped_column(Text)  # never returned by the API
    enabled: Mapped[bool] = mapped_column(default=True)
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(1000))


class EhrLink(IdMixin, OrgMixin, Base):
    __tablename__ = "fhir_ehr_links"
    __table_args__ = (
        UniqueConstraint("connection_id", "resource_type", "local_id", name="uq_fhir_ehr_links_local"),
        Index("ix_fhir_ehr_links_connection_patient", "connection_id", "patient_id"),
    )

    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("fhir_ehr_connections.id", ondelete="CASCADE"))
    resource_type: Mapped[str] = mapped_column(String(64))
    local_id: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[uuid.UUID | None]
    ehr_id: Mapped[str] = mapped_column(String(64))
    ehr_version: Mapped[str | None] = mapped_column(String(64))
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    synced_at: Mapped[datetime]


class SyncRun(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "fhir_sync_runs"
    __table_args__ = (
        CheckConstraint(one_of("status", RUN_STATUSES), name="status"),
        Index("uq_fhir_sync_runs_one_waiting", "connection_id", "patient_id", unique=True,
              postgresql_where=text(WAITING_SQL)),
        Index("ix_fhir_sync_runs_org_patient_created", "org_id", "patient_id", "created_at"),
    )

    connection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("fhir_ehr_connections.id", ondelete="CASCADE"),
                                                     index=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    triggers: Mapped[list[str]] = mapped_column(ARRAY(String(64)), default=list, server_default=text("'{}'"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    http_status: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(1000))
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'"))
    job_id: Mapped[int | None] = mapped_column(BigInteger)


class BulkExport(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "fhir_bulk_exports"
    __table_args__ = (
        CheckConstraint(one_of("status", EXPORT_STATUSES), name="status"),
        CheckConstraint(one_of("level", EXPORT_LEVELS), name="level"),
        Index("uq_fhir_bulk_exports_one_active", "org_id", "requested_by", unique=True,
              postgresql_where=text("status IN ('queued', 'running')")),
    )

    requested_by: Mapped[str] = mapped_column(String(120))
    level: Mapped[str] = mapped_column(String(16))
    group_id: Mapped[uuid.UUID | None]
    types: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    since: Mapped[datetime | None]
    request_url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    transaction_time: Mapped[datetime]
    progress: Mapped[str | None] = mapped_column(String(200))
    output: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default=text("'[]'"))
    error: Mapped[str | None] = mapped_column(Text)
    completed_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
