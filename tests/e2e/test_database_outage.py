"""PostgreSQL stopped and started under running processes (a test-owned embedded server).

* `prm worker` reconnects with backoff and carries on; one whose give-up time passes exits non-zero.
* `prm serve`: while the database is down, authenticated routes answer 503 problem+json with
  `Retry-After` and `/ready` is 503 (`/health` stays 200); when it is back, the API and the
  in-process worker recover by themselves.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from prm import context
from prm.communications import service as communications
from prm.communications.schemas import CommunicationCreate
from prm.core.auth import Principal
from prm.core.db import Database
from prm.settings import Settings
from tests.e2e.processes import OwnPostgres, free_port, prm_env, start_prm, stop_process, wait_ready, wait_until
from tests.fixtures.factories import make_api_key, make_org, make_patient
from tests.fixtures.messaging import new_phone

pytestmark = pytest.mark.slow
PROBLEM = "application/problem+json"


def _connect(url: str, settings: Settings) -> Database:
    db = Database.connect(url, pool_size=1, max_overflow=0)
    context.bind(db.sessionmaker, context.Context.build(settings))
    return db


async def _clinic(url: str, settings: Settings) -> tuple[str, str, str]:
    """A committed organisation, patient and admin API key on the test-owned database."""
    db = _connect(url, settings)
    try:
        async with db.sessionmaker() as session:
            org = await make_org(session, name="Outage Clinic")
            patient = await make_patient(session, org, phone=new_phone())
            _, key = await make_api_key(session, org)
            await session.commit()
            return str(org.id), str(patient.id), key  # type: ignore[attr-defined]
    finally:
        await db.dispose()


def _scalar(url: str, sql: str, *params: Any) -> Any:
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(sql, params).fetchone()
    except psycopg.OperationalError:
        return None
    return row[0] if row else None


async def _queue_sms(url: str, settings: Settings, org_id: str, patient_id: str) -> str:
    """A message queued as the API queues one (its row and its job in one transaction)."""
    db = _connect(url, settings)
    try:
        async with db.sessionmaker() as session:
            comm = await communications.send(
                session, Principal.system(uuid.UUID(org_id)),
                CommunicationCreate(patient_id=uuid.UUID(patient_id), channel="sms", body="See you soon"))
            await session.commit()
            return str(comm.id)
    finally:
        await db.dispose()


def _sent(url: str, communication_id: str) -> bool:
    return _scalar(url, "SELECT status FROM communications WHERE id = %s", communication_id) == "sent"


async def test_prm_worker_survives_a_database_restart_and_one_that_gives_up_exits_non_zero(
    app: Any, settings: Settings, own_postgres: OwnPostgres,
) -> None:
    url, root = own_postgres.url, own_postgres.root
    org_id, patient_id, _ = await _clinic(url, settings)
    env = prm_env(root, DATABASE_URL=url, WORKER_RECONNECT_MAX_SECONDS="1", WORKER_GIVE_UP_SECONDS="600",
                  JOB_HEARTBEAT_SECONDS="1", WORKER_CONCURRENCY="2")
    survivor_log, quitter_log = root / "survivor.log", root / "quitter.log"
    survivor = start_prm(["worker"], env, survivor_log, root)
    quitter = start_prm(["worker"], {**env, "WORKER_GIVE_UP_SECONDS": "3"}, quitter_log, root)
    logs = [survivor_log, quitter_log]
    try:
        wait_until(lambda: _scalar(url, "SELECT count(*) FROM procrastinate_workers") == 2, timeout=120,
                   what="both workers registered", logs=logs)
        before = await _queue_sms(url, settings, org_id, patient_id)
        wait_until(lambda: _sent(url, before), timeout=60, what="a message sent before the outage", logs=logs)

        own_postgres.stop()
        code = wait_until(lambda: quitter.poll(), timeout=120, what="the quitter to give up", logs=logs)
        assert code != 0
        assert "gave up" in quitter_log.read_text()
        assert survivor.poll() is None, survivor_log.read_text()[-3000:]

        own_postgres.start()
        after = await _queue_sms(url, settings, org_id, patient_id)
        wait_until(lambda: _sent(url, after), timeout=120, what="a message sent after the restart", logs=logs)
        assert survivor.poll() is None
        assert "worker.lost" in survivor_log.read_text()
    finally:
        if quitter.poll() is None:
            quitter.kill()
            quitter.wait(timeout=30)
        code = stop_process(survivor)
    assert code == 0, survivor_log.read_text()[-3000:]  # SIGTERM: a graceful stop


async def test_prm_serve_answers_503_while_the_database_is_down_and_recovers(
    app: Any, settings: Settings, own_postgres: OwnPostgres,
) -> None:
    url, root = own_postgres.url, own_postgres.root
    _, patient_id, key = await _clinic(url, settings)
    port, log = free_port(), root / "serve.log"
    env = prm_env(root, DATABASE_URL=url, WORKER_RECONNECT_MAX_SECONDS="1", WORKER_GIVE_UP_SECONDS="600",
                  DB_POOL_TIMEOUT_SECONDS="2", LOG_LEVEL="WARNING")
    serve = start_prm(["serve", "--port", str(port)], env, log, root)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {key}"}

    def ready() -> httpx.Response | None:
        assert serve.poll() is None, log.read_text()[-3000:]
        try:
            r = httpx.get(f"{base}/ready", timeout=5)
        except httpx.HTTPError:
            return None
        return r if r.status_code == 200 else None

    try:
        assert wait_until(ready, timeout=120, what="the server to be ready", logs=[log]).json()["worker"] == "running"
        async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30) as c:
            assert (await c.get(f"/patients/{patient_id}")).status_code == 200

            own_postgres.stop()
            down = await c.get(f"/patients/{patient_id}")
            assert down.status_code == 503, down.text
            assert down.headers["content-type"] == PROBLEM and int(down.headers["retry-after"]) > 0
            assert down.json()["code"] == "database_unavailable"
            posted = await c.post("/communications", json={"patient_id": patient_id, "channel": "sms", "body": "Hi"})
            assert posted.status_code == 503 and posted.headers["content-type"] == PROBLEM
            assert (await c.get("/ready")).status_code == 503
            assert (await c.get("/health")).status_code == 200

            own_postgres.start()
            wait_until(ready, timeout=120, what="the server and its worker to be ready again", logs=[log])
            assert (await c.get(f"/patients/{patient_id}")).status_code == 200
            created = await c.post("/communications",
                                   json={"patient_id": patient_id, "channel": "sms", "body": "Hello again"})
            assert created.status_code == 201, created.text
        wait_until(lambda: _sent(url, created.json()["id"]), timeout=120,
                   what="the in-process worker to send after the restart", logs=[log])
    finally:
        code = stop_process(serve)
    assert code == 0, log.read_text()[-3000:]


def test_prm_serve_stops_on_sigterm_while_the_database_is_down(own_postgres: OwnPostgres) -> None:
    """SIGTERM with the database gone: the worker's last queries (unregistering) can never get a
    connection; stopping waits `WORKER_SHUTDOWN_SECONDS` and a margin, not for ever."""
    root = own_postgres.root
    port, log = free_port(), root / "serve-down.log"
    env = prm_env(root, DATABASE_URL=own_postgres.url, WORKER_SHUTDOWN_SECONDS="2", LOG_LEVEL="WARNING")
    serve = start_prm(["serve", "--no-migrate", "--port", str(port)], env, log, root)
    base = f"http://127.0.0.1:{port}"

    try:
        wait_ready(serve, base, log, timeout=120)
        own_postgres.stop()
        wait_until(lambda: httpx.get(f"{base}/ready", timeout=5).status_code == 503, timeout=60,
                   what="the server to see the database gone", logs=[log])
        time.sleep(3)  # the worker is now failing to reach it
        started = time.monotonic()
        code = stop_process(serve, timeout=60)
        took = time.monotonic() - started
    finally:
        if serve.poll() is None:
            serve.kill()
        own_postgres.start()  # the fixture stops it again
    assert code == 0, log.read_text()[-3000:]
    assert took < 45, f"stopping took {took:.0f} s"
