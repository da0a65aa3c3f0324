"""Jobs of media: `media.purge` (retention, hourly) and `media.fetch_inbound` (a received attachment)."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from prm.adapters import registry as adapters
from prm.core import jobs
from prm.media import inbound, service

TWILIO_MEDIA_HOST = "api.twilio.com"


def store() -> service.MediaStore:
    """The media store of the settings the app or worker was configured with."""
    return service.MediaStore.from_settings(adapters.settings())


def provider_access() -> inbound.ProviderAccess:
    """Twilio's account credentials, sent only to Twilio's API host (and a configured test double's)."""
    settings = adapters.settings()
    hosts = {TWILIO_MEDIA_HOST, (urlsplit(settings.twilio_api_base_url).hostname or "").lower()} - {""}
    token = settings.twilio_auth_token
    return inbound.ProviderAccess(
        username=settings.twilio_account_sid, password=token.get_secret_value() if token is not None else None,
        hosts=frozenset(hosts), timeout_seconds=settings.media_download_timeout_seconds,
    )


@jobs.job("media.purge", periodic="23 * * * *", retry=False)
async def purge(session: AsyncSession, timestamp: int | None = None) -> int:
    """Remove the bytes of files deleted longer ago than MEDIA_RETENTION_DAYS, and abandoned uploads."""
    return await service.purge(session, store())


@jobs.job(service.FETCH_JOB, retry=False)
async def fetch_inbound(session: AsyncSession, org_id: str, media_id: str) -> str:
    """Download, verify and store one received attachment (retries itself with backoff when transient)."""
    return await inbound.fetch(session, uuid.UUID(org_id), uuid.UUID(media_id), store(), provider_access())
