"""Background jobs on procrastinate, deferred inside the caller's transaction.

* `@job("notifications.send")` registers `async def fn(session, **kwargs)`. The worker opens a
  session per run, calls it and commits; an exception rolls the run back and the retry strategy
  decides what happens next.
* `defer(session, name, **kwargs)` writes the job row through the caller's own connection with
  procrastinate's SQL function, so a job deferred in a request commits or rolls back with it.
* `build_app(url)` gives a procrastinate `App` with every registered job, for `prm worker` and the
  in-process worker of `prm serve`.
* `run_due(session)` runs the due jobs inside one transaction, using the service clock: the test
  suite uses it to move time instead of sleeping, and `prm jobs run-due` for one-off catch-up. It
  runs the periodic sweeps of due work registered with `catch_up=True` (the reminder sweep) too.
* Housekeeping (`Housekeeping`, given to `build_app`): two periodic tasks on procrastinate's own job
  manager. `jobs.recover_stalled` puts the running jobs of dead workers (no heartbeat for
  `stalled_after_seconds`) back in the queue; `jobs.prune` deletes finished jobs after their
  retention. Neither touches business data, so they live here rather than in the registry.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import procrastinate
import psycopg_pool
import structlog
from procrastinate import exceptions as procrastinate_errors
from procrastinate.jobs import Job as QueuedJob
from procrastinate.jobs import Status
from procrastinate.manager import JobManager
from procrastinate.retry import BaseRetryStrategy, RetryDecision
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session as OrmSession

from prm.core import clock, wakeups
from prm.core.backoff import backoff_seconds
from prm.core.db import IDLE_PING_SECONDS, lower_backend_priority

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
    catch_up: bool = False  # a periodic sweep `run_due` runs too (see `job`)


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
    catch_up: bool = False,
) -> Callable[[JobFn], JobFn]:
    """Register `fn(session, **kwargs)` as the job `name` (`<domain>.<verb>`).

    `periodic` takes a cron expression; the function then receives `timestamp` (epoch seconds).
    `catch_up` (periodic jobs): a sweep that does work that is due by the clock (the reminder sweep),
    which `run_due` runs too, once, before the queued jobs: what a worker would do at that time.
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
        _registry[name] = JobSpec(name=name, fn=fn, queue=queue, retry=strategy, periodic_cron=periodic,
                                 catch_up=catch_up and periodic is not None)
        return fn

    return decorate


def registered() -> dict[str, JobSpec]:
    return dict(_registry)


_DEFER = (
    "SELECT unnest(procrastinate_defer_jobs_v1({rows}))"
)
_ROW = ("ROW(:queue{i}, :task{i}, :priority{i}, :lock{i}, :qlock{i}, CAST(:args{i} AS jsonb), "
        "CAST(:at{i} AS timestamptz))::procrastinate_job_to_defer_v1")


def _params(name: str, kwargs: dict[str, Any], *, schedule_at: datetime | None, queueing_lock: str | None,
            lock: str | None, priority: int, i: int | str = "") -> dict[str, Any]:
    spec = _registry.get(name)
    if spec is None:
        raise KeyError(f"unknown job {name!r}")
    return {f"queue{i}": spec.queue, f"task{i}": name, f"priority{i}": priority, f"lock{i}": lock,
            f"qlock{i}": queueing_lock, f"args{i}": json.dumps(kwargs, default=str), f"at{i}": schedule_at}


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
    params = _params(name, kwargs, schedule_at=schedule_at, queueing_lock=queueing_lock, lock=lock,
                     priority=priority)
    queued(session, [name])
    stmt = text(_DEFER.format(rows=f"ARRAY[{_ROW.format(i='')}]"))
    if queueing_lock is None:
        return int((await session.execute(stmt, params)).scalar_one())
    try:
        async with session.begin_nested():
            return int((await session.execute(stmt, params)).scalar_one())
    except IntegrityError:
        return None


def queued(session: AsyncSession | OrmSession, names: Iterable[str]) -> None:
    """Note that the session's transaction queues jobs `names`: their workers are woken when it
    commits (`prm.core.wakeups`). `defer`, `defer_with_flush` and `prm.core.batch` do it; a statement
    of the caller's that queues a job with `defer_expression` calls it."""
    wakeups.queued(session, {_registry[name].queue for name in names if name in _registry})


def defer_expression(name: str, *, priority: int = 0, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    """An SQL expression (psycopg parameters) queueing job `name` now, for a statement that writes a
    row and its job at once (`... SELECT <expression> FROM inserted`: queued only when a row is); the
    caller marks its session with `queued`."""
    spec = _registry.get(name)
    if spec is None:
        raise KeyError(f"unknown job {name!r}")
    return ("procrastinate_defer_jobs_v1(ARRAY[ROW(%(job_queue)s, %(job_task)s, %(job_priority)s, NULL, NULL, "
            "%(job_args)s::jsonb, NULL)::procrastinate_job_to_defer_v1])",
            {"job_queue": spec.queue, "job_task": name, "job_priority": priority,
             "job_args": json.dumps(kwargs, default=str)})


# --- deferred with the next flush: all the jobs of a unit of work in one statement ---------------

_PENDING = "prm.jobs.pending"


@dataclass
class PendingJob:
    name: str
    kwargs: dict[str, Any]
    schedule_at: datetime | None
    on_id: Callable[[int], None] | None
    only_if: str | None


def defer_with_flush(
    session: AsyncSession | OrmSession,
    name: str,
    *,
    schedule_at: datetime | None = None,
    on_id: Callable[[int], None] | None = None,
    only_if: str | None = None,
    **kwargs: Any,
) -> None:
    """Queue job `name` with the session's next flush (or commit), in the caller's transaction.

    Every job queued this way before a flush goes to the database in ONE statement with that flush
    (a booking's reminders and event deliveries: one round trip instead of one each). `on_id(id)`
    is called with the job's id before the flush writes the rows (a reminder row carries its job's
    id). `only_if` is an SQL condition on the `:org_id` parameter (`kwargs["org_id"]`), evaluated in
    the same statement: the job is queued only when it holds (no job for a subscriber with nothing
    configured for the organisation). Use `defer` for a job that needs a queueing lock.
    """
    if name not in _registry:
        raise KeyError(f"unknown job {name!r}")
    if only_if is not None and (on_id is not None or "org_id" not in kwargs):
        raise ValueError("only_if needs kwargs['org_id'] and cannot report an id")
    target = session.sync_session if isinstance(session, AsyncSession) else session
    target.info.setdefault(_PENDING, []).append(PendingJob(name, kwargs, schedule_at, on_id, only_if))


_TO_DEFER = "procrastinate_job_to_defer_v1"


def _as_record(p: PendingJob) -> dict[str, Any]:
    spec = _registry.get(p.name)
    if spec is None:
        raise KeyError(f"unknown job {p.name!r}")
    return {"queue_name": spec.queue, "task_name": p.name, "priority": 0, "lock": None, "queueing_lock": None,
            "args": p.kwargs, "scheduled_at": p.schedule_at}


def json_text(value: Any) -> str:
    """JSON for a jsonb parameter (orjson; what it cannot encode, as text)."""
    return orjson.dumps(value, default=str).decode()


def jobs_array(pending: Sequence[PendingJob], prefix: str = "") -> tuple[str, dict[str, Any], int]:
    """The SQL array of `procrastinate_job_to_defer_v1` rows for `pending` and its parameters (names
    start with `prefix`): the plain jobs first, in order, so that the ids `procrastinate_defer_jobs_v1`
    returns (ascending, in array order) map onto them; each conditional one only where its `only_if`
    holds. The jobs travel as JSON (one parameter for all plain jobs, one per conditional job), so the
    statement's text and its parameter count do not grow with the number of jobs. Also returns how
    many plain jobs lead the array."""
    plain = [p for p in pending if p.only_if is None]
    conditional = [p for p in pending if p.only_if is not None]
    params: dict[str, Any] = {}
    parts = []
    if plain:
        params[f"jobs{prefix}"] = json_text([_as_record(p) for p in plain])
        elements = f"jsonb_array_elements(CAST(:jobs{prefix} AS jsonb))"
        parts.append(f"ARRAY(SELECT jsonb_populate_record(CAST(NULL AS {_TO_DEFER}), e.value) "  # noqa: S608
                     f"FROM {elements} WITH ORDINALITY AS e(value, n) ORDER BY e.n)")
    for k, p in enumerate(conditional):
        params[f"job{prefix}{k}"] = json_text(_as_record(p))
        params[f"org{prefix}{k}"] = str(p.kwargs["org_id"])
        condition = (p.only_if or "").replace(":org_id", f"CAST(:org{prefix}{k} AS uuid)")
        parts.append(f"ARRAY(SELECT jsonb_populate_record(CAST(NULL AS {_TO_DEFER}), CAST(:job{prefix}{k} AS jsonb)) "
                     f"WHERE {condition})")
    return " || ".join(parts), params, len(plain)


def pending_job(name: str, *, schedule_at: datetime | None = None, only_if: str | None = None,
                **kwargs: Any) -> PendingJob:
    """A job to queue in a statement of the caller's (`prm.core.batch`), checked like `defer_with_flush`."""
    if name not in _registry:
        raise KeyError(f"unknown job {name!r}")
    if only_if is not None and "org_id" not in kwargs:
        raise ValueError("only_if needs kwargs['org_id']")
    return PendingJob(name, kwargs, schedule_at, None, only_if)


def _defer_pending(session: OrmSession) -> None:
    pending: list[PendingJob] = session.info.pop(_PENDING, None) or []
    if not pending:
        return
    array, params, _ = jobs_array(pending)
    queued(session, (p.name for p in pending))
    ids = [int(row[0]) for row in session.connection().execute(text(_DEFER.format(rows=array)), params)]
    plain = [p for p in pending if p.only_if is None]
    for p, job_id in zip(plain, sorted(ids), strict=False):  # ids ascend in array order; plain ones lead
        if p.on_id is not None:
            p.on_id(job_id)


@event.listens_for(OrmSession, "before_flush")
def _defer_before_flush(session: OrmSession, _context: Any, _instances: Any) -> None:
    _defer_pending(session)


@event.listens_for(OrmSession, "before_commit")
def _defer_before_commit(session: OrmSession) -> None:
    _defer_pending(session)  # jobs queued with nothing else left to flush


@event.listens_for(OrmSession, "after_soft_rollback")
def _forget_pending(session: OrmSession, previous_transaction: Any) -> None:
    # The transaction is gone: so are the jobs it queued. (A rolled-back savepoint keeps them: a job
    # whose rows were rolled back finds nothing to do, whereas one dropped could never run.)
    if not previous_transaction.nested:
        session.info.pop(_PENDING, None)


async def flush_deferred(session: AsyncSession) -> None:
    """Write the jobs queued with `defer_with_flush` now (before reading the job table directly)."""
    await session.run_sync(_defer_pending)


async def cancel_pending(session: AsyncSession, job_id: int) -> bool:
    """Cancel a job that has not started; True when it was still waiting."""
    result = await session.execute(
        text("UPDATE procrastinate_jobs SET status = 'cancelled' WHERE id = :id AND status = 'todo' RETURNING id"),
        {"id": job_id},
    )
    return result.scalar_one_or_none() is not None


async def discard(session: AsyncSession, job_id: int) -> None:
    """Delete a job this transaction queued and no longer wants (not committed yet: no worker has
    seen it)."""
    await session.execute(text("DELETE FROM procrastinate_jobs WHERE id = :id AND status = 'todo'"), {"id": job_id})


# --- running -----------------------------------------------------------------------------------

_sessionmaker: async_sessionmaker[AsyncSession] | None = None


def bind(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Give the worker the sessions its jobs run in."""
    global _sessionmaker
    _sessionmaker = sessionmaker


_inside_run_due: contextvars.ContextVar[bool] = contextvars.ContextVar("inside_run_due", default=False)


@contextlib.asynccontextmanager
async def checkpoint(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """A step of a job that must be durable before the job goes on (a delivery attempt recorded
    before calling a provider): committed at the end of the block, and its locks released.

    Under `run_due` (tests, `prm jobs run-due`), where every job runs inside the caller's one
    transaction, it is a savepoint instead: durable only if that transaction commits.
    """
    if _inside_run_due.get():
        async with session.begin_nested():
            yield session
        return
    try:
        yield session
    except BaseException:
        await session.rollback()
        raise
    await session.commit()


async def run_job(name: str, **kwargs: Any) -> Any:
    """Run one registered job now, in its own transaction, as a worker would (operators, tests)."""
    return await _run_in_own_transaction(_registry[name], kwargs)


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


class _IdleCheck:
    """psycopg_pool's `check` and `reset` callbacks: a pooled connection is checked (an empty query)
    before use only when it has sat idle `idle_seconds`, as the API's pool does (`db.ping_when_idle`)."""

    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        self.idle_since: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    async def reset(self, conn: Any) -> None:
        self.idle_since[conn] = time.monotonic()

    async def check(self, conn: Any) -> None:
        since = self.idle_since.pop(conn, None)
        if since is None or time.monotonic() - since >= self.idle_seconds:
            await psycopg_pool.AsyncConnectionPool.check_connection(conn)


def connector(conninfo: str, *, idle_ping_seconds: float = IDLE_PING_SECONDS,
              backend_nice: int = 0) -> procrastinate.PsycopgConnector:
    """procrastinate's connector, two round trips lighter per query: each of its queries (fetch a job,
    finish it, heartbeat) is one call of its SQL functions, so its pooled connections run in
    autocommit (no `BEGIN` and `COMMIT` around it), and a connection is checked before use only
    after sitting idle (procrastinate checks every checkout). A fetch or finish on a connection that
    died while in use fails; the worker's supervisor then starts it again, and a job whose finish was
    lost is recovered as stalled (jobs are idempotent). `backend_nice`: as `db.lower_backend_priority`
    (the worker's own queries run at its priority)."""
    idle = _IdleCheck(idle_ping_seconds)

    async def configure(conn: Any) -> None:
        await conn.set_autocommit(True)
        lower_backend_priority(conn.info, backend_nice)

    def pool(**kwargs: Any) -> psycopg_pool.AsyncConnectionPool:
        kwargs["check"] = idle.check
        return psycopg_pool.AsyncConnectionPool(**kwargs, reset=idle.reset)

    # named as the process's own connections are (`prm.core.db`): `pg_stat_activity` tells them apart.
    # `configure` is procrastinate's too: its listening connection (outside the pool) gets it as well
    return procrastinate.PsycopgConnector(conninfo=conninfo, pool_factory=pool, configure=configure,
                                          kwargs={"application_name": f"prm-jobs:{os.getpid()}"})


def build_app(conninfo: str, *, housekeeping: Housekeeping | None = None, backend_nice: int = 0) -> procrastinate.App:
    """A procrastinate App holding every registered job, connected to `conninfo`.

    With `housekeeping`, the periodic stalled-job recovery and pruning tasks are added (workers);
    without, the App only runs and inspects jobs (tests, operator commands).
    """
    app = procrastinate.App(connector=connector(conninfo, backend_nice=backend_nice))
    for spec in _registry.values():

        # a coroutine function, so procrastinate awaits it on the worker's loop (a plain function
        # returning an awaitable is run through a thread first)
        async def runner(_spec: JobSpec = spec, **kwargs: Any) -> Any:
            return await _run_in_own_transaction(_spec, kwargs)

        runner.__name__ = spec.name.replace(".", "_")
        task: Any = app.task(name=spec.name, queue=spec.queue, retry=spec.retry or False)(runner)
        if spec.periodic_cron:
            app.periodic(cron=spec.periodic_cron, periodic_id=spec.name)(task)
    if housekeeping is not None:
        _add_housekeeping(app, housekeeping)
    return app


# --- housekeeping: stalled jobs and old jobs ---------------------------------------------------

RECOVER_STALLED_JOB = "jobs.recover_stalled"
PRUNE_JOB = "jobs.prune"
FINISHED_STATES = ("succeeded", "failed", "cancelled", "aborted")


@dataclass(frozen=True)
class Housekeeping:
    """How workers look after the job table (from settings)."""

    stalled_after_seconds: float = 30
    recovery_interval_seconds: int = 60
    retention_hours: int = 168
    failed_retention_hours: int = 720
    max_recoveries: int = 8

    @property
    def recovery_cron(self) -> str:
        """A cron for every `recovery_interval_seconds` (seconds as croniter's sixth field)."""
        seconds = self.recovery_interval_seconds
        if seconds < 60:
            return f"* * * * * */{seconds}"
        return f"*/{max(1, min(59, seconds // 60))} * * * *"


async def stalled_jobs(manager: JobManager, *, stalled_after_seconds: float, queue: str | None = None
                       ) -> list[QueuedJob]:
    """Jobs in `doing` whose worker is gone or has sent no heartbeat for `stalled_after_seconds`."""
    return list(await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after_seconds, queue=queue))


async def recover_stalled(manager: JobManager, *, stalled_after_seconds: float, max_recoveries: int = 8,
                          queue: str | None = None) -> list[int]:
    """Put the stalled jobs back in the queue, to run now; returns their ids.

    A job that has already been tried `max_recoveries` times (it may be what kills its worker)
    is marked failed instead, so it shows up in `prm jobs list` rather than looping for ever.
    Every job is safe to run again: the jobs check their own state under a row lock.
    """
    recovered: list[int] = []
    for queued in await stalled_jobs(manager, stalled_after_seconds=stalled_after_seconds, queue=queue):
        assert queued.id is not None
        try:
            if queued.attempts + 1 >= max_recoveries:
                await manager.finish_job(queued, status=Status.FAILED, delete_job=False)
                log.error("jobs.stalled_failed", job_id=queued.id, job_name=queued.task_name,
                          attempts=queued.attempts)
                continue
            await manager.retry_job(queued)
        except procrastinate_errors.ConnectorException:
            # finished or recovered by someone else meanwhile: nothing left to do for this one
            log.info("jobs.stalled_gone", job_id=queued.id)
            continue
        recovered.append(queued.id)
        log.warning("jobs.stalled_recovered", job_id=queued.id, job_name=queued.task_name,
                    attempts=queued.attempts + 1, worker_id=queued.worker_id)
    return recovered


async def retry_stalled(manager: JobManager, job_id: int, *, stalled_after_seconds: float) -> bool:
    """Retry one job now if it is stalled (operators: `prm jobs retry`); False when it is not."""
    for queued in await stalled_jobs(manager, stalled_after_seconds=stalled_after_seconds):
        if queued.id == job_id:
            await manager.retry_job(queued)
            log.warning("jobs.stalled_retried", job_id=job_id, job_name=queued.task_name)
            return True
    return False


async def prune(manager: JobManager, *, retention_hours: int, failed_retention_hours: int) -> None:
    """Delete jobs finished more than `retention_hours` ago (failed ones: `failed_retention_hours`).

    procrastinate remembers the last job each periodic task deferred (`procrastinate_periodic_defers`,
    a foreign key without ON DELETE); that bookkeeping link is cleared for finished jobs first so
    that deleting an old periodic job cannot fail.
    """
    await manager.connector.execute_query_async(
        "UPDATE procrastinate_periodic_defers AS d SET job_id = NULL FROM procrastinate_jobs AS j "
        "WHERE d.job_id = j.id AND j.status = ANY(%(states)s::procrastinate_job_status[])",
        states=list(FINISHED_STATES),
    )
    await manager.delete_old_jobs(nb_hours=retention_hours, include_cancelled=True, include_aborted=True)
    await manager.delete_old_jobs(nb_hours=failed_retention_hours, include_failed=True,
                                  include_cancelled=True, include_aborted=True)
    log.info("jobs.pruned", retention_hours=retention_hours, failed_retention_hours=failed_retention_hours)


def _add_housekeeping(app: procrastinate.App, settings: Housekeeping) -> None:
    @app.periodic(cron=settings.recovery_cron, periodic_id=RECOVER_STALLED_JOB)
    @app.task(name=RECOVER_STALLED_JOB, queueing_lock=RECOVER_STALLED_JOB, pass_context=True)
    async def recover_stalled_task(context: procrastinate.JobContext, timestamp: int) -> int:
        return len(await recover_stalled(context.app.job_manager, stalled_after_seconds=settings.stalled_after_seconds,
                                         max_recoveries=settings.max_recoveries))

    @app.periodic(cron="23 * * * *", periodic_id=PRUNE_JOB)
    @app.task(name=PRUNE_JOB, queueing_lock=PRUNE_JOB, pass_context=True)
    async def prune_task(context: procrastinate.JobContext, timestamp: int) -> None:
        await prune(context.app.job_manager, retention_hours=settings.retention_hours,
                    failed_retention_hours=settings.failed_retention_hours)


@dataclass
class RunReport:
    succeeded: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    swept: dict[str, Any] = field(default_factory=dict)  # each catch-up sweep run, by name: its result

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
    token = _inside_run_due.set(True)
    try:
        await flush_deferred(session)
        return await _run_due(session, names=names, limit=limit)
    finally:
        _inside_run_due.reset(token)


async def _run_due(session: AsyncSession, *, names: Iterable[str] | None, limit: int) -> RunReport:
    report = RunReport()
    # only jobs of the registry: housekeeping tasks belong to real workers (they use procrastinate's
    # own connection, outside this transaction)
    only = list(names) if names is not None else list(_registry)
    for sweep in _registry.values():  # the sweeps of due work first: what they fire is queued below
        if sweep.catch_up and sweep.name in only:
            async with session.begin_nested():
                report.swept[sweep.name] = await sweep.fn(session)
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
