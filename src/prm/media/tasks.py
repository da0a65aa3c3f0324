"""Jobs of media: `media.purge` (retention, hourly) and `media.fetch_inbound` (a received attachment)."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from prm import context
from prm.core import jobs
from prm.media import inbound, service
from prm.settings import Settings

TWILIO_MEDIA_HOST = "api.twilio.com"


def provider_access(settings: Settings) -> inbound.ProviderAccess:
    """Twilio's account credentials, sent only to Twilio's API host (and a configured test double's)."""
    hosts = {TWILIO_MEDIA_HOST, (urlsplit(settings.twilio_api_base_url).hostname or "").lower()} - {""}
    token = settings.twilio_auth_token
    return inbound.ProviderAccess(
        username=settings.twilio_account_sid, password=token.get_secret_value() if token is not None else None,
        hosts=frozenset(hosts), timeout_seconds=settings.media_download_timeout_seconds,
    )


@jobs.job("media.purge", periodic="23 * * * *", retry=False)
async def purge(session: AsyncSession, timestamp: int | None = None) -> int:
    """Remove the bytes of files deleted longer ago than MEDIA_RETENTION_DAYS, and abandoned uploads."""
    return await service.purge(session, service.MediaStore.from_settings(context.of(session).settings))


@jobs.job(service.FETCH_JOB, retry=False)
async def fetch_inbound(session: AsyncSession, org_id: str, media_id: str) -> str:
    """Download, verify and store one received attachment (retries itself with backoff when transient)."""
    settings = context.of(session).settings
    return await inbound.fetch(session, uuid.UUID(org_id), uuid.UUID(media_id),
                               service.MediaStore.from_settings(settings), provider_access(settings))
