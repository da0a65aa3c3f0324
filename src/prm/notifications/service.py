"""Notifications: templates per channel and locale, previews, single and batch sends.

`send_notification` renders a template for a patient and sends it through `communications.send`.
Without a named channel it walks the patient's preferred channel and then WhatsApp → SMS → email,
skipping a channel the patient cannot be reached on (no address, no consent, WhatsApp window closed
and no approved template, no template in any locale) and says why when none is left.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Text, cast, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import array as pg_array
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import service as communications
from prm.communications.models import Communication
from prm.communications.schemas import CommunicationCreate
from prm.core import audit, clock, jobs
from prm.core.auth import Principal
from prm.core.errors import Conflict, DomainError, NotFound, ValidationFailed
from prm.core.pagination import PageParams, paginate
from prm.notifications import defaults
from prm.notifications.models import (
    NotificationBatch,
    NotificationBatchItem,
    NotificationSettings,
    NotificationTemplate,
)
from prm.notifications.schemas import (
    BatchCreate,
    NotificationSettingsUpdate,
    PreviewRequest,
    TemplateCreate,
    TemplateUpdate,
)
from prm.notifications.templates import Rendered, TemplateError, TemplateSource, check, render
from prm.patients import registry as patient_registry
from prm.patients import service as patients
from prm.patients.models import Patient
from prm.settings import get_settings

log = structlog.get_logger(__name__)

FALLBACK_ORDER = ("whatsapp", "sms", "email")
BATCH_ITEM_JOB = "notifications.send_batch_item"


def fallback_chain(preferred: str | None) -> list[str]:
    chain = [preferred] if preferred else []
    return chain + [c for c in FALLBACK_ORDER if c not in chain]


def locales_for(language: str | None) -> list[str]:
    tried: list[str] = []
    for loc in (language, (language or "").split("-")[0], "en"):
        if loc and loc not in tried:
            tried.append(loc)
    return tried


def _source(t: NotificationTemplate) -> TemplateSource:
    return TemplateSource(
        body=t.body, subject=t.subject, html_body=t.html_body, variables=tuple(t.variables or ())
    )


def _template_error(exc: TemplateError, prefix: str = "") -> ValidationFailed:
    return ValidationFailed.field(prefix + exc.field, exc.message, code="template_error")


# --- templates -------------------------------------------------------------------------------------


async def create_template(
    session: AsyncSession, org_id: uuid.UUID, data: TemplateCreate, who: Principal
) -> NotificationTemplate:
    source = TemplateSource(
        body=data.body, subject=data.subject, html_body=data.html_body, variables=tuple(data.variables)
    )
    _validate(source, data.channel, data.content_variables)
    exists = await session.scalar(
        select(NotificationTemplate.id).where(
            NotificationTemplate.org_id == org_id,
            NotificationTemplate.key == data.key,
            NotificationTemplate.channel == data.channel,
            NotificationTemplate.locale == data.locale,
        )
    )
    if exists is not None:
        raise Conflict("A template with this key, channel and locale exists", code="template_exists")
    template = NotificationTemplate(id=uuid.uuid4(), org_id=org_id, **data.model_dump())
    session.add(template)
    await session.flush()
    await audit.record(session, who, "create", "notification_template", template.id)
    return template


def _validate(source: TemplateSource, channel: str, content_variables: dict[str, str] | None) -> None:
    try:
        check(source)
    except TemplateError as exc:
        raise _template_error(exc) from None
    if channel == "email" and not source.subject:
        raise ValidationFailed.field("subject", "an email template needs a subject")
    if channel != "email" and (source.subject or source.html_body):
        raise ValidationFailed.field("subject", "only email templates have a subject or HTML body")
    for slot, name in (content_variables or {}).items():
        if name not in source.variables:
            raise ValidationFailed.field(f"content_variables.{slot}", f"{name!r} is not a declared variable")


async def get_template(
    session: AsyncSession, org_id: uuid.UUID, template_id: uuid.UUID
) -> NotificationTemplate:
    template = await session.scalar(
        select(NotificationTemplate).where(
            NotificationTemplate.org_id == org_id, NotificationTemplate.id == template_id
        )
    )
    if template is None:
        raise NotFound("No such template", code="template_not_found")
    return template


async def update_template(
    session: AsyncSession, org_id: uuid.UUID, template_id: uuid.UUID, data: TemplateUpdate, who: Principal
) -> NotificationTemplate:
    template = await get_template(session, org_id, template_id)
    changes = data.model_dump(exclude_unset=True)
    merged = {
        **{
            k: getattr(template, k)
            for k in ("subject", "body", "html_body", "variables", "content_variables")
        },
        **changes,
    }
    source = TemplateSource(
        body=merged["body"],
        subject=merged["subject"],
        html_body=merged["html_body"],
        variables=tuple(merged["variables"] or ()),
    )
    _validate(source, template.channel, merged["content_variables"])
    for key, value in changes.items():
        setattr(template, key, value)
    template.updated_at = clock.now()
    await audit.record(session, who, "update", "notification_template", template.id)
    return template


async def delete_template(
    session: AsyncSession, org_id: uuid.UUID, template_id: uuid.UUID, who: Principal
) -> None:
    template = await get_template(session, org_id, template_id)
    await session.delete(template)
    await audit.record(session, who, "delete", "notification_template", template_id)


async def list_templates(
    session: AsyncSession, org_id: uuid.UUID, *, key: str | None, channel: str | None, paging: PageParams
) -> tuple[list[NotificationTemplate], int]:
    stmt = select(NotificationTemplate).where(NotificationTemplate.org_id == org_id)
    if key:
        stmt = stmt.where(NotificationTemplate.key == key)
    if channel:
        stmt = stmt.where(NotificationTemplate.channel == channel)
    return await paginate(
        session,
        stmt.order_by(NotificationTemplate.key, NotificationTemplate.channel, NotificationTemplate.locale),
        paging,
    )


async def find_template(
    session: AsyncSession, org_id: uuid.UUID, key: str, channel: str, language: str | None
) -> tuple[TemplateSource, NotificationTemplate | None] | None:
    """The organisation's template for the best locale, else the built-in one; None when neither exists."""
    locales = locales_for(language)
    rows = {
        t.locale: t
        for t in await session.scalars(
            select(NotificationTemplate).where(
                NotificationTemplate.org_id == org_id,
                NotificationTemplate.key == key,
                NotificationTemplate.channel == channel,
                NotificationTemplate.locale.in_(locales),
            )
        )
    }
    for loc in locales:
        if loc in rows:
            return _source(rows[loc]), rows[loc]
    for loc in locales:
        builtin = defaults.builtin(key, channel, loc)
        if builtin is not None:
            return builtin, None
    return None


async def preview(session: AsyncSession, org_id: uuid.UUID, data: PreviewRequest) -> tuple[Rendered, str]:
    if data.draft is not None:
        source = TemplateSource(
            body=data.draft.body,
            subject=data.draft.subject,
            html_body=data.draft.html_body,
            variables=tuple(data.draft.variables),
        )
        origin = "draft"
    else:
        assert data.key is not None and data.channel is not None
        found = await find_template(session, org_id, data.key, data.channel, data.locale)
        if found is None:
            raise NotFound(f"No template {data.key!r} for {data.channel}", code="template_not_found")
        source, row = found
        origin = "organisation" if row is not None else "builtin"
    try:
        return render(source, data.variables), origin
    except TemplateError as exc:
        raise _template_error(exc) from None


# --- organisation settings -----------------------------------------------------------------------

APPOINTMENT_NOTICES = ("booked", "rescheduled", "cancelled")


def default_appointment_notices() -> set[str]:
    """The notices sent for an organisation that has not chosen (APPOINTMENT_NOTIFICATIONS)."""
    return {p for p in get_settings().appointment_notifications.split(",") if p}


async def _settings_row(session: AsyncSession, org_id: uuid.UUID) -> NotificationSettings | None:
    return await session.scalar(select(NotificationSettings).where(NotificationSettings.org_id == org_id))


async def notification_settings(session: AsyncSession, org_id: uuid.UUID) -> dict[str, Any]:
    """Effective appointment notices of the organisation, with what it chose itself (`overrides`)."""
    row = await _settings_row(session, org_id)
    defaults_on = default_appointment_notices()
    result: dict[str, Any] = {"overrides": {}, "updated_at": row.updated_at if row else None}
    for kind in APPOINTMENT_NOTICES:
        chosen = getattr(row, f"appointment_{kind}") if row else None
        if chosen is not None:
            result["overrides"][f"appointment_{kind}"] = chosen
        result[f"appointment_{kind}"] = chosen if chosen is not None else kind in defaults_on
    return result


async def update_notification_settings(
    session: AsyncSession, org_id: uuid.UUID, data: NotificationSettingsUpdate, who: Principal
) -> dict[str, Any]:
    """Set (true/false) or clear (null) the organisation's choices; fields left out are unchanged."""
    row = await _settings_row(session, org_id)
    if row is None:
        row = NotificationSettings(id=uuid.uuid4(), org_id=org_id)
        session.add(row)
    changes = data.model_dump(exclude_unset=True)
    for key, value in changes.items():
        setattr(row, key, value)
    row.updated_at = clock.now()
    await session.flush()
    await audit.record(
        session, who, "update", "notification_settings", row.id, details={"changes": changes}
    )
    return await notification_settings(session, org_id)


async def appointment_notice_enabled(session: AsyncSession, org_id: uuid.UUID, kind: str) -> bool:
    """Whether the patient is told automatically when an appointment is `kind` (booked, rescheduled,
    cancelled) in this organisation."""
    row = await _settings_row(session, org_id)
    chosen = getattr(row, f"appointment_{kind}") if row else None
    return bool(chosen) if chosen is not None else kind in default_appointment_notices()


# --- sending ---------------------------------------------------------------------------------------


def patient_variables(patient: Patient) -> dict[str, Any]:
    return {
        "patient_name": patient.given_name or patient.display_name,
        "patient_full_name": patient.display_name,
    }


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _plan(
    session: AsyncSession,
    org_id: uuid.UUID,
    patient: Patient,
    channel: str,
    template_key: str,
    purpose: str,
    values: dict[str, Any],
    *,
    strict: bool,
) -> CommunicationCreate:
    """The message to send on `channel`, or _Skip(reason) (when not `strict`) if it cannot go there."""
    if not strict:
        if not communications.address_of(patient, channel):
            raise _Skip("no_address")
        decision = await patients.consent_allows(
            session, org_id, patient.id, channel=channel, purpose=purpose
        )
        if not decision.allowed:
            raise _Skip(f"consent:{decision.reason}")
    found = await find_template(session, org_id, template_key, channel, patient.preferred_language)
    if found is None:
        if strict:
            raise ValidationFailed.field(
                "template_key", f"no template {template_key!r} for {channel}", code="template_not_found"
            )
        raise _Skip("no_template")
    source, row = found
    try:
        rendered = render(source, values)
    except TemplateError as exc:
        raise _template_error(exc) from None
    content_sid = row.content_sid if row is not None and channel == "whatsapp" else None
    content_variables = (
        {slot: str(values.get(name, "")) for slot, name in (row.content_variables or {}).items()}
        if content_sid and row is not None
        else {}
    )
    if (
        channel == "whatsapp"
        and not content_sid
        and not strict
        and not await communications.whatsapp_window_open(session, org_id, patient.id)
    ):
        raise _Skip("whatsapp_window_closed")
    return CommunicationCreate(
        patient_id=patient.id,
        channel=channel,
        purpose=purpose,  # type: ignore[arg-type]
        body=rendered.body,
        subject=rendered.subject if channel == "email" else None,
        html_body=rendered.html_body if channel == "email" else None,
        content_sid=content_sid,
        content_variables=content_variables,
        template_key=template_key,
    )


async def send_notification(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    patient_id: uuid.UUID,
    template_key: str,
    variables: dict[str, Any],
    channel: str | None = None,
    purpose: str = "care",
    who: Principal | None = None,
    idempotency_key: str | None = None,
    send_at: datetime | None = None,
) -> Communication:
    """Render `template_key` for the patient and queue it; returns the communication.

    With `channel`, only that channel (its refusal is raised as is: 409 consent, 422 window or
    template). Without, the patient's preference then the fallback chain; 409 `no_channel_available`
    with each channel's reason when none can be used.
    """
    who = who or Principal.system(org_id)
    if idempotency_key:
        existing = await session.scalar(
            select(Communication).where(
                Communication.org_id == org_id, Communication.idempotency_key == idempotency_key
            )
        )
        if existing is not None:
            return existing
    patient = await patients.get(session, org_id, patient_id)
    values = {**patient_variables(patient), **variables}
    chain = [channel] if channel else fallback_chain(patient.preferred_channel)
    skipped: list[dict[str, str]] = []
    for ch in chain:
        try:
            data = await _plan(
                session, org_id, patient, ch, template_key, purpose, values, strict=channel is not None
            )
        except _Skip as skip:
            skipped.append({"channel": ch, "reason": skip.reason})
            continue
        data.idempotency_key = idempotency_key
        data.send_at = send_at
        comm = await communications.send(session, org_id, data, who)
        if skipped:
            comm.details = {**(comm.details or {}), "fallback_from": skipped}
        return comm
    raise Conflict(
        "No channel can reach this patient for this notification: "
        + ", ".join(f"{s['channel']} ({s['reason']})" for s in skipped),
        code="no_channel_available",
        attempts=skipped,
    )


# --- batches ---------------------------------------------------------------------------------------


async def _select_patients(session: AsyncSession, org_id: uuid.UUID, data: BatchCreate) -> list[uuid.UUID]:
    stmt = select(Patient.id).where(
        Patient.org_id == org_id, Patient.deleted_at.is_(None), Patient.status == "active"
    )
    if data.patient_ids is not None:
        wanted = list(dict.fromkeys(data.patient_ids))
        found = set(await session.scalars(stmt.where(Patient.id.in_(wanted))))
        missing = [str(p) for p in wanted if p not in found]
        if missing:
            raise ValidationFailed.field(
                "patient_ids", f"unknown patient(s): {', '.join(missing[:5])}", code="unknown_patients"
            )
        return wanted
    f = data.filter
    assert f is not None
    if f.preferred_language:
        stmt = stmt.where(Patient.preferred_language == f.preferred_language)
    if f.preferred_channel:
        stmt = stmt.where(Patient.preferred_channel == f.preferred_channel)
    if f.tags:
        stmt = stmt.where(Patient.tags.op("&&")(cast(pg_array(f.tags), ARRAY(Text))))
    return list(await session.scalars(stmt.order_by(Patient.created_at, Patient.id).limit(10_000)))


async def create_batch(
    session: AsyncSession, org_id: uuid.UUID, data: BatchCreate, who: Principal
) -> NotificationBatch:
    """Queue one job per recipient (each sent and retried on its own); returns the batch."""
    has_template = bool(
        await session.scalar(
            select(func.count())
            .select_from(NotificationTemplate)
            .where(NotificationTemplate.org_id == org_id, NotificationTemplate.key == data.template_key)
        )
    )
    if not has_template and data.template_key not in defaults.template_keys():
        raise ValidationFailed.field(
            "template_key", f"no template {data.template_key!r}", code="template_not_found"
        )
    recipients = await _select_patients(session, org_id, data)
    batch = NotificationBatch(
        id=uuid.uuid4(),
        org_id=org_id,
        template_key=data.template_key,
        channel=data.channel,
        purpose=data.purpose,
        variables=data.variables,
        total=len(recipients),
        created_by=who.credential,
        selection={"patient_ids": len(data.patient_ids)}
        if data.patient_ids is not None
        else {"filter": data.filter.model_dump(exclude_none=True) if data.filter else {}},
    )
    session.add(batch)
    await session.flush()
    items = [
        NotificationBatchItem(
            id=uuid.uuid4(), org_id=org_id, batch_id=batch.id, patient_id=pid, status="pending"
        )
        for pid in recipients
    ]
    session.add_all(items)
    await session.flush()
    for item in items:
        await jobs.defer(session, BATCH_ITEM_JOB, org_id=str(org_id), item_id=str(item.id))
    if not items:
        batch.completed_at = clock.now()
    await audit.record(
        session, who, "create", "notification_batch", batch.id, details={"recipients": len(items)}
    )
    log.info("notifications.batch_queued", batch_id=str(batch.id), recipients=len(items))
    return batch


@jobs.job(BATCH_ITEM_JOB)
async def send_batch_item(session: AsyncSession, *, org_id: str, item_id: str) -> str:
    """Send one recipient's notification of a batch; a refusal is recorded, not retried."""
    oid = uuid.UUID(org_id)
    item = await session.scalar(
        select(NotificationBatchItem)
        .where(NotificationBatchItem.id == uuid.UUID(item_id), NotificationBatchItem.org_id == oid)
        .with_for_update()
    )
    if item is None or item.status != "pending":
        return item.status if item else "missing"
    batch = await session.get(NotificationBatch, item.batch_id)
    assert batch is not None
    try:
        async with session.begin_nested():
            comm = await send_notification(
                session,
                oid,
                patient_id=item.patient_id,
                template_key=batch.template_key,
                variables=batch.variables,
                channel=batch.channel,
                purpose=batch.purpose,
                idempotency_key=f"batch:{batch.id}:{item.patient_id}",
            )
    except DomainError as exc:
        item.status = "refused"
        item.reason = f"{exc.code}: {exc.detail}"[:200]
    else:
        item.status = "queued"
        item.communication_id = comm.id
    remaining = await session.scalar(
        select(func.count())
        .select_from(NotificationBatchItem)
        .where(
            NotificationBatchItem.batch_id == batch.id,
            NotificationBatchItem.status == "pending",
            NotificationBatchItem.id != item.id,
        )
    )
    if not remaining:
        batch.completed_at = clock.now()
    return item.status


async def get_batch(session: AsyncSession, org_id: uuid.UUID, batch_id: uuid.UUID) -> NotificationBatch:
    batch = await session.scalar(
        select(NotificationBatch).where(NotificationBatch.org_id == org_id, NotificationBatch.id == batch_id)
    )
    if batch is None:
        raise NotFound("No such batch", code="batch_not_found")
    return batch


async def batch_report(session: AsyncSession, org_id: uuid.UUID, batch_id: uuid.UUID) -> dict[str, Any]:
    """Progress and result: recipients per state (the message's status once one exists)."""
    batch = await get_batch(session, org_id, batch_id)
    state = func.coalesce(Communication.status, NotificationBatchItem.status)
    rows = await session.execute(
        select(state, func.count())
        .select_from(NotificationBatchItem)
        .outerjoin(Communication, Communication.id == NotificationBatchItem.communication_id)
        .where(NotificationBatchItem.batch_id == batch.id)
        .group_by(state)
    )
    counts = {str(s): int(n) for s, n in rows.all()}
    in_flight = sum(counts.get(s, 0) for s in ("pending", "queued", "sending"))
    return {
        "id": batch.id,
        "template_key": batch.template_key,
        "channel": batch.channel,
        "purpose": batch.purpose,
        "total": batch.total,
        "counts": counts,
        "done": in_flight == 0,
        "created_at": batch.created_at,
        "completed_at": batch.completed_at,
    }


async def batch_items(
    session: AsyncSession, org_id: uuid.UUID, batch_id: uuid.UUID, paging: PageParams
) -> tuple[list[dict[str, Any]], int]:
    batch = await get_batch(session, org_id, batch_id)
    stmt = (
        select(NotificationBatchItem, Communication.status)
        .outerjoin(Communication, Communication.id == NotificationBatchItem.communication_id)
        .where(NotificationBatchItem.batch_id == batch.id)
        .order_by(NotificationBatchItem.id)
    )
    total = await session.scalar(
        select(func.count())
        .select_from(NotificationBatchItem)
        .where(NotificationBatchItem.batch_id == batch.id)
    )
    rows = (await session.execute(stmt.limit(paging.limit).offset(paging.offset))).all()
    return [
        {
            "patient_id": i.patient_id,
            "status": i.status,
            "communication_id": i.communication_id,
            "communication_status": s,
            "reason": i.reason,
        }
        for i, s in rows
    ], int(total or 0)


@patient_registry.on_merge("notifications")
async def _move_batch_items(
    session: AsyncSession, org_id: uuid.UUID, duplicate_id: uuid.UUID, survivor_id: uuid.UUID
) -> int:
    from sqlalchemy import update

    result = await session.execute(
        update(NotificationBatchItem)
        .where(
            NotificationBatchItem.org_id == org_id,
            NotificationBatchItem.patient_id == duplicate_id,
            ~NotificationBatchItem.batch_id.in_(
                select(NotificationBatchItem.batch_id).where(NotificationBatchItem.patient_id == survivor_id)
            ),
        )
        .values(patient_id=survivor_id)
    )
    return result.rowcount or 0  # type: ignore[attr-defined]
