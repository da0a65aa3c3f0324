"""Request and response models of the patients API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from prm.core.fields import IdentifierSystem, Name
from prm.core.pagination import Page

Gender = Literal["male", "female", "other", "unknown"]
Channel = Literal["sms", "whatsapp", "email", "voice"]
ContactPurpose = Literal["care", "reminders", "marketing"]
DataSharingPurpose = Literal["ai_processing", "ehr_export", "intake"]
PhoneKind = Literal["mobile", "home", "work", "other"]
EmailKind = Literal["personal", "work", "other"]
WritableStatus = Literal["active", "inactive", "deceased"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PhoneIn(_In):
    number: str = Field(max_length=40, description="Any format; stored as E.164 (default region: settings)")
    kind: PhoneKind = "mobile"
    is_primary: bool = False


class EmailIn(_In):
    email: str = Field(max_length=320)
    kind: EmailKind = "personal"
    is_primary: bool = False


class IdentifierIn(_In):
    system: IdentifierSystem = Field(min_length=1, max_length=255,
                                     description='"mrn" (a short code) or an absolute URI naming the issuing '
                                                 "system, without spaces")
    value: str = Field(min_length=1, max_length=255)
    label: str | None = Field(default=None, max_length=100)


class Address(_In):
    line: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(default_factory=list, max_length=4)
    city: str | None = Field(default=None, max_length=100)
    district: str | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    country: str | None = Field(default=None, max_length=60, description="ISO 3166 alpha-2 preferred")


class PatientCreate(_In):
    given_name: Name = Field(min_length=1, max_length=200)
    family_name: Name = Field(min_length=1, max_length=200)
    birth_date: date | None = None
    gender: Gender = "unknown"
    phones: list[PhoneIn] = Field(default_factory=list, max_length=10)
    emails: list[EmailIn] = Field(default_factory=list, max_length=10)
    identifiers: list[IdentifierIn] = Field(default_factory=list, max_length=20)
    address: Address | None = None
    preferred_language: str = Field(default="en", max_length=35, description="BCP 47 tag, e.g. es or en-GB")
    preferred_channel: Channel | None = None
    timezone: str | None = Field(default=None, max_length=64, description="IANA zone, e.g. Europe/Madrid")
    tags: list[str] = Field(default_factory=list, max_length=50)
    status: WritableStatus = "active"
    deceased_date: date | None = None


class PatientUpdate(_In):
    """Partial update: only the fields sent change. `phones`, `emails` and `identifiers`, when sent,
    replace the whole list."""

    given_name: Name | None = Field(default=None, min_length=1, max_length=200)
    family_name: Name | None = Field(default=None, min_length=1, max_length=200)
    birth_date: date | None = None
    gender: Gender | None = None
    phones: list[PhoneIn] | None = Field(default=None, max_length=10)
    emails: list[EmailIn] | None = Field(default=None, max_length=10)
    identifiers: list[IdentifierIn] | None = Field(default=None, max_length=20)
    address: Address | None = None
    preferred_language: str | None = Field(default=None, max_length=35)
    preferred_channel: Channel | None = None
    timezone: str | None = Field(default=None, max_length=64)
    tags: list[str] | None = Field(default=None, max_length=50)
    status: WritableStatus | None = None
    deceased_date: date | None = None
    is_provisional: bool | None = None


class PhoneRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    number: str
    kind: str
    is_primary: bool


class EmailRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    email: str
    kind: str
    is_primary: bool


class IdentifierRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    system: str
    value: str
    label: str | None


class PatientSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    given_name: str
    family_name: str
    display_name: str
    birth_date: date | None
    primary_phone: str | None
    primary_email: str | None
    status: str
    is_provisional: bool


class PatientRead(PatientSummary):
    gender: str
    phones: list[PhoneRead]
    emails: list[EmailRead]
    identifiers: list[IdentifierRead]
    address: dict[str, Any] | None
    preferred_language: str
    preferred_channel: str | None
    timezone: str | None
    tags: list[str]
    merged_into_id: uuid.UUID | None
    merged_at: datetime | None
    deceased_date: date | None
    source: str | None
    created_at: datetime
    updated_at: datetime


class PatientPage(Page[PatientRead]):
    total_exact: bool = Field(True, description="false when a one-word name search (`q`) matched more "
                                                "patients than it counts (1,000): `total` is then that "
                                                "limit, and more match")


class DuplicateReason(BaseModel):
    code: str = Field(description="name_exact, name_similar, birth_date_exact, birth_date_transposed, "
                                  "same_phone or same_email")
    weight: float
    detail: str


class DuplicateCandidate(BaseModel):
    patient: PatientSummary
    score: float = Field(description="0..1; see docs/patients.md for the scoring")
    reasons: list[DuplicateReason]


class PatientCreated(PatientRead):
    possible_duplicates: list[DuplicateCandidate] = Field(
        default_factory=list, description="Existing patients that look like this one (score ≥ threshold)")


class MergeRequest(_In):
    duplicate_id: uuid.UUID = Field(description="The patient folded into this one; it becomes `merged`")


class MergeResult(BaseModel):
    survivor: PatientRead
    duplicate_id: uuid.UUID
    moved: dict[str, int] = Field(description="Rows moved to the survivor, per module")


class ConsentState(BaseModel):
    channel: Channel | None
    purpose: str
    allowed: bool
    reason: str | None
    basis: str = Field(description="record (the patient said so) or default (nothing recorded)")
    source: str | None
    recorded_at: datetime | None


class ConsentChange(_In):
    channel: Channel | None = Field(default=None, description="Omit for data-sharing consent")
    purpose: ContactPurpose | DataSharingPurpose | None = Field(
        default=None, description="Omit (with a channel) to change every purpose of that channel")
    granted: bool
    source: str = Field(default="api", min_length=1, max_length=64,
                        description="Where the decision came from: api, paper_form, keyword:STOP ...")
    note: str | None = Field(default=None, max_length=500)


class ConsentUpdate(_In):
    changes: list[ConsentChange] = Field(min_length=1, max_length=20)


class ConsentRecordRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    channel: str | None
    purpose: str
    granted: bool
    source: str
    recorded_at: datetime
    recorded_by_kind: str | None
    recorded_by_id: uuid.UUID | None
    note: str | None


class ConsentRead(BaseModel):
    patient_id: uuid.UUID
    contact: list[ConsentState]
    data_sharing: list[ConsentState]
    history: list[ConsentRecordRead]


class TimelineEntryRead(BaseModel):
    at: datetime
    kind: str
    source: str
    resource_id: str
    summary: str
    data: dict[str, Any]


class TimelinePage(BaseModel):
    items: list[TimelineEntryRead]
    limit: int
    next_before: datetime | None = Field(description="Pass as `before` to get the next (older) page")
