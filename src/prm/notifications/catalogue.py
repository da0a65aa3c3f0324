"""The template catalogue: notification templates per channel and locale (create, read, update,
delete, find the best locale) and previews. The pure rendering rules are in `templates.py`."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import audit, clock
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound, ValidationFailed
from prm.core.pagination import PageParams, paginate
from prm.notifications import defaults
from prm.notifications.models import (
    NotificationTemplate,
)
from prm.notifications.schemas import (
    PreviewRequest,
    TemplateCreate,
    TemplateUpdate,
)
from prm.notifications.templates import Rendered, TemplateError, TemplateSource, check, render


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
    session: AsyncSession, who: Principal, data: TemplateCreate
) -> NotificationTemplate:
    org_id = who.org_id
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
    session: AsyncSession, who: Principal, template_id: uuid.UUID, data: TemplateUpdate
) -> NotificationTemplate:
    org_id = who.org_id
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
    session: AsyncSession, who: Principal, template_id: uuid.UUID
) -> None:
    org_id = who.org_id
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


Found = tuple[TemplateSource, NotificationTemplate | None]


def _best(rows: dict[str, NotificationTemplate], key: str, channel: str, locales: list[str]) -> Found | None:
    for loc in locales:
        if loc in rows:
            return _source(rows[loc]), rows[loc]
    for loc in locales:
        builtin = defaults.builtin(key, channel, loc)
        if builtin is not None:
            return builtin, None
    return None


async def find_templates(
    session: AsyncSession, org_id: uuid.UUID, key: str, channels: list[str], language: str | None
) -> dict[str, Found | None]:
    """`find_template` for several channels, in one statement (none when `channels` is empty)."""
    locales = locales_for(language)
    rows: dict[str, dict[str, NotificationTemplate]] = {channel: {} for channel in channels}
    if channels:
        for t in await session.scalars(
            select(NotificationTemplate).where(
                NotificationTemplate.org_id == org_id,
                NotificationTemplate.key == key,
                NotificationTemplate.channel.in_(channels),
                NotificationTemplate.locale.in_(locales),
            )
        ):
            rows[t.channel][t.locale] = t
    return {channel: _best(rows[channel], key, channel, locales) for channel in channels}


async def find_template(
    session: AsyncSession, org_id: uuid.UUID, key: str, channel: str, language: str | None
) -> Found | None:
    """The organisation's template for the best locale, else the built-in one; None when neither exists."""
    return (await find_templates(session, org_id, key, [channel], language))[channel]


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
