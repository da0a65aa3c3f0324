"""The job worker's queries run at its lower CPU priority where the database runs on this host
(`db.lower_backend_priority`): its SQLAlchemy connections' and procrastinate's server processes are
reniced, the API's are not, and nothing is touched when the server is not known to be local."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import text

from prm.core import jobs
from prm.core.db import Database, lower_backend_priority


def _stat(pid: int) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2:].split()


def _nice(pid: int) -> int:
    return int(_stat(pid)[16])


def _server_nice(pid: int) -> int:
    """The nice value the server's processes start with (its postmaster's, the backend's parent)."""
    return _nice(int(_stat(pid)[1]))


async def _backend_nice(db: Database) -> tuple[int, int]:
    async with db.engine.connect() as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return _nice(pid), _server_nice(pid)


async def test_the_worker_database_runs_its_queries_at_its_priority(db: Database) -> None:
    niced = Database.connect(db.url, pool_size=1, max_overflow=0, backend_nice=10)
    try:
        backend, server = await _backend_nice(niced)
        assert backend == max(10, server)
        backend, server = await _backend_nice(db)
        assert backend == server  # any other (the API's) is left alone
    finally:
        await niced.dispose()


async def test_procrastinate_connections_of_the_worker_run_at_its_priority(db: Database) -> None:
    connector = jobs.connector(db.url, backend_nice=10)
    await connector.open_async()
    try:
        row = await connector.execute_query_one_async("SELECT pg_backend_pid() AS pid")
        assert _nice(row["pid"]) == max(10, _server_nice(row["pid"]))
    finally:
        await connector.close_async()


def test_nothing_is_touched_unless_the_server_is_a_local_postgres_process() -> None:
    mine = os.getpriority(os.PRIO_PROCESS, os.getpid())
    # over TCP the pid may be another host's (or a container's): never used
    assert not lower_backend_priority(SimpleNamespace(host="127.0.0.1", backend_pid=os.getpid()), 10)
    # through a Unix socket, a pid that is not a PostgreSQL server process is left alone
    assert not lower_backend_priority(SimpleNamespace(host="/tmp", backend_pid=os.getpid()), 10)
    assert not lower_backend_priority(SimpleNamespace(host="/tmp", backend_pid=2**22 + 1), 10)  # no such process
    assert not lower_backend_priority(SimpleNamespace(host="/tmp", backend_pid=os.getpid()), 0)
    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == mine
