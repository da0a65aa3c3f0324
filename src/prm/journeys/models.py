"""Journeys: definitions (a draft and frozen versions), instances (enrolments), step runs, stage moves.

The rules the database enforces, so no race in code can break them:

* one version number per journey (`uq_journey_versions_journey_version`);
* entry policies: an instance stores its `entry_key` — `patient` (once per patient), `key:<value>`
  (once per key) or `event:<id>` / `manual:<id>` (every time) — and (journey, patient, entry_key)
  is unique; CHECKs tie the key's form to the policy. A trigger delivered twice, or twenty times at
  once, inserts one instance (`INSERT ... ON CONFLICT DO NOTHING`);
* one run per (instance, step, occurrence): a step is never executed twice for the same pass.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from prm.core import clock
from prm.core.models import Base, IdMixin, OrgMixin, TimestampMixin, one_of
from prm.journeys.steps import ENTRY_POLICIES, STEP_KINDS

INSTANCE_STATUSES = ("active", "completed", "exited")
RUN_STATUSES = ("scheduled", "succeeded", "skipped", "failed", "cancelled")


class Journey(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "journeys"
    __table_args__ = (
        UniqueConstraint("org_id", "key", name="uq_journeys_org_key"),
        CheckConstraint(one_of("entry_policy", ENTRY_POLICIES), name="entry_policy"),
        CheckConstraint("entry_policy <> 'once_per_key' OR entry_key_field IS NOT NULL", name="entry_key_field"),
    )

    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    entry_policy: Mapped[str] = mapped_column(String(32), default="once_per_patient")
    entry_key_field: Mapped[str | None] = mapped_column(String(120))  # e.g. event.appointment_id
    draft: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    active_version: Mapped[int | None] = mapped_column(Integer)
    latest_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    retired_at: Mapped[datetime | None]


class JourneyVersion(IdMixin, OrgMixin, Base):
    __tablename__ = "journey_versions"
    __table_args__ = (
        UniqueConstraint("journey_id", "version", name="uq_journey_versions_journey_version"),
        CheckConstraint("version >= 1", name="version"),
        Index("ix_journey_versions_trigger_events", "trigger_events", postgresql_using="gin"),
    )

    journey_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    trigger_events: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default=text("'{}'"))
    published_at: Mapped[datetime] = mapped_column(default=clock.now)
    published_by: Mapped[str] = mapped_column(String(80))


class JourneyInstance(IdMixin, TimestampMixin, OrgMixin, Base):
    """One patient's pass through one version of a journey (an enrolment)."""

    __tablename__ = "journey_instances"
    __table_args__ = (
        UniqueConstraint("journey_id", "patient_id", "entry_key", name="uq_journey_instances_entry"),
        CheckConstraint(one_of("status", INSTANCE_STATUSES), name="status"),
        CheckConstraint(one_of("entry_policy", ENTRY_POLICIES), name="entry_policy"),
        CheckConstraint(
            "(entry_policy = 'once_per_patient' AND entry_key = 'patient') "
            "OR (entry_policy = 'once_per_key' AND entry_key ~ '^key:.') "
            "OR (entry_policy = 'every_time' AND entry_key ~ '^(event|manual):.')",
            name="entry_key_form",
        ),
        Index("ix_journey_instances_org_patient_status", "org_id", "patient_id", "status"),
        Index("ix_journey_instances_journey_status", "journey_id", "status"),
    )

    journey_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("journeys.id", ondelete="CASCADE"))
    version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("journey_versions.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    entry_policy: Mapped[str] = mapped_column(String(32))
    entry_key: Mapped[str] = mapped_column(String(200))
    source_event_id: Mapped[uuid.UUID | None]
    source_event_type: Mapped[str | None] = mapped_column(String(100))
    current_stage: Mapped[str | None] = mapped_column(String(64))
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    waiting_for: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    enrolled_by: Mapped[str] = mapped_column(String(80))
    completed_at: Mapped[datetime | None]
    exited_at: Mapped[datetime | None]
    exit_reason: Mapped[str | None] = mapped_column(String(64))


class JourneyStepRun(IdMixin, OrgMixin, Base):
    __tablename__ = "journey_step_runs"
    __table_args__ = (
        UniqueConstraint("instance_id", "step_id", "occurrence", name="uq_journey_step_runs_occurrence"),
        CheckConstraint(one_of("status", RUN_STATUSES), name="status"),
        CheckConstraint(one_of("kind", STEP_KINDS), name="kind"),
        CheckConstraint("occurrence >= 1", name="occurrence"),
        Index("ix_journey_step_runs_instance_created", "instance_id", "created_at"),
    )

    instance_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("journey_instances.id", ondelete="CASCADE"))
    stage: Mapped[str | None] = mapped_column(String(64))
    step_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    occurrence: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="scheduled", server_default="scheduled")
    due_at: Mapped[datetime]
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    finished_at: Mapped[datetime | None]
    outcome: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=clock.now, server_default=text("now()"))


class JourneyStageChange(IdMixin, OrgMixin, Base):
    __tablename__ = "journey_stage_changes"
    __table_args__ = (Index("ix_journey_stage_changes_instance_at", "instance_id", "at"),)

    instance_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("journey_instances.id", ondelete="CASCADE"))
    from_stage: Mapped[str | None] = mapped_column(String(64))
    to_stage: Mapped[str] = mapped_column(String(64))
    cause: Mapped[str] = mapped_column(String(16))  # enrol | event | step | manual
    event_id: Mapped[uuid.UUID | None]
    event_type: Mapped[str | None] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(default=clock.now)
