"""A request whose transaction lost a deadlock or a serialization conflict is run again.

PostgreSQL resolves a deadlock by aborting one of the transactions (`40P01`) and, at a stricter
isolation level, refuses a transaction that cannot be serialized (`40001`); in both cases the same
transaction run again normally succeeds. Instead of guarding each write with a savepoint, the whole
request is retried here, up to `attempts` times with a short jittered pause, as long as nothing of
the response has been sent: every request runs in one transaction that is rolled back on the error
(`core.db.get_session`), and its body is kept in memory to be replayed (bodies are bounded by
`BodyLimitMiddleware`). After the last attempt the error goes on to `UnhandledErrorMiddleware`
(503 `database_busy` with `Retry-After`).
"""

from __future__ import annotations

import asyncio
import random

import psycopg
import structlog
from sqlalchemy import exc as sa_exc
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


def retryable(exc: BaseException) -> bool:
    """True for a deadlock or serialization failure (raised as is or wrapped by SQLAlchemy)."""
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    return isinstance(orig, psycopg.Error) and getattr(orig, "sqlstate", None) in RETRYABLE_SQLSTATES


class RetryTransactionMiddleware:
    """Pure ASGI: runs an HTTP request again when its transaction was chosen as a deadlock victim."""

    def __init__(self, app: ASGIApp, *, attempts: int = 3, pause_seconds: float = 0.02) -> None:
        self.app = app
        self.attempts = attempts
        self.pause_seconds = pause_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body: list[Message] = []
        complete = False

        async def recording_receive() -> Message:
            nonlocal complete
            message = await receive()
            if message["type"] == "http.request":
                body.append(message)
                complete = not message.get("more_body", False)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        attempt = 1
        current_receive: Receive = recording_receive
        while True:
            try:
                await self.app(scope, current_receive, tracking_send)
                return
            except Exception as exc:
                if started or attempt >= self.attempts or not retryable(exc) or (body and not complete):
                    raise
            log.warning("request.transaction_retried", attempt=attempt)
            await asyncio.sleep(self.pause_seconds * attempt * random.uniform(0.5, 1.5))
            attempt += 1
            current_receive = _replay(list(body), receive)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """The recorded body again, then whatever the client sends next (a disconnect)."""

    async def replaying_receive() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return replaying_receive
