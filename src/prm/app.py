"""create_app(): routers, middleware, error handlers, health and metrics."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute, APIWebSocketRoute
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from starlette._utils import get_route_path
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from prm import __version__, context, modules
from prm.core import auth, idempotency, integrity, jobs, metrics, openapi, startup
from prm.core import logging as prm_logging
from prm.core.asgi import HttpMiddleware
from prm.core.body_limit import BodyLimitMiddleware
from prm.core.db import Database, resolve_database_url
from prm.core.errors import PROBLEM_BASE, DomainError, Unavailable
from prm.core.idempotency import IdempotencyMiddleware
from prm.core.nul_guard import NulGuardMiddleware
from prm.core.proxy import ForwardedHeadersMiddleware
from prm.core.ratelimit import RateLimiter
from prm.core.retry import RetryTransactionMiddleware
from prm.core.unhandled import UnhandledErrorMiddleware
from prm.identity import service as identity_service
from prm.settings import Settings, get_settings

log = structlog.get_logger(__name__)
PROBLEM = "application/problem+json"

DESCRIPTION = """
Patient Relationship Management backend: patients, scheduling, messaging, journeys, tickets,
intake, FHIR.

**Authentication.** Staff log in with `POST /auth/token` (OAuth2 password flow; use the
*Authorize* button). Integrations send an API key as `Authorization: Bearer prm_...` or
`X-API-Key`. Every error is an RFC 9457 `application/problem+json` document.
"""


def problem_response(status: int, code: str, title: str, detail: str, request: Request | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + code, "title": title, "status": status, "detail": detail,
                            "code": code}
    if request is not None:
        body["instance"] = request.url.path
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie", "form"}:
        parts = parts[1:] or parts
    return ".".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(idempotency.Replay, idempotency.replay_handler)

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(exc.problem(request.url.path), status_code=exc.status, media_type=PROBLEM,
                            headers=exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field_path(tuple(e.get("loc", ()))), "in": str(e.get("loc", ("body",))[0]),
             "message": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "Invalid request"
        return problem_response(422, "validation_failed", "Validation failed", detail, request, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: ("not_found", "Not found"), 405: ("method_not_allowed", "Method not allowed"),
                 401: ("unauthenticated", "Unauthenticated"), 403: ("permission_denied", "Forbidden")}
        code, title = codes.get(exc.status_code, ("http_error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route for {request.method} {request.url.path}"
        return problem_response(exc.status_code, code, title, detail, request,
                                headers=getattr(exc, "headers", None))

    @app.exception_handler(IntegrityError)
    async def integrity_error(request: Request, exc: IntegrityError) -> JSONResponse:
        # A constraint the services did not check first: a 4xx naming the column, never a 500 and
        # never the values (PostgreSQL's message quotes them).
        mapped = integrity.problem_for(exc)
        if mapped is None:
            raise exc  # answered by UnhandledErrorMiddleware
        log.warning("request.constraint_violation", code=mapped.code,
                    constraint=getattr(getattr(exc.orig, "diag", None), "constraint_name", None))
        return JSONResponse(mapped.problem(request.url.path), status_code=mapped.status, media_type=PROBLEM)

    # Any other exception is answered by UnhandledErrorMiddleware (500, or 503 for a database
    # outage), which, unlike an `Exception` handler, keeps the keep-alive connection usable.


class RequestContextMiddleware(HttpMiddleware):
    """Gives each request an id (honouring `X-Request-ID`), binds it to logs, echoes it back."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        incoming = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_wrapper)


def migrations_dir() -> Path:
    here = Path(__file__).resolve().parents[2] / "migrations"
    return here if here.exists() else Path.cwd() / "migrations"


def alembic_head() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return ScriptDirectory.from_config(config).get_current_head()


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    prm_logging.configure(settings.log_level, json=settings.log_json, libraries=settings.log_level_libraries)
    startup.check(settings)  # production refuses unsafe settings (see `prm check-config`)
    jobs.configure_defaults(max_attempts=settings.job_max_attempts, base_seconds=settings.job_retry_base_seconds,
                            max_seconds=settings.job_retry_max_seconds)
    router_modules = modules.load()
    ctx = context.Context.build(settings)  # the only settings and adapters below this module
    search_quality = ctx.adapters.search_quality()
    if search_quality["quality"] == "lexical":
        log.info("search.embeddings", **search_quality,
                 note="search is lexical-quality (hashing embedder); set EMBEDDINGS_PROVIDER=local or openai")
    else:
        log.info("search.embeddings", **search_quality)
    db = database or Database.connect(resolve_database_url(settings), pool_size=settings.db_pool_size,
                                      max_overflow=settings.db_max_overflow, echo=settings.db_echo,
                                      pool_timeout=settings.db_pool_timeout_seconds,
                                      connect_timeout=settings.db_connect_timeout_seconds, name="prm-api",
                                      wake_workers=True)
    context.bind(db.sessionmaker, ctx)  # requests, jobs and event handlers all get their session here
    jobs.bind(db.sessionmaker)

    lifespan_hooks: list[Any] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as hooks:
            for hook in lifespan_hooks:
                await hooks.enter_async_context(hook(app))
            async with _lifespan(app):
                yield

    @contextlib.asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = None
        if settings.run_worker:
            from prm.worker import InProcessWorker, WorkerOptions

            worker = InProcessWorker(db.url, options=WorkerOptions.from_settings(settings))
            await worker.start()
        app.state.worker = worker
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            if database is None:
                await db.dispose()

    docs = settings.docs_enabled
    app = FastAPI(title="PRM", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  swagger_ui_parameters={"persistAuthorization": True}, docs_url="/docs" if docs else None,
                  redoc_url="/redoc" if docs else None, openapi_url="/openapi.json" if docs else None)
    app.openapi = lambda: openapi.build(app, modules.examples(), modules.not_found_errors())  # type: ignore[method-assign]
    app.state.settings = settings
    app.state.context = ctx
    app.state.authenticate = identity_service.authenticate  # core.auth.Requires checks credentials with it
    app.state.credential_cache = auth.CredentialCache(settings.auth_cache_seconds)
    app.state.db = db
    app.state.rate_limiter = RateLimiter(settings.redis_url)
    app.state.alembic_head = alembic_head()

    install_error_handlers(app)
    app.add_middleware(RetryTransactionMiddleware)  # innermost: a deadlock victim's request runs again
    app.add_middleware(UnhandledErrorMiddleware)  # route errors still pass the others
    app.add_middleware(IdempotencyMiddleware, ttl=timedelta(hours=settings.idempotency_ttl_hours),
                       max_body_bytes=settings.idempotency_max_body_bytes)
    app.add_middleware(NulGuardMiddleware)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["X-Request-ID", "ETag", "Retry-After"])
    app.add_middleware(metrics.MetricsMiddleware)
    app.add_middleware(UnhandledErrorMiddleware)  # and for failures of the middlewares themselves
    # Bodies are bounded before anything reads them; forwarded headers believed only from
    # TRUSTED_PROXIES, so every layer sees the same client address, scheme and host.
    app.add_middleware(ForwardedHeadersMiddleware)
    app.add_middleware(BodyLimitMiddleware)
    # Outermost: every answer carries its X-Request-ID, a body limit's 413 and 408 included
    app.add_middleware(RequestContextMiddleware)
    log.info("startup.config", **startup.report(settings))

    @app.get("/health", tags=["ops"], summary="Liveness: the process is up")
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/ready", tags=["ops"], summary="Readiness: database reachable and migrated to head",
             responses={503: {"description": "Not ready"}})
    async def ready(request: Request) -> dict[str, Any]:
        try:
            async with db.engine.connect() as conn:
                current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        except Exception as exc:
            raise Unavailable(f"Database not ready: {type(exc).__name__}", code="database_unavailable") from None
        head = request.app.state.alembic_head
        if current != head:
            raise Unavailable(f"Database at migration {current}, code expects {head}; run `prm migrate`",
                              code="migrations_pending")
        worker = getattr(request.app.state, "worker", None)
        if worker is not None and not worker.running:
            raise Unavailable(f"The in-process job worker is not running ({worker.state}): "
                              f"{worker.detail or 'no detail'}", code="worker_not_running",
                              headers={"Retry-After": "5"})
        return {"status": "ready", "migration": current, "search": search_quality,
                **({"worker": worker.state} if worker is not None else {})}

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        try:
            async with db.sessionmaker() as session:
                await metrics.refresh_job_gauges(session)
        except Exception:  # metrics must answer even when the database does not
            log.warning("metrics.jobs_unavailable")
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    for module in router_modules:
        for router in getattr(module, "routers", None) or [module.router]:
            app.include_router(router)
        # A module may mount a non-FastAPI ASGI endpoint (agents: /mcp) and run something for the
        # app's lifetime: `install(app, settings, sessionmaker)` returns that lifespan hook.
        install = getattr(module, "install", None)
        if install is not None:
            lifespan_hooks.append(install(app, settings, db.sessionmaker))
        for router in getattr(module, "routers", None) or [module.router]:
            _skip_unless_first_segment(router)
    return app


def _skip_unless_first_segment(router: APIRouter) -> None:
    """Let `router` refuse at once a path whose first segment none of its routes starts with.

    FastAPI tries the included routers one after the other, and each tries its every route's
    pattern: a booking's path went past ~90 patterns (~80 µs) before reaching its own router, a
    provider webhook's past more. A router whose routes all start with a fixed segment (`/patients`,
    `/webhooks`, `/appointments`, ...) now answers "no match" for any other path by one set lookup;
    a router with a route that starts with a parameter keeps FastAPI's own matching. Which endpoint
    a request reaches does not change (tests/integration/core/test_routing.py)."""
    segments: set[str] = set()
    for route in router.routes:
        path = getattr(route, "path", None)
        if not isinstance(route, APIRoute | APIWebSocketRoute) or not isinstance(path, str):
            return  # a mount, a nested router or anything else: match it the usual way
        first = path.split("/", 2)[1] if path.startswith("/") else ""
        if not first or "{" in first:
            return
        segments.add(first)
    plain = router.matches

    def matches(scope: Scope) -> tuple[Match, Scope]:
        parts = get_route_path(scope).split("/", 2)
        if len(parts) < 2 or parts[1] not in segments:
            return Match.NONE, {}
        return plain(scope)

    router.matches = matches  # type: ignore[method-assign]
