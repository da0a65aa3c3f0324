"""Payload of the voice-agent webhook."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class VoiceAgentCall(BaseModel):
    """A finished call reported by the voice agent (signed: `X-Signature: sha256=<hex HMAC of the body>`)."""

    model_config = ConfigDict(extra="ignore")

    call_id: str = Field(min_length=1, max_length=200)
    caller: str = Field(min_length=3, max_length=32, description="The caller's number (E.164)")
    callee: str | None = Field(default=None, max_length=32)
    transcript: str = Field(default="", max_length=200_000)
    extracted: dict[str, Any] = Field(default_factory=dict, description="Fields the agent extracted")
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: int | None = Field(default=None, ge=0)
    recording_url: str | None = Field(default=None, max_length=2000)
    language: str | None = Field(default=None, max_length=35)


class WebhookAck(BaseModel):
    status: str
    communication_id: str | None = None
