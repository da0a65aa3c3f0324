"""Test harness: one embedded PostgreSQL per run (per xdist worker), migrated once; each test in a
transaction that is rolled back; httpx clients over the ASGI app.

Fixtures you will use most:
* `session`            — an AsyncSession inside the test's transaction (rolled back at the end)
* `org`, `other_org`   — two organisations in that transaction
* `client`             — an httpx client for `org` with an admin API key
* `make_client(role=, for_org=, platform_admin=)` — a client with an API key of that role (and org;
                         `platform_admin=True`: a platform key, the only kind that creates organisations)
* `anon_client`        — no credentials
* `committed`          — for concurrency tests: real committed transactions (see Committed)
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.config import Config
from fastapi import Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from prm import context
from prm.app import create_app, migrations_dir
from prm.core import embedded, jobs
from prm.core.db import Database, get_session
from prm.identity.models import Organisation
from prm.settings import Settings
from tests.fixtures import settings_switch
from tests.fixtures.factories import make_api_key, make_org

TEST_SECRET = "test-secret-key-not-used-anywhere-else-0123456789"


def _database_url(tmp_root: Path) -> str:
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        return explicit
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return embedded.start(tmp_root / f"pg-{worker}", throwaway=True)


def migrate(url: str, revision: str = "head") -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url
    command.upgrade(config, revision)


@pytest.fixture(scope="session")
def database_url() -> str:
    root = Path(tempfile.mkdtemp(prefix="prm-test-"))
    url = _database_url(root)
    migrate(url)
    return url


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        database_url=database_url,
        prm_data_dir=tmp_path_factory.mktemp("data"),
        secret_key=TEST_SECRET,  # type: ignore[arg-type]
        run_worker=False,
        log_level="WARNING",
        redis_url=None,
        public_base_url="https://prm.test",
        outbound_allow_private_targets=True,  # the integrations tests talk to peers on 127.0.0.1
        seed_demo=False,
    )


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database.connect(settings.database_url or "", pool_size=5, max_overflow=20)
    context.bind(database.sessionmaker, context.Context.build(settings))  # `create_app` binds its own
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
async def app(settings: Settings, db: Database) -> Any:
    application = create_app(settings, database=db)
    application.state.test_sessions = []
    settings_switch.register(application)
    return application


@pytest.fixture
async def connection(db: Database) -> AsyncIterator[AsyncConnection]:
    async with db.engine.connect() as conn:
        trans = await conn.begin()
        try:
            yield conn
        finally:
            if trans.is_active:
                await trans.rollback()


def _session_on(conn: AsyncConnection, app: Any) -> AsyncSession:
    """A session in the test's transaction, carrying the app's current context (settings, adapters)."""
    s = AsyncSession(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
    return context.attach(s, app.state.context)


@pytest.fixture
async def session(connection: AsyncConnection, app: Any) -> AsyncIterator[AsyncSession]:
    """The test's session; API requests made through `client` run in the same transaction."""
    s = _session_on(connection, app)
    app.state.test_sessions.append(s)  # `use_settings` re-attaches the context it switches to

    async def override(request: Request) -> AsyncIterator[AsyncSession]:
        request_session = _session_on(connection, app)
        request.state.session = request_session
        try:
            yield request_session
        except BaseException:
            await request_session.rollback()
            raise
        else:
            await request_session.commit()
        finally:
            await request_session.close()

    app.dependency_overrides[get_session] = override
    await app.state.rate_limiter.reset()
    jobs.bind(lambda: _session_on(connection, app))  # type: ignore[arg-type,return-value]
    try:
        yield s
    finally:
        app.dependency_overrides.pop(get_session, None)
        app.state.test_sessions.remove(s)
        jobs.bind(app.state.db.sessionmaker)
        await s.close()


@pytest.fixture
async def org(session: AsyncSession) -> Organisation:
    return await make_org(session, name="Test Clinic")


@pytest.fixture
async def other_org(session: AsyncSession) -> Organisation:
    return await make_org(session, name="Other Clinic")


ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_client(app: Any, session: AsyncSession, org: Organisation) -> AsyncIterator[ClientFactory]:
    clients: list[httpx.AsyncClient] = []

    async def factory(role: str = "admin", *, for_org: Organisation | None = None,
                      headers: dict[str, str] | None = None, platform_admin: bool = False) -> httpx.AsyncClient:
        auth: dict[str, str] = {}
        if role != "anonymous":
            _, key = await make_api_key(session, for_org or org, role=role, platform_admin=platform_admin)
            auth = {"Authorization": f"Bearer {key}"}
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://prm.test",
                              headers={**auth, **(headers or {})})
        clients.append(c)
        return c

    yield factory
    for c in clients:
        await c.aclose()


@pytest.fixture
async def client(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client("admin")


@pytest.fixture
async def anon_client(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client("anonymous")


class Committed:
    """Real, committed transactions for tests about concurrency and transaction boundaries.

    Data written here stays in the (throwaway) test database; use a fresh organisation
    (`await committed.org()`) so nothing leaks into other tests.
    """

    def __init__(self, app: Any, db: Database) -> None:
        self.app = app
        self.db = db
        self._clients: list[httpx.AsyncClient] = []

    def session(self) -> AsyncSession:
        return self.db.sessionmaker()

    async def org(self, role: str = "admin") -> tuple[Organisation, str]:
        """A committed organisation and an API key of `role` for it."""
        async with self.session() as s:
            organisation = await make_org(s)
            _, key = await make_api_key(s, organisation, role=role)
            await s.commit()
        return organisation, key

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="https://prm.test",
                              headers=headers, **kwargs)
        self._clients.append(c)
        return c

    async def cancel_queued_jobs(self, org_id: uuid.UUID) -> None:
        """Cancel this organisation's queued jobs (event deliveries, reminders, sends), so that they do
        not run in later tests (a worker, a moved clock)."""
        async with self.session() as s:
            for job_id in list(await s.scalars(text(
                    "SELECT id FROM procrastinate_jobs WHERE status = 'todo' AND args->>'org_id' = :org"),
                    {"org": str(org_id)})):
                await jobs.cancel_pending(s, job_id)
            await s.commit()

    async def run_worker(self) -> None:
        """Drain the job queue with a real procrastinate worker, then return."""
        from prm import worker

        jobs.bind(self.db.sessionmaker)
        await worker.run(self.db.url, concurrency=2, wait=False)

    async def close(self) -> None:
        for c in self._clients:
            await c.aclose()


@pytest.fixture
async def committed(app: Any, db: Database) -> AsyncIterator[Committed]:
    app.dependency_overrides.pop(get_session, None)
    jobs.bind(db.sessionmaker)
    await app.state.rate_limiter.reset()
    helper = Committed(app, db)
    try:
        yield helper
    finally:
        await helper.close()


@pytest.fixture
def redis_url() -> str:
    """A reachable Redis (REDIS_URL or the local 127.0.0.1:6379), or a clearly reported skip."""
    import redis

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"Redis not reachable at {url} ({type(exc).__name__}); set REDIS_URL or start redis-server")
    return url


def unique(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"

