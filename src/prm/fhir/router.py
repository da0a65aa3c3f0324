"""FHIR R4 API: `/fhir/R4/metadata`, read and search (`application/fhir+json`, OperationOutcome
errors), plus the EHR connections and sync log (`/fhir/connections`, JSON like the rest of the API)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC
from email.utils import format_datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool

from prm import __version__
from prm.context import AppContext
from prm.core import clock, references
from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.errors import BadRequest, NotFound
from prm.core.pagination import Page, Paging
from prm.fhir import (
    bulk,
    bundles,
    capability,
    connections,
    intake_fhir,  # noqa: F401  (intake's resources: chart, read API, export)
    mapping,
    outcomes,
    reads,
    search_params,
    sync,
)
from prm.fhir.outcomes import FHIR_JSON, outcome_response
from prm.fhir.schemas import ConnectionCreate, ConnectionRead, ConnectionUpdate, LinkRead, SyncRequest, SyncRunRead
from prm.settings import Settings

RunStatus = Literal["queued", "running", "retrying", "succeeded", "failed", "skipped"]
fhir_router = APIRouter(prefix="/fhir/R4", tags=["fhir"])
connections_router = APIRouter(prefix="/fhir", tags=["fhir"])
jwks_router = APIRouter(tags=["fhir"])
routers = [jwks_router, connections_router, fhir_router]

_STARTED = clock.now().replace(microsecond=0)


def _base(ctx: Any) -> str:
    return ctx.settings.public_base_url.rstrip("/") + outcomes.BASE_PATH


class FhirJSONResponse(JSONResponse):
    media_type = FHIR_JSON


def fhir_json(body: dict[str, Any], status_code: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return FhirJSONResponse(body, status_code=status_code, headers=headers)


_OUTCOME_EXAMPLE = {"resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "not-found",
                               "diagnostics": "Patient/7d0e0c8e-3b8a-4d6e-9a43-2f9f3f1c2a10 is not known"}]}


def _fhir_content(example: dict[str, Any]) -> dict[str, Any]:
    return {FHIR_JSON: {"schema": {"type": "object"}, "example": example}}


@fhir_router.get("/metadata", response_class=FhirJSONResponse, summary="The CapabilityStatement",
                 description="What this FHIR R4 server supports: the resource types, their interactions "
                             "(read, search-type) and search parameters, and the Bulk Data `$export` "
                             "operations. Generated from the implementation, so it lists exactly what "
                             "works. No authentication needed.",
                 responses={200: {"content": _fhir_content({"resourceType": "CapabilityStatement",
                                                            "status": "active", "kind": "instance",
                                                            "fhirVersion": "4.0.1"})}})
async def metadata(ctx: AppContext) -> JSONResponse:
    return fhir_json(capability.statement(base_url=_base(ctx), software_version=__version__,
                                          published_at=_STARTED))


# --- Bulk Data $export (declared before the generic type routes, which would match them) -------------

_EXPORT_DOC = ("Kick-off of a Bulk Data export (asynchronous: `Prefer: respond-async` is required). Parameters "
               "`_type` (comma-separated types; default: all of the level), `_since` (an instant: only resources "
               "changed since), `_outputFormat` (`application/fhir+ndjson`); by POST, as a `Parameters` "
               "resource. Answers 202 with `Content-Location`: the status URL to poll. One export in progress per "
               "client: another kick-off is 429. Scope `fhir:read`. Errors are OperationOutcome.")
_KICKOFF_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted: poll the URL in `Content-Location`",
          "headers": {"Content-Location": {"schema": {"type": "string"},
                                           "description": "The status URL of the export"}}},
    400: {"content": _fhir_content(_OUTCOME_EXAMPLE)}, 429: {"content": _fhir_content(_OUTCOME_EXAMPLE)}}


_PARAMETERS_EXAMPLE = {"resourceType": "Parameters", "parameter": [
    {"name": "_type", "valueString": "Patient,Appointment"},
    {"name": "_since", "valueInstant": "2026-01-01T00:00:00Z"}]}
_PARAMETERS_BODY = {"requestBody": {"content": {
    "application/json": {"schema": {"type": "object"}, "example": _PARAMETERS_EXAMPLE},
    FHIR_JSON: {"schema": {"type": "object"}, "example": _PARAMETERS_EXAMPLE}}}}


async def _export_params(request: Request) -> tuple[list[str], str | None, str | None]:
    if request.method == "POST":
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest("The body must be a FHIR Parameters resource", code="invalid_parameters") from None
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise BadRequest("The body must be a FHIR Parameters resource", code="invalid_parameters")
        items = [(str(p.get("name")), str(p.get("valueString") or p.get("valueInstant") or p.get("valueCode") or ""))
                 for p in body.get("parameter") or [] if isinstance(p, dict)]
    else:
        items = list(request.query_params.multi_items())
    since = next((v for k, v in items if k == "_since"), None)
    output = next((v for k, v in items if k == "_outputFormat"), None)
    return [v for k, v in items if k == "_type"], since, output


async def _kick_off(request: Request, session: Any, ctx: Any, who: Principal, level: str,
                    group_id: uuid.UUID | None = None) -> Response:
    if "respond-async" not in request.headers.get("prefer", ""):
        return outcome_response(400, "Bulk export is asynchronous: send `Prefer: respond-async`")
    types, since, output = await _export_params(request)
    export = await bulk.kick_off(session, who, level=level, group_id=group_id, types=types, since=since,
                                 output_format=output, request_url=str(request.url))
    return Response(status_code=202, headers={"Content-Location": f"{_base(ctx)}/$export-status/{export.id}"})


@fhir_router.get("/$export", status_code=202, response_class=Response, summary="Export everything (Bulk Data)",
                 description=_EXPORT_DOC, responses=_KICKOFF_RESPONSES)
async def export_system(request: Request, session: Session, ctx: AppContext,
                        who: Principal = Requires("fhir:read")) -> Response:
    return await _kick_off(request, session, ctx, who, "system")


@fhir_router.post("/$export", status_code=202, response_class=Response, summary="Export everything (POST)",
                  description=_EXPORT_DOC, responses=_KICKOFF_RESPONSES,
                  openapi_extra=_PARAMETERS_BODY)
async def export_system_post(request: Request, session: Session, ctx: AppContext,
                             who: Principal = Requires("fhir:read")) -> Response:
    return await _kick_off(request, session, ctx, who, "system")


@fhir_router.get("/Patient/$export", status_code=202, response_class=Response,
                 summary="Export every patient's compartment (Bulk Data)", description=_EXPORT_DOC,
                 responses=_KICKOFF_RESPONSES)
async def export_patients(request: Request, session: Session, ctx: AppContext,
                          who: Principal = Requires("fhir:read")) -> Response:
    return await _kick_off(request, session, ctx, who, "patient")


@fhir_router.post("/Patient/$export", status_code=202, response_class=Response,
                  summary="Export every patient's compartment (POST)", description=_EXPORT_DOC,
                  responses=_KICKOFF_RESPONSES,
                  openapi_extra=_PARAMETERS_BODY)
async def export_patients_post(request: Request, session: Session, ctx: AppContext,
                               who: Principal = Requires("fhir:read")) -> Response:
    return await _kick_off(request, session, ctx, who, "patient")


@fhir_router.get("/Group/{group_id}/$export", status_code=202, response_class=Response,
                 summary="Export a practitioner's panel (Bulk Data)",
                 description=_EXPORT_DOC + " A Group is a practitioner's panel: the patients with an appointment "
                                           "with that practitioner (Group id = practitioner id); an unknown one is "
                                           "404.", responses=_KICKOFF_RESPONSES)
async def export_group(group_id: uuid.UUID, request: Request, session: Session, ctx: AppContext,
                       who: Principal = Requires("fhir:read")) -> Response:
    return await _kick_off(request, session, ctx, who, "group", group_id)


@fhir_router.post("/Group/{group_id}/$export", status_code=202, response_class=Response,
                  summary="Export a practitioner's panel (POST)", description=_EXPORT_DOC,
                  responses=_KICKOFF_RESPONSES,
                  openapi_extra=_PARAMETERS_BODY)
async def export_group_post(group_id: uuid.UUID, request: Request, session: Session, ctx: AppContext,
                            who: Principal = Requires("fhir:read")) -> Response:
    return await _kick_off(request, session, ctx, who, "group", group_id)


@fhir_router.get("/$export-status/{export_id}", summary="Poll a Bulk Data export",
                 description="202 with `X-Progress` and `Retry-After` while the export runs; 200 with the "
                             "manifest (`output`: one NDJSON file per type, with its URL and count; "
                             "`requiresAccessToken: true`) when complete; 500 OperationOutcome if it failed; "
                             "404 for an unknown, cancelled, expired or another client's export. Scope "
                             "`fhir:read`.",
                 responses={200: {"content": {"application/json": {"example": {
                     "transactionTime": "2026-11-30T08:00:00+00:00", "request": "https://prm.example.org/fhir/R4/"
                     "$export", "requiresAccessToken": True, "output": [{"type": "Patient", "url": "https://prm."
                     "example.org/fhir/R4/$export-file/0b6a7c3e-9f1d-4c2b-8a5e-6d4f3c2b1a09/Patient.ndjson",
                                                                        "count": 120}], "error": []}}}},
                            202: {"description": "In progress (`X-Progress`, `Retry-After`)"}})
async def export_status(export_id: uuid.UUID, session: Session, ctx: AppContext,
                        who: Principal = Requires("fhir:read")) -> Response:
    export = await bulk.get(session, who, export_id)
    if export.status in ("queued", "running"):
        return Response(status_code=202, headers={"X-Progress": export.progress or export.status,
                                                  "Retry-After": str(bulk.RETRY_AFTER_SECONDS)})
    if export.status == "failed":
        return outcome_response(500, f"The export failed: {export.error}", code="exception")
    assert export.expires_at is not None
    return JSONResponse(bulk.manifest(export, _base(ctx)),
                        headers={"Expires": format_datetime(export.expires_at.astimezone(UTC), usegmt=True)})


@fhir_router.delete("/$export-status/{export_id}", status_code=202, response_class=Response,
                    summary="Cancel a Bulk Data export",
                    description="Stops the export (if it still runs) and deletes its files; later polls are 404. "
                                "Scope `fhir:read`.")
async def export_cancel(export_id: uuid.UUID, session: Session, ctx: AppContext,
                        who: Principal = Requires("fhir:read")) -> Response:
    await bulk.cancel(session, who, export_id, ctx.settings)
    return Response(status_code=202)


@fhir_router.get("/$export-file/{export_id}/{name}", response_class=StreamingResponse,
                 summary="Download an exported NDJSON file",
                 description="One file of a completed export (`application/fhir+ndjson`, one resource per line), "
                             "for the client that asked for the export, until it expires. Scope `fhir:read`.",
                 responses={200: {"content": {bulk.NDJSON: {"schema": {"type": "string"}}}}})
async def export_file(export_id: uuid.UUID, name: str, session: Session, ctx: AppContext,
                      who: Principal = Requires("fhir:read")) -> StreamingResponse:
    chunks = await bulk.open_file(session, who, export_id, name, ctx.settings)
    return StreamingResponse(iterate_in_threadpool(chunks), media_type=bulk.NDJSON)


def _strict(request: Request) -> bool:
    prefer = request.headers.get("prefer", "")
    return "handling=strict" in prefer.replace(" ", "")


def _spec(resource_type: str) -> search_params.ResourceSpec:
    spec = search_params.spec(resource_type)
    if spec is None:
        raise NotFound(f"Resource type {resource_type!r} is not supported here (see /fhir/R4/metadata)",
                       code="fhir_type_not_supported")
    return spec


@fhir_router.get("/{resource_type}", response_class=FhirJSONResponse, summary="Search a resource type",
                 description="A `searchset` Bundle of the caller's organisation's resources matching the "
                             "parameters (see `metadata` for each type's parameters; `_count` ≤ 100, "
                             "`_offset`, `next`/`previous` links). Unknown parameters are ignored unless "
                             "`Prefer: handling=strict`. Scope `fhir:read`. Errors are OperationOutcome: "
                             "400 `invalid`/`code-invalid`/`not-supported`, 404 for an unsupported type.",
                 responses={200: {"content": _fhir_content({"resourceType": "Bundle", "type": "searchset",
                                                            "total": 0})},
                            400: {"content": _fhir_content(_OUTCOME_EXAMPLE)},
                            404: {"content": _fhir_content(_OUTCOME_EXAMPLE)}})
async def search(resource_type: str, request: Request, session: Session, ctx: AppContext,
                 who: Principal = Requires("fhir:read")) -> JSONResponse:
    spec = _spec(resource_type)
    if "search-type" not in spec.interactions:
        return outcome_response(405, f"{resource_type} cannot be searched", code="not-supported")
    items = list(request.query_params.multi_items())
    try:
        query = search_params.parse_query(spec, items, strict=_strict(request))
        page = await reads.search(session, who, resource_type, query)
    except search_params.SearchError as exc:
        return outcome_response(400, str(exc), code=exc.code, expression=[exc.param])
    used = [(k, v) for k, v in items if k not in query.ignored and k not in ("_format",)]
    outcome = None
    if query.ignored:
        outcome = mapping.operation_outcome("not-supported", "Ignored parameters: " + ", ".join(query.ignored),
                                            severity="warning")
    return fhir_json(bundles.searchset(base=_base(ctx), resource_type=resource_type, resources=page.resources,
                                       total=page.total, params=used, count=query.count, offset=query.offset,
                                       at=clock.now(), outcome=outcome))


@fhir_router.get("/{resource_type}/{id}", response_class=FhirJSONResponse, summary="Read a resource",
                 description="One resource of the caller's organisation by id. Another organisation's "
                             "resource, an unknown id or a deleted patient is 404 `not-found` "
                             "(OperationOutcome). Scope `fhir:read`.",
                 responses={200: {"content": _fhir_content({"resourceType": "Patient",
                                                            "id": "7d0e0c8e-3b8a-4d6e-9a43-2f9f3f1c2a10"})},
                            404: {"content": _fhir_content(_OUTCOME_EXAMPLE)}})
async def read(resource_type: str, resource_id: Annotated[str, PathParam(alias="id")], session: Session,
               who: Principal = Requires("fhir:read")) -> JSONResponse:
    spec = _spec(resource_type)
    if "read" not in spec.interactions:
        return outcome_response(405, f"{resource_type} resources cannot be read by id", code="not-supported")
    resource = await reads.read(session, who, resource_type, resource_id)
    return fhir_json(resource)


# --- EHR connections, sync log, JWKS ----------------------------------------------------------------

_CONNECTION_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such connection in this organisation (`fhir_connection_not_found`)"},
    422: {"description": "Invalid field, e.g. an unsafe URL (`unsafe_url`)"},
}


@jwks_router.get("/.well-known/jwks.json", summary="Our public signing keys (JWKS)",
                 description="The public keys of every SMART Backend Services connection, by `kid`. An EHR "
                             "registers this URL for our client and verifies our client assertions with it. "
                             "No authentication.",
                 responses={200: {"content": {"application/json": {"example": {"keys": [{
                     "kty": "EC", "crv": "P-384", "kid": "prm-5b1d0c4f9a7e2d3c1b0a", "alg": "ES384", "use": "sig",
                     "x": "...", "y": "...", "key_ops": ["verify"]}]}}}}})
async def jwks(session: Session) -> JSONResponse:
    return JSONResponse(await connections.jwks(session), headers={"Cache-Control": "max-age=300"})


@connections_router.post("/connections", status_code=201, response_model=ConnectionRead,
                         summary="Connect an EHR",
                         description="A FHIR endpoint the organisation's charts are pushed to. `auth=smart`: SMART "
                                     "Backend Services; a signing key is generated for the connection and published "
                                     "in `/.well-known/jwks.json` under `key_id` (register that JWKS URL and the "
                                     "client id with the EHR). `auth=bearer`: a static token, never shown again. "
                                     "Private addresses are refused (422 `unsafe_url`). Scope `admin`.",
                         responses={422: _CONNECTION_ERRORS[422]})
async def create_connection(body: ConnectionCreate, session: Session, ctx: AppContext,
                            who: Principal = Requires("admin")) -> ConnectionRead:
    connection = await connections.create(session, who, body, ctx.settings)
    return connections.read_model(connection, ctx.settings)


@connections_router.get("/connections", response_model=list[ConnectionRead], summary="List EHR connections",
                        description="The organisation's EHR connections (secrets are never returned). Scope `admin`.")
async def list_connections(session: Session, ctx: AppContext, who: Principal = Requires("admin")
                           ) -> list[ConnectionRead]:
    return [connections.read_model(c, ctx.settings) for c in await connections.list_all(session, who)]


@connections_router.get("/connections/{connection_id}", response_model=ConnectionRead,
                        summary="Read an EHR connection",
                        description="One connection, with its key id and last success or error. Scope `admin`; "
                                    "404 `fhir_connection_not_found`.",
                        responses={404: _CONNECTION_ERRORS[404]})
async def get_connection(connection_id: uuid.UUID, session: Session, ctx: AppContext,
                         who: Principal = Requires("admin")) -> ConnectionRead:
    return connections.read_model(await connections.get(session, who, connection_id), ctx.settings)


@connections_router.patch("/connections/{connection_id}", response_model=ConnectionRead,
                          summary="Change an EHR connection",
                          description="Change fields, disable/enable, replace the bearer token, or rotate the SMART "
                                      "signing key (`rotate_key: true`: a new `key_id`). Scope `admin`; 404 "
                                      "`fhir_connection_not_found`, 422 `unsafe_url`.",
                          responses=_CONNECTION_ERRORS)
async def update_connection(connection_id: uuid.UUID, body: ConnectionUpdate, session: Session, ctx: AppContext,
                            who: Principal = Requires("admin")) -> ConnectionRead:
    connection = await connections.update(session, who, connection_id, body, ctx.settings)
    return connections.read_model(connection, ctx.settings)


@connections_router.delete("/connections/{connection_id}", status_code=204, summary="Remove an EHR connection",
                           description="Deletes the connection, its links and its sync log. Scope `admin`; 404 "
                                       "`fhir_connection_not_found`.",
                           responses={404: _CONNECTION_ERRORS[404]})
async def delete_connection(connection_id: uuid.UUID, session: Session, who: Principal = Requires("admin")) -> None:
    await connections.delete(session, who, connection_id)


@connections_router.post("/connections/{connection_id}/sync", status_code=202, response_model=SyncRunRead,
                         summary="Push a patient's chart now",
                         description="Queues a sync run of the patient to this EHR (or joins the one already "
                                     "waiting). Scope `fhir:write`; 404 `fhir_connection_not_found` or "
                                     "`patient_not_found`, 409 `fhir_connection_disabled`.",
                         responses={404: _CONNECTION_ERRORS[404], 409: {"description": "The connection is disabled"}})
async def sync_now(connection_id: uuid.UUID, body: SyncRequest, session: Session,
                   who: Principal = Requires("fhir:write")) -> SyncRunRead:
    await references.require(session, who.org_id, "patient", body.patient_id, field="patient_id")
    return SyncRunRead.model_validate(await sync.request_sync(session, who, connection_id, body.patient_id))


@connections_router.get("/sync-runs", response_model=Page[SyncRunRead], summary="The sync log",
                        description="Sync runs, newest first, optionally of one patient, connection or status "
                                    "(queued, running, retrying, succeeded, failed, skipped). Scope `fhir:read`.")
async def list_sync_runs(session: Session, paging: Paging, patient_id: uuid.UUID | None = None,
                         connection_id: uuid.UUID | None = None,
                         status: RunStatus | None = None,
                         who: Principal = Requires("fhir:read")) -> Page[SyncRunRead]:
    await references.require(session, who.org_id, "patient", patient_id, field="patient_id")
    await references.require(session, who.org_id, "fhir_connection", connection_id, field="connection_id")
    rows, total = await sync.list_runs(session, who, paging, patient_id=patient_id, connection_id=connection_id,
                                       status=status)
    return Page(items=[SyncRunRead.model_validate(r) for r in rows], total=total, limit=paging.limit,
                offset=paging.offset)


@connections_router.get("/sync-runs/{sync_run_id}", response_model=SyncRunRead, summary="Read a sync run",
                        description="One run of the sync log. Scope `fhir:read`; 404 `fhir_sync_run_not_found`.",
                        responses={404: {"description": "No such run (`fhir_sync_run_not_found`)"}})
async def get_sync_run(sync_run_id: uuid.UUID, session: Session, who: Principal = Requires("fhir:read")
                       ) -> SyncRunRead:
    return SyncRunRead.model_validate(await sync.get_run(session, who, sync_run_id))


@connections_router.get("/connections/{connection_id}/links", response_model=list[LinkRead],
                        summary="What a patient's records are on the EHR",
                        description="The EHR ids and versions our records of the patient became on this "
                                    "connection. Scope `fhir:read`; 404 `fhir_connection_not_found`.",
                        responses={404: _CONNECTION_ERRORS[404]})
async def list_links(connection_id: uuid.UUID, patient_id: uuid.UUID, session: Session,
                     who: Principal = Requires("fhir:read")) -> list[LinkRead]:
    await references.require(session, who.org_id, "patient", patient_id, field="patient_id")
    return [LinkRead.model_validate(link) for link in await sync.links_of(session, who, connection_id, patient_id)]


def install(app: FastAPI, settings: Settings, sessionmaker: Any
            ) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """FHIR requests get OperationOutcome errors."""
    outcomes.install_handlers(app)

    @asynccontextmanager
    async def nothing(app: FastAPI) -> AsyncIterator[None]:
        yield

    return nothing

