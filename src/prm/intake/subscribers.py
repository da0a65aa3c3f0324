"""Intake's event handlers: a finished voice-agent call becomes an intake (see `voice.py`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import events
from prm.intake import voice


@events.subscriber("voice_call.completed", name="intake.from_voice_call")
async def on_voice_call(session: AsyncSession, event: events.Event) -> None:
    await voice.from_call(session, event)
