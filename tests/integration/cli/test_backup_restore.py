"""`prm backup` / `prm restore` against a real server, with the server's own client programs: the data
read back from the restored database is the data that was dumped."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from typer.testing import CliRunner

from prm.backup import program_major
from prm.cli import cli
from prm.core import embedded
from prm.settings import get_settings


@pytest.fixture
def cli_env(monkeypatch, database_url: str, settings):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PRM_DATA_DIR", str(settings.prm_data_dir))
    monkeypatch.setenv("ENVIRONMENT", "test")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def invoke(*args: str):
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture
def scratch_database(database_url: str):
    """An empty database on the test server (dropped afterwards)."""
    name = f"restore_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(database_url, name)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _leftovers(directory: Path) -> list[Path]:
    return list(directory.glob("*.partial"))


def test_the_embedded_server_ships_its_own_clients() -> None:
    for name in ("pg_dump", "pg_restore"):
        program = embedded.client_program(name)
        assert program.exists(), program
        assert program_major(program) == 18


async def test_backup_and_restore_with_database_url(cli_env, committed, scratch_database, monkeypatch,
                                                    tmp_path: Path) -> None:
    org, _ = await committed.org()
    dump = tmp_path / "prm.dump"
    r = await invoke("backup", "--output", str(dump))
    assert r.exit_code == 0, r.output
    assert dump.stat().st_size > 0 and f"backup written to {dump}" in r.output
    assert _leftovers(tmp_path) == []

    monkeypatch.setenv("DATABASE_URL", scratch_database)
    get_settings.cache_clear()
    r = await invoke("restore", str(dump))
    assert r.exit_code == 0, r.output
    with psycopg.connect(scratch_database) as conn:
        row = conn.execute("SELECT slug, name FROM organisations WHERE id = %s", (org.id,)).fetchone()
        head = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert row == (org.slug, org.name)
    assert head is not None

    # a database with data is never overwritten by accident ...
    r = await invoke("restore", str(dump))
    assert r.exit_code == 1 and "not empty" in r.output and "--clean" in r.output
    # ... but can be replaced on purpose
    with psycopg.connect(scratch_database, autocommit=True) as conn:
        conn.execute("UPDATE organisations SET name = 'changed after the backup' WHERE id = %s", (org.id,))
    r = await invoke("restore", "--clean", str(dump))
    assert r.exit_code == 0, r.output
    with psycopg.connect(scratch_database) as conn:
        assert conn.execute("SELECT name FROM organisations WHERE id = %s", (org.id,)).fetchone() == (org.name,)


async def test_backup_and_restore_report_problems_in_one_line(cli_env, tmp_path: Path, monkeypatch) -> None:
    r = await invoke("restore", str(tmp_path / "missing.dump"))
    assert r.exit_code == 1 and "no such file" in r.output and "Traceback" not in r.output
    junk = tmp_path / "junk.dump"
    junk.write_text("not a dump")
    r = await invoke("restore", str(junk))
    assert r.exit_code == 1 and "junk.dump" in r.output and "Traceback" not in r.output
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
    get_settings.cache_clear()
    r = await invoke("backup", "--output", str(tmp_path / "x.dump"))
    assert r.exit_code == 1 and "cannot connect to the database" in r.output
    assert len(r.output.strip().splitlines()) == 1
