"""Request and response models of the search API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

SourceType = Literal["conversation", "voice_call", "message", "ticket", "ticket_comment", "document"]
Channel = Literal["whatsapp", "sms", "email", "voice"]


class SearchFilterFields(BaseModel):
    source_types: list[SourceType] = Field(default_factory=list, max_length=6,
                                           description="Only these kinds of source (empty: all)")
    channels: list[Channel] = Field(default_factory=list, max_length=4, description="Only these channels")
    occurred_from: datetime | None = Field(default=None, description="Said or written at or after (with zone)")
    occurred_to: datetime | None = Field(default=None, description="Said or written before (with zone)")
    limit: int = Field(default=10, ge=1, le=50)

    @field_validator("occurred_from", "occurred_to")
    @classmethod
    def _zoned(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        """Each bound has a zone, and the window is not empty (the error names the field)."""
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{info.field_name} needs a time zone offset, e.g. 2026-11-30T09:00:00Z")
        start = info.data.get("occurred_from")
        if info.field_name == "occurred_to" and value is not None and start is not None and value <= start:
            raise ValueError("occurred_to must be after occurred_from")
        return value


class PatientSearchRequest(SearchFilterFields):
    query: str = Field(max_length=500, description="Words, \"a phrase\", -excluded, or a question")


class SearchRequest(PatientSearchRequest):
    patient_id: uuid.UUID | None = Field(default=None, description="Only this patient's sources")


class SearchHitRead(BaseModel):
    chunk_id: uuid.UUID
    source_type: SourceType
    source_id: uuid.UUID
    patient_id: uuid.UUID | None
    channel: str | None
    occurred_at: datetime
    snippet: str = Field(description="HTML-escaped text around the match, matched words in <mark>")
    score: float = Field(description="Reciprocal rank fusion score: sum of 1/(k + rank) over both rankings")
    vector_rank: int | None = Field(description="Rank among the nearest chunks by meaning (None: not a candidate)")
    text_rank: int | None = Field(description="Rank among the full-text matches (None: no word matched)")
    similarity: float | None = Field(description="Cosine similarity of query and chunk, when a vector candidate")
    citation: dict[str, Any] = Field(description="Message ids, speaker turns or paragraphs the chunk covers")
    link: str = Field(description="API path of the source")


class SearchResponse(BaseModel):
    items: list[SearchHitRead]
    model: str
    quality: Literal["lexical", "semantic"]


DocumentTitle = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


class DocumentCreate(BaseModel):
    title: DocumentTitle
    body: str = Field(min_length=1, max_length=200_000)


class DocumentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    chunk_count: int
    indexed_at: datetime | None = Field(description="When it was last indexed (None: queued)")
    created_at: datetime
    updated_at: datetime


class DocumentDetail(DocumentRead):
    body: str


class SearchStatsRead(BaseModel):
    chunks: int
    patients: int
    documents: int
    by_source_type: dict[str, int]
    by_model: dict[str, int]
    model: str
    quality: Literal["lexical", "semantic"]
    stale: int = Field(description="Chunks embedded by another model, waiting to be re-embedded")
