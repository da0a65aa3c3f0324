"""Request and response models of the conversations (staff inbox) API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

Status = Literal["open", "pending", "snoozed", "closed"]
Channel = Literal["whatsapp", "sms"]


class ConversationCreate(BaseModel):
    """Open (or find) the conversation with a patient on a channel, e.g. before a staff member writes."""

    patient_id: uuid.UUID
    channel: Channel = "whatsapp"


class ConversationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    patient_id: uuid.UUID
    channel: Channel
    status: Status
    assignee_id: uuid.UUID | None
    bot_active: bool = Field(description="Whether the booking assistant answers the patient")
    bot_state: str
    handoff_reason: str | None
    last_inbound_at: datetime | None
    last_outbound_at: datetime | None
    last_message_at: datetime | None
    unread_count: int
    snoozed_until: datetime | None
    closed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    whatsapp_window_open: bool = Field(
        default=False,
        description="True while a free-form WhatsApp reply is allowed (24 h after the last inbound message)",
    )


class ConversationDetail(ConversationRead):
    bot_context: dict[str, Any]


class MessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    direction: str
    channel: str
    status: str
    body: str | None
    media: list[dict[str, Any]]
    created_by: str | None
    created_at: datetime


class ReplyCreate(BaseModel):
    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4096)]


class ConversationAssign(BaseModel):
    assignee_id: uuid.UUID | None = Field(
        description="A staff user; null unassigns. Assigning a person silences the assistant"
    )


class ConversationStatusChange(BaseModel):
    status: Status
    snoozed_until: AwareDatetime | None = Field(default=None, description="Required when snoozing")
