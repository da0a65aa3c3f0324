"""Jobs of media: `media.purge` (retention, hourly)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from prm.adapters import registry as adapters
from prm.core import jobs
from prm.media import service


def store() -> service.MediaStore:
    """The media store of the settings the app or worker was configured with."""
    return service.MediaStore.from_settings(adapters.settings())


@jobs.job("media.purge", periodic="23 * * * *", retry=False)
async def purge(session: AsyncSession, timestamp: int | None = None) -> int:
    """Remove the bytes of files deleted longer ago than MEDIA_RETENTION_DAYS, and abandoned uploads."""
    return await service.purge(session, store())
