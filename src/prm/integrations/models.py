"""Tables of the integrations domain: outbound webhook endpoints, messages and attempts; n8n
integrations, workflow runs and their attempts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from prm.core import clock
from prm.core.models import Base, IdMixin, OrgMixin, TimestampMixin, one_of

MESSAGE_STATUSES = ("pending", "delivered", "failed")
RUN_STATUSES = ("pending", "succeeded", "failed", "timed_out")
FALLBACKS = ("none", "ticket", "handoff")


class WebhookEndpoint(IdMixin, OrgMixin, TimestampMixin, Base):
    """A URL an organisation registered to receive its domain events, signed with its own secret."""

    __tablename__ = "webhook_endpoints"

    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(500))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(100)))
    secret: Mapped[str] = mapped_column(String(100))  # whsec_...; never returned after creation
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    disabled_at: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class WebhookMessage(IdMixin, OrgMixin, Base):
    """One event for one endpoint; its id is the `webhook-id` the receiver deduplicates on."""

    __tablename__ = "webhook_messages"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        CheckConstraint(one_of("status", MESSAGE_STATUSES), name="status"),
        Index("ix_webhook_messages_endpoint_created", "endpoint_id", "created_at"),
    )

    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[uuid.UUID | None]
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    occurred_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    delivered_at: Mapped[datetime | None]


class WebhookAttempt(Base):
    """One HTTP attempt at delivering a message: the delivery log."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_message", "message_id", "attempted_at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_messages.id", ondelete="CASCADE"))
    attempted_at: Mapped[datetime] = mapped_column(default=clock.now)
    status_code: Mapped[int | None]
    duration_ms: Mapped[int] = mapped_column(Integer)
    succeeded: Mapped[bool]
    error: Mapped[str | None] = mapped_column(String(200))
    response_excerpt: Mapped[str | None] = mapped_column(String(2048))


class N8nIntegration(IdMixin, OrgMixin, TimestampMixin, Base):
    """An organisation's n8n instance: where its workflows live and the secret both sides share."""

    __tablename__ = "n8n_integrations"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        CheckConstraint(one_of("fallback", FALLBACKS), name="fallback"),
    )

    name: Mapped[str] = mapped_column(String(100))
    base_url: Mapped[str] = mapped_column(String(2000))
    workflows: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)  # key -> webhook path
    event_triggers: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)  # event type -> key
    secret: Mapped[str] = mapped_column(String(200))  # never returned by the API
    previous_secret: Mapped[str | None] = mapped_column(String(200))
    previous_secret_expires_at: Mapped[datetime | None]
    callback_timeout_seconds: Mapped[int] = mapped_column(Integer, default=300)
    request_timeout_seconds: Mapped[int] = mapped_column(Integer, default=10)
    fallback: Mapped[str] = mapped_column(String(16), default="ticket")
    enabled: Mapped[bool] = mapped_column(default=True, server_default=text("true"))


class WorkflowRun(IdMixin, OrgMixin, Base):
    """One triggered workflow: `pending` until its first valid callback, its failure or its deadline."""

    __tablename__ = "n8n_workflow_runs"
    __table_args__ = (
        CheckConstraint(one_of("status", RUN_STATUSES), name="status"),
        # an event triggers a workflow once, however often it is delivered
        Index("uq_n8n_workflow_runs_event", "integration_id", "workflow_key", "source_event_id", unique=True,
              postgresql_where=text("source_event_id IS NOT NULL")),
        Index("ix_n8n_workflow_runs_org_created", "org_id", "created_at"),
    )

    integration_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("n8n_integrations.id", ondelete="CASCADE"))
    workflow_key: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    source_event_id: Mapped[uuid.UUID | None]
    patient_id: Mapped[uuid.UUID | None]
    conversation_id: Mapped[uuid.UUID | None]
    token_nonce: Mapped[str] = mapped_column(String(64))  # the callback token is an HMAC over it
    deadline_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str | None] = mapped_column(String(32))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    result_status: Mapped[int | None]
    callback_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    completed_at: Mapped[datetime | None]


class WorkflowAttempt(Base):
    """One POST of a run to n8n."""

    __tablename__ = "n8n_workflow_attempts"
    __table_args__ = (Index("ix_n8n_workflow_attempts_run", "run_id", "attempted_at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("n8n_workflow_runs.id", ondelete="CASCADE"))
    attempted_at: Mapped[datetime] = mapped_column(default=clock.now)
    status_code: Mapped[int | None]
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(200))
    response_excerpt: Mapped[str | None] = mapped_column(String(2048))
