"""What a channel adapter is: one small Protocol per channel kind, the payloads they take, and the
two kinds of failure every implementation reports.

* `TextChannel` (SMS and WhatsApp): `send_message(OutboundMessage)`.
* `EmailChannel`: `send_email(OutboundEmail)`.
* `VoiceChannel`: `place_call(OutboundCall)` (an outbound call that speaks a message).

Implementations: `adapters.twilio` (text and voice), `adapters.smtp` (email) and `adapters.sandbox`
(all three; delivers nowhere and records every payload). An adapter raises `TransientDeliveryError`
when trying again later may work (timeouts, 5xx, 429) and `PermanentDeliveryError` when it cannot
(invalid number, unsubscribed, WhatsApp session expired); both carry the provider's code and reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "text/calendar", "application/pdf" ...
    content: bytes


@dataclass(frozen=True)
class OutboundMessage:
    """An SMS or WhatsApp message. `to`/`from_` are E.164; the adapter adds any channel prefix."""

    channel: str  # "sms" | "whatsapp"
    to: str
    from_: str | None
    body: str | None = None
    media_urls: tuple[str, ...] = ()
    content_sid: str | None = None  # an approved WhatsApp template (Twilio Content API)
    content_variables: dict[str, str] = field(default_factory=dict)
    status_callback: str | None = None


@dataclass(frozen=True)
class OutboundEmail:
    to: str
    from_: str
    subject: str
    text: str
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None
    message_id: str | None = None  # stable across retries, so a resent email can be recognised


@dataclass(frozen=True)
class OutboundCall:
    to: str
    from_: str | None
    say: str
    language: str = "en"
    status_callback: str | None = None


@dataclass(frozen=True)
class SendResult:
    provider: str
    provider_message_id: str | None
    status: str = "sent"
    details: dict[str, Any] = field(default_factory=dict)


class DeliveryError(Exception):
    """`uncertain`: the request may have reached the provider (a read timeout, a dropped
    connection): whether it was accepted is unknown, so it must be reconciled, not blindly retried."""

    transient: bool = False

    def __init__(self, reason: str, *, code: str | None = None, http_status: int | None = None,
                 uncertain: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.http_status = http_status
        self.uncertain = uncertain


class TransientDeliveryError(DeliveryError):
    """Worth retrying later: timeouts, connection errors, 5xx, 429."""

    transient = True


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help: invalid number, unsubscribed recipient, WhatsApp session expired."""


@runtime_checkable
class TextChannel(Protocol):
    name: str

    async def send_message(self, message: OutboundMessage) -> SendResult: ...


@runtime_checkable
class EmailChannel(Protocol):
    name: str

    async def send_email(self, email: OutboundEmail) -> SendResult: ...


@runtime_checkable
class VoiceChannel(Protocol):
    name: str

    async def place_call(self, call: OutboundCall) -> SendResult: ...
