"""Bulk Data `$export` (FHIR Bulk Data Access 2.0, asynchronous request pattern).

* Kick-off (`GET`/`POST` `/fhir/R4/$export`, `/Patient/$export`, `/Group/<id>/$export`, with
  `Prefer: respond-async`): a `fhir_bulk_exports` row and its job; 202 with `Content-Location` =
  the status URL. One export in progress per client (the credential): another one is 429.
* The job `fhir.export` writes one NDJSON file per resource type (every line a resource validated by
  `mapping.validated`) to object storage (the media store: local disk or S3), keyed
  `fhir-export/<org>/<export>/<Type>.ndjson`, and records the manifest's `output`.
* Status (`GET /fhir/R4/$export-status/<id>`): 202 with `X-Progress` and `Retry-After` while it runs,
  200 with the manifest when complete, 500 with an OperationOutcome when it failed. `DELETE`
  cancels (and deletes the files). Files are served at `/fhir/R4/$export-file/<id>/<Type>.ndjson` to
  the client that asked (`requiresAccessToken: true`) until the export expires.

Levels: system (every type), `Patient` (the patient compartment: Patient, Appointment,
Communication, ... of every patient), `Group/<practitioner id>` (the same, for the patients with an
appointment with that practitioner).
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from prm import context
from prm.adapters import storage as storage_adapter
from prm.appointments import service as appointments
from prm.appointments.service import Appointment, Location, Practitioner, Service
from prm.communications.service import Communication
from prm.core import audit, clock, jobs
from prm.core.auth import Principal
from prm.core.errors import BadRequest, NotFound, RateLimited
from prm.fhir import mapping, reads
from prm.fhir.models import EXPORT_ACTIVE, BulkExport
from prm.identity import service as identity
from prm.patients import service as patients
from prm.patients.service import Patient
from prm.settings import Settings

EXPORT_JOB = "fhir.export"
NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
EXPIRES_AFTER = timedelta(hours=24)
BATCH = 500
RETRY_AFTER_SECONDS = 5

SYSTEM_TYPES = ("Organization", "Practitioner", "Location", "HealthcareService", "Schedule", "Patient",
                "Appointment", "Communication")
PATIENT_TYPES = ("Patient", "Appointment", "Communication")

# More exportable types (intake records): type -> (patient compartment?, fn(session, org_id, patient_ids|None, since))
Exporter = Callable[[AsyncSession, uuid.UUID, "list[uuid.UUID] | None", "datetime | None"],
                    AsyncIterator[dict[str, Any]]]
_extra_exporters: dict[str, tuple[bool, Exporter]] = {}


def exporter(resource_type: str, *, patient_compartment: bool) -> Callable[[Exporter], Exporter]:
    def register(fn: Exporter) -> Exporter:
        _extra_exporters[resource_type] = (patient_compartment, fn)
        return fn
    return register


def system_types() -> tuple[str, ...]:
    return SYSTEM_TYPES + tuple(_extra_exporters)


def patient_types() -> tuple[str, ...]:
    return PATIENT_TYPES + tuple(t for t, (compartment, _) in _extra_exporters.items() if compartment)


# --- kick-off, status, cancel ----------------------------------------------------------------------


def parse_since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        since = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"_since: {raw!r} is not a FHIR instant", code="invalid_since") from None
    if since.tzinfo is None:
        raise BadRequest("_since: an instant needs a time zone (e.g. 2026-11-01T00:00:00Z)", code="invalid_since")
    return since


def parse_types(raw: Sequence[str], allowed: Sequence[str]) -> list[str]:
    wanted = [t.strip() for value in raw for t in value.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in allowed]
    if unknown:
        raise BadRequest(f"_type: {', '.join(unknown)} cannot be exported at this level (exportable: "
                         f"{', '.join(allowed)})", code="unsupported_type")
    return list(dict.fromkeys(wanted)) or list(allowed)


async def kick_off(session: AsyncSession, who: Principal, *, level: str, group_id: uuid.UUID | None,
                   types: Sequence[str], since: str | None, output_format: str | None, request_url: str
                   ) -> BulkExport:
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise BadRequest(f"_outputFormat: only {NDJSON} is supported", code="unsupported_format")
    allowed = system_types() if level == "system" else patient_types()
    chosen = parse_types(types, allowed)
    parsed_since = parse_since(since)
    if level == "group":
        assert group_id is not None
        await _group_exists(session, who.org_id, group_id)
    active = await session.scalar(select(BulkExport.id).where(
        BulkExport.org_id == who.org_id, BulkExport.requested_by == who.credential,
        BulkExport.status.in_(EXPORT_ACTIVE)))
    if active is not None:
        raise RateLimited(RETRY_AFTER_SECONDS * 6, detail=f"Export {active} of this client is still in progress; "
                                                          "wait for it or cancel it")
    export = BulkExport(id=uuid.uuid4(), org_id=who.org_id, requested_by=who.credential, level=level,
                        group_id=group_id, types=chosen, since=parsed_since, request_url=request_url,
                        status="queued", transaction_time=clock.now(), output=[])
    try:
        async with session.begin_nested():
            session.add(export)
            await session.flush()
    except IntegrityError:  # a concurrent kick-off of the same client won the unique index
        raise RateLimited(RETRY_AFTER_SECONDS * 6, detail="An export of this client is already in progress") from None
    await jobs.defer(session, EXPORT_JOB, org_id=str(who.org_id), export_id=str(export.id))
    await audit.record(session, who, "export", "fhir_bulk_export", export.id,
                       details={"level": level, "types": chosen, "group_id": str(group_id) if group_id else None})
    return export


async def _group_exists(session: AsyncSession, org_id: uuid.UUID, group_id: uuid.UUID) -> None:
    if await session.scalar(select(Practitioner.id).where(Practitioner.org_id == org_id,
                                                          Practitioner.id == group_id)) is None:
        raise NotFound(f"Group/{group_id} is not known", code="fhir_resource_not_found")


async def get(session: AsyncSession, who: Principal, export_id: uuid.UUID, *, for_update: bool = False
              ) -> BulkExport:
    stmt = select(BulkExport).where(BulkExport.id == export_id, BulkExport.org_id == who.org_id,
                                    BulkExport.requested_by == who.credential, BulkExport.status != "cancelled")
    if for_update:
        stmt = stmt.with_for_update()
    export = await session.scalar(stmt)
    if export is None or (export.expires_at is not None and export.expires_at <= clock.now()):
        raise NotFound("No such export (unknown, cancelled, expired, or another client's)",
                       code="fhir_export_not_found")
    return export


def file_name(resource_type: str) -> str:
    return f"{resource_type}.ndjson"


def storage_key(export: BulkExport, resource_type: str) -> str:
    return f"fhir-export/{export.org_id}/{export.id}/{file_name(resource_type)}"


def manifest(export: BulkExport, base: str) -> dict[str, Any]:
    return {
        "transactionTime": export.transaction_time.isoformat(),
        "request": export.request_url,
        "requiresAccessToken": True,
        "output": [{"type": o["type"], "url": f"{base}/$export-file/{export.id}/{file_name(o['type'])}",
                    "count": o["count"]} for o in export.output],
        "error": [],
    }


async def cancel(session: AsyncSession, who: Principal, export_id: uuid.UUID, settings: Settings) -> None:
    export = await get(session, who, export_id, for_update=True)
    store = storage_adapter.for_settings(settings)
    for output in export.output:
        await anyio.to_thread.run_sync(store.delete, storage_key(export, output["type"]))
    export.status, export.output = "cancelled", []
    await audit.record(session, who, "cancel", "fhir_bulk_export", export.id)


async def open_file(session: AsyncSession, who: Principal, export_id: uuid.UUID, name: str,
                    settings: Settings) -> Iterator[bytes]:
    export = await get(session, who, export_id)
    match = [o for o in export.output if file_name(o["type"]) == name]
    if export.status != "completed" or not match:
        raise NotFound("No such file in this export", code="fhir_export_file_not_found")
    store = storage_adapter.for_settings(settings)
    await audit.record(session, who, "read", "fhir_bulk_export", export.id,
                       details={"type": match[0]["type"], "count": match[0]["count"]})
    return store.read_chunks(storage_key(export, match[0]["type"]))


# --- the job ------------------------------------------------------------------------------------------


async def _patient_ids(session: AsyncSession, export: BulkExport) -> list[uuid.UUID] | None:
    if export.level == "system":
        return None
    stmt = select(Patient.id).where(Patient.org_id == export.org_id, Patient.deleted_at.is_(None))
    if export.level == "group":
        stmt = stmt.where(Patient.id.in_(select(Appointment.patient_id).where(
            Appointment.org_id == export.org_id, Appointment.practitioner_id == export.group_id)))
    return list(await session.scalars(stmt.order_by(Patient.id)))


async def _batches(session: AsyncSession, stmt: Any, key: Any) -> AsyncIterator[list[Any]]:
    last: Any = None
    while True:
        page = stmt if last is None else stmt.where(key > last)
        rows = list((await session.scalars(page.order_by(key).limit(BATCH))).unique())
        if not rows:
            return
        yield rows
        last = rows[-1].id


def _since(stmt: Any, model: Any, since: datetime | None) -> Any:
    return stmt.where(model.updated_at >= since) if since is not None else stmt


async def _resources(session: AsyncSession, org_id: uuid.UUID, resource_type: str,
                     patient_ids: list[uuid.UUID] | None, since: datetime | None) -> AsyncIterator[dict[str, Any]]:
    if resource_type in _extra_exporters:
        async for resource in _extra_exporters[resource_type][1](session, org_id, patient_ids, since):
            yield resource
        return
    if resource_type == "Organization":
        org = await identity.get_organisation(session, org_id)
        if since is None or org.updated_at >= since:
            yield mapping.organization(org)
        return
    if resource_type == "Patient":
        stmt = select(Patient).where(Patient.org_id == org_id, Patient.deleted_at.is_(None)).options(
            selectinload(Patient.phones), selectinload(Patient.emails), selectinload(Patient.identifiers))
        if patient_ids is not None:
            stmt = stmt.where(Patient.id.in_(patient_ids))
        async for rows in _batches(session, _since(stmt, Patient, since), Patient.id):
            for p in rows:
                yield mapping.patient(patients.to_fhir(p))
        return
    if resource_type == "Appointment":
        stmt_a: Any = select(Appointment).where(Appointment.org_id == org_id)
        if patient_ids is not None:
            stmt_a = stmt_a.where(Appointment.patient_id.in_(patient_ids))
        async for rows in _batches(session, _since(stmt_a, Appointment, since), Appointment.id):
            for resource in await reads.appointments_as_fhir(session, org_id, rows):
                yield resource
        return
    if resource_type == "Communication":
        stmt_c: Any = select(Communication).where(Communication.org_id == org_id)
        if patient_ids is not None:
            stmt_c = stmt_c.where(Communication.patient_id.in_(patient_ids))
        async for rows in _batches(session, _since(stmt_c, Communication, since), Communication.id):
            for c in rows:
                yield mapping.communication(c)
        return
    simple: dict[str, tuple[Any, Callable[[Any], dict[str, Any]]]] = {
        "Practitioner": (Practitioner, mapping.practitioner),
        "Location": (Location, lambda row: mapping.location(row, org_id)),
        "HealthcareService": (Service, mapping.healthcare_service),
    }
    if resource_type in simple:
        model, fn = simple[resource_type]
        async for rows in _batches(session, _since(select(model).where(model.org_id == org_id), model, since),
                                   model.id):
            for row in rows:
                yield fn(row)
        return
    if resource_type == "Schedule":
        services = list(await session.scalars(select(Service).where(Service.org_id == org_id)))
        stmt = _since(select(Practitioner).where(Practitioner.org_id == org_id), Practitioner, since)
        async for rows in _batches(session, stmt, Practitioner.id):
            for practitioner in rows:
                rules = await appointments.list_rules(session, org_id, practitioner.id)
                offered = [(s.id, s.name) for s in services if any(p.id == practitioner.id for p in s.practitioners)]
                yield mapping.schedule(practitioner, [r.location_id for r in rules], offered)
        return
    raise ValueError(f"no exporter for {resource_type}")


async def _write(store: Any, key: str, lines: list[bytes]) -> None:
    data = b"".join(lines)
    digest = hashlib.sha256(data).hexdigest()
    await anyio.to_thread.run_sync(lambda: store.write(key, io.BytesIO(data), content_type=NDJSON, size=len(data),
                                                       sha256_hex=digest))


async def run(session: AsyncSession, export_id: uuid.UUID) -> str:
    """Write the export's files (the job); safe to run again (files are rewritten)."""
    async with jobs.checkpoint(session):
        export = await session.scalar(select(BulkExport).where(BulkExport.id == export_id).with_for_update())
        if export is None or export.status not in EXPORT_ACTIVE:
            return "nothing_to_do"
        export.status, export.progress = "running", "starting"
    store = storage_adapter.for_settings(context.of(session).settings)
    patient_ids = await _patient_ids(session, export)
    output: list[dict[str, Any]] = []
    try:
        for i, resource_type in enumerate(export.types):
            lines = [json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                     async for r in _resources(session, export.org_id, resource_type, patient_ids, export.since)]
            if lines:
                await _write(store, storage_key(export, resource_type), lines)
                output.append({"type": resource_type, "count": len(lines)})
            async with jobs.checkpoint(session):
                current = await session.scalar(select(BulkExport.status).where(BulkExport.id == export_id)
                                               .with_for_update())
                if current != "running":  # cancelled meanwhile: leave no files behind
                    for done in output:
                        await anyio.to_thread.run_sync(store.delete, storage_key(export, done["type"]))
                    return "cancelled"
                export.progress = f"{i + 1} of {len(export.types)} types written"
    except (storage_adapter.StorageError, mapping.MappingError) as exc:
        export.status, export.error, export.progress = "failed", f"{type(exc).__name__}: {exc}"[:2000], None
        return "failed"
    export.status, export.output, export.progress = "completed", output, None
    export.completed_at = clock.now()
    export.expires_at = clock.now() + EXPIRES_AFTER
    return "completed"

