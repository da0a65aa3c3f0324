"""RetryTransactionMiddleware (issue 19): a request whose transaction was a deadlock victim runs again
with the same body; nothing else is retried, and never once the response has started."""

from __future__ import annotations

import httpx
import psycopg
import pytest
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.types import Receive, Scope, Send

from prm.core.retry import RetryTransactionMiddleware, retryable


class Flaky:
    """An ASGI app that reads the body, then fails with `error` for the first `failures` calls."""

    def __init__(self, error: BaseException, failures: int, *, fail_after_start: bool = False) -> None:
        self.error = error
        self.failures = failures
        self.fail_after_start = fail_after_start
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        if self.fail_after_start and self.failures:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        if self.failures:
            self.failures -= 1
            raise self.error
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"done:" + body})


def _wrapped(exc: BaseException) -> DBAPIError:
    return DBAPIError("INSERT ...", {}, exc)  # as SQLAlchemy raises what psycopg raised


async def _post(app: RetryTransactionMiddleware) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return await c.post("/x", content=b"payload")


async def test_a_deadlock_victim_runs_again_with_the_same_body() -> None:
    inner = Flaky(_wrapped(psycopg.errors.DeadlockDetected("deadlock detected")), failures=2)
    r = await _post(RetryTransactionMiddleware(inner, attempts=3, pause_seconds=0))
    assert r.status_code == 201 and r.content == b"done:payload"
    assert inner.bodies == [b"payload"] * 3


async def test_a_serialization_failure_is_retried_and_the_last_one_goes_on() -> None:
    inner = Flaky(_wrapped(psycopg.errors.SerializationFailure("could not serialize")), failures=5)
    with pytest.raises(DBAPIError):
        await _post(RetryTransactionMiddleware(inner, attempts=3, pause_seconds=0))
    assert len(inner.bodies) == 3


async def test_other_errors_and_started_responses_are_not_retried() -> None:
    other = Flaky(OperationalError("SELECT 1", {}, psycopg.OperationalError("connection lost")), failures=1)
    with pytest.raises(OperationalError):
        await _post(RetryTransactionMiddleware(other, pause_seconds=0))
    assert len(other.bodies) == 1
    started = Flaky(_wrapped(psycopg.errors.DeadlockDetected("deadlock")), failures=1, fail_after_start=True)
    with pytest.raises(DBAPIError):
        await _post(RetryTransactionMiddleware(started, pause_seconds=0))
    assert len(started.bodies) == 1


def test_what_counts_as_retryable() -> None:
    assert retryable(_wrapped(psycopg.errors.DeadlockDetected("x")))
    assert retryable(psycopg.errors.SerializationFailure("x"))
    assert not retryable(_wrapped(psycopg.errors.UniqueViolation("x")))
    assert not retryable(ValueError("x"))
