"""The API's default connection pool keeps every connection it opens.

SQLAlchemy closes an "overflow" connection when it is returned to a full pool: with the old defaults
(10 + 10 overflow) a burst of more than 10 concurrent requests in a process opened a new PostgreSQL
connection per request beyond the tenth, and `benchmarks/throughput.py` at 32 clients on 2 processes
served 301 bookings/s (p95 196 ms) instead of 515/s (p95 98 ms). The defaults now give the pool
every connection it may hold (20 + 0): as many at most, none closed after a burst.
"""

from __future__ import annotations

from sqlalchemy import text

from prm.core.db import Database
from prm.settings import Settings

BURST = 15  # more than the old pool, less than the new one's


async def _burst(db: Database) -> set[int]:
    """The server processes of `BURST` connections held at once, all returned afterwards."""
    held = [await db.engine.connect() for _ in range(BURST)]
    try:
        return {(await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() for conn in held}
    finally:
        for conn in held:
            await conn.close()


async def test_a_burst_leaves_its_connections_open_for_the_next(db: Database) -> None:
    size, overflow = Settings.model_fields["db_pool_size"].default, Settings.model_fields["db_max_overflow"].default
    assert size + overflow >= 20  # at most as many connections per process as before (10 + 10)
    pooled = Database.connect(db.url, pool_size=size, max_overflow=overflow)
    try:
        first = await _burst(pooled)
        assert len(first) == BURST
        assert await _burst(pooled) == first  # the same connections: none closed, none opened
    finally:
        await pooled.dispose()
