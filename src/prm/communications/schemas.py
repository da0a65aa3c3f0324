"""Request and response models of the communications API."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

Channel = Literal["sms", "whatsapp", "email", "voice"]
Purpose = Literal["care", "reminders", "marketing"]
Status = Literal["queued", "sending", "sent", "delivered", "read", "failed", "undelivered", "cancelled", "received"]
Direction = Literal["inbound", "outbound"]
CONTENT_SID_PATTERN = r"^HX[0-9a-zA-Z]{8,62}$"  # Twilio's are HX + 32 hex digits; the column holds 64


class AttachmentIn(BaseModel):
    filename: str = Field(min_length=1, max_length=200)
    content_type: str = Field(default="application/octet-stream", pattern=r"^[\w.+-]+/[\w.+-]+$")
    content_base64: str = Field(description="The file, base64-encoded (at most 5 MB decoded)")

    @field_validator("content_base64")
    @classmethod
    def _decodes(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64") from None
        if len(raw) > 5 * 1024 * 1024:
            raise ValueError("larger than 5 MB")
        return value


class CommunicationCreate(BaseModel):
    """An outbound message to a patient: sent now, or at `send_at`."""

    model_config = ConfigDict(extra="forbid")

    patient_id: uuid.UUID
    channel: Channel
    purpose: Purpose = "care"
    body: str | None = Field(default=None, max_length=10_000, description="Text (SMS, WhatsApp, email, voice)")
    subject: str | None = Field(default=None, max_length=500, description="Email subject")
    html_body: str | None = Field(default=None, max_length=200_000, description="Email HTML part")
    media_urls: list[str] = Field(default_factory=list, max_length=10, description="SMS/WhatsApp media")
    media_ids: list[uuid.UUID] = Field(
        default_factory=list, max_length=10,
        description="Stored files (POST /media) to send with an SMS/WhatsApp message: the patient's own or "
        "ones linked to no patient; the provider fetches each through a signed URL issued at sending time",
    )
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=10, description="Email attachments")
    content_sid: str | None = Field(
        default=None,
        pattern=CONTENT_SID_PATTERN,
        description="An approved WhatsApp template (Twilio Content SID)",
    )
    content_variables: dict[str, str] = Field(default_factory=dict, description="Values of the template's variables")
    send_at: AwareDatetime | None = Field(default=None, description="Send at this time (default: now)")
    conversation_id: uuid.UUID | None = None
    template_key: str | None = Field(default=None, max_length=100)
    idempotency_key: str | None = Field(
        default=None,
        max_length=200,
        description="A second request with the same key returns the first message",
    )

    @field_validator("media_urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith("https://") and not url.startswith("http://"):
                raise ValueError("every media URL must be http(s)")
        return value


class MediaRead(BaseModel):
    url: str | None = Field(description="For a received attachment: our signed, short-lived URL once it is "
                                        "stored (null while it is being fetched, when it was rejected, or "
                                        "without the media:read scope)")
    content_type: str | None = None
    media_id: uuid.UUID | None = Field(default=None, description="The stored copy (GET /media/{media_id})")
    status: str | None = Field(default=None, description="pending, available or rejected (stored media only)")
    filename: str | None = None


class AttachmentRead(BaseModel):
    filename: str
    content_type: str


class CommunicationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    patient_id: uuid.UUID
    conversation_id: uuid.UUID | None
    channel: Channel
    direction: Direction
    purpose: Purpose | None
    status: Status
    to_address: str | None
    from_address: str | None
    subject: str | None
    body: str | None
    media: list[MediaRead]
    attachments: list[AttachmentRead]
    content_sid: str | None
    content_variables: dict[str, Any] | None
    template_key: str | None
    provider: str | None
    provider_message_id: str | None
    error_code: str | None
    error_message: str | None
    attempts: int
    details: dict[str, Any]
    send_at: datetime | None
    queued_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    failed_at: datetime | None
    received_at: datetime | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CommunicationFilters(BaseModel):
    patient_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None
    channel: Channel | None = None
    status: Status | None = None
    direction: Direction | None = None
    since: datetime | None = None
    until: datetime | None = None


class ChannelConfigWrite(BaseModel):
    """An organisation's configuration of one channel. `webhook_secret` is write-only."""

    model_config = ConfigDict(extra="forbid")

    provider: Literal["sandbox", "twilio", "smtp"] | None = Field(
        default=None, description="Provider for this channel (null: the MESSAGING_PROVIDER_* setting)"
    )
    sender: str | None = Field(
        default=None,
        max_length=320,
        description="Sender: an E.164 number (sms, whatsapp, voice) or an email address",
    )
    sender_name: str | None = Field(default=None, max_length=200, description="Email display name")
    webhook_secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=200,
        description="Voice channel: HMAC secret of the voice-agent webhook",
    )
    enabled: bool = True


class ChannelConfigRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: Channel
    provider: str | None
    effective_provider: str
    sender: str | None
    sender_name: str | None
    has_webhook_secret: bool
    enabled: bool
    updated_at: datetime | None


class SandboxMessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    communication_id: uuid.UUID | None
    patient_id: uuid.UUID | None
    channel: Channel
    to_address: str | None
    payload: dict[str, Any]
    recorded_at: datetime
