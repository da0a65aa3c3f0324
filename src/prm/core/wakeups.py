"""Waking the job workers after a commit that queued jobs: one NOTIFY, off the write path, coalesced.

procrastinate's workers LISTEN on its channels and fetch jobs when told a job was inserted (and poll
every `WORKER_POLL_SECONDS` otherwise). Its schema told them with a per-row trigger on the job table,
so every transaction that queued a job sent notifications itself, and PostgreSQL serialises the commit
of all such transactions on one cluster-wide lock and signals every listener at each of them: under a
burst of bookings or webhooks that cost more database CPU than the rows they wrote, and the tail
latency of the queue on that lock. The trigger is gone (migration `20261130_job_wakeups`); instead:

* whatever queues a job in a session marks it (`queued(session, queues)`, done by `prm.core.jobs`
  and `prm.core.batch`);
* when that session's transaction commits, the process's `Waker` for the session's engine sends ONE
  `pg_notify` per channel (procrastinate's "any queue" channel and each queue's own), in a statement
  of its own on a pooled connection, outside the transaction that queued the jobs;
* a process sends at most one wake-up per `interval` (the first at once): a burst of commits becomes
  a few wake-ups, and a commit made while a wake-up is in flight gets another one after it, so no
  commit is left without a wake-up sent after it.

A rolled-back transaction wakes nobody. A wake-up that fails (the database just went away) is logged
and dropped: the workers' polling finds the jobs. Engines without a `Waker` (tests' own, one-off
commands) rely on that polling too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

import structlog
from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session as OrmSession

log = structlog.get_logger(__name__)

# procrastinate's channels and the notification its workers act on (procrastinate.manager and the
# trigger function `procrastinate_notify_queue_job_inserted_v1` of its schema)
ANY_QUEUE_CHANNEL = "procrastinate_any_queue_v1"
QUEUE_CHANNEL_PREFIX = "procrastinate_queue_v1#"
PAYLOAD = json.dumps({"type": "job_inserted", "job_id": None})
_NOTIFY = "SELECT pg_notify(channel, %(payload)s) FROM unnest(%(channels)s::text[]) AS channel"

INTERVAL_SECONDS = 0.02
_QUEUES = "prm.wakeups.queues"


def channels(queues: Iterable[str]) -> list[str]:
    """The channels a wake-up for jobs of `queues` is sent on: every worker listens on one of them."""
    return [ANY_QUEUE_CHANNEL, *(QUEUE_CHANNEL_PREFIX + q for q in sorted(set(queues)))]


class Waker:
    """Sends the coalesced wake-ups of one engine's commits (see the module's docstring)."""

    def __init__(self, engine: AsyncEngine, *, interval: float = INTERVAL_SECONDS) -> None:
        self.engine = engine
        self.interval = interval
        self.sent = 0  # wake-ups sent (statements), for tests and metrics
        self._queues: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def wake(self, queues: Iterable[str]) -> None:
        """Wake the workers of `queues` soon (called after the commit that queued their jobs)."""
        self._queues.update(queues)
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # a commit outside any event loop: the workers' polling finds the jobs
                self._queues.clear()
                return
            self._task = loop.create_task(self._send(), name="prm job wake-up")

    async def _send(self) -> None:
        # one statement per round; what `wake` adds meanwhile goes with the next round, `interval` later
        while self._queues:
            queues, self._queues = self._queues, set()
            try:
                async with self.engine.connect() as conn:
                    autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    await autocommit.exec_driver_sql(_NOTIFY, {"payload": PAYLOAD, "channels": channels(queues)})
                self.sent += 1
            except Exception as exc:
                log.warning("jobs.wake_failed", error=type(exc).__name__)
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        """Let a wake-up in flight finish (before its engine is disposed)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            self._queues.clear()
            try:
                await task
            except Exception:  # noqa: S110 - _send logs its own failures; a cancelled loop ends here
                pass


_wakers: dict[Engine, Waker] = {}


def install(engine: AsyncEngine, *, interval: float = INTERVAL_SECONDS) -> Waker:
    """Wake the workers after every commit that queued jobs on `engine` (the API's and workers' own)."""
    waker = _wakers[engine.sync_engine] = Waker(engine, interval=interval)
    return waker


async def uninstall(engine: AsyncEngine) -> None:
    waker = _wakers.pop(engine.sync_engine, None)
    if waker is not None:
        await waker.close()


def queued(session: AsyncSession | OrmSession, queues: Iterable[str]) -> None:
    """Note that the session's transaction queued jobs of `queues`: their workers are woken once it commits."""
    target = session.sync_session if isinstance(session, AsyncSession) else session
    target.info.setdefault(_QUEUES, set()).update(queues)


@event.listens_for(OrmSession, "after_commit")
def _wake_after_commit(session: OrmSession) -> None:
    queues = session.info.pop(_QUEUES, None)
    if not queues:
        return
    bind: Any = session.bind
    waker = _wakers.get(getattr(bind, "engine", bind))
    if waker is not None:
        waker.wake(queues)


@event.listens_for(OrmSession, "after_soft_rollback")
def _forget_after_rollback(session: OrmSession, previous_transaction: Any) -> None:
    # a rolled-back savepoint keeps the jobs queued before it (`prm.core.jobs` keeps them too)
    if not previous_transaction.nested:
        session.info.pop(_QUEUES, None)
