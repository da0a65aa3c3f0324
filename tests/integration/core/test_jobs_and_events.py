"""Jobs and events commit or roll back with the request; delivery is at least once and idempotent."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from sqlalchemy import text

from prm.app import create_app
from prm.core import clock, events, jobs
from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.errors import Conflict
from prm.core.events import Event

CALLS: list[dict[str, Any]] = []
HANDLED: list[str] = []


@jobs.job("tests.record", max_attempts=3)
async def record_job(session, *, marker: str, fail_times: int = 0, org_id: str | None = None) -> None:
    CALLS.append({"marker": marker})
    if sum(1 for c in CALLS if c["marker"] == marker) <= fail_times:
        raise RuntimeError("transient")


@jobs.job("tests.permanent")
async def permanent_job(session, *, org_id: str | None = None) -> None:
    raise jobs.PermanentFailure("invalid number")


@events.subscriber("tests.thing_happened", name="tests.count_things")
async def count_things(session, event: Event) -> None:
    # Idempotent by design: keyed on the event id.
    await session.execute(
        text("CREATE TEMP TABLE IF NOT EXISTS things_seen (event_id uuid PRIMARY KEY)"))
    await session.execute(
        text("INSERT INTO things_seen VALUES (:id) ON CONFLICT DO NOTHING"), {"id": event.id})
    HANDLED.append(str(event.id))


probe_router = APIRouter()


@probe_router.post("/_test/defer")
async def defer_then_maybe_fail(session: Session, fail: bool = False,
                                who: Principal = Requires()) -> dict[str, str]:
    marker = uuid.uuid4().hex
    await jobs.defer(session, "tests.record", org_id=str(who.org_id), marker=marker)
    await events.publish(session, Event(type="tests.thing_happened", org_id=who.org_id, payload={"m": marker}))
    if fail:
        raise Conflict("refused after deferring", code="test_refused", marker=marker)
    return {"marker": marker}


@pytest.fixture(scope="module")
async def job_app(settings, db):
    app = create_app(settings, database=db)
    app.include_router(probe_router)
    return app


async def _count(db, sql: str, **params: Any) -> int:
    async with db.sessionmaker() as s:
        return int((await s.execute(text(sql), params)).scalar_one())


async def test_job_deferred_in_request_commits_with_it(job_app, db, committed) -> None:
    _org, key = await committed.org()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=job_app), base_url="https://t",
                                 headers={"Authorization": f"Bearer {key}"}) as c:
        r = await c.post("/_test/defer")
    assert r.status_code == 200
    marker = r.json()["marker"]
    assert await _count(db, "SELECT count(*) FROM procrastinate_jobs WHERE args->>'marker' = :m", m=marker) == 1
    assert await _count(db, "SELECT count(*) FROM domain_events WHERE payload->>'m' = :m", m=marker) == 1


async def test_failed_request_leaves_no_job_event_or_row(job_app, db, committed) -> None:
    _org, key = await committed.org()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=job_app), base_url="https://t",
                                 headers={"Authorization": f"Bearer {key}"}) as c:
        r = await c.post("/_test/defer", params={"fail": "true"})
    assert r.status_code == 409
    marker = r.json()["marker"]
    assert await _count(db, "SELECT count(*) FROM procrastinate_jobs WHERE args->>'marker' = :m", m=marker) == 0
    assert await _count(db, "SELECT count(*) FROM domain_events WHERE payload->>'m' = :m", m=marker) == 0
    assert await _count(db, "SELECT count(*) FROM procrastinate_jobs j JOIN domain_events e "
                            "ON j.args->>'event_id' = e.id::text WHERE e.payload->>'m' = :m", m=marker) == 0


async def test_real_worker_runs_committed_jobs_and_delivers_events(db, committed) -> None:
    org, _ = await committed.org()
    marker = uuid.uuid4().hex
    async with committed.session() as s:
        await jobs.defer(s, "tests.record", org_id=str(org.id), marker=marker)
        event = await events.publish(s, Event(type="tests.thing_happened", org_id=org.id, payload={}))
        await s.commit()
    await committed.run_worker()
    assert any(c["marker"] == marker for c in CALLS)
    assert str(event.id) in HANDLED
    assert await _count(db, "SELECT count(*) FROM event_deliveries WHERE event_id = :id AND subscriber = :name",
                        id=event.id, name="tests.count_things") == 1


async def test_retry_with_backoff_then_success(session, org) -> None:
    marker = uuid.uuid4().hex
    job_id = await jobs.defer(session, "tests.record", org_id=str(org.id), marker=marker, fail_times=1)
    first = await jobs.run_due(session)
    assert job_id in first.retried
    # Not due again until the backoff has passed.
    assert job_id not in (await jobs.run_due(session)).succeeded
    with clock.frozen(clock.now() + timedelta(minutes=5)):
        second = await jobs.run_due(session)
    assert job_id in second.succeeded


async def test_retries_stop_at_max_attempts_and_failed_jobs_are_listed_and_retried(session, org, client) -> None:
    marker = uuid.uuid4().hex
    job_id = await jobs.defer(session, "tests.record", org_id=str(org.id), marker=marker, fail_times=99)
    with clock.frozen(clock.now()) as c:
        for _ in range(5):
            await jobs.run_due(session)
            c.advance(timedelta(hours=2))
    state = (await session.execute(text("SELECT status::text, attempts FROM procrastinate_jobs WHERE id = :i"),
                                   {"i": job_id})).one()
    assert state == ("failed", 3)
    listed = (await client.get("/admin/jobs", params={"status": "failed"})).json()
    assert job_id in [j["id"] for j in listed["items"]]
    r = await client.post(f"/admin/jobs/{job_id}/retry")
    assert r.status_code == 200 and r.json()["status"] == "todo"
    assert (await client.post(f"/admin/jobs/{job_id}/retry")).status_code == 409


async def test_permanent_failure_is_not_retried(session, org) -> None:
    job_id = await jobs.defer(session, "tests.permanent", org_id=str(org.id))
    report = await jobs.run_due(session)
    assert job_id in report.failed


async def test_other_orgs_jobs_are_invisible(session, org, other_org, client) -> None:
    job_id = await jobs.defer(session, "tests.permanent", org_id=str(other_org.id))
    await jobs.run_due(session)
    listed = (await client.get("/admin/jobs")).json()
    assert job_id not in [j["id"] for j in listed["items"]]
    assert (await client.post(f"/admin/jobs/{job_id}/retry")).status_code == 404


async def test_event_delivered_twice_is_handled_once(session, org) -> None:
    event = await events.publish(session, Event(type="tests.thing_happened", org_id=org.id, payload={}))
    await jobs.run_due(session)
    # A second delivery of the same event (at-least-once): the framework skips it ...
    assert await events.deliver(session, event_id=str(event.id), subscriber="tests.count_things") is False
    # ... and the handler itself is idempotent when called again directly.
    await count_things(session, event)
    seen = (await session.execute(text("SELECT count(*) FROM things_seen WHERE event_id = :id"),
                                  {"id": event.id})).scalar_one()
    assert seen == 1


async def test_an_event_and_its_deliveries_are_written_in_one_statement(session, org) -> None:
    from sqlalchemy import event as sa_event

    await session.flush()
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    engine = session.bind.sync_engine
    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        published = await events.publish(session, Event(type="tests.thing_happened", org_id=org.id, payload={"n": 1}))
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)
    assert len(sent) == 1, sent
    stored = (await session.execute(text("SELECT type, payload FROM domain_events WHERE id = :id"),
                                    {"id": published.id})).one()
    assert (stored.type, stored.payload) == ("tests.thing_happened", {"n": 1})
    queued = (await session.execute(text(
        "SELECT args->>'subscriber' FROM procrastinate_jobs WHERE task_name = 'events.deliver' "
        "AND args->>'event_id' = :id"), {"id": str(published.id)})).scalars().all()
    assert "tests.count_things" in queued


async def test_queueing_lock_defers_once(session, org) -> None:
    first = await jobs.defer(session, "tests.record", org_id=str(org.id), marker="q", queueing_lock="q1")
    second = await jobs.defer(session, "tests.record", org_id=str(org.id), marker="q", queueing_lock="q1")
    assert first is not None and second is None
    assert await jobs.cancel_pending(session, first)


GATE: dict[str, Any] = {}
GATED: list[str] = []


@events.subscriber("tests.gated", name="tests.gated_handler")
async def gated_handler(session, event: Event) -> None:
    GATED.append(str(event.id))
    GATE["started"].set()
    await GATE["open"].wait()
    if event.payload.get("fail") and GATED.count(str(event.id)) == 1:
        raise RuntimeError("the first delivery fails")


async def _publish_committed(committed, org_id: uuid.UUID, event_type: str, payload: dict[str, Any]) -> Event:
    async with committed.session() as s:
        event = await events.publish(s, Event(type=event_type, org_id=org_id, payload=payload))
        await s.commit()
    return event


async def test_two_concurrent_deliveries_of_one_event_run_the_handler_once(db, committed) -> None:
    org, _ = await committed.org()
    event = await _publish_committed(committed, org.id, "tests.gated", {})
    GATE.update(started=asyncio.Event(), open=asyncio.Event())
    first = asyncio.create_task(jobs.run_job("events.deliver", event_id=str(event.id),
                                             subscriber="tests.gated_handler", org_id=str(org.id)))
    await asyncio.wait_for(GATE["started"].wait(), 10)
    # the duplicate (another worker, its own committed transaction) starts while the first is in its handler
    second = asyncio.create_task(jobs.run_job("events.deliver", event_id=str(event.id),
                                              subscriber="tests.gated_handler", org_id=str(org.id)))
    await asyncio.sleep(0.3)
    assert not second.done()  # waiting on the first one's claim
    GATE["open"].set()
    assert await asyncio.wait_for(asyncio.gather(first, second), 10) == [True, False]
    assert GATED.count(str(event.id)) == 1
    assert await _count(db, "SELECT count(*) FROM event_deliveries WHERE event_id = :id", id=event.id) == 1


async def test_a_failed_delivery_leaves_no_claim_and_its_retry_runs_the_handler(db, committed) -> None:
    org, _ = await committed.org()
    event = await _publish_committed(committed, org.id, "tests.gated", {"fail": True})
    GATE.update(started=asyncio.Event(), open=asyncio.Event())
    GATE["open"].set()
    with pytest.raises(RuntimeError):
        await jobs.run_job("events.deliver", event_id=str(event.id), subscriber="tests.gated_handler")
    assert await _count(db, "SELECT count(*) FROM event_deliveries WHERE event_id = :id", id=event.id) == 0
    assert await jobs.run_job("events.deliver", event_id=str(event.id), subscriber="tests.gated_handler") is True
    assert await jobs.run_job("events.deliver", event_id=str(event.id), subscriber="tests.gated_handler") is False
    assert GATED.count(str(event.id)) == 2


async def test_delivery_to_an_unknown_subscriber_or_of_a_missing_event_does_nothing(session, org) -> None:
    event = await events.publish(session, Event(type="tests.thing_happened", org_id=org.id, payload={}))
    # registered, but for another event type; and not registered at all
    assert await events.deliver(session, event_id=str(event.id), subscriber="tests.gated_handler") is False
    assert await events.deliver(session, event_id=str(event.id), subscriber="tests.nobody") is False
    assert await events.deliver(session, event_id=str(uuid.uuid4()), subscriber="tests.count_things") is False
    claims = (await session.execute(text("SELECT count(*) FROM event_deliveries WHERE event_id = :id"),
                                    {"id": event.id})).scalar_one()
    assert claims == 0
    # the real subscriber still gets it once
    assert await events.deliver(session, event_id=str(event.id), subscriber="tests.count_things") is True
    assert await events.deliver(session, event_id=str(event.id), subscriber="tests.count_things") is False
