"""Tickets: requests from patients or staff that someone must handle, with an SLA.

* `version` is the optimistic-concurrency counter (SQLAlchemy's `version_id_col`): every update
  bumps it, reads return it as the ETag, writes may send it back in `If-Match`.
* `search_vector` is a generated `tsvector` over subject and description (GIN index) for text
  search; the `simple` configuration keeps it language-neutral.
* `auto_assigned_at` marks tickets assigned by the auto-assignment rule; the newest one per
  category tells the round-robin who went last.
* Comments with `internal = true` are staff notes, never shown to the patient.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Computed, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from prm.core import clock
from prm.core.models import Base, IdMixin, OrgMixin, TimestampMixin, one_of
from prm.tickets.rules import PRIORITIES, STATUSES

SOURCES = ("api", "bot_handoff", "agent", "system")
SEARCH_SQL = "to_tsvector('simple', coalesce(subject, '') || ' ' || coalesce(description, ''))"


class Ticket(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint(one_of("status", STATUSES), name="status"),
        CheckConstraint(one_of("priority", PRIORITIES), name="priority"),
        CheckConstraint(one_of("source", SOURCES), name="source"),
        Index("ix_tickets_org_status_due", "org_id", "status", "due_at"),
        Index("ix_tickets_org_assignee_status", "org_id", "assignee_id", "status"),
        Index("ix_tickets_org_category_auto", "org_id", "category", "auto_assigned_at"),
        Index("ix_tickets_patient_id", "patient_id"),
        Index("ix_tickets_conversation_id", "conversation_id"),
        Index("ix_tickets_search_vector", "search_vector", postgresql_using="gin"),
        Index("ix_tickets_tags", "tags", postgresql_using="gin"),
    )

    subject: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    category: Mapped[str] = mapped_column(String(64), default="general", server_default="general")
    priority: Mapped[str] = mapped_column(String(16), default="normal", server_default="normal")
    status: Mapped[str] = mapped_column(String(16), default="open", server_default="open")
    source: Mapped[str] = mapped_column(String(16), default="api", server_default="api")
    patient_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("patients.id", ondelete="SET NULL"))
    # the conversation a handoff came from; conversations (the layer above) own the link, no foreign key
    conversation_id: Mapped[uuid.UUID | None]
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    auto_assigned_at: Mapped[datetime | None]
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default=text("'{}'"))
    urgent_keywords: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default=text("'{}'"))
    due_at: Mapped[datetime | None]
    overdue_at: Mapped[datetime | None]  # when the periodic check flagged it (cleared when due moves)
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    created_by_kind: Mapped[str] = mapped_column(String(16), default="system", server_default="system")
    created_by_id: Mapped[uuid.UUID | None]
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    search_vector: Mapped[str] = mapped_column(TSVECTOR, Computed(SEARCH_SQL, persisted=True))

    __mapper_args__ = {"version_id_col": version}


class TicketComment(IdMixin, OrgMixin, Base):
    __tablename__ = "ticket_comments"
    __table_args__ = (Index("ix_ticket_comments_ticket_created", "ticket_id", "created_at"),)

    ticket_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    internal: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    author_kind: Mapped[str] = mapped_column(String(16))
    author_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(default=clock.now, server_default=text("now()"))
