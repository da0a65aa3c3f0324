"""HTTP API of notifications: templates, preview, send one, batches."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from prm.communications.schemas import Channel, CommunicationRead
from prm.core import audit
from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.pagination import Page, Paging
from prm.notifications import defaults, service
from prm.notifications.schemas import (
    BatchCreate,
    BatchItemRead,
    BatchRead,
    NotificationSend,
    NotificationSettingsRead,
    NotificationSettingsUpdate,
    PreviewRead,
    PreviewRequest,
    TemplateCreate,
    TemplateRead,
    TemplateUpdate,
)

router = APIRouter(prefix="/notifications", tags=["notifications"])


@router.get("/templates", response_model=Page[TemplateRead], summary="List the organisation's templates")
async def list_templates(
    session: Session,
    paging: Paging,
    key: str | None = None,
    channel: Channel | None = None,
    who: Principal = Requires("notifications:read"),
) -> Page[TemplateRead]:
    rows, total = await service.list_templates(session, who.org_id, key=key, channel=channel, paging=paging)
    return Page(
        items=[TemplateRead.model_validate(r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get(
    "/templates/builtin",
    response_model=list[TemplateRead],
    summary="Built-in default templates",
    description="Used for a key, channel and locale the organisation has no template for.",
)
async def builtin_templates(who: Principal = Requires("notifications:read")) -> list[TemplateRead]:
    return [
        TemplateRead(
            id=None,
            key=k,
            channel=c,
            locale=loc,
            subject=t.subject,
            body=t.body,  # type: ignore[arg-type]
            html_body=t.html_body,
            variables=list(t.variables),
            content_sid=None,
            content_variables=None,
            builtin=True,
        )
        for (k, c, loc), t in sorted(defaults.DEFAULTS.items())
    ]


@router.post(
    "/templates",
    status_code=201,
    response_model=TemplateRead,
    summary="Create a template",
    description="Jinja2 (sandboxed). Every variable used must be declared in `variables`.",
)
async def create_template(
    body: TemplateCreate, session: Session, who: Principal = Requires("notifications:write")
) -> TemplateRead:
    return TemplateRead.model_validate(await service.create_template(session, who, body))


@router.post(
    "/templates/preview",
    response_model=PreviewRead,
    summary="Preview a rendered template",
    description="Renders a stored or built-in template (key, channel, locale) or a draft with the given "
    "variables; a missing variable is a 422 naming it.",
)
async def preview(
    body: PreviewRequest, session: Session, who: Principal = Requires("notifications:read")
) -> PreviewRead:
    rendered, origin = await service.preview(session, who.org_id, body)
    return PreviewRead(
        subject=rendered.subject,
        body=rendered.body,
        html_body=rendered.html_body,
        variables_used=list(rendered.variables_used),
        source=origin,
    )


@router.get("/templates/{template_id}", response_model=TemplateRead, summary="Read a template")
async def get_template(
    template_id: uuid.UUID, session: Session, who: Principal = Requires("notifications:read")
) -> TemplateRead:
    return TemplateRead.model_validate(await service.get_template(session, who.org_id, template_id))


@router.patch("/templates/{template_id}", response_model=TemplateRead, summary="Change a template")
async def update_template(
    template_id: uuid.UUID,
    body: TemplateUpdate,
    session: Session,
    who: Principal = Requires("notifications:write"),
) -> TemplateRead:
    return TemplateRead.model_validate(
        await service.update_template(session, who, template_id, body)
    )


@router.delete("/templates/{template_id}", status_code=204, summary="Delete a template")
async def delete_template(
    template_id: uuid.UUID, session: Session, who: Principal = Requires("notifications:write")
) -> Response:
    await service.delete_template(session, who, template_id)
    return Response(status_code=204)


@router.post(
    "/send",
    status_code=201,
    response_model=CommunicationRead,
    summary="Send one notification",
    description="Renders the template for the patient and queues it on `channel`, or on the patient's "
    "preferred channel with a consent-aware fallback (WhatsApp → SMS → email). 409 "
    "`consent_refused` / `no_channel_available` say why nothing could be sent.",
)
async def send(
    body: NotificationSend, session: Session, who: Principal = Requires("notifications:write")
) -> CommunicationRead:
    comm = await service.send_notification(
        session,
        who,
        patient_id=body.patient_id,
        template_key=body.template_key,
        variables=body.variables,
        channel=body.channel,
        purpose=body.purpose,
    )
    return CommunicationRead.model_validate(comm)


@router.post(
    "/batches",
    status_code=202,
    response_model=BatchRead,
    summary="Send a notification to many patients",
    description="To a list of patient ids or a filter; each recipient is sent (and retried) on its own. "
    "Follow progress at GET /notifications/batches/{id}.",
)
async def create_batch(
    body: BatchCreate, session: Session, who: Principal = Requires("notifications:write")
) -> BatchRead:
    batch = await service.create_batch(session, who, body)
    return BatchRead(**await service.batch_report(session, who.org_id, batch.id))


@router.get("/batches/{batch_id}", response_model=BatchRead, summary="Batch progress and result")
async def read_batch(
    batch_id: uuid.UUID, session: Session, who: Principal = Requires("notifications:read")
) -> BatchRead:
    return BatchRead(**await service.batch_report(session, who.org_id, batch_id))


@router.get("/batches/{batch_id}/items", response_model=Page[BatchItemRead], summary="Batch recipients")
async def batch_items(
    batch_id: uuid.UUID, session: Session, paging: Paging, who: Principal = Requires("notifications:read")
) -> Page[BatchItemRead]:
    rows, total = await service.batch_items(session, who.org_id, batch_id, paging)
    await audit.record(
        session, who, "list", "notification_batch_item", batch_id, details={"count": len(rows)}
    )
    return Page(
        items=[BatchItemRead(**r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.get(
    "/settings",
    response_model=NotificationSettingsRead,
    summary="The organisation's automatic appointment notices",
    description="Whether the patient is told automatically when an appointment is booked "
    "(`appointment_confirmation`), rescheduled (`appointment_rescheduled`) or cancelled "
    "(`appointment_cancelled`). `overrides` is what the organisation chose; the rest follow the "
    "service default (APPOINTMENT_NOTIFICATIONS).",
)
async def read_settings(
    session: Session, who: Principal = Requires("notifications:read")
) -> NotificationSettingsRead:
    return NotificationSettingsRead(**await service.notification_settings(session, who.org_id))


@router.patch(
    "/settings",
    response_model=NotificationSettingsRead,
    summary="Turn automatic appointment notices on or off",
    description="`true` / `false` per notice; `null` goes back to the service default. Fields left "
    "out are unchanged. Admins only.",
)
async def update_settings(
    body: NotificationSettingsUpdate, session: Session, who: Principal = Requires("admin")
) -> NotificationSettingsRead:
    return NotificationSettingsRead(
        **await service.update_notification_settings(session, who, body)
    )
