"""Engine, sessions and the one-transaction-per-request dependency."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import Depends, Request
from psycopg import _queries as psycopg_queries
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from prm.core import embedded, wakeups
from prm.settings import Settings

# psycopg keeps the parsed form of a statement (its placeholders split out) only up to 4 kB of text,
# and parses longer ones again on every execution: ~110 µs for a booking's one statement of ~4.5 kB
# (`prm.core.batch`). Our long statements are few and fixed (built once per shape, values always
# bound), so its cache of 128 statements may keep them up to 16 kB. The constant is read on every
# execution; tests/integration/appointments/test_reference_cache.py checks a booking hits the cache.
PARSED_STATEMENT_MAX_BYTES = 16384
psycopg_queries.MAX_CACHED_STATEMENT_LENGTH = max(psycopg_queries.MAX_CACHED_STATEMENT_LENGTH,
                                                  PARSED_STATEMENT_MAX_BYTES)


def resolve_database_url(settings: Settings) -> str:
    """A libpq URI for the configured database, starting the embedded server if none is set."""
    if settings.database_url:
        return settings.database_url
    if settings.environment == "production" and not settings.allow_embedded_database:
        raise RuntimeError("DATABASE_URL is required when ENVIRONMENT=production "
                           "(or set ALLOW_EMBEDDED_DATABASE=true to run the embedded PostgreSQL on purpose)")
    return embedded.start(settings.data_dir / "pgdata")


def sqlalchemy_url(url: str) -> str:
    """Normalise any PostgreSQL URI to the psycopg 3 SQLAlchemy dialect."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in {"postgresql", "postgres"}:
        raise ValueError(f"unsupported database scheme {parts.scheme!r}")
    return urlunsplit(("postgresql+psycopg", *parts[1:]))


def libpq_url(url: str) -> str:
    """The same URI without a SQLAlchemy driver suffix (for psycopg and procrastinate)."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql", *parts[1:]))


@dataclass
class Database:
    url: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    @classmethod
    def connect(cls, url: str, *, pool_size: int = 10, max_overflow: int = 10, echo: bool = False,
                pool_timeout: float = 30, connect_timeout: int | None = None, name: str = "prm",
                idle_ping_seconds: float | None = None, wake_workers: bool = False,
                backend_nice: int = 0) -> Database:
        """`pool_timeout`: how long a checkout waits for a free connection before SQLAlchemy's
        `TimeoutError` (answered 503); `connect_timeout`: libpq's limit on opening one;
        `wake_workers`: after a commit that queued jobs, wake the job workers (`prm.core.wakeups`;
        the API's and the workers' databases do, one-off commands and tests leave it to polling);
        `backend_nice`: the CPU priority of the server process behind each connection, where the
        database runs on this host (`lower_backend_priority`; the job worker's).

        Every connection is named `<name>:<pid>` (`application_name`), so `pg_stat_activity` shows
        which process of a scaled-out deployment holds it (`prm-api:1234`, `prm-worker:1240`).
        """
        connect_args: dict[str, object] = {"application_name": f"{name}:{os.getpid()}"}
        if connect_timeout:
            connect_args["connect_timeout"] = connect_timeout
        engine = create_async_engine(
            sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            echo=echo,
            connect_args=connect_args,
        )
        ping_when_idle(engine, IDLE_PING_SECONDS if idle_ping_seconds is None else idle_ping_seconds)
        if wake_workers:
            wakeups.install(engine)
        if backend_nice > 0:
            @event.listens_for(engine.sync_engine, "connect")
            def _lower_priority(dbapi_connection: Any, _record: Any) -> None:
                lower_backend_priority(dbapi_connection.driver_connection.info, backend_nice)

        return cls(url=libpq_url(url), engine=engine, sessionmaker=make_sessionmaker(engine))

    async def dispose(self) -> None:
        await wakeups.uninstall(self.engine)
        await self.engine.dispose()


IDLE_PING_SECONDS = 10.0


def lower_backend_priority(info: Any, nice: int) -> bool:
    """Give the server process behind a connection (psycopg's `conn.info`) the CPU priority `nice`,
    when that process runs on this host and is ours to lower; True when it did.

    The job worker runs below the API processes (`WORKER_NICE`), but the queries of its jobs ran in
    server processes at the API's priority: during a burst of requests, a worker catching up on the
    jobs they queued took as much of the database's CPU as the requests themselves. On the embedded
    database, or any PostgreSQL reached through a Unix socket on this host, its connections' server
    processes now run at the worker's priority too. Only a process that is a PostgreSQL server
    process (its title) is touched; over TCP (another host, or one whose processes this one cannot
    see) nothing is, and a process that cannot be reniced is left as it is.
    """
    host = str(getattr(info, "host", "") or "")
    if nice <= 0 or not host.startswith("/"):
        return False
    pid = int(info.backend_pid)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as title:
            if not title.read().startswith(b"postgres"):
                return False
        os.setpriority(os.PRIO_PROCESS, pid, max(nice, os.getpriority(os.PRIO_PROCESS, pid)))
    except (OSError, ValueError):  # gone meanwhile, not ours, or no /proc (not Linux)
        return False
    return True


def ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Check a pooled connection before use only when it has been idle for `idle_seconds` (0: always).

    A ping on every checkout (`pool_pre_ping`) is one more round trip per request; a connection
    that was in use a moment ago is almost surely alive. One that has sat idle (the database may
    have restarted meanwhile) is pinged, and a dead one is replaced transparently. Should a
    recently used connection be dead after all, its request fails (503 `database_unavailable`),
    SQLAlchemy invalidates the whole pool, and the next requests get fresh connections.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["prm.idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("prm.idle_since", None)
        if since is None or (idle_seconds > 0 and time.monotonic() - since < idle_seconds):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the pool retries the checkout with a fresh connection
            raise DisconnectionError() from exc


def make_sessionmaker(bind: object) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(bind=bind, expire_on_commit=False, autoflush=True)  # type: ignore[call-overload]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: commit when the endpoint returns, roll back when it raises.

    Used with `scope="function"`, so the commit happens before the response is sent: a client
    never sees a success for a write that did not commit.
    """
    db: Database = request.app.state.db
    async with db.sessionmaker() as session:
        request.state.session = session
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]

AUTOCOMMIT: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"}


async def autocommit(session: AsyncSession) -> bool:
    """Run the session's statements each as its own transaction, when it has begun none yet (nothing
    was read, added or sent in it) on a connection of its own (not a caller's, as the tests' sessions
    are bound to): True when it now does, False (nothing changed) otherwise.

    For a caller whose whole transaction is ONE statement, which PostgreSQL makes atomic by itself
    (and whose transaction-scoped advisory locks then last as long as that statement): psycopg sends
    no `BEGIN` before it and the commit sends nothing, two round trips of three saved. Each statement
    commits as it ends, so the caller must send nothing more that belongs with it; to go on in a
    transaction, end the session's (`commit()`: it sends nothing) and the next statement begins a new
    one on a connection in transaction mode. SQLAlchemy sets the isolation level on the connection
    it checks out here and sets it back when the connection returns to the pool, so the next user of
    that connection gets a transaction again (tests/integration/appointments/test_booking_autocommit.py).
    """
    if session.in_transaction() or not isinstance(session.bind, AsyncEngine):
        return False
    await session.connection(execution_options=AUTOCOMMIT)
    return True
