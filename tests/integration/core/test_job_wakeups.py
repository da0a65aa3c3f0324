"""Workers are woken after the commit that queued jobs, by one coalesced NOTIFY sent outside it; the
transactions that queue jobs notify nobody themselves (`prm.core.wakeups`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from prm import worker
from prm.core import jobs, wakeups
from prm.core.db import Database

RAN: list[str] = []


@jobs.job("tests.wake")
async def wake_job(session, *, marker: str, org_id: str | None = None) -> None:
    RAN.append(marker)


class Listener:
    """A connection LISTENing on procrastinate's channels, as a worker's listener does; it records each
    notification with the highest `tests.wake` job id visible to it when the notification arrived."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], looker: psycopg.AsyncConnection[Any]) -> None:
        self.conn, self.looker = conn, looker  # (the listening connection is busy while it waits)
        self.received: list[tuple[str, dict[str, Any], int]] = []

    async def collect(self, seconds: float) -> None:
        """Gather what arrives within `seconds`."""
        gen = self.conn.notifies(timeout=seconds)
        async for notify in gen:
            row = await (await self.looker.execute(
                "SELECT coalesce(max(id), 0) FROM procrastinate_jobs WHERE task_name = 'tests.wake'")).fetchone()
            assert row is not None
            self.received.append((notify.channel, json.loads(notify.payload), int(row[0])))


@contextlib.asynccontextmanager
async def listening(url: str) -> AsyncIterator[Listener]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    looker = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        await conn.execute(f'LISTEN "{wakeups.ANY_QUEUE_CHANNEL}"')
        await conn.execute(f'LISTEN "{wakeups.QUEUE_CHANNEL_PREFIX}default"')
        yield Listener(conn, looker)
    finally:
        await conn.close()
        await looker.close()


@pytest.fixture
async def waking(settings) -> AsyncIterator[Database]:
    database = Database.connect(settings.database_url or "", pool_size=5, max_overflow=5, wake_workers=True)
    try:
        yield database
    finally:
        await database.dispose()


async def _queue(database: Database, *, commit: bool = True, how: str = "defer") -> int:
    """Queue one `tests.wake` job in a transaction of its own (committed or rolled back); its id."""
    marker = uuid.uuid4().hex
    async with database.sessionmaker() as s:
        if how == "defer":
            await jobs.defer(s, "tests.wake", marker=marker)
        else:
            jobs.defer_with_flush(s, "tests.wake", marker=marker)
            await jobs.flush_deferred(s)
        job_id = int((await s.execute(text(
            "SELECT id FROM procrastinate_jobs WHERE args->>'marker' = :m"), {"m": marker})).scalar_one())
        await (s.commit() if commit else s.rollback())
    return job_id


async def _cleanup(settings) -> None:
    async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
        await conn.execute("DELETE FROM procrastinate_jobs WHERE task_name = 'tests.wake'")


async def test_a_transaction_that_queues_a_job_notifies_nobody_itself(db, settings) -> None:
    # `db` has no waker (tests' own engine, like psql or a one-off command): the job row alone must not
    # notify (procrastinate's per-row trigger did, from inside the transaction, on every job)
    async with listening(settings.database_url) as listener:
        await _queue(db)
        await listener.collect(0.3)
    await _cleanup(settings)
    assert listener.received == []


async def test_a_commit_that_queued_jobs_wakes_the_workers_after_it(waking, settings) -> None:
    async with listening(settings.database_url) as listener:
        for how in ("defer", "with_flush"):
            job_id = await _queue(waking, how=how)
            await listener.collect(0.3)
            # on procrastinate's channels, with the payload its workers act on, and the job visible
            # by then to the listening connection (a worker woken by it finds the job)
            assert {channel for channel, _, _ in listener.received} == {
                wakeups.ANY_QUEUE_CHANNEL, wakeups.QUEUE_CHANNEL_PREFIX + "default"}
            assert all(payload["type"] == "job_inserted" for _, payload, _ in listener.received)
            assert all(visible >= job_id for _, _, visible in listener.received)
            listener.received.clear()
    await _cleanup(settings)


async def test_a_rolled_back_transaction_wakes_nobody(waking, settings) -> None:
    async with listening(settings.database_url) as listener:
        await _queue(waking, commit=False)
        await listener.collect(0.3)
    assert listener.received == []
    assert wakeups._wakers[waking.engine.sync_engine].sent == 0


async def test_a_burst_of_commits_is_coalesced(waking, settings) -> None:
    async with listening(settings.database_url) as listener:
        await asyncio.gather(*(_queue(waking) for _ in range(40)))
        await listener.collect(0.3)
    await _cleanup(settings)
    sent = wakeups._wakers[waking.engine.sync_engine].sent
    assert 1 <= sent < 40  # far fewer statements than commits
    assert 1 <= sum(1 for channel, _, _ in listener.received if channel == wakeups.ANY_QUEUE_CHANNEL) == sent


async def test_commits_during_a_wake_up_get_one_more_wake_up_after_it(waking, settings) -> None:
    """No commit is left without a wake-up sent after it: those made while one was just sent get one
    more, one for all of them, an interval later."""
    wakeups.install(waking.engine, interval=0.4)  # long enough to commit three jobs within it

    def wake_ups() -> int:
        return sum(1 for channel, _, _ in listener.received if channel == wakeups.ANY_QUEUE_CHANNEL)

    async with listening(settings.database_url) as listener:
        await _queue(waking)
        while not wake_ups():  # the first commit's wake-up is sent at once
            await listener.collect(0.05)
        later = [await _queue(waking) for _ in range(3)]  # within the interval that follows it
        await listener.collect(1.0)
    await _cleanup(settings)
    assert wake_ups() == 2
    assert listener.received[-1][2] >= max(later)  # the job of the last commit is there to be fetched


@contextlib.asynccontextmanager
async def running_worker(database: Database, settings, *, poll_seconds: float) -> AsyncIterator[None]:
    """A real procrastinate worker on `database`, LISTENing, polling every `poll_seconds`."""
    options = worker.WorkerOptions(concurrency=1, housekeeping=None, poll_seconds=poll_seconds, shutdown_seconds=1)
    jobs.bind(database.sessionmaker)
    running = asyncio.create_task(worker.run(database.url, options=options))
    try:
        async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
            for _ in range(100):  # until its listener is LISTENing (it has looked for jobs once by then)
                row = await (await conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %procrastinate%'")).fetchone()
                if row and row[0]:
                    break
                await asyncio.sleep(0.05)
        yield
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await _cleanup(settings)


async def _runs_one_queued_job(database: Database) -> bool:
    """Queue a job through `database`; whether the worker has run it within 5 s."""
    before = len(RAN)
    await _queue(database)
    for _ in range(100):
        if len(RAN) > before:
            break
        await asyncio.sleep(0.05)
    return len(RAN) == before + 1


async def test_a_worker_runs_a_committed_job_at_once_without_polling(waking, settings) -> None:
    """The worker polls only every 60 s here: the job runs within seconds only because it is woken."""
    async with running_worker(waking, settings, poll_seconds=60):
        assert await _runs_one_queued_job(waking)


async def test_a_worker_polls_for_jobs_nobody_woke_it_for(db, settings) -> None:
    """A job queued without a wake-up (`db` has no waker: psql, another tool) is found by polling."""
    async with running_worker(db, settings, poll_seconds=0.2):
        assert await _runs_one_queued_job(db)


async def test_the_setting_reaches_the_worker(settings) -> None:
    polling = settings.model_copy(update={"worker_poll_seconds": 2.5})
    assert worker.WorkerOptions.from_settings(polling).poll_seconds == 2.5
