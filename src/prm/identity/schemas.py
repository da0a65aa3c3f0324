from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from prm.core.fields import Name, OptionalName

Role = Literal["admin", "coordinator", "practitioner", "support_agent", "integration", "agent"]
StaffRole = Literal["admin", "coordinator", "practitioner", "support_agent"]


class OrganisationCreate(BaseModel):
    name: Name = Field(min_length=1, max_length=200)
    slug: str = Field(min_length=2, max_length=80, pattern=r"^[a-z0-9][a-z0-9-]*$")
    timezone: str = Field(default="UTC", max_length=64, description="IANA time zone, e.g. Europe/Madrid")


class OrganisationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    slug: str
    timezone: str
    is_active: bool
    created_at: datetime


class OrganisationSettingsUpdate(BaseModel):
    """The organisation's own settings; a field set to null goes back to the service default."""

    model_config = ConfigDict(extra="forbid")
    default_phone_region: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166 region for numbers without a country code"
    )
    reminder_offsets_minutes: str | None = Field(
        default=None, max_length=100, pattern=r"^\s*[0-9]{1,5}\s*[dhmDHM]?\s*(,\s*[0-9]{1,5}\s*[dhmDHM]?\s*)*$",
        description="Appointment reminders before the start, comma-separated (REMINDER_OFFSETS): `1d` = same local "
        "time N calendar days before (in the appointment's time zone, across DST changes), `2h` / `30m` absolute; "
        "a plain number is minutes (e.g. `1d,2h` or `1440,120`)",
    )


class OrganisationSettingsRead(BaseModel):
    default_phone_region: str | None
    reminder_offsets_minutes: str | None
    effective_phone_region: str
    effective_reminder_offsets_minutes: list[int] = Field(description="Nominal minutes (1d = 1440)")
    effective_reminder_offsets: str = Field(description="e.g. `1d,2h`")


class UserCreate(BaseModel):
    email: EmailStr
    password: str = Field(min_length=10, max_length=200)
    full_name: OptionalName = Field(default="", max_length=200)
    role: StaffRole


class UserUpdate(BaseModel):
    full_name: OptionalName | None = Field(default=None, max_length=200)
    role: StaffRole | None = None
    is_active: bool | None = None
    password: str | None = Field(default=None, min_length=10, max_length=200)


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    org_id: uuid.UUID
    email: str
    full_name: str
    role: str
    is_active: bool
    is_platform_admin: bool = Field(description="May create organisations; set only with the CLI")
    last_login_at: datetime | None
    created_at: datetime


class ApiKeyCreate(BaseModel):
    name: Name = Field(min_length=1, max_length=200)
    role: Role = "integration"
    expires_at: datetime | None = None


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    org_id: uuid.UUID
    name: str
    role: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    is_platform_admin: bool = Field(description="May create organisations; set only with the CLI")


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The full key. Shown only in this response; store it now.")


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class Me(BaseModel):
    org_id: uuid.UUID
    kind: str
    subject_id: uuid.UUID | None
    role: str
    scopes: list[str]
