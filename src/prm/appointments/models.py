"""Scheduling tables: practitioners, locations, services, availability, appointments, history, reminders.

Double booking is impossible by construction: the migration adds two exclusion constraints
(`btree_gist`) on `appointments`, considering only statuses that hold time:

* `ex_appointments_practitioner_time`: one practitioner, overlapping *blocked* ranges
  (`[blocked_from, blocked_until)` = the appointment plus its buffers) → `slot_taken`;
* `ex_appointments_patient_time`: one patient, overlapping `[start_at, end_at)` → `patient_overlap`.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    Table,
    Text,
    Time,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from prm.appointments.state_machine import HOLDS_TIME, STATUSES, allowed_actions
from prm.core import clock
from prm.core.models import Base, IdMixin, OrgMixin, TimestampMixin, one_of

MODES = ("in_person", "video")
EXCEPTION_KINDS = ("time_off", "extra_hours")
REMINDER_STATUSES = ("scheduled", "due", "void")


HOLDS_TIME_SQL = one_of("status", HOLDS_TIME)

service_practitioners = Table(
    "service_practitioners",
    Base.metadata,
    Column("service_id", ForeignKey("services.id", ondelete="CASCADE"), primary_key=True),
    Column("practitioner_id", ForeignKey("practitioners.id", ondelete="CASCADE"), primary_key=True),
)


class ReferenceVersion(Base):
    """Bumped by database triggers whenever an organisation's scheduling reference data changes
    (services, who offers them, practitioners, locations, availability rules and exceptions, the
    organisation's settings): the check that a process's cached copy is current (`reference.py`)."""

    __tablename__ = "reference_versions"

    org_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class Practitioner(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "practitioners"

    name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(100), default="", server_default="")
    email: Mapped[str | None] = mapped_column(String(320))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    is_active: Mapped[bool] = mapped_column(default=True)


class Location(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "locations"

    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(Text, default="", server_default="")
    timezone: Mapped[str] = mapped_column(String(64))
    is_virtual: Mapped[bool] = mapped_column(default=False)
    is_active: Mapped[bool] = mapped_column(default=True)


class Service(IdMixin, TimestampMixin, OrgMixin, Base):
    """An appointment type: how long, buffers, who offers it, how far ahead it can be booked."""

    __tablename__ = "services"
    __table_args__ = (
        CheckConstraint("duration_minutes > 0", name="duration_positive"),
        CheckConstraint("buffer_before_minutes >= 0 AND buffer_after_minutes >= 0", name="buffers"),
        CheckConstraint("min_notice_minutes >= 0", name="min_notice"),
        CheckConstraint("horizon_days > 0", name="horizon"),
        CheckConstraint("slot_step_minutes > 0", name="slot_step"),
        CheckConstraint(one_of("mode", MODES), name="mode"),
    )

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    duration_minutes: Mapped[int]
    buffer_before_minutes: Mapped[int] = mapped_column(default=0)
    buffer_after_minutes: Mapped[int] = mapped_column(default=0)
    mode: Mapped[str] = mapped_column(String(16), default="in_person")
    min_notice_minutes: Mapped[int] = mapped_column(default=60)
    horizon_days: Mapped[int] = mapped_column(default=90)
    slot_step_minutes: Mapped[int] = mapped_column(default=15)
    keywords: Mapped[list[str]] = mapped_column(ARRAY(String(100)), default=list, server_default="{}")
    is_active: Mapped[bool] = mapped_column(default=True)

    practitioners: Mapped[list[Practitioner]] = relationship(secondary=service_practitioners, lazy="selectin")

    @property
    def practitioner_ids(self) -> list[uuid.UUID]:
        return [p.id for p in self.practitioners]


class AvailabilityRule(IdMixin, TimestampMixin, OrgMixin, Base):
    """Weekly working hours of one practitioner at one location, in the location's local time."""

    __tablename__ = "availability_rules"
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
        CheckConstraint("start_time < end_time", name="times"),
        CheckConstraint("valid_until IS NULL OR valid_from IS NULL OR valid_from <= valid_until", name="validity"),
        Index("ix_availability_rules_practitioner", "practitioner_id", "location_id"),
    )

    practitioner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("practitioners.id", ondelete="CASCADE"))
    location_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    weekday: Mapped[int] = mapped_column(SmallInteger)
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)


class AvailabilityException(IdMixin, TimestampMixin, OrgMixin, Base):
    """Time off (at every location, or one) or extra hours (at one location), as instants."""

    __tablename__ = "availability_exceptions"
    __table_args__ = (
        CheckConstraint(one_of("kind", EXCEPTION_KINDS), name="kind"),
        CheckConstraint("start_at < end_at", name="times"),
        CheckConstraint("kind = 'time_off' OR location_id IS NOT NULL", name="extra_needs_location"),
        Index("ix_availability_exceptions_practitioner", "practitioner_id", "start_at"),
    )

    practitioner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("practitioners.id", ondelete="CASCADE"))
    location_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("locations.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(200), default="", server_default="")


class Appointment(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "appointments"
    __table_args__ = (
        CheckConstraint(one_of("status", STATUSES), name="status"),
        CheckConstraint(one_of("mode", MODES), name="mode"),
        CheckConstraint("start_at < end_at", name="times"),
        CheckConstraint("blocked_from <= start_at AND end_at <= blocked_until", name="blocked_covers"),
        Index("ix_appointments_org_patient_start", "org_id", "patient_id", "start_at"),
        Index("ix_appointments_org_practitioner_start", "org_id", "practitioner_id", "start_at"),
        # + the two exclusion constraints (see the module docstring), created by the migration
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    practitioner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("practitioners.id", ondelete="RESTRICT"))
    service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("services.id", ondelete="RESTRICT"))
    location_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("locations.id", ondelete="RESTRICT"))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    blocked_from: Mapped[datetime]
    blocked_until: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="booked")
    mode: Mapped[str] = mapped_column(String(16), default="in_person")
    notes: Mapped[str] = mapped_column(Text, default="", server_default="")
    source: Mapped[str] = mapped_column(String(32), default="api", server_default="api")
    sequence: Mapped[int] = mapped_column(default=0, server_default="0")  # reschedules, for iCalendar
    booked_by: Mapped[str] = mapped_column(String(80), default="", server_default="")
    confirmed_at: Mapped[datetime | None]
    checked_in_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    no_show_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    cancelled_by: Mapped[str | None] = mapped_column(String(80))
    cancel_reason: Mapped[str | None] = mapped_column(Text)

    @property
    def allowed_actions(self) -> list[str]:
        return allowed_actions(self.status)


class AppointmentChange(Base):
    """Append-only history of an appointment: every status change and every move."""

    __tablename__ = "appointment_changes"
    __table_args__ = (
        Index("ix_appointment_changes_appointment", "appointment_id", "id"),
        Index("ix_appointment_changes_org_at", "org_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    appointment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("appointments.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=clock.now)
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    old_start_at: Mapped[datetime | None]
    old_end_at: Mapped[datetime | None]
    new_start_at: Mapped[datetime | None]
    new_end_at: Mapped[datetime | None]
    actor: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")


class AppointmentReminder(IdMixin, TimestampMixin, OrgMixin, Base):
    """One reminder of one appointment at one offset; the reminder sweep publishes
    `appointment.reminder_due` once it is due. `job_id`: the job that fired it, on rows scheduled
    before the sweep (one job per reminder)."""

    __tablename__ = "appointment_reminders"
    __table_args__ = (
        CheckConstraint(one_of("status", REMINDER_STATUSES), name="status"),
        Index("ix_appointment_reminders_appointment", "appointment_id"),
        # the reminder sweep's queue: scheduled reminders by due time (`reminders.fire_due_reminders`)
        Index("ix_appointment_reminders_due", "due_at", postgresql_where=text("status = 'scheduled'")),
    )

    appointment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("appointments.id", ondelete="CASCADE"))
    offset_minutes: Mapped[int]  # nominal (1d = 1440); see `offset`
    # "1d" (local calendar days), "2h", "30m" (absolute); NULL on rows made before offsets had units
    offset: Mapped[str | None] = mapped_column(String(16))
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    fired_at: Mapped[datetime | None]

