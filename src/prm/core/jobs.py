"""Background jobs on procrastinate, deferred inside the caller's transaction.

* `@job("notifications.send")` registers `async def fn(session, **kwargs)`. The worker opens a
  session per run, calls it and commits; an exception rolls the run back and the retry strategy
  decides what happens next.
* `defer(session, name, **kwargs)` writes the job row through the caller's own connection with
  procrastinate's SQL function, so a job deferred in a request commits or rolls back with it.
* `build_app(url)` gives a procrastinate `App` with every registered job, for `prm worker` and the
  in-process worker of `prm serve`.
* `run_due(session)` runs the due jobs inside one transaction, using the service clock: the test
  suite uses it to move time instead of sleeping, and `prm jobs run-due` for one-off catch-up.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import procrastinate
import structlog
from procrastinate.retry import BaseRetryStrategy, RetryDecision
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from prm.core import clock
from prm.core.backoff import backoff_seconds

log = structlog.get_logger(__name__)

JobFn = Callable[..., Awaitable[Any]]


class PermanentFailure(Exception):
    """Raise from a job when retrying cannot help (invalid number, unsubscribed ...)."""


@dataclass
class BackoffRetry(BaseRetryStrategy):
    """Exponential backoff with a cap and ±10 % jitter; `PermanentFailure` is never retried."""

    max_attempts: int = 8
    base_seconds: float = 5
    max_seconds: float = 3600
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def wait_seconds(self, attempts: int) -> float:
        wait = backoff_seconds(attempts, base_seconds=self.base_seconds, max_seconds=self.max_seconds)
        return wait * random.uniform(0.9, 1.1)

    def get_retry_decision(self, *, exception: BaseException, job: Any) -> RetryDecision | None:
        if isinstance(exception, PermanentFailure) or not isinstance(exception, self.retry_on):
            return None
        if job.attempts + 1 >= self.max_attempts:
            return None
        return RetryDecision(retry_at=clock.now() + timedelta(seconds=self.wait_seconds(job.attempts)))


@dataclass
class JobSpec:
    name: str
    fn: JobFn
    queue: str = "default"
    retry: BackoffRetry | None = None
    periodic_cron: str | None = None


_registry: dict[str, JobSpec] = {}
_defaults: dict[str, Any] = {"max_attempts": 8, "base_seconds": 5, "max_seconds": 3600}


def configure_defaults(*, max_attempts: int, base_seconds: float, max_seconds: float) -> None:
    """Default retry policy for jobs that do not set their own (from settings)."""
    _defaults.update(max_attempts=max_attempts, base_seconds=base_seconds, max_seconds=max_seconds)
    for spec in _registry.values():
        if spec.retry is not None and getattr(spec.retry, "_uses_defaults", False):
            spec.retry.max_attempts = max_attempts
            spec.retry.base_seconds = base_seconds
            spec.retry.max_seconds = max_seconds


def job(
    name: str,
    *,
    queue: str = "default",
    max_attempts: int | None = None,
    retry: bool = True,
    retry_on: Iterable[type[BaseException]] = (Exception,),
    periodic: str | None = None,
) -> Callable[[JobFn], JobFn]:
    """Register `fn(session, **kwargs)` as the job `name` (`<domain>.<verb>`).

    `periodic` takes a cron expression; the function then receives `timestamp` (epoch seconds).
    """

    def decorate(fn: JobFn) -> JobFn:
        strategy = None
        if retry:
            strategy = BackoffRetry(
                max_attempts=max_attempts or _defaults["max_attempts"],
                base_seconds=_defaults["base_seconds"],
                max_seconds=_defaults["max_seconds"],
                retry_on=tuple(retry_on),
            )
            strategy._uses_defaults = max_attempts is None  # type: ignore[attr-defined]
        if name in _registry and _registry[name].fn is not fn:
            raise RuntimeError(f"job {name!r} registered twice")
        _registry[name] = JobSpec(name=name, fn=fn, queue=queue, retry=strategy, periodic_cron=periodic)
        return fn

    return decorate


def registered() -> dict[str, JobSpec]:
    return dict(_registry)


async def defer(
    session: AsyncSession,
    name: str,
    *,
    schedule_at: datetime | None = None,
    queueing_lock: str | None = None,
    lock: str | None = None,
    priority: int = 0,
    **kwargs: Any,
) -> int | None:
    """Queue job `name` in the caller's transaction; returns its id.

    With `queueing_lock`, a second defer while one with the same lock is still waiting is a no-op
    and returns None (in a savepoint, so the caller's transaction stays usable).
    """
    spec = _registry.get(name)
    if spec is None:
        raise KeyError(f"unknown job {name!r}")
    params = {
        "queue": spec.queue,
        "task": name,
        "priority": priority,
        "lock": lock,
        "qlock": queueing_lock,
        "args": json.dumps(kwargs, default=str),
        "at": schedule_at,
    }
    stmt = text(
        "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW(:queue, :task, :priority, :lock, :qlock, "
        "CAST(:args AS jsonb), CAST(:at AS timestamptz))::procrastinate_job_to_defer_v1]))"
    )
    if queueing_lock is None:
        return int((await session.execute(stmt, params)).scalar_one())
    try:
        async with session.begin_nested():
            return int((await session.execute(stmt, params)).scalar_one())
    except IntegrityError:
        return None


async def cancel_pending(session: AsyncSession, job_id: int) -> bool:
    """Cancel a job that has not started; True when it was still waiting."""
    result = await session.execute(
        text("UPDATE procrastinate_jobs SET status = 'cancelled' WHERE id = :id AND status = 'todo' RETURNING id"),
        {"id": job_id},
    )
    return result.scalar_one_or_none() is not None


# --- running -----------------------------------------------------------------------------------

_sessionmaker: async_sessionmaker[AsyncSession] | None = None


def bind(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Give the worker the sessions its jobs run in."""
    global _sessionmaker
    _sessionmaker = sessionmaker


async def _run_in_own_transaction(spec: JobSpec, kwargs: dict[str, Any]) -> Any:
    if _sessionmaker is None:
        raise RuntimeError("jobs.bind() was not called before running jobs")
    structlog.contextvars.bind_contextvars(job=spec.name)
    try:
        async with _sessionmaker() as session:
            try:
                result = await spec.fn(session, **kwargs)
            except BaseException:
                await session.rollback()
                raise
            await session.commit()
            return result
    finally:
        structlog.contextvars.unbind_contextvars("job")


def build_app(conninfo: str) -> procrastinate.App:
    """A procrastinate App holding every registered job, connected to `conninfo`."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))
    for spec in _registry.values():

        def runner(_spec: JobSpec = spec, **kwargs: Any) -> Awaitable[Any]:
            return _run_in_own_transaction(_spec, kwargs)

        runner.__name__ = spec.name.replace(".", "_")
        task: Any = app.task(name=spec.name, queue=spec.queue, retry=spec.retry or False)(runner)
        if spec.periodic_cron:
            app.periodic(cron=spec.periodic_cron, periodic_id=spec.name)(task)
    return app


@dataclass
class RunReport:
    succeeded: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    @property
    def ran(self) -> int:
        return len(self.succeeded) + len(self.retried) + len(self.failed)


@dataclass
class _JobView:
    id: int
    attempts: int


async def run_due(
    session: AsyncSession, *, names: Iterable[str] | None = None, limit: int = 1000
) -> RunReport:
    """Run every job due by the service clock inside `session`'s transaction, until none is left.

    Each job runs in a savepoint: a failing job is rolled back alone, then retried (rescheduled by
    its strategy) or marked failed, exactly as the worker would.
    """
    report = RunReport()
    only = list(names) if names is not None else None
    for _ in range(limit):
        row = (
            await session.execute(
                text(
                    "SELECT id, task_name, args, attempts FROM procrastinate_jobs "
                    "WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= :now) "
                    "AND (CAST(:only AS text[]) IS NULL OR task_name = ANY(CAST(:only AS text[]))) "
                    "ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED"
                ),
                {"now": clock.now(), "only": only},
            )
        ).one_or_none()
        if row is None:
            break
        job_id, task_name, args, attempts = row
        spec = _registry.get(task_name)
        await session.execute(text("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = :id"), {"id": job_id})
        try:
            if spec is None:
                raise PermanentFailure(f"no job registered as {task_name!r}")
            async with session.begin_nested():
                await spec.fn(session, **(args or {}))
        except Exception as exc:
            log.warning("job.failed", job_id=job_id, job_name=task_name, error=type(exc).__name__)
            decision = spec.retry.get_retry_decision(exception=exc, job=_JobView(job_id, attempts)) \
                if spec and spec.retry else None
            if decision is not None:
                await session.execute(
                    text("SELECT procrastinate_retry_job_v2(:id, :at, NULL, NULL, NULL)"),
                    {"id": job_id, "at": decision.retry_at},
                )
                report.retried.append(job_id)
            else:
                await session.execute(
                    text("SELECT procrastinate_finish_job_v1(:id, 'failed', false)"), {"id": job_id}
                )
                report.failed.append(job_id)
        else:
            await session.execute(text("SELECT procrastinate_finish_job_v1(:id, 'succeeded', false)"), {"id": job_id})
            report.succeeded.append(job_id)
    return report
