"""The last word on an exception no handler took: a problem+json answer, and the connection kept.

Starlette's `ServerErrorMiddleware` (where an `Exception` handler is registered) sends the 500 and
then re-raises, and uvicorn, seeing an exception after a complete response, closes the keep-alive
connection: the client's next request on it is reset. `UnhandledErrorMiddleware` answers instead and
does not re-raise, so the connection stays usable. Only when the response had already started
(nothing sensible can be sent any more) does it let the exception through.

A database that cannot be reached (connection refused or lost, server shutting down, no pooled
connection free in time) is not a bug but an outage: 503 `database_unavailable` with `Retry-After`,
and the API recovers by itself when the database is back (the pool pings idle connections and
replaces dead ones). Other operational errors of the database (deadlock, serialization failure
once `RetryTransactionMiddleware` has given up, lock or statement timeout) are transient too: 503
`database_busy` with `Retry-After`.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import structlog
from sqlalchemy import exc as sa_exc
from starlette.types import Message, Receive, Scope, Send

from prm.core import logging as prm_logging
from prm.core.asgi import HttpMiddleware
from prm.core.errors import PROBLEM_BASE

log = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS = 5
_CONNECTION_SQLSTATES = ("57P01", "57P02", "57P03")  # admin/crash shutdown, cannot connect now


def database_failure(exc: BaseException) -> str | None:
    """`database_unavailable`, `database_busy`, or None when `exc` is not a database outage."""
    if isinstance(exc, sa_exc.TimeoutError):  # the pool had no connection free in time
        return "database_unavailable"
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return "database_unavailable"
        exc = exc.orig or exc
    if isinstance(exc, (psycopg.InterfaceError, sa_exc.InterfaceError)):
        return "database_unavailable"
    if isinstance(exc, (psycopg.OperationalError, sa_exc.OperationalError)):
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate is None or sqlstate.startswith("08") or sqlstate in _CONNECTION_SQLSTATES:
            return "database_unavailable"
        return "database_busy"
    return None


def problem_for(exc: BaseException, path: str, request_id: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, problem body and headers for an exception nothing else handled."""
    headers: dict[str, str] = {}
    failure = database_failure(exc)
    if failure is not None:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        detail = ("The database is unavailable; retry shortly." if failure == "database_unavailable"
                  else "The database is busy; retry shortly.")
        body = {"type": PROBLEM_BASE + failure, "title": "Service unavailable", "status": 503,
                "detail": detail, "code": failure, "instance": path}
        return 503, body, headers
    body = {"type": PROBLEM_BASE + "internal_error", "title": "Internal server error", "status": 500,
            "detail": "An unexpected error occurred; it has been logged.", "code": "internal_error",
            "instance": path, "request_id": request_id}
    return 500, body, headers


class UnhandledErrorMiddleware(HttpMiddleware):
    """Pure ASGI: turns an escaped exception into problem+json without closing the connection."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            request_id = structlog.contextvars.get_contextvars().get("request_id")
            status, body, headers = problem_for(exc, scope.get("path", ""), request_id)
            # Exception messages can carry patient data (constraint violations quote values) or
            # secrets, so the log gets the type and the frames, never the message.
            if status == 503:
                log.warning("request.database_unavailable", error=type(exc).__name__, code=body["code"])
            else:
                log.error("request.unhandled", error=type(exc).__name__, frames=prm_logging.safe_frames(exc))
            if started:  # part of a response is out: nothing valid can follow, the connection must go
                raise
            payload = json.dumps(body).encode()
            raw_headers = [(b"content-type", b"application/problem+json"),
                           (b"content-length", str(len(payload)).encode())]
            raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
            await send({"type": "http.response.start", "status": status, "headers": raw_headers})
            await send({"type": "http.response.body", "body": payload})
