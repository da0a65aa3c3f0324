"""Conversations' background jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from prm.conversations import service
from prm.core import jobs


@jobs.job("conversations.wake_snoozed", periodic="* * * * *")
async def wake_snoozed(session: AsyncSession, **_: Any) -> int:
    """Every minute: snoozed conversations whose time has come are open again."""
    return await service.wake_snoozed(session)
