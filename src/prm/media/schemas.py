"""Request and response models of the media API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Sha256 = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[0-9a-fA-F]{64}$"),
]
Filename = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
Status = Literal["pending", "available", "rejected"]

EXAMPLE_SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


class MediaCreate(BaseModel):
    """Declare a file before uploading it. Give at least one of the links, or none for an unattached file."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "filename": "referral-letter.pdf", "content_type": "application/pdf", "size_bytes": 48213,
        "sha256": EXAMPLE_SHA, "patient_id": "3f2b8c1e-0f7a-4d7e-9a51-2f1d3c4b5a69",
    }]})

    filename: Filename
    content_type: str = Field(min_length=1, max_length=100, description="e.g. application/pdf, image/jpeg")
    size_bytes: int = Field(gt=0, description="Exact size of the file in bytes")
    sha256: Sha256 = Field(description="SHA-256 of the file, 64 hexadecimal digits")
    patient_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None
    message_id: uuid.UUID | None = Field(default=None, description="A communication (message) id")
    ticket_id: uuid.UUID | None = None
    intake_session_id: uuid.UUID | None = None


class MediaRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    filename: str
    content_type: str
    size_bytes: int
    sha256: str | None
    status: Status
    source: str
    deduplicated: bool = Field(description="The bytes were already stored for this organisation and were reused")
    failure_code: str | None = None
    failure_detail: str | None = None
    patient_id: uuid.UUID | None
    conversation_id: uuid.UUID | None
    message_id: uuid.UUID | None
    ticket_id: uuid.UUID | None
    intake_session_id: uuid.UUID | None
    created_at: datetime
    verified_at: datetime | None
    deleted_at: datetime | None


class UploadInstructions(BaseModel):
    url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(description="Send exactly these headers with the bytes")
    expires_at: datetime


class MediaUpload(BaseModel):
    """The declared file, and where to PUT its bytes (none when the same bytes were already stored)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "media": {"id": "0b9d6c55-1d51-4d0e-8a52-5b0c4a8e2f11", "filename": "referral-letter.pdf",
                  "content_type": "application/pdf", "size_bytes": 48213, "sha256": EXAMPLE_SHA,
                  "status": "pending", "source": "upload", "deduplicated": False},
        "deduplicated": False,
        "upload": {"url": "https://prm.example.org/media/local/org/.../9f86...?expires=...&signature=...",
                   "method": "PUT", "headers": {"Content-Type": "application/pdf"},
                   "expires_at": "2026-11-30T10:15:00Z"},
        "next": "PUT the bytes to upload.url, then POST /media/0b9d6c55-1d51-4d0e-8a52-5b0c4a8e2f11/complete",
    }]})

    media: MediaRead
    deduplicated: bool
    upload: UploadInstructions | None
    next: str


class DownloadUrl(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "media_id": "0b9d6c55-1d51-4d0e-8a52-5b0c4a8e2f11",
        "url": "https://prm.example.org/media/local/org/.../9f86...?expires=...&signature=...",
        "expires_at": "2026-11-30T10:05:00Z", "filename": "referral-letter.pdf", "content_type": "application/pdf",
    }]})

    media_id: uuid.UUID
    url: str
    expires_at: datetime
    filename: str
    content_type: str
