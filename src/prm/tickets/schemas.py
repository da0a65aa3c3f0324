"""Request and response models of the tickets API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

Priority = Literal["low", "normal", "high", "urgent"]
Status = Literal["open", "in_progress", "waiting", "resolved", "closed"]
Category = Annotated[
    str,
    BeforeValidator(lambda v: v.strip().lower() if isinstance(v, str) else v),
    StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$"),
]
Subject = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=50)]


class TicketCreate(BaseModel):
    subject: Subject
    description: str = Field(default="", max_length=20_000)
    category: Category = "general"
    priority: Priority = "normal"
    patient_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None
    assignee_id: uuid.UUID | None = Field(
        default=None, description="Leave empty to auto-assign (see auto_assign)"
    )
    auto_assign: bool = Field(
        default=True,
        description="Without an assignee, pick the eligible staff member "
        "with the fewest open tickets in the category",
    )
    tags: list[Tag] = Field(default_factory=list, max_length=30)

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, tags: list[str]) -> list[str]:
        return list(dict.fromkeys(tags))


class TicketUpdate(BaseModel):
    """Partial update: only the fields sent change. Status and assignee have their own endpoints."""

    subject: Subject | None = None
    description: str | None = Field(default=None, max_length=20_000)
    category: Category | None = None
    priority: Priority | None = None
    tags: list[Tag] | None = Field(default=None, max_length=30)


class TicketStatusChange(BaseModel):
    status: Status
    comment: str | None = Field(default=None, max_length=20_000, description="Optional internal note")


class TicketAssign(BaseModel):
    assignee_id: uuid.UUID | None = Field(
        default=None, description="The staff user; empty with auto=false unassigns"
    )
    auto: bool = Field(default=False, description="Choose the assignee by the auto-assignment rule")


class TicketRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    subject: str
    description: str
    category: str
    priority: Priority
    status: Status
    source: str
    patient_id: uuid.UUID | None
    conversation_id: uuid.UUID | None
    assignee_id: uuid.UUID | None
    tags: list[str]
    urgent_keywords: list[str] = Field(description="Configured keywords that raised the priority to urgent")
    due_at: datetime | None
    overdue_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int = Field(description="Optimistic-concurrency version; also the ETag")


class CommentCreate(BaseModel):
    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
    internal: bool = Field(default=False, description="An internal note, for staff only")


class CommentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    ticket_id: uuid.UUID
    body: str
    internal: bool
    author_kind: str
    author_id: uuid.UUID | None
    created_at: datetime
