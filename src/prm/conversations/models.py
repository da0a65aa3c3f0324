"""Conversations: the thread of messages with one patient on one channel, and its assistant state.

* At most one conversation per (organisation, patient, channel) is not `closed` (partial unique
  index); a message arriving after it was closed starts a new one.
* Its messages are the `communications` rows carrying its id (`communications.conversation_id`,
  foreign key added by this module's migration): one store of every message, in and out.
* `bot_active` says whether the booking assistant answers; a handoff (or a person assigning
  themselves) turns it off, "hand back to bot" turns it on. `bot_state` / `bot_context` are the
  assistant's state machine position and JSON context.
* `last_inbound_at` drives WhatsApp's 24-hour rule; `unread_count` counts inbound messages since a
  member of staff last read the conversation.
* Inbound messages are routed under `SELECT ... FOR UPDATE` on this row, so messages for one
  conversation are processed one after another.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from prm.core.models import Base, IdMixin, OrgMixin, TimestampMixin, one_of

STATUSES = ("open", "pending", "snoozed", "closed")
CHANNELS = ("whatsapp", "sms")


class Conversation(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "conversations"
    __table_args__ = (
        CheckConstraint(one_of("status", STATUSES), name="status"),
        CheckConstraint(one_of("channel", CHANNELS), name="channel"),
        CheckConstraint("unread_count >= 0", name="unread_count"),
        Index(
            "uq_conversations_one_open",
            "org_id",
            "patient_id",
            "channel",
            unique=True,
            postgresql_where=text("status <> 'closed'"),
        ),
        Index("ix_conversations_org_status_last", "org_id", "status", "last_message_at"),
        Index("ix_conversations_org_assignee", "org_id", "assignee_id"),
        Index("ix_conversations_patient_id", "patient_id"),
    )

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    bot_active: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    bot_state: Mapped[str] = mapped_column(String(32), default="idle", server_default="idle")
    bot_context: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default=text("'{}'"))
    handoff_reason: Mapped[str | None] = mapped_column(String(32))
    last_inbound_at: Mapped[datetime | None]
    last_outbound_at: Mapped[datetime | None]
    last_message_at: Mapped[datetime | None]
    unread_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    snoozed_until: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
