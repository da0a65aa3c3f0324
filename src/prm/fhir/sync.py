"""Push sync: a patient's chart to each of the organisation's EHR connections.

* `enqueue(session, org_id, patient_id, trigger)` (event subscribers, the API) writes a `queued`
  run per enabled connection and defers its job, in the caller's transaction. At most one run per
  (connection, patient) waits at a time (a partial unique index): a trigger while one waits is added
  to it (`triggers`), so a burst of changes is one push of the latest state.
* The job `fhir.sync_patient` marks the run running (committed), then, holding a transaction-level
  advisory lock on (connection, patient), builds the chart, sends what changed as one transaction
  Bundle (`ifNoneExist` on our identifier for what the EHR does not have yet, PUT by EHR id for
  the rest) and records the EHR's ids and versions in `fhir_ehr_links`. The lock serialises every
  push of one patient to one EHR — two runs never race their conditional creates, which real FHIR
  servers do not make atomic — and the second run sees the links the first recorded, so it updates
  instead of creating. A conditional create the EHR matched to an existing resource (200) is
  followed by a PUT of our content in the same run.
* Failures: timeouts, 408/429/5xx and token-endpoint outages are retried with exponential backoff
  (honouring `Retry-After`) up to `FHIR_SYNC_MAX_ATTEMPTS`; a 401 drops the cached token and retries at once,
  once; other 4xx fail the run at once. Every attempt is in the run's row (the sync log).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from prm import context
from prm.appointments import service as appointments
from prm.appointments.service import Appointment, Location, Practitioner
from prm.core import audit, clock, events, jobs
from prm.core.auth import Principal
from prm.core.backoff import backoff_seconds
from prm.core.errors import Conflict, NotFound
from prm.core.pagination import PageParams, paginate
from prm.fhir import bundles, connections, ehr, mapping, reads, smart
from prm.fhir.bundles import ChartEntry, Known
from prm.fhir.models import WAITING, WAITING_SQL, EhrConnection, EhrLink, SyncRun
from prm.identity import service as identity
from prm.integrations import service as integrations
from prm.patients import service as patients
from prm.tickets import service as tickets
from prm.tickets.schemas import TicketCreate

log = structlog.get_logger(__name__)

SYNC_JOB = "fhir.sync_patient"
BACKOFF_MAX_SECONDS = 3600.0
SYNCED_EVENT = "fhir.patient_synced"

# Chart sources beyond the core ones (intake records, ...): fn(session, org_id, patient) -> entries
ChartSource = Any
_chart_sources: list[ChartSource] = []


def chart_source(fn: ChartSource) -> ChartSource:
    _chart_sources.append(fn)
    return fn


# --- enqueue -----------------------------------------------------------------------------------


async def enqueue(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, trigger: str, *,
                  connection_ids: list[uuid.UUID] | None = None) -> list[SyncRun]:
    """A waiting run (new, or the one already waiting) per enabled connection; returns them."""
    targets = await connections.enabled_of(session, org_id)
    if connection_ids is not None:
        targets = [c for c in targets if c.id in connection_ids]
    runs = []
    for connection in targets:
        runs.append(await _enqueue_one(session, connection, patient_id, trigger))
    return runs


async def _enqueue_one(session: AsyncSession, connection: EhrConnection, patient_id: uuid.UUID,
                       trigger: str) -> SyncRun:
    for _ in range(5):
        run_id = uuid.uuid4()
        async with session.begin_nested():
            inserted = await session.scalar(
                insert(SyncRun).values(id=run_id, org_id=connection.org_id, connection_id=connection.id,
                                       patient_id=patient_id, triggers=[trigger], status="queued", attempts=0,
                                       summary={}, created_at=clock.now(), updated_at=clock.now())
                .on_conflict_do_nothing(index_elements=["connection_id", "patient_id"],
                                        # a literal, as in the index: with bound parameters PostgreSQL
                                        # cannot match the partial index once psycopg prepares the
                                        # statement (a generic plan), and the insert fails
                                        index_where=text(WAITING_SQL))
                .returning(SyncRun.id))
        if inserted is not None:
            job_id = await jobs.defer(session, SYNC_JOB, org_id=str(connection.org_id), run_id=str(run_id))
            await session.execute(update(SyncRun).where(SyncRun.id == run_id).values(job_id=job_id))
            run = await session.get(SyncRun, run_id)
            assert run is not None
            return run
        waiting = await session.scalar(
            update(SyncRun).where(SyncRun.connection_id == connection.id, SyncRun.patient_id == patient_id,
                                  SyncRun.status.in_(WAITING))
            .values(triggers=func.array_append(SyncRun.triggers, trigger), updated_at=clock.now())
            .returning(SyncRun.id))
        if waiting is not None:
            run = await session.get(SyncRun, waiting, populate_existing=True)
            assert run is not None
            return run
    raise RuntimeError("could not queue a sync run")  # the waiting run kept finishing under us


async def request_sync(session: AsyncSession, who: Principal, connection_id: uuid.UUID,
                       patient_id: uuid.UUID) -> SyncRun:
    """Staff asks for a push now (the `manual` trigger)."""
    connection = await connections.get(session, who, connection_id)
    await patients.get(session, who.org_id, patient_id)
    if not connection.enabled:
        raise Conflict("The connection is disabled; enable it first", code="fhir_connection_disabled")
    run = await _enqueue_one(session, connection, patient_id, "manual")
    await audit.record(session, who, "sync", "fhir_connection", connection.id, patient_id=patient_id)
    return run


async def list_runs(session: AsyncSession, who: Principal, paging: PageParams, *, patient_id: uuid.UUID | None,
                    connection_id: uuid.UUID | None, status: str | None) -> tuple[list[SyncRun], int]:
    stmt = select(SyncRun).where(SyncRun.org_id == who.org_id)
    if patient_id is not None:
        stmt = stmt.where(SyncRun.patient_id == patient_id)
    if connection_id is not None:
        stmt = stmt.where(SyncRun.connection_id == connection_id)
    if status is not None:
        stmt = stmt.where(SyncRun.status == status)
    return await paginate(session, stmt.order_by(SyncRun.created_at.desc(), SyncRun.id), paging)


async def get_run(session: AsyncSession, who: Principal, run_id: uuid.UUID) -> SyncRun:
    run = await session.scalar(select(SyncRun).where(SyncRun.id == run_id, SyncRun.org_id == who.org_id))
    if run is None:
        raise NotFound("No such sync run", code="fhir_sync_run_not_found")
    return run


async def links_of(session: AsyncSession, who: Principal, connection_id: uuid.UUID,
                   patient_id: uuid.UUID) -> list[EhrLink]:
    await connections.get(session, who, connection_id)
    return list(await session.scalars(select(EhrLink).where(
        EhrLink.org_id == who.org_id, EhrLink.connection_id == connection_id, EhrLink.patient_id == patient_id)
        .order_by(EhrLink.resource_type, EhrLink.local_id)))


# --- the chart ---------------------------------------------------------------------------------


async def chart(session: AsyncSession, org_id: uuid.UUID, patient: Any) -> list[ChartEntry]:
    """The patient's records as resources, referenced ones first (organisation, patient,
    practitioners, locations), then appointments and what the chart sources add."""
    pid = str(patient.id)
    org = await identity.get_organisation(session, org_id)
    entries = [ChartEntry("Organization", str(org.id), mapping.organization(org))]
    if patient.merged_into_id is not None:
        survivor = await patients.get(session, org_id, patient.merged_into_id, with_contacts=True)
        entries.append(ChartEntry("Patient", str(survivor.id), mapping.patient(patients.to_fhir(survivor)),
                                  str(survivor.id)))
    entries.append(ChartEntry("Patient", pid, mapping.patient(patients.to_fhir(patient)), pid))
    rows = list(await session.scalars(select(Appointment).where(Appointment.org_id == org_id,
                                                                Appointment.patient_id == patient.id)
                                      .order_by(Appointment.start_at, Appointment.id)))
    practitioner_ids = sorted({r.practitioner_id for r in rows}, key=str)
    location_ids = sorted({r.location_id for r in rows}, key=str)
    for p in await session.scalars(select(Practitioner).where(Practitioner.org_id == org_id,
                                                              Practitioner.id.in_(practitioner_ids))
                                   .order_by(Practitioner.id)):
        entries.append(ChartEntry("Practitioner", str(p.id), mapping.practitioner(p)))
    for loc in await session.scalars(select(Location).where(Location.org_id == org_id,
                                                            Location.id.in_(location_ids)).order_by(Location.id)):
        entries.append(ChartEntry("Location", str(loc.id), mapping.location(loc, org_id)))
    for row, resource in zip(rows, await reads.appointments_as_fhir(session, org_id, rows), strict=True):
        entries.append(ChartEntry("Appointment", str(row.id), resource, pid))
    for source in _chart_sources:
        entries.extend(await source(session, org_id, patient))
    return entries


# --- the job -----------------------------------------------------------------------------------


def _lock_key(connection_id: uuid.UUID, patient_id: uuid.UUID) -> int:
    digest = hashlib.sha256(f"fhir-sync:{connection_id}:{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _known(session: AsyncSession, connection_id: uuid.UUID, entries: list[ChartEntry]
                 ) -> dict[tuple[str, str], Known]:
    if not entries:
        return {}
    rows = await session.scalars(select(EhrLink).where(
        EhrLink.connection_id == connection_id, EhrLink.local_id.in_({e.local_id for e in entries})))
    return {(r.resource_type, r.local_id): Known(r.ehr_id, r.content_sha256) for r in rows}


async def _record_links(session: AsyncSession, connection: EhrConnection, carried: list[ChartEntry],
                        results: list[ehr.EntryResult], force_next: set[tuple[str, str]],
                        summary: dict[str, int]) -> None:
    now = clock.now()
    for entry, result in zip(carried, results, strict=True):
        if result.skipped:
            summary["skipped"] = summary.get("skipped", 0) + 1
            continue
        if not result.ehr_id:
            raise ehr.EhrError(f"EHR gave no id for {entry.resource_type}", transient=False, status=result.status)
        key = (entry.resource_type, entry.local_id)
        matched_existing = result.status == 200 and key not in force_next and not await _is_linked(
            session, connection.id, key)
        kind = "created" if result.status == 201 else ("matched" if matched_existing else "updated")
        summary[kind] = summary.get(kind, 0) + 1
        content = None if matched_existing else bundles.digest(entry.resource)
        if matched_existing:
            force_next.add(key)  # the EHR kept its own copy: send ours as an update next round
        await session.execute(
            insert(EhrLink).values(id=uuid.uuid4(), org_id=connection.org_id, connection_id=connection.id,
                                   resource_type=entry.resource_type, local_id=entry.local_id,
                                   patient_id=uuid.UUID(entry.patient_id) if entry.patient_id else None,
                                   ehr_id=result.ehr_id, ehr_version=result.version, content_sha256=content,
                                   synced_at=now)
            .on_conflict_do_update(constraint="uq_fhir_ehr_links_local",
                                   set_={"ehr_id": result.ehr_id, "ehr_version": result.version,
                                         "content_sha256": content, "synced_at": now}))


async def _is_linked(session: AsyncSession, connection_id: uuid.UUID, key: tuple[str, str]) -> bool:
    return await session.scalar(select(EhrLink.id).where(
        EhrLink.connection_id == connection_id, EhrLink.resource_type == key[0], EhrLink.local_id == key[1])
    ) is not None


async def _headers(http: httpx.AsyncClient, connection: EhrConnection) -> dict[str, str]:
    if connection.auth == "bearer":
        return {"Authorization": f"Bearer {connection.bearer_token}"}
    try:
        # wall-clock time: the EHR checks the assertion's `exp` against its own clock
        token = await smart.access_token(http, connections.smart_client(connection), datetime.now(UTC))
    except smart.TokenError as exc:
        raise ehr.EhrError(str(exc), status=exc.status, transient=exc.transient) from None
    return {"Authorization": f"Bearer {token}"}


async def push(session: AsyncSession, connection: EhrConnection, patient: Any, http: httpx.AsyncClient
               ) -> dict[str, int]:
    """Send what changed of the patient's chart; returns counts (created, updated, matched, ...)."""
    entries = await chart(session, connection.org_id, patient)
    summary: dict[str, int] = {}
    force: set[tuple[str, str]] = set()
    adapter = ehr.ADAPTERS[connection.server_family]
    retried_auth = False
    for _round in range(3):
        known = await _known(session, connection.id, entries)
        bundle, carried = bundles.transaction(entries, known, force=frozenset(force))
        if bundle is None:
            break
        headers = await _headers(http, connection)
        try:
            results = await adapter(http, connection.base_url, bundle, headers)
        except ehr.EhrError as exc:
            if exc.unauthorized and connection.auth == "smart" and not retried_auth:
                smart.CACHE.forget(connections.smart_client(connection))  # revoked or expired early
                retried_auth = True
                continue
            raise
        force = set()
        await _record_links(session, connection, carried, results, force, summary)
        if not force:
            break
    summary["unchanged"] = len(entries) - sum(v for k, v in summary.items() if k != "matched")
    summary["unchanged"] = max(0, summary["unchanged"])
    return summary


async def run(session: AsyncSession, run_id: uuid.UUID) -> str:
    """One attempt of a sync run (the job); returns what happened."""
    async with jobs.checkpoint(session):
        sync_run = await session.scalar(select(SyncRun).where(SyncRun.id == run_id).with_for_update())
        if sync_run is None or sync_run.status not in (*WAITING, "running"):
            return "nothing_to_do"
        if sync_run.next_attempt_at is not None and sync_run.next_attempt_at > clock.now() + timedelta(seconds=1):
            return "not_due"
        sync_run.status, sync_run.started_at = "running", clock.now()
        sync_run.attempts += 1
    # Serialise every push of this patient to this EHR (see the module docstring).
    await session.execute(select(func.pg_advisory_xact_lock(_lock_key(sync_run.connection_id,
                                                                         sync_run.patient_id))))
    sync_run = await session.scalar(select(SyncRun).where(SyncRun.id == run_id).with_for_update()
                                    .execution_options(populate_existing=True))
    assert sync_run is not None
    connection = await session.get(EhrConnection, sync_run.connection_id)
    if connection is None or not connection.enabled:
        return _finish(sync_run, "skipped", error="the EHR connection is disabled")
    try:
        patient = await patients.get(session, sync_run.org_id, sync_run.patient_id, with_contacts=True)
    except NotFound:
        return _finish(sync_run, "skipped", error="the patient was deleted")
    if patient.merged_into_id is not None and not await session.scalar(select(EhrLink.id).where(
            EhrLink.connection_id == connection.id, EhrLink.resource_type == "Patient",
            EhrLink.local_id == str(patient.id))):
        return _finish(sync_run, "skipped", error="merged before it reached the EHR; the survivor carries the chart")
    consent = await patients.data_sharing_allows(session, sync_run.org_id, patient.id, purpose="ehr_export")
    if not consent.allowed and patient.merged_into_id is None:
        return _finish(sync_run, "skipped", error=f"no consent to share with the EHR ({consent.reason})")
    settings = context.of(session).settings
    try:
        await integrations.check_url(connection.base_url,
                                                 allow_private=settings.outbound_allow_private_targets)
        async with httpx.AsyncClient(timeout=settings.fhir_sync_timeout_seconds, follow_redirects=False) as http:
            summary = await push(session, connection, patient, http)
    except integrations.UnsafeTarget as exc:
        return _failed(sync_run, connection, f"unsafe target: {exc}", status=None)
    except ehr.EhrError as exc:
        sync_run.http_status = exc.status
        if exc.transient and sync_run.attempts < settings.fhir_sync_max_attempts:
            backoff = backoff_seconds(sync_run.attempts - 1, base_seconds=settings.fhir_sync_retry_base_seconds,
                                      max_seconds=BACKOFF_MAX_SECONDS)
            delay = max(exc.retry_after or 0.0, backoff)
            sync_run.status, sync_run.error = "retrying", str(exc)[:1000]
            sync_run.next_attempt_at = clock.now() + timedelta(seconds=delay)
            connection.last_error = str(exc)[:1000]
            sync_run.job_id = await jobs.defer(session, SYNC_JOB, schedule_at=sync_run.next_attempt_at,
                                               org_id=str(sync_run.org_id), run_id=str(sync_run.id))
            log.warning("fhir.sync_retry", run_id=str(sync_run.id), attempt=sync_run.attempts, status=exc.status)
            return "retry_scheduled"
        return _failed(sync_run, connection, str(exc), status=exc.status)
    sync_run.summary = summary
    sync_run.http_status = 200
    connection.last_success_at, connection.last_error = clock.now(), None
    _finish(sync_run, "succeeded")
    await events.publish(session, events.Event(type=SYNCED_EVENT, org_id=sync_run.org_id, payload={
        "patient_id": str(sync_run.patient_id), "connection_id": str(connection.id), "run_id": str(sync_run.id),
        "triggers": list(sync_run.triggers), "summary": summary}))
    return "succeeded"


def _finish(sync_run: SyncRun, status: str, *, error: str | None = None) -> str:
    sync_run.status, sync_run.finished_at, sync_run.next_attempt_at = status, clock.now(), None
    sync_run.error = error[:1000] if error else None
    return status


def _failed(sync_run: SyncRun, connection: EhrConnection, error: str, *, status: int | None) -> str:
    connection.last_error = error[:1000]
    sync_run.http_status = status
    log.warning("fhir.sync_failed", run_id=str(sync_run.id), status=status)
    return _finish(sync_run, "failed", error=error)



async def tell_practitioner(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID,
                            connection_id: uuid.UUID, run_id: uuid.UUID) -> uuid.UUID | None:
    """A ticket for the practitioner of the patient's next appointment: the intake is in the EHR
    chart. Idempotent per sync run (the ticket carries the run id as a tag). Returns the ticket id."""
    tag = f"fhir-run-{run_id.hex[:12]}"
    system = Principal.system(org_id)
    upcoming = await appointments.upcoming_for_patient(session, system, patient_id, limit=1)
    practitioner = (await appointments.get_practitioner(session, org_id, upcoming[0].practitioner_id)
                    if upcoming else None)
    _, existing = await tickets.list_tickets(session, system, tickets.TicketFilters(patient_id=patient_id, tag=tag),
                                             PageParams(limit=1, offset=0))
    if existing:  # this run's event delivered twice
        return None
    connection = await session.get(EhrConnection, connection_id)
    link = await session.scalar(select(EhrLink.ehr_id).where(
        EhrLink.connection_id == connection_id, EhrLink.resource_type == "Patient",
        EhrLink.local_id == str(patient_id)))
    when = upcoming[0].start_at.isoformat() if upcoming else None
    ticket = await tickets.create(session, system, TicketCreate(
        subject="Intake is in the EHR chart" + (f" for {practitioner.name}" if practitioner else ""),
        description=(f"The patient's submitted intake reached {connection.name if connection else 'the EHR'}"
                     + (f" (EHR Patient/{link})" if link else "") + "."
                     + (f" Their next appointment is at {when}." if when else " They have no upcoming appointment.")),
        category="intake", priority="normal", patient_id=patient_id,
        assignee_id=practitioner.user_id if practitioner else None,
        auto_assign=practitioner is None or practitioner.user_id is None, tags=["intake", "ehr", tag]),
        source="system")
    return uuid.UUID(str(ticket.id))
