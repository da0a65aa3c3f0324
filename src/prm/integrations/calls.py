"""What outbound webhooks and n8n share: their signing secrets (made, rotated with a grace period),
the URL check when a URL is registered, and one POST to an organisation's receiver, recorded as an
attempt (status, duration, error, an excerpt of the answer) whatever happens."""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import httpx

from prm.core import clock
from prm.core.errors import ValidationFailed
from prm.integrations import payloads, ssrf
from prm.settings import Settings

ROTATION_GRACE = timedelta(hours=24)
EXCERPT_BYTES = 2048


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class HasSecrets(Protocol):
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: Any


def rotate(row: HasSecrets) -> None:
    """A new secret signs from now on; the old one stays valid for `ROTATION_GRACE`."""
    row.previous_secret = row.secret
    row.previous_secret_expires_at = clock.now() + ROTATION_GRACE
    row.secret = new_secret()


async def checked_url(url: str, settings: Settings, field: str = "url") -> str:
    """`url` when the service may call it (422 naming `field` otherwise)."""
    try:
        await ssrf.check_url(url, allow_private=settings.outbound_allow_private_targets)
    except ssrf.UnsafeTarget as exc:
        raise ValidationFailed.field(field, f"{url!r} {exc}", code="unsafe_url") from None
    return url


@dataclass(frozen=True)
class Attempt:
    """The outcome of one POST: a status code, or an error (never both)."""

    status_code: int | None
    error: str | None
    excerpt: str | None
    retry_after: float | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def unsafe(self) -> bool:
        return self.error is not None and self.error.startswith("unsafe target")


async def post_once(url: str, body: bytes, headers: dict[str, str], *, timeout_seconds: float,
                    settings: Settings) -> Attempt:
    """POST `body` to `url` once (checked against private targets again, no redirects); never raises."""
    status_code: int | None = None
    error: str | None = None
    excerpt: str | None = None
    retry_after: float | None = None
    started = time.perf_counter()
    try:
        await ssrf.check_url(url, allow_private=settings.outbound_allow_private_targets)
        async with httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False) as client:
            response = await client.post(url, content=body, headers=headers)
        status_code = response.status_code
        excerpt = response.content[:EXCERPT_BYTES].decode("utf-8", "replace")
        retry_after = payloads.retry_after_seconds(response.headers.get("retry-after"), now_epoch=time.time())
    except ssrf.UnsafeTarget as exc:
        error = f"unsafe target: {exc}"
    except httpx.TimeoutException:
        error = "timeout"
    except httpx.HTTPError as exc:
        error = type(exc).__name__
    return Attempt(status_code, error, excerpt, retry_after, int((time.perf_counter() - started) * 1000))
