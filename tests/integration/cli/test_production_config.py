"""`prm check-config` and `prm serve` under ENVIRONMENT=production (issue 9): unsafe settings are one
clear line each and stop the service; production never seeds the demo clinic or prints a key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from typer.testing import CliRunner

from prm.cli import cli
from prm.settings import get_settings
from tests.conftest import migrate

SAFE_SECRET = "production-secret-key-0123456789-abcdefghij"


@pytest.fixture
def production_env(monkeypatch: pytest.MonkeyPatch, database_url: str, settings: Any, db: Any) -> Iterator[None]:
    """ENVIRONMENT=production for the CLI; what `prm serve` sets process-wide is put back afterwards."""
    from prm.core import jobs
    from prm.core import logging as prm_logging

    for name in ("SECRET_KEY", "DATABASE_URL", "CORS_ORIGINS", "TRUSTED_PROXIES", "DB_ECHO", "API_DOCS", "REDIS_URL",
                 "ALLOW_EMBEDDED_DATABASE", "SEED_DEMO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("PRM_DATA_DIR", str(settings.prm_data_dir))
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://prm.example.org")
    monkeypatch.setenv("LOG_LEVEL", "INFO")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
    jobs.bind(db.sessionmaker)
    prm_logging.configure(settings.log_level, json=settings.log_json)


def invoke(*args: str) -> Any:
    get_settings.cache_clear()
    return CliRunner().invoke(cli, list(args))


def test_check_config_prints_one_line_per_problem_and_fails(production_env: None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", "secret")
    monkeypatch.setenv("CORS_ORIGINS", "*")
    monkeypatch.setenv("TRUSTED_PROXIES", "0.0.0.0/0")
    r = invoke("check-config")
    assert r.exit_code == 1, r.output
    problems = [line for line in r.output.splitlines() if line.startswith("problem: ")]
    assert [p.split()[1].split("=")[0] for p in problems] == ["SECRET_KEY", "DATABASE_URL", "CORS_ORIGINS",
                                                               "TRUSTED_PROXIES"]
    assert "signing_key=set (6 bytes)" in r.output


def test_check_config_passes_a_safe_production_configuration(production_env: None, database_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", SAFE_SECRET)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8")
    r = invoke("check-config")
    assert r.exit_code == 0, r.output
    assert "configuration ok for production" in r.output and SAFE_SECRET not in r.output


def test_serve_refuses_to_start_with_unsafe_production_settings(production_env: None,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    monkeypatch.setenv("SECRET_KEY", "x" * 31)
    r = invoke("serve", "--no-migrate", "--no-worker")
    assert r.exit_code == 1 and served == []
    assert "SECRET_KEY is 31 bytes" in r.output and "refusing to start" in r.output


@pytest.fixture
def fresh_database(database_url: str) -> Iterator[str]:
    """An empty, migrated database on the test server (no demo clinic in it)."""
    name = f"prod_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(database_url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    migrate(url)
    yield url
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_production_serve_never_seeds_the_demo_or_prints_a_key(production_env: None, fresh_database: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from prm import cli as cli_module

    served: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(kw))  # one API process
    monkeypatch.setattr(cli_module, "serve_processes", lambda app, n, **kw: served.append(kw))  # several
    monkeypatch.setenv("SECRET_KEY", SAFE_SECRET)
    monkeypatch.setenv("DATABASE_URL", fresh_database)
    monkeypatch.setenv("SEED_DEMO", "true")
    r = await asyncio.to_thread(invoke, "serve", "--no-migrate", "--no-worker")
    assert r.exit_code == 0, r.output
    assert served and served[0]["proxy_headers"] is False and "forwarded_allow_ips" not in served[0]
    assert "API key" not in r.output and "prm_" not in r.output and "Demo clinic" not in r.output
    assert "startup.config" in r.output and SAFE_SECRET not in r.output
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT count(*) FROM organisations").fetchone() == (0,)
    explicit = await asyncio.to_thread(invoke, "serve", "--no-migrate", "--no-worker", "--demo")
    assert explicit.exit_code == 1 and "refusing to seed demo data in production" in explicit.output
