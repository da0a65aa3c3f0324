"""Rate limits with the `limits` library: in memory, or in Redis when `REDIS_URL` is set."""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

from fastapi import Depends, Request
from limits import parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from prm.core.errors import RateLimited


class RateLimiter:
    def __init__(self, redis_url: str | None = None) -> None:
        self.storage: Storage = (
            storage_from_string("async+" + redis_url) if redis_url else MemoryStorage()  # type: ignore[assignment]
        )
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.backend = "redis" if redis_url else "memory"

    async def hit(self, rule: str, *key: str) -> None:
        """Count one hit against `rule` ("10/minute") for `key`; raise RateLimited past it."""
        limit = parse(rule)
        if await self.strategy.hit(limit, *key):
            return
        stats = await self.strategy.get_window_stats(limit, *key)
        raise RateLimited(max(1, math.ceil(stats.reset_time - time.time())))

    async def check(self, rule: str, *key: str) -> None:
        """Raise RateLimited if `key` has used up `rule`, without counting a hit."""
        limit = parse(rule)
        if await self.strategy.test(limit, *key):
            return
        stats = await self.strategy.get_window_stats(limit, *key)
        raise RateLimited(max(1, math.ceil(stats.reset_time - time.time())))

    async def count(self, rule: str, *key: str) -> None:
        """Count one hit against `rule` for `key`, never raising (the next `check` will)."""
        await self.strategy.hit(parse(rule), *key)

    async def clear(self, rule: str, *key: str) -> None:
        await self.strategy.clear(parse(rule), *key)

    async def reset(self) -> None:
        await self.storage.reset()


def client_ip(request: Request) -> str:
    """The client's address as `ForwardedHeadersMiddleware` left it (a trusted proxy's word, or the peer)."""
    return request.client.host if request.client else "unknown"


def account_key(identifier: str) -> str:
    """A stable key for an account name (an email) that does not store the name itself."""
    return hashlib.sha256(identifier.strip().lower().encode()).hexdigest()[:32]


def limit(setting_name: str, bucket: str) -> Any:
    """A route dependency applying the rule in settings field `setting_name`, per client address."""

    async def dependency(request: Request) -> None:
        limiter: RateLimiter = request.app.state.rate_limiter
        rule = getattr(request.app.state.settings, setting_name)
        await limiter.hit(rule, bucket, client_ip(request))

    return Depends(dependency)
