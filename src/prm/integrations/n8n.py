"""n8n workflows: per-organisation configuration, triggered runs, authenticated callbacks.

A run is `pending` from its trigger until the first valid callback (`succeeded`, or `failed` when
its action could not be done), a permanent refusal or exhausted retries of n8n (`failed`), or its
deadline (`timed_out`). The trigger POSTs `{type, timestamp, run_id, data, callback}` with Standard
Webhooks headers (`webhook-id` = run id) and an `Authorization: Bearer` HS256 JWT that n8n's
Webhook node verifies with the shared secret; the JWT's audience is the workflow key and it
carries the body's SHA-256. The callback authenticates with the run's own token (an HMAC of the
run id under the service's secret key, so it is never stored), optionally also an HMAC of the raw
body. The run row is locked while a callback acts, so of duplicated or concurrent callbacks the
first wins and later identical ones get the stored answer; n8n running a workflow 2–3 times for
one call therefore acts once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import structlog
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from prm.appointments import service as appointments
from prm.appointments.schemas import AppointmentCreate
from prm.conversations import service as conversations
from prm.core import audit, clock, events, jobs, rowlock
from prm.core.auth import Principal
from prm.core.errors import Conflict, DomainError, NotFound, Unauthenticated, ValidationFailed
from prm.core.pagination import PageParams, paginate
from prm.integrations import calls, payloads
from prm.integrations.calls import checked_url, new_secret
from prm.integrations.models import N8nIntegration, WorkflowAttempt, WorkflowRun
from prm.integrations.schemas import (
    BookingResponse,
    Callback,
    ConfirmSlot,
    N8nIntegrationCreate,
    N8nIntegrationUpdate,
    RunCreate,
    Triage,
)
from prm.patients import service as patients
from prm.settings import Settings
from prm.tickets import service as tickets
from prm.tickets.schemas import TicketCreate, TicketUpdate

log = structlog.get_logger(__name__)

CALL_JOB = "integrations.n8n_call"
EXPIRE_JOB = "integrations.n8n_expire"
CALL_RETRY_SECONDS: tuple[int, ...] = (5, 30, 120, 600, 1800)
_callback_adapter: TypeAdapter[Any] = TypeAdapter(Callback)


# --- configuration -----------------------------------------------------------------------------


def _check_triggers(workflows: dict[str, str], triggers: dict[str, str]) -> None:
    for event_type, key in triggers.items():
        if key not in workflows:
            raise ValidationFailed.field(f"event_triggers.{event_type}", f"no workflow with key {key!r}",
                                         code="unknown_workflow")


async def create_integration(session: AsyncSession, who: Principal, data: N8nIntegrationCreate,
                             settings: Settings) -> N8nIntegration:
    await checked_url(data.base_url, settings, "base_url")
    _check_triggers(data.workflows, data.event_triggers)
    existing = await session.scalar(select(N8nIntegration.id).where(
        N8nIntegration.org_id == who.org_id, N8nIntegration.name == data.name))
    if existing is not None:
        raise Conflict(f"An n8n integration named {data.name!r} exists already", code="integration_exists")
    integration = N8nIntegration(id=uuid.uuid4(), org_id=who.org_id, secret=new_secret(), **data.model_dump())
    session.add(integration)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict(f"An n8n integration named {data.name!r} exists already", code="integration_exists") from None
    await audit.record(session, who, "create", "n8n_integration", integration.id)
    return integration


async def get_integration(session: AsyncSession, who: Principal, integration_id: uuid.UUID,
                          *, for_update: bool = False) -> N8nIntegration:
    stmt = select(N8nIntegration).where(N8nIntegration.id == integration_id, N8nIntegration.org_id == who.org_id)
    if for_update:
        stmt = stmt.with_for_update()
    integration = await session.scalar(stmt)
    if integration is None:
        raise NotFound("No such n8n integration", code="n8n_integration_not_found")
    return integration


async def list_integrations(session: AsyncSession, who: Principal) -> list[N8nIntegration]:
    rows = await session.scalars(select(N8nIntegration).where(N8nIntegration.org_id == who.org_id)
                                 .order_by(N8nIntegration.name))
    return list(rows)


async def update_integration(session: AsyncSession, who: Principal, integration_id: uuid.UUID,
                             data: N8nIntegrationUpdate, settings: Settings) -> N8nIntegration:
    integration = await get_integration(session, who, integration_id, for_update=True)
    changes = data.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None:
            raise ValidationFailed.field(name, "may not be null")
    if "base_url" in changes:
        await checked_url(changes["base_url"], settings, "base_url")
    _check_triggers(changes.get("workflows", integration.workflows),
                    changes.get("event_triggers", integration.event_triggers))
    for name, value in changes.items():
        setattr(integration, name, value)
    await session.flush()
    await audit.record(session, who, "update", "n8n_integration", integration.id, details={"fields": sorted(changes)})
    return integration


async def delete_integration(session: AsyncSession, who: Principal, integration_id: uuid.UUID) -> None:
    integration = await get_integration(session, who, integration_id, for_update=True)
    await session.delete(integration)
    await session.flush()
    await audit.record(session, who, "delete", "n8n_integration", integration_id)


async def rotate_secret(session: AsyncSession, who: Principal, integration_id: uuid.UUID) -> N8nIntegration:
    """A new shared secret signs from now on; callbacks signed with the old one are accepted for 24 h."""
    integration = await get_integration(session, who, integration_id, for_update=True)
    calls.rotate(integration)
    await session.flush()
    await audit.record(session, who, "rotate_secret", "n8n_integration", integration.id)
    return integration


# --- runs --------------------------------------------------------------------------------------


def callback_token(run: WorkflowRun, settings: Settings) -> str:
    digest = hmac.new(settings.jwt_secret().encode(), f"n8n-callback:{run.id}:{run.token_nonce}".encode(),
                      hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def callback_url(run: WorkflowRun, settings: Settings) -> str:
    return f"{settings.public_base_url.rstrip('/')}/integrations/n8n/runs/{run.id}/callback"


async def _start(session: AsyncSession, integration: N8nIntegration, *, workflow_key: str, data: dict[str, Any],
                 patient_id: uuid.UUID | None, conversation_id: uuid.UUID | None,
                 source_event_id: uuid.UUID | None) -> uuid.UUID | None:
    run_id = uuid.uuid4()
    now = clock.now()
    deadline = now + timedelta(seconds=integration.callback_timeout_seconds)
    stmt: Any = insert(WorkflowRun).values(
        id=run_id, org_id=integration.org_id, integration_id=integration.id, workflow_key=workflow_key,
        status="pending", data=data, source_event_id=source_event_id, patient_id=patient_id,
        conversation_id=conversation_id, token_nonce=secrets.token_hex(16), deadline_at=deadline, attempts=0,
        created_at=now,
    ).returning(WorkflowRun.id)
    if source_event_id is not None:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=["integration_id", "workflow_key", "source_event_id"],
            index_where=WorkflowRun.source_event_id.isnot(None))
    inserted = await session.scalar(stmt)
    if inserted is None:
        return None
    await jobs.defer(session, CALL_JOB, org_id=str(integration.org_id), run_id=str(run_id))
    await jobs.defer(session, EXPIRE_JOB, schedule_at=deadline, org_id=str(integration.org_id), run_id=str(run_id))
    return run_id


async def trigger(session: AsyncSession, who: Principal, data: RunCreate) -> WorkflowRun:
    """Start a workflow run by hand (or from a journey step); 202 and the run, answered by callback."""
    integration = await session.scalar(select(N8nIntegration).where(
        N8nIntegration.org_id == who.org_id, N8nIntegration.name == data.integration))
    if integration is None:
        raise ValidationFailed.field("integration", "no n8n integration with this name", code="unknown_integration")
    if not integration.enabled:
        raise ValidationFailed.field("integration", "the integration is disabled", code="integration_disabled")
    if data.workflow_key not in integration.workflows:
        raise ValidationFailed.field("workflow_key", "no workflow with this key", code="unknown_workflow")
    if data.patient_id is not None:
        try:
            await patients.get(session, who.org_id, data.patient_id)
        except NotFound:
            raise ValidationFailed.field("patient_id", "no such patient in this organisation",
                                         code="patient_not_found") from None
    if data.conversation_id is not None:
        try:
            await conversations.get(session, who.org_id, data.conversation_id)
        except NotFound:
            raise ValidationFailed.field("conversation_id", "no such conversation in this organisation",
                                         code="conversation_not_found") from None
    run_id = await _start(session, integration, workflow_key=data.workflow_key, data=data.data,
                          patient_id=data.patient_id, conversation_id=data.conversation_id, source_event_id=None)
    assert run_id is not None
    await audit.record(session, who, "create", "n8n_workflow_run", run_id, patient_id=data.patient_id,
                       details={"workflow_key": data.workflow_key})
    return await get_run(session, who, run_id)


async def trigger_on_event(session: AsyncSession, event: events.Event) -> int:
    """Runs for the workflows mapped to this event type (once per event, however often delivered)."""
    integrations = await session.scalars(select(N8nIntegration).where(
        N8nIntegration.org_id == event.org_id, N8nIntegration.enabled.is_(True)))
    started = 0
    for integration in integrations:
        for pattern, key in integration.event_triggers.items():
            if not payloads.wants([pattern], event.type) or key not in integration.workflows:
                continue
            started += await _start(
                session, integration, workflow_key=key,
                data={"event": {"id": str(event.id), "type": event.type, **payloads.thin(event.payload)}},
                patient_id=_uuid(event.payload.get("patient_id")),
                conversation_id=_uuid(event.payload.get("conversation_id")), source_event_id=event.id,
            ) is not None
    return started


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


async def get_run(session: AsyncSession, who: Principal, run_id: uuid.UUID) -> WorkflowRun:
    run = await session.scalar(select(WorkflowRun).where(WorkflowRun.id == run_id, WorkflowRun.org_id == who.org_id))
    if run is None:
        raise NotFound("No such workflow run", code="workflow_run_not_found")
    return run


async def list_runs(session: AsyncSession, who: Principal, paging: PageParams, *, status: str | None = None,
                    workflow_key: str | None = None) -> tuple[list[WorkflowRun], int]:
    stmt = select(WorkflowRun).where(WorkflowRun.org_id == who.org_id)
    if status is not None:
        stmt = stmt.where(WorkflowRun.status == status)
    if workflow_key is not None:
        stmt = stmt.where(WorkflowRun.workflow_key == workflow_key)
    return await paginate(session, stmt.order_by(WorkflowRun.created_at.desc(), WorkflowRun.id), paging)


async def attempts_of(session: AsyncSession, who: Principal, run_id: uuid.UUID) -> list[WorkflowAttempt]:
    await get_run(session, who, run_id)
    rows = await session.scalars(select(WorkflowAttempt).where(WorkflowAttempt.run_id == run_id)
                                 .order_by(WorkflowAttempt.id))
    return list(rows)


async def retry(session: AsyncSession, who: Principal, run_id: uuid.UUID) -> WorkflowRun:
    """Run a failed or timed-out workflow again: a fresh deadline and a fresh callback token."""
    run = await session.scalar(select(WorkflowRun).where(WorkflowRun.id == run_id, WorkflowRun.org_id == who.org_id)
                               .with_for_update())
    if run is None:
        raise NotFound("No such workflow run", code="workflow_run_not_found")
    if run.status not in ("failed", "timed_out"):
        raise Conflict(f"Only failed or timed-out runs can be retried (this one is {run.status})",
                       code="run_not_retryable", allowed=["failed", "timed_out"])
    integration = await get_integration(session, who, run.integration_id)
    run.status, run.attempts, run.last_error, run.completed_at = "pending", 0, None, None
    run.action, run.result, run.result_status, run.callback_sha256 = None, None, None, None
    run.token_nonce = secrets.token_hex(16)
    run.deadline_at = clock.now() + timedelta(seconds=integration.callback_timeout_seconds)
    await jobs.defer(session, CALL_JOB, org_id=str(who.org_id), run_id=str(run.id))
    await jobs.defer(session, EXPIRE_JOB, schedule_at=run.deadline_at, org_id=str(who.org_id), run_id=str(run.id))
    await audit.record(session, who, "retry", "n8n_workflow_run", run.id)
    return run


# --- calling n8n -------------------------------------------------------------------------------


def request_of(run: WorkflowRun, integration: N8nIntegration, settings: Settings) -> tuple[str, bytes, dict[str, str]]:
    """URL, body and headers of the POST that starts the workflow (signed afresh each time)."""
    signed_at = datetime.now(UTC)  # wall-clock: n8n compares it with its own clock
    body = json.dumps({
        "type": run.workflow_key,
        "timestamp": signed_at.isoformat(),
        "run_id": str(run.id),
        "data": run.data,
        "callback": {"url": callback_url(run, settings), "token": callback_token(run, settings),
                     "expires_at": run.deadline_at.isoformat()},
    }, separators=(",", ":"), default=str)
    issued = int(signed_at.timestamp())
    token = jwt.encode({
        "iss": "prm", "aud": run.workflow_key, "sub": str(run.org_id), "iat": issued,
        "exp": issued + settings.n8n_jwt_ttl_seconds, "jti": f"{run.id}:{run.attempts + 1}", "run_id": str(run.id),
        "body_sha256": hashlib.sha256(body.encode()).hexdigest(),
    }, integration.secret, algorithm="HS256")
    msg_id = str(run.id)
    headers = {
        "content-type": "application/json", "user-agent": "prm-n8n/1", "authorization": f"Bearer {token}",
        "webhook-id": msg_id, "webhook-timestamp": str(issued),
        "webhook-signature": Webhook(integration.secret).sign(msg_id, signed_at, body),
    }
    path = integration.workflows[run.workflow_key]
    return f"{integration.base_url.rstrip('/')}/{path.lstrip('/')}", body.encode(), headers


async def call(session: AsyncSession, run_id: uuid.UUID, settings: Settings) -> str:
    """POST the run to n8n once; schedules its own retry (network errors, 408, 429, 5xx)."""
    run = await rowlock.lock(session, WorkflowRun, run_id)
    if run is None or rowlock.idle(run, "pending"):
        return "nothing_to_do"
    if clock.now() >= run.deadline_at:
        return "past_deadline"
    integration = await session.get(N8nIntegration, run.integration_id)
    if integration is None or not integration.enabled or run.workflow_key not in integration.workflows:
        await _finish_unanswered(session, run, integration, "failed", "integration disabled or workflow removed")
        return "failed"
    url, body, headers = request_of(run, integration, settings)
    attempt = await calls.post_once(url, body, headers, timeout_seconds=integration.request_timeout_seconds,
                                    settings=settings)
    status_code = attempt.status_code
    run.attempts += 1
    session.add(WorkflowAttempt(org_id=run.org_id, run_id=run.id, attempted_at=clock.now(), status_code=status_code,
                                duration_ms=attempt.duration_ms, error=attempt.error,
                                response_excerpt=attempt.excerpt))
    if attempt.ok:
        run.last_error = None
        return "accepted"
    run.last_error = attempt.error or f"n8n answered {status_code}"
    permanent = attempt.unsafe
    if status_code is not None and 400 <= status_code < 500 and status_code not in (408, 429):
        permanent = True
    if not permanent and run.attempts <= len(CALL_RETRY_SECONDS):
        delay = payloads.next_delay(run.attempts, attempt.retry_after, CALL_RETRY_SECONDS)
        assert delay is not None
        at = clock.now() + timedelta(seconds=delay)
        if at < run.deadline_at:
            await jobs.defer(session, CALL_JOB, schedule_at=at, org_id=str(run.org_id), run_id=str(run.id))
            return "retry_scheduled"
    await _finish_unanswered(session, run, integration, "failed", run.last_error)
    return "failed"


async def expire(session: AsyncSession, run_id: uuid.UUID) -> str:
    """At the deadline: a run still waiting for its callback is timed out and the fallback runs."""
    run = await rowlock.lock(session, WorkflowRun, run_id)
    if run is None or rowlock.idle(run, "pending"):
        return "nothing_to_do"
    if clock.now() < run.deadline_at:
        return "not_due"
    integration = await session.get(N8nIntegration, run.integration_id)
    await _finish_unanswered(session, run, integration, "timed_out", "no callback before the deadline")
    return "timed_out"


async def _finish_unanswered(session: AsyncSession, run: WorkflowRun, integration: N8nIntegration | None,
                             status: str, reason: str) -> None:
    run.status, run.completed_at, run.last_error = status, clock.now(), reason[:200]
    fallback = integration.fallback if integration is not None else "ticket"
    system = Principal.system(run.org_id)
    if fallback in ("ticket", "handoff"):
        await _ticket_for_staff(session, run, system, f"Automation '{run.workflow_key}' {status.replace('_', ' ')}",
                                f"Workflow run {run.id} ended {status}: {reason}. Please follow up by hand.")
    if fallback == "handoff" and run.conversation_id is not None:
        try:
            await conversations.hand_to_staff(session, system, run.conversation_id)
        except DomainError as exc:
            log.warning("n8n.handoff_failed", run_id=str(run.id), error=exc.code)
    await events.publish(session, events.Event(
        type=f"workflow_run.{status}", org_id=run.org_id,
        payload={"run_id": str(run.id), "workflow_key": run.workflow_key,
                 "patient_id": str(run.patient_id) if run.patient_id else None}))
    log.info("n8n.run_unanswered", run_id=str(run.id), status=status)


async def _ticket_for_staff(session: AsyncSession, run: WorkflowRun, system: Principal, subject: str,
                            description: str) -> uuid.UUID:
    ticket = await tickets.create(
        session,
        system,
        TicketCreate(subject=subject, description=description, category="integrations",
                     patient_id=run.patient_id, conversation_id=run.conversation_id),
        source="system",
    )
    return ticket.id


# --- callbacks ---------------------------------------------------------------------------------


def _signature_ok(integration: N8nIntegration, raw: bytes, header: str) -> bool:
    given = header.strip().removeprefix("sha256=")
    keys = [integration.secret]
    if integration.previous_secret and integration.previous_secret_expires_at and \
            integration.previous_secret_expires_at > clock.now():
        keys.append(integration.previous_secret)
    return any(hmac.compare_digest(hmac.new(k.encode(), raw, hashlib.sha256).hexdigest(), given) for k in keys)


def _parse(raw: bytes) -> BookingResponse | ConfirmSlot | Triage:
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed.field("body", "must be a JSON object", code="invalid_json") from None
    try:
        return _callback_adapter.validate_python(document)  # type: ignore[no-any-return]
    except PydanticValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"], "type": e["type"]}
                  for e in exc.errors()]
        raise ValidationFailed("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors) from None


async def handle_callback(session: AsyncSession, run_id: uuid.UUID, *, token: str | None, raw: bytes,
                          signature: str | None, settings: Settings) -> tuple[int, dict[str, Any]]:
    """Act on n8n's answer once. Returns the HTTP status and body to answer (also for duplicates)."""
    if not token:
        raise Unauthenticated("The callback needs the run's token: Authorization: Bearer <callback.token>")
    run = await session.scalar(select(WorkflowRun).where(WorkflowRun.id == run_id).with_for_update())
    if run is None:
        raise NotFound("No such workflow run", code="workflow_run_not_found")
    if not hmac.compare_digest(callback_token(run, settings), token):
        raise Unauthenticated("Missing or invalid callback token for this run", code="invalid_callback_token")
    integration = await session.get(N8nIntegration, run.integration_id)
    if integration is not None and signature is not None and not _signature_ok(integration, raw, signature):
        raise Unauthenticated("The callback's body signature does not match", code="invalid_signature")
    digest = hashlib.sha256(raw).hexdigest()
    if run.status != "pending":
        if run.callback_sha256 == digest and run.result is not None:
            return run.result_status or 200, _answer(run)
        if run.status == "timed_out":
            raise Conflict("The run timed out before this callback; its fallback has run", code="run_expired")
        raise Conflict(f"The run is {run.status} already; a different callback cannot change it",
                       code="run_finished", status=run.status)
    if clock.now() >= run.deadline_at:
        raise Conflict("The run's callback deadline has passed", code="run_expired")
    command = _parse(raw)
    system = Principal.system(run.org_id)
    status_code, result = await _act(session, run, command, system)
    run.status = "succeeded" if status_code < 400 else "failed"
    run.action, run.result, run.result_status, run.callback_sha256 = command.action, result, status_code, digest
    run.completed_at = clock.now()
    await audit.record(session, system, "callback", "n8n_workflow_run", run.id, patient_id=run.patient_id,
                       details={"action": command.action, "status": run.status})
    await events.publish(session, events.Event(
        type=f"workflow_run.{run.status}", org_id=run.org_id,
        payload={"run_id": str(run.id), "workflow_key": run.workflow_key, "action": command.action,
                 "patient_id": str(run.patient_id) if run.patient_id else None}))
    return status_code, _answer(run)


def _answer(run: WorkflowRun) -> dict[str, Any]:
    return {"run_id": str(run.id), "status": run.status, "action": run.action or "", "result": run.result or {}}


async def _act(session: AsyncSession, run: WorkflowRun, command: BookingResponse | ConfirmSlot | Triage,
               system: Principal) -> tuple[int, dict[str, Any]]:
    if isinstance(command, BookingResponse):
        return 200, await _booking_response(session, run, command)
    if isinstance(command, ConfirmSlot):
        return await _confirm_slot(session, run, command, system)
    return 200, await _triage(session, run, command, system)


async def _booking_response(session: AsyncSession, run: WorkflowRun, command: BookingResponse) -> dict[str, Any]:
    for i, slot in enumerate(command.slots):
        for name, getter in (("practitioner_id", appointments.get_practitioner),
                             ("service_id", appointments.get_service)):
            try:
                await getter(session, run.org_id, getattr(slot, name))
            except NotFound:
                raise ValidationFailed.field(f"slots.{i}.{name}", "not found in this organisation",
                                             code="unknown_reference") from None
    offer = {"slots": [s.model_dump(mode="json") for s in command.slots], "message": command.message,
             "run_id": str(run.id)}
    if run.conversation_id is not None:
        await conversations.store_offer(session, run.org_id, run.conversation_id, offer)
    return offer


async def _confirm_slot(session: AsyncSession, run: WorkflowRun, command: ConfirmSlot,
                        system: Principal) -> tuple[int, dict[str, Any]]:
    patient_id = command.patient_id or run.patient_id
    if patient_id is None:
        raise ValidationFailed.field("patient_id", "required: the run has no patient", code="patient_required")
    data = AppointmentCreate(patient_id=patient_id, practitioner_id=command.practitioner_id,
                             service_id=command.service_id, start_at=command.start_at,
                             location_id=command.location_id, notes=command.notes or "", source="n8n")
    try:
        async with session.begin_nested():
            appointment = await appointments.book(session, system, data)
    except Conflict as exc:
        await _tell_slot_gone(session, run, system)
        return 409, {"error": exc.code, "detail": exc.detail}
    return 200, {"appointment_id": str(appointment.id), "start_at": appointment.start_at.isoformat(),
                 "status": appointment.status}


async def _tell_slot_gone(session: AsyncSession, run: WorkflowRun, system: Principal) -> None:
    """The patient is told the time is gone: in their conversation, or by staff through a ticket."""
    if run.conversation_id is not None:
        try:
            async with session.begin_nested():
                await conversations.reply(
                    session,
                    system,
                    run.conversation_id,
                    "Sorry, the time we offered has just been taken. We will send you new options shortly.",
                )
            return
        except DomainError as exc:
            log.info("n8n.slot_gone_reply_failed", run_id=str(run.id), error=exc.code)
    await _ticket_for_staff(session, run, system, "Offered slot was taken: tell the patient",
                            f"Workflow run {run.id} tried to book a slot that was no longer free.")


async def _triage(session: AsyncSession, run: WorkflowRun, command: Triage, system: Principal) -> dict[str, Any]:
    if command.ticket_id is not None:
        try:
            ticket = await tickets.update(
                session,
                system,
                command.ticket_id,
                TicketUpdate(subject=command.subject, description=command.description or None,
                             priority=command.priority, category=command.category),
            )
        except NotFound:
            raise ValidationFailed.field("ticket_id", "no such ticket in this organisation",
                                         code="ticket_not_found") from None
        return {"ticket_id": str(ticket.id), "created": False}
    ticket = await tickets.create(
        session,
        system,
        TicketCreate(subject=command.subject, description=command.description, priority=command.priority,
                     category=command.category, patient_id=run.patient_id, conversation_id=run.conversation_id),
        source="system",
    )
    return {"ticket_id": str(ticket.id), "created": True}
