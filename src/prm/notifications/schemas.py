"""Request and response models of the notifications API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from prm.communications.schemas import CONTENT_SID_PATTERN, Channel, Purpose
from prm.core.fields import reject_null

KEY_PATTERN = r"^[a-z][a-z0-9_]{1,99}$"
LOCALE_PATTERN = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"  # at most 35 characters: the column's size


class TemplateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=KEY_PATTERN, description="e.g. appointment_reminder")
    channel: Channel
    locale: str = Field(
        default="en", max_length=35, pattern=LOCALE_PATTERN, description="BCP 47, e.g. en, es, es-MX"
    )
    subject: str | None = Field(default=None, max_length=500, description="Email subject (Jinja2)")
    body: str = Field(min_length=1, max_length=20_000, description="Text body (Jinja2)")
    html_body: str | None = Field(default=None, max_length=200_000, description="Email HTML body (Jinja2)")
    variables: list[str] = Field(default_factory=list, max_length=50, description="Every variable it uses")
    content_sid: str | None = Field(
        default=None,
        pattern=CONTENT_SID_PATTERN,
        description="WhatsApp: the approved Twilio Content template to send",
    )
    content_variables: dict[str, str] | None = Field(
        default=None, description='WhatsApp: template slot → variable name, e.g. {"1": "patient_name"}'
    )
    description: str | None = Field(default=None, max_length=500)


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(default=None, max_length=500)
    body: str | None = Field(default=None, min_length=1, max_length=20_000)
    html_body: str | None = Field(default=None, max_length=200_000)
    variables: list[str] | None = Field(default=None, max_length=50)
    content_sid: str | None = Field(default=None, pattern=CONTENT_SID_PATTERN)
    content_variables: dict[str, str] | None = None
    description: str | None = Field(default=None, max_length=500)

    _not_null = field_validator("body", "variables", mode="before")(reject_null)


class TemplateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID | None
    key: str
    channel: Channel
    locale: str
    subject: str | None
    body: str
    html_body: str | None
    variables: list[str]
    content_sid: str | None
    content_variables: dict[str, str] | None
    description: str | None = None
    builtin: bool = False


class PreviewRequest(BaseModel):
    """Preview a stored (or built-in) template by key, channel and locale, or an inline draft."""

    model_config = ConfigDict(extra="forbid")

    key: str | None = Field(default=None, pattern=KEY_PATTERN)
    channel: Channel | None = None
    locale: str = Field(default="en", max_length=35, pattern=LOCALE_PATTERN)
    draft: TemplateCreate | None = None
    variables: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> PreviewRequest:
        if self.draft is None and (self.key is None or self.channel is None):
            raise ValueError("give either key and channel, or a draft")
        return self


class PreviewRead(BaseModel):
    subject: str | None
    body: str
    html_body: str | None
    variables_used: list[str]
    source: str  # "organisation", "builtin", "draft"


class NotificationSend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patient_id: uuid.UUID
    template_key: str = Field(pattern=KEY_PATTERN)
    variables: dict[str, Any] = Field(default_factory=dict)
    channel: Channel | None = Field(default=None, description="Null: the patient's preference, with fallback")
    purpose: Purpose = "care"


class BatchFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preferred_language: str | None = None
    preferred_channel: Channel | None = None
    tags: list[str] | None = Field(default=None, description="Patients having any of these tags")


class BatchCreate(BaseModel):
    """Send one notification to many patients: a list of ids, or a filter."""

    model_config = ConfigDict(extra="forbid")

    template_key: str = Field(pattern=KEY_PATTERN)
    variables: dict[str, Any] = Field(default_factory=dict)
    channel: Channel | None = None
    purpose: Purpose = "care"
    patient_ids: list[uuid.UUID] | None = Field(default=None, max_length=10_000)
    filter: BatchFilter | None = None

    @model_validator(mode="after")
    def _one_selection(self) -> BatchCreate:
        if (self.patient_ids is None) == (self.filter is None):
            raise ValueError("give exactly one of patient_ids and filter")
        return self


class BatchItemRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    patient_id: uuid.UUID
    status: str
    communication_id: uuid.UUID | None
    communication_status: str | None = None
    reason: str | None


class BatchRead(BaseModel):
    id: uuid.UUID
    template_key: str
    channel: Channel | None
    purpose: Purpose
    total: int
    counts: dict[str, int] = Field(
        description="Recipients per state: pending, refused, failed and, once a "
        "message exists, its status (queued, sent, delivered ...)"
    )
    done: bool
    created_at: datetime
    completed_at: datetime | None


class NotificationSettingsUpdate(BaseModel):
    """Turn automatic appointment notices on (`true`) or off (`false`) for the organisation; `null`
    goes back to the service default (APPOINTMENT_NOTIFICATIONS). Fields left out are unchanged."""

    model_config = ConfigDict(extra="forbid")

    appointment_booked: bool | None = Field(default=None, description="The `appointment_confirmation` notice")
    appointment_rescheduled: bool | None = Field(
        default=None, description="The `appointment_rescheduled` notice"
    )
    appointment_cancelled: bool | None = Field(default=None, description="The `appointment_cancelled` notice")


class NotificationSettingsRead(BaseModel):
    appointment_booked: bool = Field(description="Whether a booking is confirmed to the patient")
    appointment_rescheduled: bool = Field(description="Whether a move is notified to the patient")
    appointment_cancelled: bool = Field(description="Whether a cancellation is notified to the patient")
    overrides: dict[str, bool] = Field(
        description="What the organisation chose; the other notices follow the service default"
    )
    updated_at: datetime | None = None
