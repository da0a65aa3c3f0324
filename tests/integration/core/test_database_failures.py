"""Database failures as the API and the workers meet them.

* An unreachable database, or no pool connection free in time, is 503 problem+json with
  `Retry-After` (never 500), and fast: the pool waits `DB_POOL_TIMEOUT_SECONDS`, not 30 s.
* An error response (500 or 503) leaves the keep-alive connection usable: checked with a real
  uvicorn server and one httpx client whose requests all travel on the same connection.
* A worker that cannot reach its database gives up after its give-up time, and `/ready` says so.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, Request

from prm.app import create_app
from prm.core.db import Database
from prm.settings import Settings
from prm.worker import InProcessWorker, WorkerGaveUp, WorkerOptions, supervise
from tests.fixtures.factories import make_api_key, make_org

PROBLEM = "application/problem+json"
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


async def test_unreachable_database_is_503_with_retry_after(settings: Settings) -> None:
    bad = Database.connect(UNREACHABLE, connect_timeout=2)
    app = create_app(settings, database=bad)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t",
                                     headers={"Authorization": "Bearer prm_abcdefgh_" + "x" * 32}) as c:
            for r in (await c.get("/patients"),
                      await c.post("/patients", json={"given_name": "A", "family_name": "B"}),
                      # the idempotency middleware reaches the database before any route does
                      await c.post("/patients", json={}, headers={"Idempotency-Key": "k-1"})):
                assert r.status_code == 503, r.text
                assert r.headers["content-type"] == PROBLEM
                assert int(r.headers["retry-after"]) > 0
                assert r.json()["code"] == "database_unavailable"
            assert (await c.get("/health")).status_code == 200
    finally:
        await bad.dispose()


async def test_no_pool_connection_in_time_is_503(settings: Settings, db: Database) -> None:
    async with db.sessionmaker() as s:
        org = await make_org(s)
        _, key = await make_api_key(s, org)
        await s.commit()
    small = Database.connect(settings.database_url or "", pool_size=1, max_overflow=0, pool_timeout=0.5)
    app = create_app(settings, database=small)
    try:
        async with small.engine.connect() as held:  # the only connection of the pool is taken
            await held.exec_driver_sql("SELECT 1")
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t",
                                         headers={"Authorization": f"Bearer {key}"}) as c:
                r = await c.get("/patients")
        assert r.status_code == 503, r.text
        assert r.headers["content-type"] == PROBLEM and int(r.headers["retry-after"]) > 0
        assert r.json()["code"] == "database_unavailable"
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t",
                                     headers={"Authorization": f"Bearer {key}"}) as c:
            assert (await c.get("/patients")).status_code == 200  # the connection is back: so is the API
    finally:
        await small.dispose()


# --- keep-alive after an error, on a real server ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(settings: Settings) -> Iterator[str]:
    """A real uvicorn server (own thread, own event loop) on an app whose database is unreachable."""
    app = create_app(settings, database=Database.connect(UNREACHABLE, connect_timeout=2))
    extra = APIRouter()

    @extra.get("/_test/boom")
    async def boom() -> None:
        raise RuntimeError("an unexpected failure")

    @extra.get("/_test/peer")
    async def peer(request: Request) -> dict[str, Any]:
        assert request.client is not None
        return {"port": request.client.port}

    app.include_router(extra)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started, "the server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_error_responses_keep_the_connection_usable(live_server: str) -> None:
    with httpx.Client(base_url=live_server, timeout=30,
                      headers={"Authorization": "Bearer prm_abcdefgh_" + "x" * 32}) as c:
        first = c.get("/_test/peer").json()["port"]
        crashed = c.get("/_test/boom")
        assert crashed.status_code == 500 and crashed.headers["content-type"] == PROBLEM
        assert crashed.json()["code"] == "internal_error" and "unexpected failure" not in crashed.text
        assert c.get("/_test/peer").json()["port"] == first  # same connection: it was not dropped
        unavailable = c.get("/patients")
        assert unavailable.status_code == 503 and unavailable.json()["code"] == "database_unavailable"
        assert c.get("/_test/peer").json()["port"] == first


# --- workers -----------------------------------------------------------------------------------------


async def test_supervised_worker_gives_up_after_its_give_up_time() -> None:
    states: list[str] = []
    options = WorkerOptions(reconnect_max_seconds=0.2, give_up_seconds=1, housekeeping=None)
    with pytest.raises(WorkerGaveUp, match="gave up"):
        await asyncio.wait_for(supervise(UNREACHABLE, options, lambda state, _: states.append(state)), 60)
    assert states[-1] == "failed" and "reconnecting" in states


async def test_ready_reports_an_in_process_worker_that_is_not_running(settings: Settings, db: Database) -> None:
    app = create_app(settings, database=db)
    worker = InProcessWorker(UNREACHABLE, options=WorkerOptions(reconnect_max_seconds=0.2, give_up_seconds=1))
    await worker.start()
    try:
        for _ in range(600):
            if worker.state == "failed":
                break
            await asyncio.sleep(0.1)
        app.state.worker = worker
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t") as c:
            r = await c.get("/ready")
        assert r.status_code == 503 and r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == "worker_not_running" and "gave up" in r.json()["detail"]
        assert "retry-after" in r.headers
    finally:
        await worker.stop()
