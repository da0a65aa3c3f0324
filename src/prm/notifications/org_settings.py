"""An organisation's notification settings: which appointment notices it sends (the process
setting APPOINTMENT_NOTIFICATIONS is the default)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm import context
from prm.core import audit, clock
from prm.core.auth import Principal
from prm.notifications.models import (
    NotificationSettings,
)
from prm.notifications.schemas import (
    NotificationSettingsUpdate,
)
from prm.settings import Settings

# --- organisation settings -----------------------------------------------------------------------

APPOINTMENT_NOTICES = ("booked", "rescheduled", "cancelled")


def default_appointment_notices(settings: Settings) -> set[str]:
    """The notices sent for an organisation that has not chosen (APPOINTMENT_NOTIFICATIONS)."""
    return {p for p in settings.appointment_notifications.split(",") if p}


async def _settings_row(session: AsyncSession, org_id: uuid.UUID) -> NotificationSettings | None:
    return await session.scalar(select(NotificationSettings).where(NotificationSettings.org_id == org_id))


async def notification_settings(session: AsyncSession, org_id: uuid.UUID) -> dict[str, Any]:
    """Effective appointment notices of the organisation, with what it chose itself (`overrides`)."""
    row = await _settings_row(session, org_id)
    defaults_on = default_appointment_notices(context.of(session).settings)
    result: dict[str, Any] = {"overrides": {}, "updated_at": row.updated_at if row else None}
    for kind in APPOINTMENT_NOTICES:
        chosen = getattr(row, f"appointment_{kind}") if row else None
        if chosen is not None:
            result["overrides"][f"appointment_{kind}"] = chosen
        result[f"appointment_{kind}"] = chosen if chosen is not None else kind in defaults_on
    return result


async def update_notification_settings(
    session: AsyncSession, who: Principal, data: NotificationSettingsUpdate
) -> dict[str, Any]:
    """Set (true/false) or clear (null) the organisation's choices; fields left out are unchanged."""
    org_id = who.org_id
    row = await _settings_row(session, org_id)
    if row is None:
        row = NotificationSettings(id=uuid.uuid4(), org_id=org_id)
        session.add(row)
    changes = data.model_dump(exclude_unset=True)
    for key, value in changes.items():
        setattr(row, key, value)
    row.updated_at = clock.now()
    await session.flush()
    await audit.record(
        session, who, "update", "notification_settings", row.id, details={"changes": changes}
    )
    return await notification_settings(session, org_id)


_NOTICE_SETTING = {kind: select(getattr(NotificationSettings, f"appointment_{kind}"))
                   .where(NotificationSettings.org_id == bindparam("org_id")) for kind in APPOINTMENT_NOTICES}


async def appointment_notice_enabled(session: AsyncSession, org_id: uuid.UUID, kind: str) -> bool:
    """Whether the patient is told automatically when an appointment is `kind` (booked, rescheduled,
    cancelled) in this organisation."""
    if kind not in APPOINTMENT_NOTICES:
        raise ValueError(f"unknown appointment notice {kind!r}")
    # the one column, without loading the row, by a statement built once (every booking's confirmation asks)
    chosen = await session.scalar(_NOTICE_SETTING[kind], {"org_id": org_id})
    return bool(chosen) if chosen is not None else kind in default_appointment_notices(context.of(session).settings)
