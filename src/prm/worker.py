"""Running procrastinate workers: `prm worker` (standalone) and the in-process one of `prm serve`.

A procrastinate worker stops by itself when it loses its database (its listener or heartbeat side
task fails) and raises when a query fails. `supervise` runs one and, when it stops or fails without
having been asked to, waits with exponential backoff until the database answers, then starts a new
one. The new worker registers afresh; the jobs the old one was running are put back in the queue by
the stalled-job recovery once its heartbeat is old enough. After `give_up_seconds` without a
working worker, `supervise` raises `WorkerGaveUp` (the `prm worker` process then exits non-zero).

Stopping is cancelling: the worker stops taking jobs, gives running ones `shutdown_seconds` to
finish (then aborts them, and they are retried), and unregisters.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
import structlog

from prm.core import jobs
from prm.settings import Settings

log = structlog.get_logger(__name__)

STOP_MARGIN_SECONDS = 5  # beyond `shutdown_seconds`, what stopping a worker may take before it is abandoned
WorkerState = Literal["starting", "running", "reconnecting", "stopped", "failed"]


class WorkerGaveUp(RuntimeError):
    """The worker could not run for longer than its give-up time."""


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 4
    queues: list[str] | None = None
    heartbeat_seconds: float = 10
    stalled_after_seconds: float = 30
    shutdown_seconds: float | None = 30
    poll_seconds: float = 1.0
    reconnect_max_seconds: float = 30
    give_up_seconds: float = 600
    housekeeping: jobs.Housekeeping | None = field(default_factory=jobs.Housekeeping)
    backend_nice: int = 0  # the CPU priority of its connections' server processes (`db.lower_backend_priority`)

    @classmethod
    def from_settings(cls, settings: Settings, *, concurrency: int | None = None,
                      queues: list[str] | None = None) -> WorkerOptions:
        return cls(
            concurrency=concurrency or settings.worker_concurrency,
            queues=queues or None,
            heartbeat_seconds=settings.job_heartbeat_seconds,
            stalled_after_seconds=settings.job_stalled_after_seconds,
            shutdown_seconds=settings.worker_shutdown_seconds,
            poll_seconds=settings.worker_poll_seconds,
            reconnect_max_seconds=settings.worker_reconnect_max_seconds,
            give_up_seconds=settings.worker_give_up_seconds,
            housekeeping=jobs.Housekeeping(
                stalled_after_seconds=settings.job_stalled_after_seconds,
                recovery_interval_seconds=settings.job_recovery_interval_seconds,
                retention_hours=settings.job_retention_hours,
                failed_retention_hours=settings.job_failed_retention_hours,
                max_recoveries=settings.job_max_attempts,
            ),
        )


async def run(conninfo: str, *, concurrency: int = 4, queues: list[str] | None = None,
              wait: bool = True, options: WorkerOptions | None = None) -> None:
    """Run one procrastinate worker until cancelled (`wait=False`: until the queue is empty).

    Returns by itself (with `wait=True`) or raises when the database goes away.
    """
    opts = options or WorkerOptions(concurrency=concurrency, queues=queues, housekeeping=None)
    app = jobs.build_app(conninfo, housekeeping=opts.housekeeping if wait else None, backend_nice=opts.backend_nice)
    worker_options: dict[str, Any] = {
        "concurrency": opts.concurrency, "wait": wait, "install_signal_handlers": False,
        "delete_jobs": "never", "update_heartbeat_interval": opts.heartbeat_seconds,
        "stalled_worker_timeout": opts.stalled_after_seconds,
        "shutdown_graceful_timeout": opts.shutdown_seconds,
        "fetch_job_polling_interval": opts.poll_seconds,
    }
    if opts.queues:
        worker_options["queues"] = opts.queues
    async with app.open_async():
        worker = asyncio.create_task(app.run_worker_async(**worker_options), name="procrastinate worker")
        try:
            await asyncio.shield(worker)
        except asyncio.CancelledError:
            # asked to stop: procrastinate stops taking jobs, gives running ones `shutdown_seconds`,
            # then unregisters. Bounded: with the database gone, its last queries would each wait
            # for a connection that never comes, and the process would not stop (SIGTERM ignored)
            worker.cancel()
            await asyncio.wait({worker}, timeout=(opts.shutdown_seconds or 0) + STOP_MARGIN_SECONDS)
            if not worker.done():
                log.warning("worker.stop_abandoned", waited_seconds=(opts.shutdown_seconds or 0) + STOP_MARGIN_SECONDS)
                worker.cancel()
            raise


async def database_answers(conninfo: str, *, connect_timeout: int = 5) -> bool:
    try:
        async with await psycopg.AsyncConnection.connect(conninfo, connect_timeout=connect_timeout) as conn:
            await conn.execute("SELECT 1")
    except (psycopg.Error, OSError):
        return False
    return True


async def supervise(conninfo: str, options: WorkerOptions,
                    on_state: Callable[[WorkerState, str | None], None] | None = None) -> None:
    """Run a worker for ever, restarting it with backoff when it loses the database.

    Raises `WorkerGaveUp` after `options.give_up_seconds` (0: never) without a worker that ran
    for at least `options.reconnect_max_seconds`; cancel to stop.
    """

    def report(state: WorkerState, detail: str | None = None) -> None:
        if on_state is not None:
            on_state(state, detail)

    failing_since: float | None = None
    delay = 1.0
    while True:
        started = time.monotonic()
        if await database_answers(conninfo):
            report("running")
            try:
                await run(conninfo, wait=True, options=options)
                reason = "stopped by itself (lost its database connection)"
            except asyncio.CancelledError:
                report("stopped")
                raise
            except Exception as exc:  # any failure of the worker is retried
                reason = f"failed: {type(exc).__name__}"
            if time.monotonic() - started >= options.reconnect_max_seconds:
                failing_since, delay = None, 1.0  # it worked for a while: a new outage starts here
        else:
            reason = "cannot reach the database"
        failing_since = failing_since or started
        if options.give_up_seconds and time.monotonic() - failing_since >= options.give_up_seconds:
            detail = f"worker gave up after {options.give_up_seconds:g} s without a working database ({reason})"
            log.error("worker.gave_up", give_up_seconds=options.give_up_seconds, reason=reason)
            report("failed", detail)
            raise WorkerGaveUp(detail)
        log.error("worker.lost", reason=reason, retry_in_seconds=delay)
        report("reconnecting", f"worker {reason}; retrying in {delay:g} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, options.reconnect_max_seconds)


class InProcessWorker:
    """The worker inside `prm serve`; `/ready` reads its `state`."""

    def __init__(self, conninfo: str, *, concurrency: int = 2, options: WorkerOptions | None = None) -> None:
        self.conninfo = conninfo
        self.options = options or WorkerOptions(concurrency=concurrency)
        self.state: WorkerState = "starting"
        self.detail: str | None = None
        self._task: asyncio.Task[None] | None = None

    def _on_state(self, state: WorkerState, detail: str | None) -> None:
        self.state, self.detail = state, detail

    @property
    def running(self) -> bool:
        return self.state == "running" and self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="prm-worker")
        log.info("worker.started", concurrency=self.options.concurrency)

    async def _run(self) -> None:
        try:
            await supervise(self.conninfo, self.options, self._on_state)
        except WorkerGaveUp:
            pass  # state is "failed"; /ready reports it
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._on_state("failed", f"worker crashed: {type(exc).__name__}")
            log.error("worker.crashed", error=type(exc).__name__)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self.state = "stopped"
        log.info("worker.stopped")
