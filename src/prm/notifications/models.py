"""Notification templates and batches."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from prm.communications.rules import CHANNELS, PURPOSES
from prm.core.models import Base, IdMixin, OrgMixin, TimestampMixin, one_of

BATCH_ITEM_STATUSES = ("pending", "queued", "refused", "failed")


class NotificationTemplate(IdMixin, TimestampMixin, OrgMixin, Base):
    """An organisation's wording of a notification for one channel and locale."""

    __tablename__ = "notification_templates"
    __table_args__ = (
        CheckConstraint(one_of("channel", CHANNELS), name="channel"),
        UniqueConstraint("org_id", "key", "channel", "locale", name="uq_notification_templates_key"),
    )

    key: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(16))
    locale: Mapped[str] = mapped_column(String(35))
    subject: Mapped[str | None] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    variables: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default=text("'{}'"))
    # WhatsApp: an approved Twilio Content template, and how our variables map onto its {{1}}, {{2}}
    content_sid: Mapped[str | None] = mapped_column(String(64))
    content_variables: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    description: Mapped[str | None] = mapped_column(String(500))


class NotificationBatch(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "notification_batches"
    __table_args__ = (CheckConstraint(one_of("purpose", PURPOSES), name="purpose"),)

    template_key: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str | None] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))
    variables: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    selection: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)  # the list or filter asked for
    total: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str | None] = mapped_column(String(80))
    completed_at: Mapped[datetime | None]


class NotificationBatchItem(IdMixin, OrgMixin, Base):
    __tablename__ = "notification_batch_items"
    __table_args__ = (
        CheckConstraint(one_of("status", BATCH_ITEM_STATUSES), name="status"),
        UniqueConstraint("batch_id", "patient_id", name="uq_notification_batch_items_batch_patient"),
        Index("ix_notification_batch_items_batch_status", "batch_id", "status"),
        Index("ix_notification_batch_items_patient_id", "patient_id"),
    )

    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("notification_batches.id", ondelete="CASCADE"))
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    communication_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("communications.id", ondelete="SET NULL")
    )
    reason: Mapped[str | None] = mapped_column(String(200))


class NotificationSettings(IdMixin, TimestampMixin, OrgMixin, Base):
    """An organisation's choice of automatic appointment notices; NULL follows APPOINTMENT_NOTIFICATIONS."""

    __tablename__ = "notification_settings"
    __table_args__ = (UniqueConstraint("org_id", name="uq_notification_settings_org"),)

    appointment_booked: Mapped[bool | None]
    appointment_rescheduled: Mapped[bool | None]
    appointment_cancelled: Mapped[bool | None]
