"""Attachments patients send (WhatsApp/MMS): recorded when the message arrives, fetched by a job.

`service.attach_inbound` (called by the webhook layer, in the message's transaction) records one pending media item
per attachment — idempotently, keyed by provider, message and position — and queues
`media.fetch_inbound`. The job downloads the file from the provider (its account credentials as HTTP
basic auth, sent only to the provider's API host; redirects followed; at most the size limit of the
declared type), verifies it like an upload (SHA-256, sniffed type on the allowlist and matching the
declared one), stores it — deduplicated like any file — and links it to the message and patient.
A transient failure (network, 5xx, 429) is retried with backoff a bounded number of times; a
permanent one marks the item `rejected` with the reason. Nothing of the provider's URL is served:
the API hands out our own signed URLs.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import IO
from urllib.parse import urlsplit

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import clock, jobs, rowlock
from prm.core.backoff import backoff_seconds
from prm.core.errors import Unavailable
from prm.media import links, verification
from prm.media.models import Media
from prm.media.service import FETCH_JOB, MediaStore, _claim_blob, _publish_stored, _run

log = structlog.get_logger(__name__)

MAX_FETCH_ATTEMPTS = 6
RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = RETRY_BASE_SECONDS * 2 ** (MAX_FETCH_ATTEMPTS - 2)  # the last wait
SPOOL_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ProviderAccess:
    """Credentials for fetching a provider's media, and the hosts they may be sent to."""

    username: str | None = None
    password: str | None = None
    hosts: frozenset[str] = frozenset()
    timeout_seconds: float = 30.0

    def auth_for(self, url: str) -> tuple[str, str] | None:
        host = (urlsplit(url).hostname or "").lower()
        if self.username and self.password and host in self.hosts:
            return self.username, self.password
        return None


class TransientFetchError(Exception):
    """Worth another try later (network, 5xx, 429)."""


async def _download(url: str, access: ProviderAccess, limit: int, sink: IO[bytes]) -> verification.Digest:
    """Stream `url` into `sink`, hashing as it goes; `Rejected` beyond `limit` bytes or for a refusal."""
    digest = verification.Digest()
    auth = access.auth_for(url)
    try:
        async with httpx.AsyncClient(follow_redirects=True, timeout=access.timeout_seconds,
                                     max_redirects=5) as client, client.stream("GET", url, auth=auth) as response:
            if response.status_code == 429 or response.status_code >= 500:
                raise TransientFetchError(f"provider answered {response.status_code}")
            if response.status_code != 200:
                raise verification.Rejected("download_refused",
                                            f"the provider answered {response.status_code}")
            length = response.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise verification.Rejected("file_too_large", f"{length} bytes is over the limit of {limit}",
                                            status=413)
            async for chunk in response.aiter_bytes():
                digest.update(chunk)
                if digest.size > limit:
                    raise verification.Rejected("file_too_large", f"more than the limit of {limit} bytes",
                                                status=413)
                await asyncio.to_thread(sink.write, chunk)
    except httpx.TooManyRedirects:
        raise verification.Rejected("download_refused", "too many redirects") from None
    except (httpx.TransportError, httpx.StreamError) as exc:
        raise TransientFetchError(type(exc).__name__) from None
    return digest


async def _retry_later(session: AsyncSession, media: Media, reason: str) -> str:
    """Count the attempt and queue the next one with backoff, or give up after MAX_FETCH_ATTEMPTS."""
    media.fetch_attempts += 1
    if media.fetch_attempts >= MAX_FETCH_ATTEMPTS:
        _reject(media, "download_failed", f"gave up after {media.fetch_attempts} attempts ({reason})")
        log.warning("media.inbound_failed", media_id=str(media.id), attempts=media.fetch_attempts)
        return media.status
    wait = backoff_seconds(media.fetch_attempts - 1, base_seconds=RETRY_BASE_SECONDS, max_seconds=RETRY_MAX_SECONDS)
    await jobs.defer(session, FETCH_JOB, org_id=str(media.org_id), media_id=str(media.id),
                     schedule_at=clock.now() + timedelta(seconds=wait))
    log.info("media.inbound_retry", media_id=str(media.id), attempts=media.fetch_attempts, wait_seconds=wait)
    return "retrying"


def _reject(media: Media, code: str, detail: str) -> None:
    media.status, media.failure_code, media.failure_detail, media.source_url = "rejected", code, detail[:300], None


async def fetch(session: AsyncSession, org_id: uuid.UUID, media_id: uuid.UUID, store: MediaStore,
                access: ProviderAccess) -> str:
    """Download, verify and store one inbound attachment; the resulting status (or `retrying`)."""
    media = await rowlock.lock(session, Media, media_id, org_id=org_id)
    if media is None or rowlock.idle(media, "pending") or media.source_url is None or media.deleted_at is not None:
        return "skipped"
    kind = verification.KINDS.get(media.content_type)
    if kind is None:
        _reject(media, "type_not_allowed", f"{media.content_type} is not an accepted file type")
        return media.status
    limit = verification.size_limit(kind, store.max_bytes)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        try:
            digest = await _download(media.source_url, access, limit, spool)
            kind = verification.verify(declared_type=media.content_type, declared_size=None, declared_sha256=None,
                                       digest=digest, cap=store.max_bytes)
        except verification.Rejected as exc:
            _reject(media, exc.code, exc.message)
            log.info("media.inbound_rejected", media_id=str(media.id), reason=exc.code)
            return media.status
        except TransientFetchError as exc:
            return await _retry_later(session, media, str(exc))
        sha = digest.hexdigest()
        blob = await _claim_blob(session, org_id, sha, digest.size)
        if blob.state != "stored":
            spool.seek(0)
            try:
                await _run(store.storage.write, blob.storage_key, spool, content_type=kind.content_type,
                           size=digest.size, sha256_hex=sha)
            except Unavailable:
                return await _retry_later(session, media, "storage unavailable")
            blob.state, blob.content_type, blob.size_bytes, blob.stored_at = "stored", kind.content_type, \
                digest.size, clock.now()
        else:
            media.deduplicated = True
    media.blob_id, media.sha256, media.size_bytes, media.content_type = blob.id, sha, digest.size, kind.content_type
    media.filename = verification.safe_filename(media.filename, kind)
    media.status, media.verified_at, media.source_url = "available", clock.now(), None
    if media.message_id is not None and media.conversation_id is None:
        resolve = links.resolver("message")
        target = await resolve(session, org_id, media.message_id) if resolve is not None else None
        if target is not None:
            media.conversation_id = target.conversation_id
    await session.flush()
    await _publish_stored(session, media)
    log.info("media.inbound_stored", media_id=str(media.id), deduplicated=media.deduplicated)
    return media.status
