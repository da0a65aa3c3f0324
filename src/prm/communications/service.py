"""Communications: store every message, send outbound ones through the right adapter as a job.

Rules enforced here:
* consent: nothing is sent on a channel or for a purpose the patient opted out of (409
  `consent_refused` with the reason), checked when the message is created and again when it is sent;
* WhatsApp: a free-form message only within 24 h of the patient's last inbound WhatsApp message,
  otherwise an approved template (`content_sid` + variables) is required (422 `whatsapp_window_closed`);
* sending is the job `communications.send`: transient failures (timeouts, 5xx, 429) are retried with
  exponential backoff up to `COMMUNICATION_MAX_ATTEMPTS`, permanent ones fail at once with the
  provider's code and reason.

The code lives in one module per capability; this module is the published interface and
re-exports them, and keeps the patient record's extension points: `channels` (consent and channel
rules, channel configuration, routing), `messages` (create, read, record inbound, status) and
`delivery` (the send job).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications.channels import (
    PHONE_CHANNELS,
    address_of,
    channel_config,
    effective_provider,
    last_inbound_at,
    list_channel_configs,
    org_for_number,
    put_channel_config,
    require_consent,
    webhook_secret,
    whatsapp_window_open,
)
from prm.communications.delivery import (
    deliver,
)
from prm.communications.messages import (
    SEND_JOB,
    Prechecked,
    apply_status,
    attach_conversation,
    cancel,
    claim_inbound_event,
    find,
    find_by_idempotency_key,
    finish_inbound_event,
    get,
    list_communications,
    of_conversation,
    pending_inbound_event,
    record_inbound,
    record_outbound_reply,
    send,
    status_counts,
    statuses,
    store_inbound_event,
)
from prm.communications.models import Communication, SandboxMessage
from prm.media import service as media
from prm.patients import registry as patient_registry

# --- the patient record's extension points -------------------------------------------------------


patient_registry.on_merge("communications")(patient_registry.reassigning(Communication, SandboxMessage))


_DIRECTION_WORD = {"inbound": "from", "outbound": "to"}


patient_registry.rows_on_timeline(
    "communications", Communication, kind=lambda c: f"message.{c.direction}",
    summary=lambda c: f"{c.channel} message {_DIRECTION_WORD[c.direction]} the patient ({c.status})",
    data=lambda c: {"channel": c.channel, "direction": c.direction, "status": c.status, "purpose": c.purpose},
)


@media.link_target("message")
async def _media_link(session: AsyncSession, org_id: uuid.UUID, message_id: uuid.UUID) -> media.LinkTarget | None:
    """A file attached to a message belongs to the message's patient and conversation."""
    row = (await session.execute(
        select(Communication.patient_id, Communication.conversation_id)
        .where(Communication.org_id == org_id, Communication.id == message_id)
    )).one_or_none()
    return None if row is None else media.LinkTarget(patient_id=row[0], conversation_id=row[1])

__all__ = [
    "PHONE_CHANNELS",
    "SEND_JOB",
    "Prechecked",
    "address_of",
    "apply_status",
    "attach_conversation",
    "cancel",
    "channel_config",
    "claim_inbound_event",
    "deliver",
    "effective_provider",
    "find",
    "find_by_idempotency_key",
    "finish_inbound_event",
    "get",
    "last_inbound_at",
    "list_channel_configs",
    "list_communications",
    "of_conversation",
    "org_for_number",
    "pending_inbound_event",
    "put_channel_config",
    "record_inbound",
    "record_outbound_reply",
    "require_consent",
    "send",
    "status_counts",
    "statuses",
    "store_inbound_event",
    "webhook_secret",
    "whatsapp_window_open",
]
