"""One small HTTP client for OpenAI's REST API, shared by the embeddings, LLM and speech adapters.

Plain `httpx` (already a dependency) rather than the SDK: three endpoints, and the retry policy is
ours to state. A request is retried on 429 (waiting what `Retry-After` / `retry-after-ms` asks,
capped), on 5xx and on transport errors, with exponential backoff; 4xx other than 408/409/429 fail
at once. Errors carry the status and OpenAI's error code, never the request or response body (they
hold patient text). The API key is sent as `Authorization: Bearer ...` and never logged.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

log = structlog.get_logger(__name__)

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class AIProviderError(Exception):
    """A call to an AI provider failed. `retryable`: trying again later may work."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = retryable


class AINotConfigured(AIProviderError):
    """A provider was chosen in settings but its credentials or package are missing."""


@dataclass(frozen=True)
class OpenAIConfig:
    api_key: str
    base_url: str = "https://api.openai.com/v1"
    timeout_seconds: float = 30.0
    max_retries: int = 3
    max_retry_wait_seconds: float = 20.0
    organization: str | None = None


def _retry_after(response: httpx.Response) -> float | None:
    """OpenAI sends `retry-after-ms` and/or `retry-after` (seconds) on 429 and some 5xx."""
    ms = response.headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    seconds = response.headers.get("retry-after")
    if seconds:
        try:
            return max(0.0, float(seconds))
        except ValueError:
            return None
    return None


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        return str(code) if code else None
    return None


class OpenAIClient:
    """POST JSON or multipart to `{base_url}/{path}` with retries; returns the decoded JSON body."""

    def __init__(self, config: OpenAIConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not config.api_key:
            raise AINotConfigured("OPENAI_API_KEY is not set", code="provider_not_configured")
        self.config = config
        self._transport = transport

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.config.api_key}"}
        if self.config.organization:
            headers["OpenAI-Organization"] = self.config.organization
        return headers

    def _backoff(self, attempt: int) -> float:
        return min(self.config.max_retry_wait_seconds, 0.5 * (2**attempt)) * random.uniform(0.8, 1.2)

    async def post(self, path: str, *, json: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
                   files: dict[str, Any] | None = None) -> Any:
        url = f"{self.config.base_url.rstrip('/')}/{path.lstrip('/')}"
        attempts = self.config.max_retries + 1
        async with httpx.AsyncClient(timeout=self.config.timeout_seconds, transport=self._transport) as client:
            for attempt in range(attempts):
                last = attempt == attempts - 1
                try:
                    response = await client.post(url, json=json, data=data, files=files, headers=self._headers())
                except httpx.TransportError as exc:
                    if last:
                        raise AIProviderError(f"OpenAI unreachable: {type(exc).__name__}", code="unreachable",
                                              retryable=True) from None
                    await asyncio.sleep(self._backoff(attempt))
                    continue
                if response.status_code < 300:
                    try:
                        return response.json()
                    except ValueError:
                        raise AIProviderError("OpenAI answered with invalid JSON", status=response.status_code,
                                              code="invalid_response", retryable=True) from None
                code = _error_code(response)
                retryable = response.status_code in RETRYABLE_STATUSES
                log.warning("openai.error", path=path, status=response.status_code, code=code, attempt=attempt + 1)
                if not retryable or last:
                    raise AIProviderError(f"OpenAI answered {response.status_code} ({code or 'no code'})",
                                          status=response.status_code, code=code, retryable=retryable)
                wait = _retry_after(response)
                wait = self._backoff(attempt) if wait is None else min(wait, self.config.max_retry_wait_seconds)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover
