"""procrastinate's connector (`jobs.connector`): each of its queries is one round trip.

* its pooled connections run in autocommit: no `BEGIN` and `COMMIT` around a fetch or a finish;
* a connection is checked (an empty query) before use only after sitting idle, not at every use
  as procrastinate's own pool does;
* one that died while idle is replaced without the query failing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import psycopg_pool
import pytest

from prm.core import jobs
from prm.core.db import Database


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The connections psycopg_pool's check was run on."""
    seen: list[Any] = []
    real = psycopg_pool.AsyncConnectionPool.check_connection

    async def counting(conn: Any) -> None:
        seen.append(conn)
        await real(conn)

    monkeypatch.setattr(psycopg_pool.AsyncConnectionPool, "check_connection", staticmethod(counting))
    return seen


async def _opened(db: Database, idle_ping_seconds: float) -> AsyncIterator[Any]:
    connector = jobs.connector(db.url, idle_ping_seconds=idle_ping_seconds)
    await connector.open_async()
    try:
        yield connector
    finally:
        await connector.close_async()


@pytest.fixture
async def connector(db: Database) -> AsyncIterator[Any]:
    async for opened in _opened(db, idle_ping_seconds=60):
        yield opened


async def _backend(connector: Any) -> dict[str, Any]:
    row: dict[str, Any] = await connector.execute_query_one_async(
        "SELECT pg_backend_pid() AS pid, now() = statement_timestamp() AS own_transaction")
    return row


async def test_its_queries_run_in_autocommit(connector: Any) -> None:
    async with connector.pool.connection() as conn:
        assert conn.autocommit
    # in a transaction opened by a BEGIN of its own, the statement would start after the transaction
    for _ in range(5):
        assert (await _backend(connector))["own_transaction"]


async def test_a_connection_in_use_is_not_checked_before_each_query(checks: list[Any], connector: Any) -> None:
    for _ in range(3 * connector.pool.max_size):
        await _backend(connector)
    # each connection at most once, on its first use: never again while it keeps being used
    assert len(checks) <= connector.pool.max_size
    assert len({id(conn) for conn in checks}) == len(checks)


async def test_an_idle_connection_is_checked(db: Database, checks: list[Any]) -> None:
    async for connector in _opened(db, idle_ping_seconds=0):
        for _ in range(6):
            await _backend(connector)
        assert len(checks) == 6


async def test_a_connection_that_died_while_idle_is_replaced(db: Database) -> None:
    async for connector in _opened(db, idle_ping_seconds=0.2):
        pids = {(await _backend(connector))["pid"] for _ in range(3 * connector.pool.max_size)}
        async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (list(pids),))
        await asyncio.sleep(0.3)
        fresh = await _backend(connector)  # no error: the check found the dead connection first
        assert fresh["pid"] not in pids


async def test_its_connections_are_named(connector: Any) -> None:
    row = await connector.execute_query_one_async("SELECT current_setting('application_name') AS name")
    assert row["name"] == f"prm-jobs:{os.getpid()}"
