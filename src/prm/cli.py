"""`prm` command line: serve, worker, migrate, demo, and operator commands for orgs, users, keys, jobs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession
from typer.core import TyperGroup

from prm.settings import Settings, get_settings

T = TypeVar("T")


def describe_error(exc: BaseException) -> str:
    """One line for an operator: what went wrong, naming the field for bad input; no traceback."""
    from pydantic import ValidationError

    from prm.core.errors import DomainError

    if isinstance(exc, DomainError):
        return f"{exc.title}: {exc.detail}"
    if isinstance(exc, ValidationError):
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
        return f"invalid input: {fields}"
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    if isinstance(exc, DBAPIError) and exc.orig is not None:
        first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        return f"database error: {first}"
    if isinstance(exc, SQLAlchemyError | OSError):
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}".rstrip(": ")
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class _OneLineErrors(TyperGroup):
    """Every error of every command is one clear line on stderr and exit status 1 (never a traceback).

    Set PRM_CLI_TRACEBACK=1 to see the traceback when debugging the CLI itself.
    """

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except Exception as exc:
            import os

            # usage errors and exits of the CLI framework (typer vendors click) keep their own handling
            if type(exc).__module__.split(".")[0] in ("typer", "click") or os.environ.get("PRM_CLI_TRACEBACK") == "1":
                raise
            typer.secho(f"error: {describe_error(exc)}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None


cli = typer.Typer(help="PRM: Patient Relationship Management backend.", no_args_is_help=True,
                  pretty_exceptions_enable=False, cls=_OneLineErrors)
orgs_cli = typer.Typer(help="Organisations.", no_args_is_help=True)
users_cli = typer.Typer(help="Staff users.", no_args_is_help=True)
keys_cli = typer.Typer(help="API keys for integrations.", no_args_is_help=True)
jobs_cli = typer.Typer(help="Background jobs.", no_args_is_help=True)
simulate_cli = typer.Typer(help="Play a patient against the running service (development).", no_args_is_help=True)
cli.add_typer(orgs_cli, name="orgs")
cli.add_typer(users_cli, name="users")
cli.add_typer(keys_cli, name="api-keys")
cli.add_typer(jobs_cli, name="jobs")
cli.add_typer(simulate_cli, name="simulate")


def _database_url(settings: Settings) -> str:
    from prm.core.db import resolve_database_url

    return resolve_database_url(settings)


def migrate_database(settings: Settings, revision: str = "head") -> None:
    from alembic import command
    from alembic.config import Config

    from prm.app import migrations_dir

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = _database_url(settings)
    command.upgrade(config, revision)


def _in_session(fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `fn(session)` in one committed transaction against the configured database."""
    from prm import context, modules
    from prm.core.db import Database

    settings = get_settings()
    modules.load()

    async def main() -> T:
        db = Database.connect(_database_url(settings), pool_size=1, max_overflow=0)
        context.bind(db.sessionmaker, context.Context.build(settings))
        try:
            async with db.sessionmaker() as session:
                result = await fn(session)
                await session.commit()
                return result
        finally:
            await db.dispose()

    return asyncio.run(main())


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _domain(fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from prm.core.errors import DomainError

    try:
        return _in_session(fn)
    except DomainError as exc:
        _fail(f"{exc.title}: {exc.detail}")
        raise  # unreachable


@cli.command()
def migrate(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Apply database migrations (starts the embedded PostgreSQL when DATABASE_URL is unset)."""
    migrate_database(get_settings(), revision)
    typer.echo(f"database migrated to {revision}")


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default PORT)")] = None,
    worker: Annotated[bool, typer.Option(help="Run a job worker (in this process in development with one "
                                                "API process, as its own process otherwise)")] = True,
    workers: Annotated[int | None, typer.Option(
        min=1, help="API processes (default WEB_CONCURRENCY, else the cores in production and 1 in development)"
    )] = None,
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate", help="Migrate before serving")] = True,
    demo: Annotated[bool | None, typer.Option(help="Seed the demo clinic if the database has none")] = None,
) -> None:
    """Serve the API on every core (N processes, one port) and run the job worker.

    With one API process in development the worker runs inside it (as before); otherwise it is its
    own `prm worker` process, restarted if it dies. All of them share one database: DATABASE_URL,
    or the embedded PostgreSQL this command starts (and stops when it exits).
    """
    from prm.core import logging as prm_logging

    settings = get_settings().serving_at(host, port)
    prm_logging.configure(settings.log_level, json=settings.log_json, libraries=settings.log_level_libraries)
    _refuse_unsafe(settings)
    production = settings.environment == "production"
    if production and demo:
        _fail("refusing to seed demo data in production (drop --demo)")
    processes = workers or settings.web_concurrency or ((os.cpu_count() or 1) if production else 1)
    run_worker = worker and settings.run_worker
    separate_worker = run_worker and (production or processes > 1)
    settings = settings.model_copy(update={"run_worker": run_worker and not separate_worker})
    if migrate_first:
        migrate_database(settings)
    if not production and (demo if demo is not None else settings.seed_demo):
        from prm import demo as demo_module

        created = _in_session(lambda s: demo_module.seed_if_empty(s))
        if created:
            _print_demo(created)
    _print_twilio_token(settings)
    worker_text = ("its own process (`prm worker`)" if separate_worker else
                   "in this process" if run_worker else "off (run `prm worker`)")
    _print_summary(settings, host or settings.host, port or settings.port, worker=worker_text,
                   processes=processes, demo=not production and (demo if demo is not None else settings.seed_demo))
    job_worker: WorkerProcess | None = None
    # uvicorn shuts down gracefully on SIGTERM and SIGINT (stops accepting, drains requests, runs the
    # lifespan's shutdown: the worker stops), then re-raises the signal; SIGTERM's default action
    # would kill the process there, before the embedded database is stopped.
    # Signal handlers can only be installed from the main thread (a CLI test may run `serve` elsewhere).
    on_main_thread = threading.current_thread() is threading.main_thread()
    if on_main_thread:
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        # Forwarded headers are handled by the app itself, from TRUSTED_PROXIES only (core/proxy.py).
        bind = {"host": host or settings.host, "port": port or settings.port, "log_config": None,
                "proxy_headers": False}
        if processes == 1 and not separate_worker:
            from prm.app import create_app

            app = create_app(settings)
            _freeze_heap()
            uvicorn_run(app, **bind)
            return
        # Every process must reach the same database: resolve it once here (starting the embedded
        # server if there is none) and hand the URL to the API processes and the worker.
        shared = {"DATABASE_URL": _database_url(settings), "HOST": str(bind["host"]), "PORT": str(bind["port"]),
                  "RUN_WORKER": "false", "PUBLIC_BASE_URL": settings.public_base_url}
        if separate_worker:
            job_worker = WorkerProcess({**os.environ, **shared}, settings.worker_shutdown_seconds)
            job_worker.start()
        if processes == 1:
            from prm.app import create_app

            app = create_app(settings.model_copy(update={"database_url": shared["DATABASE_URL"]}))
            _freeze_heap()
            uvicorn_run(app, **bind)
            return
        from structlog import get_logger

        from prm.core import startup

        get_logger("prm.cli").info("startup.config", processes=processes, separate_worker=separate_worker,
                                   **startup.report(settings))
        with _environ(shared):  # what the spawned API processes read their settings from
            serve_processes("prm.cli:api_process_app", processes, **bind)
    finally:
        if job_worker is not None:
            job_worker.stop()
        if on_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _stop_embedded_database(settings)


def uvicorn_run(app: Any, **options: Any) -> None:
    """uvicorn.run, where a signal (already handled by uvicorn) ends serving quietly."""
    import uvicorn

    try:
        uvicorn.run(app, **options)
    except (KeyboardInterrupt, Terminated):  # a signal: uvicorn already stopped what it could
        pass


def serve_processes(app: str, processes: int, **options: Any) -> None:
    """`processes` API processes on one port, under uvicorn's process manager (a process that dies is
    replaced; SIGTERM stops them all), each accepting on a listening socket of its own (SO_REUSEPORT),
    so the kernel spreads new connections evenly over them.

    On one shared socket, whichever process wakes first accepts every connection waiting: 32
    keep-alive clients connecting at once landed 28 on one process and 4 on the other, which then
    sat idle while the first queued their requests. Where SO_REUSEPORT does not exist, the processes
    share one socket as uvicorn does it."""
    import logging
    import socket

    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    config = uvicorn.Config(app, factory=True, workers=processes, **options)
    if not hasattr(socket, "SO_REUSEPORT") or config.uds or config.fd is not None:
        uvicorn_run(app, factory=True, workers=processes, **options)
        return
    log = logging.getLogger("uvicorn.error")
    try:  # the port must be free: a second server with SO_REUSEPORT would otherwise share it silently
        _listening_socket(config, reuse_port=False).close()
        first = _listening_socket(config, reuse_port=True)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", config.host, config.port, exc.strerror or exc)
        sys.exit(STARTUP_FAILURE)
    host, bound = first.getsockname()[:2]
    log.info("Uvicorn running on http://%s:%d, one listening socket per process (Press CTRL+C to quit)",
             f"[{host}]" if ":" in host else host, bound)
    try:
        _spreading_supervisor()(config, first).run()
    except (KeyboardInterrupt, Terminated):  # a signal: the processes were stopped already
        pass


def _listening_socket(config: Any, *, reuse_port: bool) -> Any:
    import socket

    family = socket.AF_INET6 if config.host and ":" in config.host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _spreading_supervisor() -> type:
    """uvicorn's process manager, handing every process it starts (at first, after a death, on
    SIGHUP's restart) a listening socket of its own, bound to the same port with SO_REUSEPORT. It
    reads `self.sockets` exactly when it starts a process. The parent closes its copy of a socket
    once that process has started (the process holds the same socket), so a socket dies with its
    process and the kernel stops sending it connections."""
    from uvicorn.supervisors import Multiprocess

    class SpreadingMultiprocess(Multiprocess):  # type: ignore[misc]
        def __init__(self, config: Any, first: Any) -> None:
            self._spare: list[Any] = [first]
            self._handed: list[Any] = []
            super().__init__(config, sockets=[])

        @property
        def sockets(self) -> list[Any]:
            sock = self._spare.pop() if self._spare else _listening_socket(self.config, reuse_port=True)
            self._handed.append(sock)
            return [sock]

        @sockets.setter
        def sockets(self, _value: list[Any]) -> None:
            pass  # each process gets its own (above)

        def _close_handed(self) -> None:
            while self._handed:
                self._handed.pop().close()

        def init_processes(self) -> None:
            super().init_processes()
            self._close_handed()

        def keep_subprocess_alive(self) -> None:
            self._close_handed()  # those of processes started since the last check (SIGHUP's restart)
            super().keep_subprocess_alive()
            self._close_handed()

    return SpreadingMultiprocess


def api_process_app() -> Any:
    """The app of one API process of `prm serve --workers N` (its settings come from the environment
    `serve` prepared: the shared database, no in-process worker)."""
    from prm.app import create_app

    app = create_app(get_settings())
    _freeze_heap()
    return app


def _freeze_heap() -> None:
    """Move everything built so far (modules, routes, models: the bulk of the heap, alive as long as
    the process) out of the garbage collector's sight (`gc.freeze`): its collections then walk only
    what requests and jobs create, instead of pausing all work in flight to walk the whole heap."""
    import gc

    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class WorkerProcess:
    """`prm worker` as a child process of `prm serve`, started again (with backoff) when it dies."""

    def __init__(self, env: dict[str, str], shutdown_seconds: float) -> None:
        self.env = env
        self.shutdown_seconds = shutdown_seconds
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="prm-worker-process", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _supervise(self) -> None:
        from structlog import get_logger

        log = get_logger("prm.cli")
        delay = 1.0
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                started = time.monotonic()
                self.process = subprocess.Popen([sys.executable, "-m", "prm", "worker"], env=self.env)
            log.info("serve.worker_process_started", pid=self.process.pid)
            code = self.process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > 60:
                delay = 1.0
            log.error("serve.worker_process_exited", returncode=code, restart_in_seconds=delay)
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, 30.0)

    def stop(self) -> None:
        """SIGTERM (the worker finishes its running jobs), then SIGKILL after its shutdown time."""
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self.shutdown_seconds + 10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._thread.join(timeout=5)


class Terminated(Exception):
    """SIGTERM, turned into an exception so that the process shuts down in order."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def _stop_embedded_database(settings: Settings) -> None:
    """Stop the embedded PostgreSQL this process started (if it is the last one using it)."""
    if settings.database_url:
        return
    from prm.core import embedded

    embedded.stop(settings.data_dir / "pgdata")


def _refuse_unsafe(settings: Settings) -> None:
    """Exit 1, one line per problem, when production settings are unsafe (see `prm check-config`)."""
    from prm.core import startup

    found = startup.problems(settings)
    for problem in found:
        typer.secho(f"config: {problem}", fg=typer.colors.RED, err=True)
    if found:
        _fail(f"refusing to start: {len(found)} unsafe production setting(s); see `prm check-config`")


@cli.command("check-config")
def check_config() -> None:
    """Check the settings: one line per unsafe production setting, exit 1 when there is any."""
    from prm.core import startup

    settings = get_settings()
    found = startup.problems(settings)
    for problem in found:
        typer.secho(f"problem: {problem}", fg=typer.colors.RED)
    report = startup.report(settings)
    typer.echo(f"environment={settings.environment} database={report['database']} "
               f"trusted_proxies={','.join(settings.trusted_proxies) or '-'} api_docs={report['api_docs']} "
               f"cors_origins={','.join(settings.cors_origins) or '-'} signing_key={report['signing_key']}")
    if found:
        raise typer.Exit(1)
    typer.echo("configuration ok" + (" for production" if settings.environment == "production" else ""))


def _print_demo(created: dict[str, Any]) -> None:
    typer.secho("\nDemo clinic created:", fg=typer.colors.GREEN)
    typer.echo(f"  organisation  {created['org_slug']} ({created['org_id']})")
    typer.echo(f"  admin login   {created['email']} / {created['password']}")
    typer.echo(f"  API key       {created['api_key']}   (shown once)\n")


def _print_summary(settings: Settings, host: str, port: int, *, worker: str, processes: int, demo: bool) -> None:
    """One readable start-up summary (the JSON `startup.config` line has the details)."""
    from prm.core import startup

    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 (a display, not a bind)
    url = f"http://{shown}:{port}"
    lines = [
        ("API", f"{url}   (reference: {url}/docs)" if settings.docs_enabled else url),
        ("environment", settings.environment),
        ("data directory", str(settings.data_dir)),
        ("database", startup.describe_database(settings)),
        ("API processes", str(processes)),
        ("job worker", worker),
    ]
    if demo and settings.environment == "development":
        from prm import demo as demo_module

        lines.append(("demo login", f"{demo_module.DEMO_EMAIL} / {demo_module.DEMO_PASSWORD}   "
                                    "(POST /auth/token; the demo API key was shown at its creation)"))
    typer.secho("PRM is starting:", fg=typer.colors.GREEN)
    for label, value in lines:
        typer.echo(f"  {label:<15} {value}")
    typer.echo("")


def _print_twilio_token(settings: Settings) -> None:
    """In development without TWILIO_AUTH_TOKEN: show the generated webhook token and how to use it."""
    if settings.environment != "development" or settings.twilio_auth_token is not None:
        return
    token = settings.twilio_webhook_token()
    typer.secho("Twilio webhooks (development):", fg=typer.colors.GREEN)
    typer.echo(f"  auth token    {token}   (generated, kept in {settings.data_dir / 'twilio_auth_token'})")
    typer.echo(f"  webhook URL   {settings.public_base_url}/webhooks/twilio/messaging")
    typer.echo('  try           prm simulate whatsapp --from +34600000000 "I need an appointment"\n')


@cli.command("openapi")
def openapi_command(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout)")] = None,
) -> None:
    """Write the OpenAPI document (descriptions, scopes, errors, examples) as JSON, without a database.

    `make docs` renders the API reference from it; client generators read it too.
    """
    import json

    from pydantic import SecretStr

    from prm.app import create_app

    # No database is reached (the engine connects lazily) and nothing is written to the data directory.
    settings = get_settings().model_copy(update={
        "database_url": "postgresql+psycopg://openapi@127.0.0.1:9/openapi", "run_worker": False,
        "log_level": "WARNING", "environment": "development", "secret_key": SecretStr("openapi-export-" + "x" * 40),
        "api_docs": True})
    document = json.dumps(create_app(settings).openapi(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(document, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(document, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


@cli.command("demo")
def demo_command(force: Annotated[bool, typer.Option(help="Allow in production")] = False) -> None:
    """Seed the demo clinic (skipped if it exists)."""
    from prm import demo as demo_module

    if get_settings().environment == "production" and not force:
        _fail("refusing to seed demo data in production (use --force)")
    created = _in_session(lambda s: demo_module.seed_if_empty(s))
    if created:
        _print_demo(created)
    else:
        typer.echo("demo clinic already present")


@cli.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once (default WORKER_CONCURRENCY)")] = None,
    queue: Annotated[list[str] | None, typer.Option(help="Only these queues (repeatable)")] = None,
    one_shot: Annotated[bool, typer.Option(help="Exit when the queue is empty")] = False,
) -> None:
    """Run a background job worker (reconnects when the database goes away; SIGTERM stops it gracefully)."""
    from prm import context, modules
    from prm import worker as worker_module
    from prm.core import jobs
    from prm.core import logging as prm_logging
    from prm.core.db import Database

    settings = get_settings()
    prm_logging.configure(settings.log_level, json=settings.log_json, libraries=settings.log_level_libraries)
    _refuse_unsafe(settings)
    modules.load()
    jobs.configure_defaults(max_attempts=settings.job_max_attempts, base_seconds=settings.job_retry_base_seconds,
                            max_seconds=settings.job_retry_max_seconds)
    url = _database_url(settings)
    # jobs are background work: where the worker shares the cores with API processes (`prm serve
    # --workers N`, one host), requests get the CPU first and the jobs they queued follow. So do the
    # server processes of its connections, where the database runs on this host (the embedded one).
    options = dataclasses.replace(
        worker_module.WorkerOptions.from_settings(settings, concurrency=concurrency, queues=queue),
        backend_nice=settings.worker_nice)
    _freeze_heap()  # what is loaded now lives as long as the worker
    if settings.worker_nice:
        os.nice(settings.worker_nice)

    async def main() -> None:
        db = Database.connect(url, pool_size=options.concurrency + 1,
                              pool_timeout=settings.db_pool_timeout_seconds,
                              connect_timeout=settings.db_connect_timeout_seconds, name="prm-worker",
                              wake_workers=True, backend_nice=options.backend_nice)
        context.bind(db.sessionmaker, context.Context.build(settings))  # what jobs and event handlers get
        jobs.bind(db.sessionmaker)
        loop = asyncio.get_running_loop()
        current = asyncio.current_task()
        assert current is not None
        for sig in (signal.SIGTERM, signal.SIGINT):  # stop taking jobs, let running ones finish
            loop.add_signal_handler(sig, current.cancel)
        try:
            if one_shot:
                await worker_module.run(db.url, wait=False, options=options)
            else:
                await worker_module.supervise(db.url, options)
        except asyncio.CancelledError:
            pass
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await db.dispose()

    try:
        _run_loop(main())
    except worker_module.WorkerGaveUp as exc:
        _fail(str(exc))


def _run_loop(main: Any) -> None:
    """Run `main` on uvloop's event loop (the API's, through uvicorn), else asyncio's own."""
    try:
        import uvloop
    except ImportError:  # not on every platform: the standard loop does the same, slower
        asyncio.run(main)
    else:
        uvloop.run(main)


# --- organisations, users, keys ---------------------------------------------------------------


@orgs_cli.command("create")
def orgs_create(
    slug: Annotated[str, typer.Option(help="URL-safe identifier: lowercase letters, digits and '-'")],
    name: Annotated[str | None, typer.Argument(help="Display name (default: the slug)")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone")] = "UTC",
) -> None:
    """Create an organisation."""
    from prm.identity import service
    from prm.identity.schemas import OrganisationCreate

    data = OrganisationCreate(name=name or slug, slug=slug, timezone=timezone)
    org = _domain(lambda s: service.create_organisation(s, data))
    typer.echo(f"{org.id}  {org.slug}")


@orgs_cli.command("list")
def orgs_list() -> None:
    """List organisations."""
    from sqlalchemy import select

    from prm.identity.models import Organisation

    async def run(s: AsyncSession) -> list[Organisation]:
        return list((await s.scalars(select(Organisation).order_by(Organisation.created_at))).all())

    for org in _domain(run):
        typer.echo(f"{org.id}  {org.slug:<24} {org.name}")


@users_cli.command("create")
def users_create(
    org: Annotated[str, typer.Option(help="Organisation id or slug")],
    email: Annotated[str, typer.Option()],
    role: Annotated[str, typer.Option(help="admin | coordinator | practitioner | support_agent")] = "admin",
    full_name: Annotated[str, typer.Option()] = "",
    password: Annotated[str | None, typer.Option(help="Prompted for when omitted (or read from stdin)")] = None,
    platform_admin: Annotated[bool, typer.Option(
        "--platform-admin", help="Also a platform admin: may create organisations through the API")] = False,
) -> None:
    """Create a staff user."""
    from pydantic import ValidationError

    from prm.identity import service
    from prm.identity.schemas import UserCreate

    if password is None:
        password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().strip()
    try:
        data = UserCreate(email=email, password=password, role=role, full_name=full_name)  # type: ignore[arg-type]
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
        return

    async def run(s: AsyncSession) -> Any:
        organisation = await service.find_organisation(s, org)
        user = await service.create_user(s, organisation.id, data)
        if platform_admin:
            await service.set_platform_admin(s, str(user.id), True)
        return user

    user = _domain(run)
    typer.echo(f"{user.id}  {user.email}  {user.role}{'  platform-admin' if user.is_platform_admin else ''}")


@users_cli.command("platform-admin")
def users_platform_admin(
    user: Annotated[str, typer.Argument(help="User id or email")],
    revoke: Annotated[bool, typer.Option("--revoke", help="Withdraw the platform role")] = False,
) -> None:
    """Grant (or with --revoke withdraw) the platform role: creating organisations through the API."""
    from prm.identity import service

    changed = _domain(lambda s: service.set_platform_admin(s, user, not revoke))
    typer.echo(f"{changed.id}  {changed.email}  platform-admin={'yes' if changed.is_platform_admin else 'no'}")


@keys_cli.command("create")
def keys_create(
    org: Annotated[str, typer.Option(help="Organisation id or slug")],
    name: Annotated[str, typer.Option(help="What the key is for")],
    role: Annotated[str, typer.Option(help="integration (default) or a staff role")] = "integration",
    platform_admin: Annotated[bool, typer.Option(
        "--platform-admin", help="A platform key: may create organisations through the API")] = False,
) -> None:
    """Create an API key; the key is printed once and never stored in clear."""
    from prm.identity import service
    from prm.identity.schemas import ApiKeyCreate

    async def run(s: AsyncSession) -> Any:
        organisation = await service.find_organisation(s, org)
        return await service.create_api_key(s, organisation.id, ApiKeyCreate(name=name, role=role),  # type: ignore[arg-type]
                                            platform_admin=platform_admin)

    key, full = _domain(run)
    typer.echo(f"id:  {key.id}\nkey: {full}")


@keys_cli.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="Key id, prefix or the key itself")]) -> None:
    """Revoke an API key."""
    from prm.identity import service

    revoked = _domain(lambda s: service.revoke_api_key(s, None, key))
    typer.echo(f"revoked {revoked.id} ({revoked.name})")


@keys_cli.command("list")
def keys_list(org: Annotated[str, typer.Option(help="Organisation id or slug")]) -> None:
    """List the API keys of an organisation."""
    from prm.identity import service

    async def run(s: AsyncSession) -> Any:
        organisation = await service.find_organisation(s, org)
        return await service.list_api_keys(s, organisation.id)

    for k in _domain(run):
        state = "revoked" if k.revoked_at else "active"
        platform = " platform-admin" if k.is_platform_admin else ""
        typer.echo(f"{k.id}  prm_{k.prefix}_…  {k.role:<14} {state:<8} last used {k.last_used_at or '-'}  "
                   f"{k.name}{platform}")


# --- jobs -------------------------------------------------------------------------------------


def _with_job_manager(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run `fn(job_manager)` with procrastinate's own job manager on the configured database."""
    from prm import modules
    from prm.core import jobs
    from prm.core.db import libpq_url

    settings = get_settings()
    modules.load()
    app = jobs.build_app(libpq_url(_database_url(settings)))

    async def main() -> T:
        async with app.open_async():
            return await fn(app.job_manager)

    return asyncio.run(main())


@jobs_cli.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="todo, doing, failed, ...")] = "failed",
    stalled: Annotated[bool, typer.Option(help="Only running jobs whose worker is dead (no heartbeat)")] = False,
) -> None:
    """List jobs (default: failed ones), across all organisations."""
    from prm.admin import service
    from prm.core import jobs
    from prm.core.pagination import PageParams

    if stalled:
        after = get_settings().job_stalled_after_seconds
        found = _with_job_manager(lambda m: jobs.stalled_jobs(m, stalled_after_seconds=after))
        for j in found:
            typer.echo(f"{j.id:>8}  {'stalled':<10} attempts={j.attempts}  {j.task_name}  worker={j.worker_id or '-'}")
        typer.echo(f"{len(found)} stalled job(s) (running, no worker heartbeat for {after:g} s)")
        return
    rows, total = _domain(lambda s: service.list_jobs(s, None, PageParams(limit=200), status=status))
    for r in rows:
        typer.echo(f"{r['id']:>8}  {r['status']:<10} attempts={r['attempts']}  {r['task']}")
    typer.echo(f"{total} job(s)")


@jobs_cli.command("retry")
def jobs_retry(job_id: int) -> None:
    """Retry a failed job, or a stalled one (running on a dead worker), now."""
    from prm.admin import service
    from prm.core import jobs

    after = get_settings().job_stalled_after_seconds
    if _with_job_manager(lambda m: jobs.retry_stalled(m, job_id, stalled_after_seconds=after)):
        typer.echo(f"job {job_id} was stalled; it is todo again")
        return
    job = _domain(lambda s: service.retry_job(s, None, job_id))
    typer.echo(f"job {job['id']} is {job['status']}")


@jobs_cli.command("run-due")
def jobs_run_due() -> None:
    """Run every due job once, in this process, then exit."""
    from prm.core import jobs

    report = _domain(lambda s: jobs.run_due(s))
    typer.echo(f"succeeded={len(report.succeeded)} retried={len(report.retried)} failed={len(report.failed)}")


# --- backup and restore ----------------------------------------------------------------------


@cli.command("backup")
def backup_command(
    output: Annotated[str | None, typer.Option("--output", "-o", help="Dump file (default prm-<time>.dump)")] = None,
) -> None:
    """Dump the whole database (pg_dump custom format, with the server's own pg_dump)."""
    from datetime import UTC, datetime
    from pathlib import Path

    from prm import backup

    settings = get_settings()
    target = Path(output or f"prm-{datetime.now(UTC):%Y%m%d-%H%M%S}.dump")
    try:
        written = backup.backup(settings, target)
    except backup.BackupError as exc:
        _fail(f"error: {exc}")
        return
    typer.echo(f"backup written to {written} ({written.stat().st_size} bytes)")
    if settings.secret_key is None and settings.database_url is None:
        typer.echo(f"keep {settings.data_dir / 'secret_key'} with it: staff sessions are signed with that key "
                   "(a restore elsewhere needs the file, or the same SECRET_KEY)")


@cli.command("restore")
def restore_command(
    dump: Annotated[str, typer.Argument(help="A dump made by `prm backup`")],
    clean: Annotated[bool, typer.Option(help="Replace the contents of a database that is not empty")] = False,
) -> None:
    """Restore a dump into the configured database (the embedded one unless DATABASE_URL), in one transaction."""
    from pathlib import Path

    from prm import backup

    settings = get_settings()
    try:
        backup.restore(settings, Path(dump), clean=clean)
    except backup.BackupError as exc:
        _fail(f"error: {exc}")
        return
    typer.echo(f"restored {dump}; run `prm migrate` if the dump predates this version")
    if settings.secret_key is None and settings.environment != "production" and not (
            settings.data_dir / "secret_key").exists():
        typer.echo(f"staff sessions need the old secret key: copy the old data directory's secret_key file to "
                   f"{settings.data_dir / 'secret_key'} (or set SECRET_KEY) before serving")


# --- simulate ---------------------------------------------------------------------------------


def _simulate(channel: str, from_phone: str, text: str, to: str | None, url: str | None, timeout: float) -> None:
    from prm import simulate

    try:
        sim = asyncio.run(simulate.whatsapp(
            get_settings(), from_phone=simulate.phone_argument(from_phone), body=text,
            to_phone=simulate.phone_argument(to) if to else None, base_url=url, timeout_seconds=timeout,
            channel=channel,
        ))
    except simulate.SimulationError as exc:
        _fail(f"error: {exc}")
        return
    typer.secho(f"patient {from_phone} → {sim.to_number}: {text}", fg=typer.colors.BRIGHT_BLACK)
    replies = ([sim.webhook_reply] if sim.webhook_reply else []) + sim.replies
    for reply in replies:
        typer.echo(f"assistant: {reply}")
    if not replies:
        typer.echo("(no reply: the message waits in the inbox for a person)")


_FROM = typer.Option("--from", help="The patient's phone number (E.164)")
_TO = typer.Option(help="The clinic's number (default: the first organisation's number on this channel)")
_URL = typer.Option(help="The service's base URL (default PUBLIC_BASE_URL)")
_TIMEOUT = typer.Option(help="Seconds to wait for the reply")


def _simulate_command(channel: str, what: str) -> None:
    """`prm simulate <channel>`: one command per messaging channel, the same options."""

    def command(
        text: Annotated[str, typer.Argument(help="What the patient writes")],
        from_phone: Annotated[str, _FROM],
        to: Annotated[str | None, _TO] = None,
        url: Annotated[str | None, _URL] = None,
        timeout: Annotated[float, _TIMEOUT] = 30.0,
    ) -> None:
        _simulate(channel, from_phone, text, to, url, timeout)

    command.__doc__ = f"Send {what} as a patient (a correctly signed Twilio webhook) and print the reply."
    simulate_cli.command(channel)(command)


_simulate_command("whatsapp", "a WhatsApp message")
_simulate_command("sms", "an SMS")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
