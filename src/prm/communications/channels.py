"""Channels: consent and channel rules (WhatsApp window, addresses), per-organisation channel
configuration, and routing an inbound number to its organisation."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from prm.adapters.registry import Adapters
from prm.communications import rules
from prm.communications.models import ChannelConfig, Communication
from prm.communications.schemas import ChannelConfigWrite, CommunicationCreate
from prm.core import audit, clock
from prm.core.auth import Principal
from prm.core.errors import Conflict, ValidationFailed
from prm.identity import service as identity
from prm.patients import service as patients
from prm.settings import Settings

log = structlog.get_logger(__name__)
PHONE_CHANNELS = ("sms", "whatsapp", "voice")


# --- consent and channel rules -------------------------------------------------------------------


async def require_consent(
    session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, *, channel: str, purpose: str,
    patient: Any = None,
) -> None:
    """Raise 409 `consent_refused` (with the reason) unless the patient may be contacted so.

    `patient`: the patient row this transaction has just read (`patients.get`), not read again."""
    if patient is not None and patient.id == patient_id and patient.org_id == org_id:
        decision = (await patients.consents_allow(session, patient, channels=[channel], purpose=purpose))[channel]
    else:
        decision = await patients.consent_allows(session, org_id, patient_id, channel=channel, purpose=purpose)
    if not decision.allowed:
        raise Conflict(
            f"The patient may not be contacted by {channel} for {purpose}: {decision.reason}",
            code="consent_refused",
            reason=decision.reason,
            channel=channel,
            purpose=purpose,
        )


async def last_inbound_at(
    session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, channel: str = "whatsapp"
) -> datetime | None:
    result: datetime | None = await session.scalar(
        select(func.max(Communication.created_at)).where(
            Communication.org_id == org_id,
            Communication.patient_id == patient_id,
            Communication.channel == channel,
            Communication.direction == "inbound",
        )
    )
    return result


async def whatsapp_window_open(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID) -> bool:
    return rules.whatsapp_window_open(await last_inbound_at(session, org_id, patient_id), clock.now())


def address_of(patient: Any, channel: str) -> str | None:
    return patient.primary_email if channel == "email" else patient.primary_phone


def _check_shape(data: CommunicationCreate) -> None:
    """Which fields a channel takes; raises ValidationFailed naming the field."""
    ch = data.channel
    if data.content_sid and ch != "whatsapp":
        raise ValidationFailed.field("content_sid", "templates (Content SID) are for WhatsApp only")
    if data.media_urls and ch not in ("sms", "whatsapp"):
        raise ValidationFailed.field("media_urls", "media is for SMS and WhatsApp; email takes attachments")
    if data.media_ids and ch not in ("sms", "whatsapp"):
        raise ValidationFailed.field("media_ids", "media is for SMS and WhatsApp; email takes attachments")
    if len(data.media_urls) + len(data.media_ids) > 10:
        raise ValidationFailed.field("media_ids", "at most 10 media per message, URLs and stored files together")
    if data.attachments and ch != "email":
        raise ValidationFailed.field("attachments", "attachments are for email only")
    if (data.subject or data.html_body) and ch != "email":
        raise ValidationFailed.field("subject" if data.subject else "html_body", "only email has a subject/HTML")
    if ch == "email" and not data.subject:
        raise ValidationFailed.field("subject", "an email needs a subject")
    if not data.content_sid and not (data.body or "").strip() and not data.media_urls and not data.media_ids:
        raise ValidationFailed.field("body", "a message needs a body")
    if ch in ("voice", "email") and not (data.body or "").strip():
        raise ValidationFailed.field("body", f"a {ch} message needs a body")


# --- channel configuration -----------------------------------------------------------------------


async def channel_config(session: AsyncSession, org_id: uuid.UUID, channel: str) -> ChannelConfig | None:
    result: ChannelConfig | None = await session.scalar(
        select(ChannelConfig).where(ChannelConfig.org_id == org_id, ChannelConfig.channel == channel)
    )
    return result


def effective_provider(config: ChannelConfig | None, channel: str, adapters: Adapters) -> str:
    if config is not None and config.provider:
        return config.provider
    return adapters.default_provider(channel)


def _sender(config: ChannelConfig | None, channel: str, settings: Settings) -> str | None:
    if config is not None and config.sender:
        return config.sender
    return settings.smtp_from if channel == "email" else None


# Constraints that keep a phone number with one organisation (migration 20261130_phone_ownership).
NUMBER_CONSTRAINTS = ("ex_channel_configs_number_one_org", "uq_channel_configs_channel_sender")


def _sender_taken() -> Conflict:
    return Conflict("This number is already configured by another organisation", code="sender_taken",
                    errors=[{"field": "sender", "message": "already configured by another organisation",
                             "type": "sender_taken"}])


async def list_channel_configs(session: AsyncSession, org_id: uuid.UUID) -> list[ChannelConfig]:
    rows = await session.scalars(
        select(ChannelConfig).where(ChannelConfig.org_id == org_id).order_by(ChannelConfig.channel)
    )
    return list(rows)


async def put_channel_config(
    session: AsyncSession, who: Principal, channel: str, data: ChannelConfigWrite
) -> ChannelConfig:
    """Create or replace the configuration of one channel (a secret left out is kept)."""
    org_id = who.org_id
    if channel not in rules.CHANNELS:
        raise ValidationFailed.field("channel", f"must be one of {', '.join(rules.CHANNELS)}")
    if data.provider == "smtp" and channel != "email":
        raise ValidationFailed.field("provider", "smtp only serves the email channel")
    if data.provider == "twilio" and channel == "email":
        raise ValidationFailed.field("provider", "twilio does not serve the email channel")
    sender = data.sender
    if sender and channel in PHONE_CHANNELS:
        sender = patients.try_normalise(sender, (await identity.organisation_settings(session, org_id)).phone_region)
        if sender is None:
            raise ValidationFailed.field("sender", "not a valid phone number")
    elif sender and channel == "email" and "@" not in sender:
        raise ValidationFailed.field("sender", "not an email address")
    if data.webhook_secret and channel != "voice":
        raise ValidationFailed.field("webhook_secret", "only the voice channel has a webhook secret")
    if sender and channel != "email":
        # A number belongs to one organisation on every phone channel (the exclusion constraint
        # ex_channel_configs_number_one_org guarantees it; this check gives the clear answer first).
        taken = await session.scalar(
            select(ChannelConfig.id).where(
                ChannelConfig.channel != "email",
                ChannelConfig.sender == sender,
                ChannelConfig.org_id != org_id,
            )
        )
        if taken is not None:
            raise _sender_taken()
    config = await channel_config(session, org_id, channel)
    if config is None:
        config = ChannelConfig(id=uuid.uuid4(), org_id=org_id, channel=channel)
        session.add(config)
    config.provider = data.provider
    config.sender = sender
    config.sender_name = data.sender_name
    config.enabled = data.enabled
    if data.webhook_secret:
        config.webhook_secret = data.webhook_secret
    config.updated_at = clock.now()
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:  # another organisation configured the number meanwhile
        if getattr(getattr(exc.orig, "diag", None), "constraint_name", None) in NUMBER_CONSTRAINTS:
            raise _sender_taken() from None
        raise
    await audit.record(
        session,
        who,
        "update",
        "channel_config",
        config.id,
        details={"channel": channel, "secret_changed": bool(data.webhook_secret)},
    )
    return config


async def org_for_number(session: AsyncSession, channel: str, number: str) -> ChannelConfig | None:
    """The enabled channel configuration whose sender is `number` (inbound routing).

    The configuration of `channel` itself first; else another phone channel with that number (one
    Twilio number often serves SMS, WhatsApp and voice but is configured for one of them only).
    A number belongs to one organisation (ex_channel_configs_number_one_org): should rows of two
    organisations ever hold it, nothing is routed rather than guessing.
    """
    rows = list(await session.scalars(
        select(ChannelConfig)
        .where(ChannelConfig.channel.in_(PHONE_CHANNELS), ChannelConfig.sender == number)
        .order_by((ChannelConfig.channel == channel).desc(), ChannelConfig.created_at)
    ))
    if len({row.org_id for row in rows}) > 1:
        log.error("communications.number_shared", configs=len(rows))
        return None
    return next((row for row in rows if row.enabled), None)


async def webhook_secret(session: AsyncSession, org_id: uuid.UUID, channel: str) -> str | None:
    """The secret an enabled channel's provider signs its webhooks with (e.g. the voice agent's HMAC)."""
    secret: str | None = await session.scalar(
        select(ChannelConfig.webhook_secret).where(
            ChannelConfig.org_id == org_id, ChannelConfig.channel == channel, ChannelConfig.enabled.is_(True)
        )
    )
    return secret
