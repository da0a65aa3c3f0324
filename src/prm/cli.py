"""`prm` command line: serve, worker, migrate, demo, and operator commands for orgs, users, keys, jobs."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from prm.settings import Settings, get_settings

T = TypeVar("T")

cli = typer.Typer(help="PRM: Patient Relationship Management backend.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
orgs_cli = typer.Typer(help="Organisations.", no_args_is_help=True)
users_cli = typer.Typer(help="Staff users.", no_args_is_help=True)
keys_cli = typer.Typer(help="API keys for integrations.", no_args_is_help=True)
jobs_cli = typer.Typer(help="Background jobs.", no_args_is_help=True)
cli.add_typer(orgs_cli, name="orgs")
cli.add_typer(users_cli, name="users")
cli.add_typer(keys_cli, name="api-keys")
cli.add_typer(jobs_cli, name="jobs")


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
    worker: Annotated[bool, typer.Option(help="Run a job worker in this process")] = True,
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate", help="Migrate before serving")] = True,
    demo: Annotated[bool | None, typer.Option(help="Seed the demo clinic if the database has none")] = None,
) -> None:
    """Serve the API (and, by default, an in-process job worker)."""
    import uvicorn

    from prm.app import create_app
    from prm.core import logging as prm_logging

    settings = get_settings()
    settings = settings.model_copy(update={"run_worker": worker and settings.run_worker})
    prm_logging.configure(settings.log_level, json=settings.log_json)
    _refuse_unsafe(settings)
    production = settings.environment == "production"
    if production and demo:
        _fail("refusing to seed demo data in production (drop --demo)")
    if migrate_first:
        migrate_database(settings)
    if not production and (demo if demo is not None else settings.seed_demo):
        from prm import demo as demo_module

        created = _in_session(lambda s: demo_module.seed_if_empty(s))
        if created:
            _print_demo(created)
    app = create_app(settings)
    try:
        # Forwarded headers are handled by the app itself, from TRUSTED_PROXIES only (core/proxy.py).
        uvicorn.run(app, host=host or settings.host, port=port or settings.port, log_config=None,
                    proxy_headers=False)
    except KeyboardInterrupt:  # a second Ctrl-C: uvicorn already stopped what it could
        pass


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
    """Run a background job worker."""
    from prm import context, modules
    from prm import worker as worker_module
    from prm.core import jobs
    from prm.core import logging as prm_logging
    from prm.core.db import Database

    settings = get_settings()
    prm_logging.configure(settings.log_level, json=settings.log_json)
    _refuse_unsafe(settings)
    modules.load()
    jobs.configure_defaults(max_attempts=settings.job_max_attempts, base_seconds=settings.job_retry_base_seconds,
                            max_seconds=settings.job_retry_max_seconds)
    url = _database_url(settings)

    async def main() -> None:
        db = Database.connect(url, pool_size=settings.worker_concurrency + 1)
        context.bind(db.sessionmaker, context.Context.build(settings))  # what jobs and event handlers get
        jobs.bind(db.sessionmaker)
        try:
            await worker_module.run(db.url, concurrency=concurrency or settings.worker_concurrency,
                                    queues=queue or None, wait=not one_shot)
        finally:
            await db.dispose()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


# --- organisations, users, keys ---------------------------------------------------------------


@orgs_cli.command("create")
def orgs_create(
    name: str,
    slug: Annotated[str, typer.Option(help="URL-safe identifier")],
    timezone: Annotated[str, typer.Option(help="IANA time zone")] = "UTC",
) -> None:
    """Create an organisation."""
    from prm.identity import service
    from prm.identity.schemas import OrganisationCreate

    org = _domain(lambda s: service.create_organisation(s, OrganisationCreate(name=name, slug=slug, timezone=timezone)))
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


@jobs_cli.command("list")
def jobs_list(status: Annotated[str | None, typer.Option(help="todo, doing, failed, ...")] = "failed") -> None:
    """List jobs (default: failed ones), across all organisations."""
    from prm.admin import service
    from prm.core.pagination import PageParams

    rows, total = _domain(lambda s: service.list_jobs(s, None, PageParams(limit=200), status=status))
    for r in rows:
        typer.echo(f"{r['id']:>8}  {r['status']:<10} attempts={r['attempts']}  {r['task']}")
    typer.echo(f"{total} job(s)")


@jobs_cli.command("retry")
def jobs_retry(job_id: int) -> None:
    """Retry a failed job now."""
    from prm.admin import service

    job = _domain(lambda s: service.retry_job(s, None, job_id))
    typer.echo(f"job {job['id']} is {job['status']}")


@jobs_cli.command("run-due")
def jobs_run_due() -> None:
    """Run every due job once, in this process, then exit."""
    from prm.core import jobs

    report = _domain(lambda s: jobs.run_due(s))
    typer.echo(f"succeeded={len(report.succeeded)} retried={len(report.retried)} failed={len(report.failed)}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
