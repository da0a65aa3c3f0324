"""Intake: questionnaires (a key and frozen versions), sessions, their typed records, summaries.

What the database enforces, so no race in code can break it:

* one record per (session, client item id) — `uq_intake_records_session_item`: the same item sent
  twice, or twenty times at once, is one row (`INSERT ... ON CONFLICT DO UPDATE`);
* one session per organisation and external reference (a voice call delivered five times at once
  makes one session) — `uq_intake_sessions_org_external_ref`;
* one version number per questionnaire, one summary per session;
* CHECKs on the closed vocabularies (source, status, link status, record type).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from prm.core import clock
from prm.core.models import Base, IdMixin, OrgMixin, TimestampMixin, one_of

SOURCES = ("web_form", "whatsapp", "voice", "staff")
STATUSES = ("open", "submitted", "cancelled")
LINK_STATUSES = ("unlinked", "linked", "needs_review")
RECORD_TYPES = ("chief_complaint", "symptom", "medication", "allergy", "condition", "family_history",
                "social_history", "vital", "insurance", "note", "answer")
SUMMARY_STATUSES = ("none", "pending", "ready", "failed")


class Questionnaire(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "intake_questionnaires"
    __table_args__ = (UniqueConstraint("org_id", "key", name="uq_intake_questionnaires_org_key"),)

    key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    latest_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    retired_at: Mapped[datetime | None]


class QuestionnaireVersion(IdMixin, OrgMixin, Base):
    """A published, frozen definition (FHIR Questionnaire items); sessions point at one."""

    __tablename__ = "intake_questionnaire_versions"
    __table_args__ = (
        UniqueConstraint("questionnaire_id", "version", name="uq_intake_questionnaire_versions_version"),
        CheckConstraint("version >= 1", name="version"),
    )

    questionnaire_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("intake_questionnaires.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    published_at: Mapped[datetime] = mapped_column(default=clock.now)
    published_by: Mapped[str] = mapped_column(String(80))


class IntakeSession(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "intake_sessions"
    __table_args__ = (
        CheckConstraint(one_of("source", SOURCES), name="source"),
        CheckConstraint(one_of("status", STATUSES), name="status"),
        CheckConstraint(one_of("link_status", LINK_STATUSES), name="link_status"),
        CheckConstraint(one_of("summary_status", SUMMARY_STATUSES), name="summary_status"),
        CheckConstraint("(link_status = 'linked') = (patient_id IS NOT NULL)", name="linked_has_patient"),
        CheckConstraint("(status = 'submitted') = (submitted_at IS NOT NULL)", name="submitted_at"),
        UniqueConstraint("org_id", "external_ref", name="uq_intake_sessions_org_external_ref"),
        Index("ix_intake_sessions_org_status_created", "org_id", "status", "created_at"),
        Index("ix_intake_sessions_org_patient", "org_id", "patient_id"),
    )

    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    link_status: Mapped[str] = mapped_column(String(16), default="unlinked", server_default="unlinked")
    patient_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    assigned_practitioner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("practitioners.id", ondelete="SET NULL"))
    questionnaire_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("intake_questionnaires.id", ondelete="RESTRICT"))
    questionnaire_version: Mapped[int | None] = mapped_column(Integer)
    contact: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=sql("'{}'"))
    language: Mapped[str | None] = mapped_column(String(35))
    external_ref: Mapped[str | None] = mapped_column(String(200))
    communication_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("communications.id", ondelete="SET NULL"))
    appointment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("appointments.id", ondelete="SET NULL"))
    consent_recorded_at: Mapped[datetime | None]
    match_candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list,
                                                                   server_default=sql("'[]'"))
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    submitted_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    summary_status: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    created_by: Mapped[str] = mapped_column(String(80))


class IntakeRecord(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "intake_records"
    __table_args__ = (
        UniqueConstraint("session_id", "client_item_id", name="uq_intake_records_session_item"),
        CheckConstraint(one_of("type", RECORD_TYPES), name="type"),
        CheckConstraint("revision >= 1", name="revision"),
    )

    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("intake_sessions.id", ondelete="CASCADE"))
    client_item_id: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    deleted_at: Mapped[datetime | None]


class IntakeSummary(TimestampMixin, OrgMixin, Base):
    """The clinical summary of a submitted session: machine-generated, editable by staff."""

    __tablename__ = "intake_summaries"

    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("intake_sessions.id", ondelete="CASCADE"),
                                                  primary_key=True)
    content: Mapped[dict[str, Any]] = mapped_column(JSONB)
    text: Mapped[str] = mapped_column(Text)
    machine_generated: Mapped[bool] = mapped_column(default=True)
    generator: Mapped[str] = mapped_column(String(80))
    edited: Mapped[bool] = mapped_column(default=False, server_default=sql("false"))
    edited_by: Mapped[uuid.UUID | None]
    generated_at: Mapped[datetime] = mapped_column(default=clock.now)
