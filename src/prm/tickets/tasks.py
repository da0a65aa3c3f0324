"""Tickets' background jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import jobs
from prm.tickets import service


@jobs.job("tickets.flag_overdue", periodic="* * * * *")
async def flag_overdue(session: AsyncSession, **_: Any) -> int:
    """Every minute: flag open tickets past their due time and publish `ticket.overdue` (once each)."""
    return await service.flag_overdue(session)
