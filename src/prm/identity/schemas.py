from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from prm.core.fields import Name, OptionalName

Role = Literal["admin", "coordinator", "practitioner", "support_agent", "integration"]
StaffRole = Literal["admin", "coordinator", "practitioner", "support_agent"]


class OrganisationCreate(BaseModel):
    name: Name = Field(min_length=1, max_length=200)
    slug: str = Field(min_length=2, max_length=80, pattern=r"^[a-z0-9][a-z0-9-]*$")
    timezone: str = Field(default="UTC", description="IANA time zone, e.g. Europe/Madrid")


class OrganisationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    slug: str
    timezone: str
    is_active: bool
    created_at: datetime


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
