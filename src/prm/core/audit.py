"""Append-only audit log: who read or changed which patient data, when, from where, with what.

Rows are never updated or deleted: a trigger in the database refuses both (see the foundation
migration). Services call `record(...)` in the request's transaction, so an action that rolls back
leaves no audit row claiming it happened, and one that commits always has its row.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import BigInteger, ColumnElement, ForeignKey, Identity, Index, Insert, String, bindparam, insert
from sqlalchemy.dialects.postgresql import INET, JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from prm.core import clock
from prm.core.auth import Principal
from prm.core.models import Base


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_org_at", "org_id", "at"),
        Index("ix_audit_log_org_resource", "org_id", "resource_type", "resource_id"),
        Index("ix_audit_log_org_patient", "org_id", "patient_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=clock.now)
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None]
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[uuid.UUID | None]
    ip: Mapped[str | None] = mapped_column(INET)
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


def entry(
    who: Principal,
    action: str,
    resource_type: str,
    resource_id: object | None = None,
    *,
    patient_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The values of one audit row (see `record`), for a one-statement write (`prm.core.batch`)."""
    return {
        "org_id": who.org_id,
        "at": clock.now(),
        "actor_kind": who.kind,
        "actor_id": who.subject_id,
        "actor_role": who.role,
        "action": action,
        "resource_type": resource_type,
        "resource_id": str(resource_id) if resource_id is not None else None,
        "patient_id": patient_id,
        "ip": who.ip,
        "request_id": structlog.contextvars.get_contextvars().get("request_id"),
        "details": details or {},
    }


async def record(
    session: AsyncSession,
    who: Principal,
    action: str,
    resource_type: str,
    resource_id: object | None = None,
    *,
    patient_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one audit row. `details` must not hold PHI values, only field names and ids."""
    session.add(AuditEntry(**entry(who, action, resource_type, resource_id, patient_id=patient_id, details=details)))


# The columns of an audit row given as bound parameters `audit_<column>` by `insert_with` (all but
# its id and `details`).
_BOUND_COLUMNS = ("org_id", "at", "actor_kind", "actor_id", "actor_role", "action", "resource_type", "resource_id",
                  "patient_id", "ip", "request_id")


def insert_with(details: ColumnElement[Any]) -> Insert:
    """An INSERT of one audit row whose `details` is a SQL expression, e.g. of what the same statement
    found: as a data-modifying CTE (`.cte()` and `Select.add_cte`), a read and its audit row are one
    round trip. Its other values are the parameters given by `params`. Build it once per shape."""
    table = AuditEntry.__table__
    return insert(AuditEntry).values(
        {name: bindparam(f"audit_{name}", type_=table.c[name].type) for name in _BOUND_COLUMNS}
        | {"details": details})


def params(who: Principal, action: str, resource_type: str, resource_id: object | None = None, *,
           patient_id: uuid.UUID | None = None) -> dict[str, Any]:
    """The parameters of an `insert_with` statement: the values `record` would write."""
    values = entry(who, action, resource_type, resource_id, patient_id=patient_id)
    return {f"audit_{name}": values[name] for name in _BOUND_COLUMNS}
