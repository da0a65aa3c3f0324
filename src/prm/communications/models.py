"""Tables of the communications domain.

* `communications`: one row per inbound or outbound message or call. `conversation_id` refers to the
  conversation the message belongs to (no foreign key: the conversations layer owns the link).
* `inbound_events`: every provider event (inbound message, status callback, voice-agent call),
  stored under a unique `(provider, external_id)` *before* it is processed, so a retried delivery
  is acknowledged without being processed twice.
* `channel_configs`: per organisation and channel, the provider, the sender (number or address)
  and, for the voice agent, the HMAC secret (never returned by the API).
* `sandbox_outbox`: every payload the sandbox provider "delivered".
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from prm.communications.rules import CHANNELS, DIRECTIONS, PURPOSES, STATUSES
from prm.core import clock
from prm.core.models import Base, IdMixin, OrgMixin, TimestampMixin, one_of


class Communication(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "communications"
    __table_args__ = (
        CheckConstraint(one_of("channel", CHANNELS), name="channel"),
        CheckConstraint(one_of("direction", DIRECTIONS), name="direction"),
        CheckConstraint(one_of("status", STATUSES), name="status"),
        CheckConstraint(f"purpose IS NULL OR {one_of('purpose', PURPOSES)}", name="purpose"),
        Index("ix_communications_org_patient_at", "org_id", "patient_id", "created_at"),
        Index("ix_communications_org_channel_at", "org_id", "channel", "created_at"),
        Index("ix_communications_org_status", "org_id", "status"),
        Index(
            "ix_communications_patient_inbound",
            "patient_id",
            "channel",
            "created_at",
            postgresql_where=text("direction = 'inbound'"),
        ),
        Index(
            "uq_communications_provider_message_id",
            "provider",
            "provider_message_id",
            unique=True,
            postgresql_where=text("provider_message_id IS NOT NULL"),
        ),
        Index(
            "uq_communications_org_idempotency_key",
            "org_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        Index("ix_communications_conversation_id", "conversation_id"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    # The conversation this message belongs to. Conversations (a higher layer) own the link: they set
    # it (`attach_conversation`) and never delete a conversation, so no foreign key points upwards.
    conversation_id: Mapped[uuid.UUID | None]
    channel: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(8))
    purpose: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    to_address: Mapped[str | None] = mapped_column(String(320))
    from_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(500))
    body: Mapped[str | None] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    # [{"url": ..., "content_type": ...}] for MMS / WhatsApp media
    media: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default=text("'[]'"))
    # email attachments: [{"filename", "content_type", "content_base64"}]
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default=text("'[]'"))
    content_sid: Mapped[str | None] = mapped_column(String(64))
    content_variables: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    template_key: Mapped[str | None] = mapped_column(String(100))
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'"))
    created_by: Mapped[str | None] = mapped_column(String(80))
    send_at: Mapped[datetime | None]
    queued_at: Mapped[datetime | None]
    sending_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    received_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]


class InboundEvent(IdMixin, Base):
    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("provider", "external_id", name="uq_inbound_events_provider_external_id"),
        Index("ix_inbound_events_org_received_at", "org_id", "received_at"),
    )

    org_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))  # "message", "status", "voice_call"
    outcome: Mapped[str] = mapped_column(String(32), default="received")  # received, processed, unroutable, unmatched
    communication_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("communications.id", ondelete="SET NULL"))
    received_at: Mapped[datetime] = mapped_column(default=clock.now)
    processed_at: Mapped[datetime | None]
    # the provider's raw fields while the event waits for its processing job (webhook fast path);
    # cleared once processed, so the message is not kept twice
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class ChannelConfig(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "channel_configs"
    __table_args__ = (
        CheckConstraint(one_of("channel", CHANNELS), name="channel"),
        CheckConstraint("provider IS NULL OR provider IN ('sandbox', 'twilio', 'smtp')", name="provider"),
        UniqueConstraint("org_id", "channel", name="uq_channel_configs_org_channel"),
        # a phone number belongs to one organisation (inbound messages are routed by it)
        Index(
            "uq_channel_configs_channel_sender",
            "channel",
            "sender",
            unique=True,
            postgresql_where=text("sender IS NOT NULL AND channel <> 'email'"),
        ),
    )

    channel: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str | None] = mapped_column(String(16))  # None: the MESSAGING_PROVIDER_* setting
    sender: Mapped[str | None] = mapped_column(String(320))  # E.164 number or email address
    sender_name: Mapped[str | None] = mapped_column(String(200))  # email display name
    webhook_secret: Mapped[str | None] = mapped_column(String(200))  # voice-agent HMAC secret
    enabled: Mapped[bool] = mapped_column(default=True, server_default=text("true"))


class SandboxMessage(IdMixin, OrgMixin, Base):
    __tablename__ = "sandbox_outbox"
    __table_args__ = (Index("ix_sandbox_outbox_org_at", "org_id", "recorded_at"),)

    communication_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("communications.id", ondelete="CASCADE"))
    patient_id: Mapped[uuid.UUID | None]
    channel: Mapped[str] = mapped_column(String(16))
    to_address: Mapped[str | None] = mapped_column(String(320))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    recorded_at: Mapped[datetime] = mapped_column(default=clock.now)


ATTEMPT_STATES = ("pending", "accepted", "refused", "lost")


class DeliveryAttempt(IdMixin, OrgMixin, Base):
    """One hand-over of a message to its provider, recorded (and committed) *before* the call.

    `pending` while its outcome is unknown: the call is in flight, or the process died, or the
    result could not be committed. A retry that finds a pending attempt reconciles it (provider
    lookup) instead of sending again: `accepted` (the provider has it, `provider_message_id`),
    `refused` (the provider said no), `lost` (the provider has no trace of it: sent again).
    """

    __tablename__ = "delivery_attempts"
    __table_args__ = (
        CheckConstraint(one_of("state", ATTEMPT_STATES), name="state"),
        UniqueConstraint("communication_id", "number", name="uq_delivery_attempts_communication_number"),
    )

    communication_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("communications.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    error_code: Mapped[str | None] = mapped_column(String(64))
    reconciled: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    started_at: Mapped[datetime] = mapped_column(default=clock.now)
    finished_at: Mapped[datetime | None]
