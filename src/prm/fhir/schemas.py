"""Request and response models of the FHIR domain's JSON API (EHR connections, sync log, export)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator

Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=2000,
                                       pattern=r"^https?://[^\s/?#]+[^\s]*$")]
ServerFamily = Literal["transaction", "per_resource"]
AuthKind = Literal["smart", "bearer"]
SigningAlg = Literal["ES384", "RS384"]

_CONNECTION_EXAMPLE: dict[str, Any] = {
    "name": "Hospital EHR", "base_url": "https://ehr.example-hospital.org/fhir/R4", "server_family": "transaction",
    "auth": "smart", "token_url": "https://ehr.example-hospital.org/oauth2/token", "client_id": "prm-clinic-42",
    "scope": "system/Patient.write system/Appointment.write", "signing_alg": "ES384",
}


class ConnectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_CONNECTION_EXAMPLE]})

    name: str = Field(min_length=1, max_length=200)
    base_url: Url = Field(description="The EHR's FHIR base URL")
    server_family: ServerFamily = Field(
        default="transaction", description="`transaction`: one transaction Bundle per sync; `per_resource`: one "
                                           "request per resource (OpenEMR)")
    auth: AuthKind = Field(description="`smart`: SMART Backend Services (we sign a client assertion with this "
                                       "connection's key, published in /.well-known/jwks.json); `bearer`: a static "
                                       "token")
    token_url: Url | None = Field(default=None, description="SMART: the token endpoint")
    client_id: str | None = Field(default=None, min_length=1, max_length=255, description="SMART: our client id")
    scope: str = Field(default="system/*.write system/*.read", min_length=1, max_length=1000)
    signing_alg: SigningAlg = "ES384"
    bearer_token: SecretStr | None = Field(default=None, description="bearer: the token (never shown again)")
    enabled: bool = True

    @model_validator(mode="after")
    def _auth_complete(self) -> ConnectionCreate:
        if self.auth == "smart" and (self.token_url is None or self.client_id is None):
            raise ValueError("auth=smart needs token_url and client_id")
        if self.auth == "bearer" and self.bearer_token is None:
            raise ValueError("auth=bearer needs bearer_token")
        return self


class ConnectionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": False}]})

    name: str | None = Field(default=None, min_length=1, max_length=200)
    base_url: Url | None = None
    token_url: Url | None = None
    client_id: str | None = Field(default=None, min_length=1, max_length=255)
    scope: str | None = Field(default=None, min_length=1, max_length=1000)
    bearer_token: SecretStr | None = None
    enabled: bool | None = None
    rotate_key: bool = Field(default=False, description="SMART: a new signing key (new `kid`); the EHR reads it "
                                                        "from our JWKS")


class ConnectionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        **_CONNECTION_EXAMPLE, "id": "3f1c2a10-7d0e-4c8e-9a43-2f9f3b8a4d6e", "key_id": "prm-5b1d0c4f9a7e2d3c1b0a",
        "enabled": True, "jwks_url": "https://prm.example.org/.well-known/jwks.json", "has_bearer_token": False,
        "last_success_at": None, "last_error": None, "created_at": "2026-11-30T08:00:00Z",
        "updated_at": "2026-11-30T08:00:00Z"}]})

    id: uuid.UUID
    name: str
    base_url: str
    server_family: str
    auth: str
    token_url: str | None
    client_id: str | None
    scope: str
    signing_alg: str
    key_id: str
    enabled: bool
    jwks_url: str = ""
    has_bearer_token: bool = False
    last_success_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"patient_id": "7d0e0c8e-3b8a-4d6e-9a43-2f9f3f1c2a10"}]})

    patient_id: uuid.UUID


class SyncRunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": "0b6a7c3e-9f1d-4c2b-8a5e-6d4f3c2b1a09", "connection_id": "3f1c2a10-7d0e-4c8e-9a43-2f9f3b8a4d6e",
        "patient_id": "7d0e0c8e-3b8a-4d6e-9a43-2f9f3f1c2a10", "triggers": ["appointment.booked"],
        "status": "succeeded", "attempts": 1, "next_attempt_at": None, "started_at": "2026-11-30T08:01:00Z",
        "finished_at": "2026-11-30T08:01:01Z", "http_status": 200, "error": None,
        "summary": {"created": 4, "updated": 0, "matched": 0, "unchanged": 0},
        "created_at": "2026-11-30T08:01:00Z", "updated_at": "2026-11-30T08:01:01Z"}]})

    id: uuid.UUID
    connection_id: uuid.UUID
    patient_id: uuid.UUID
    triggers: list[str]
    status: str
    attempts: int
    next_attempt_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    http_status: int | None
    error: str | None
    summary: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class LinkRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    resource_type: str
    local_id: str
    ehr_id: str
    ehr_version: str | None
    synced_at: datetime
