from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    actor_kind: str
    actor_id: uuid.UUID | None
    actor_role: str
    action: str
    resource_type: str
    resource_id: str | None
    patient_id: uuid.UUID | None
    ip: Any | None
    request_id: str | None
    details: dict[str, Any]


class JobRead(BaseModel):
    id: int
    queue: str
    task: str
    status: str
    attempts: int
    scheduled_at: datetime | None
    args: dict[str, Any]


class EventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    type: str
    payload: dict[str, Any]
    occurred_at: datetime
