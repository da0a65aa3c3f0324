"""Pooled connections are pinged only after being idle (issue 19: no round trip per checkout), and a
dead one is still never handed to a request that could have been given a live one."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from prm.core.db import Database


async def _backend_pid(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


def _terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))


async def test_an_idle_dead_connection_is_replaced_before_use(database_url: str) -> None:
    db = Database.connect(database_url, pool_size=1, max_overflow=0, idle_ping_seconds=0)  # any idle time
    try:
        first = await _backend_pid(db)
        _terminate(database_url, first)  # as a database restart would
        assert await _backend_pid(db) != first  # pinged, found dead, replaced: the caller saw nothing
    finally:
        await db.dispose()


async def test_a_busy_connection_is_not_pinged_and_a_dead_one_fails_once(database_url: str) -> None:
    db = Database.connect(database_url, pool_size=1, max_overflow=0)
    try:
        first = await _backend_pid(db)
        _terminate(database_url, first)
        with pytest.raises(DBAPIError) as failed:  # used a moment ago: no ping, so this one use fails...
            await _backend_pid(db)
        assert failed.value.connection_invalidated
        assert await _backend_pid(db) != first  # ...and the pool has replaced it for the next
    finally:
        await db.dispose()
