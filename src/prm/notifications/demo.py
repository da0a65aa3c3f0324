"""Demo data: the built-in templates copied into the demo clinic (English), ready to edit."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.notifications import defaults
from prm.notifications.models import NotificationTemplate


async def seed(session: AsyncSession, org: Any, context: dict[str, Any]) -> None:
    rows = await session.execute(
        select(NotificationTemplate.key, NotificationTemplate.channel, NotificationTemplate.locale).where(
            NotificationTemplate.org_id == org.id
        )
    )
    existing = {(key, channel, locale) for key, channel, locale in rows.all()}
    added = []
    for (key, channel, locale), source in sorted(defaults.DEFAULTS.items()):
        if locale != "en" or (key, channel, locale) in existing:
            continue
        template = NotificationTemplate(
            id=uuid.uuid4(),
            org_id=org.id,
            key=key,
            channel=channel,
            locale=locale,
            subject=source.subject,
            body=source.body,
            html_body=source.html_body,
            variables=list(source.variables),
            description="Demo copy of the built-in template",
        )
        session.add(template)
        added.append(template)
    await session.flush()
    context["notification_templates"] = added
