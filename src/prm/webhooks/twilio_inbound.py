"""Twilio inbound webhooks, as pure functions: the URL Twilio signed, the signature check, and
the parsing of messaging and status-callback payloads.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator

from prm.adapters.twilio import strip_channel

MAX_MEDIA = 10
MAX_SID_LENGTH = 64  # Twilio's SIDs are 34 characters; stored ids are bounded
MAX_STATUS_LENGTH = 32
MAX_ERROR_CODE_LENGTH = 64
MAX_ERROR_MESSAGE_LENGTH = 500


class MalformedPayload(ValueError):
    """The payload is not a Twilio event we understand (answered with 400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def candidate_urls(
    public_base_url: str, path_and_query: str, forwarded_proto: str | None = None,
    forwarded_host: str | None = None,
) -> list[str]:
    """The URLs Twilio may have signed: PUBLIC_BASE_URL + path, and the one a trusted proxy describes.

    `forwarded_proto` / `forwarded_host` come from `prm.core.proxy.forwarded_base`, i.e. only from
    a proxy listed in TRUSTED_PROXIES (its nearest entry, never a client-controlled one); request
    headers are never read here. Without them, only PUBLIC_BASE_URL counts, so a signature made
    for another host cannot be replayed here.
    """
    base = public_base_url.rstrip("/")
    urls = [base + path_and_query]
    if forwarded_proto or forwarded_host:
        parts = urlsplit(base)
        prefix = parts.path.rstrip("/")
        forwarded = f"{forwarded_proto or parts.scheme}://{forwarded_host or parts.netloc}{prefix}{path_and_query}"
        if forwarded not in urls:
            urls.append(forwarded)
    return urls


def signature_valid(
    auth_token: str, urls: list[str], params: Mapping[str, str], signature: str | None
) -> bool:
    """Twilio's `X-Twilio-Signature` check (the SDK's `RequestValidator`) against any candidate URL."""
    if not signature or not auth_token:
        return False
    validator = RequestValidator(auth_token)
    return any(validator.validate(url, dict(params), signature) for url in urls)


def hmac_signature(secret: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of a raw body (the voice-agent webhook's signature)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def hmac_valid(secret: str | None, body: bytes, header: str | None) -> bool:
    """Check `X-Signature: sha256=<hex>` (or bare hex) in constant time."""
    if not secret or not header:
        return False
    given = header.split("=", 1)[1] if header.lower().startswith("sha256=") else header
    return hmac.compare_digest(hmac_signature(secret, body), given.strip().lower())


@dataclass(frozen=True)
class MediaItem:
    url: str
    content_type: str


@dataclass(frozen=True)
class InboundMessage:
    message_sid: str
    channel: str  # "sms" | "whatsapp"
    from_number: str  # bare E.164
    to_number: str
    body: str
    media: tuple[MediaItem, ...] = field(default_factory=tuple)
    profile_name: str | None = None
    account_sid: str | None = None


@dataclass(frozen=True)
class StatusUpdate:
    message_sid: str
    status: str  # Twilio's word: queued, sent, delivered, read, failed, undelivered ...
    error_code: str | None = None
    error_message: str | None = None


def _required(params: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = (params.get(name) or "").strip()
        if value:
            return value
    raise MalformedPayload(names[0], "missing")


def _sid(params: Mapping[str, str], *names: str) -> str:
    value = _required(params, *names)
    if len(value) > MAX_SID_LENGTH or not value.isascii() or not value.isalnum():
        raise MalformedPayload(names[0], f"not a Twilio SID (letters and digits, at most {MAX_SID_LENGTH})")
    return value


def _e164(value: str, field_name: str) -> str:
    digits = value[1:] if value.startswith("+") else ""
    if not digits.isdigit() or not 6 <= len(digits) <= 15:
        raise MalformedPayload(field_name, "not an E.164 phone number")
    return value


def parse_message(params: Mapping[str, str]) -> InboundMessage:
    """An inbound SMS / WhatsApp message (Twilio's messaging webhook form)."""
    sid = _sid(params, "MessageSid", "SmsMessageSid", "SmsSid")
    channel, sender = strip_channel(_required(params, "From"))
    to_channel, receiver = strip_channel(_required(params, "To"))
    if to_channel != channel:
        raise MalformedPayload("To", "From and To are on different channels")
    try:
        count = int(params.get("NumMedia") or 0)
    except ValueError:
        raise MalformedPayload("NumMedia", "not a number") from None
    if not 0 <= count <= MAX_MEDIA:
        raise MalformedPayload("NumMedia", f"must be between 0 and {MAX_MEDIA}")
    media = []
    for i in range(count):
        url = _required(params, f"MediaUrl{i}")
        if not url.startswith(("https://", "http://")):
            raise MalformedPayload(f"MediaUrl{i}", "not a URL")
        media.append(
            MediaItem(url=url, content_type=params.get(f"MediaContentType{i}") or "application/octet-stream")
        )
    body = params.get("Body") or ""
    if not body.strip() and not media:
        raise MalformedPayload("Body", "empty message without media")
    return InboundMessage(
        message_sid=sid,
        channel=channel,
        from_number=_e164(sender, "From"),
        to_number=_e164(receiver, "To"),
        body=body,
        media=tuple(media),
        profile_name=params.get("ProfileName") or None,
        account_sid=params.get("AccountSid") or None,
    )


def parse_status(params: Mapping[str, str]) -> StatusUpdate:
    """A status callback for a message (`MessageStatus`) or a call (`CallStatus`)."""
    sid = _sid(params, "MessageSid", "SmsSid", "CallSid")
    status = _required(params, "MessageStatus", "SmsStatus", "CallStatus")
    if len(status) > MAX_STATUS_LENGTH or not status.replace("-", "").replace("_", "").isalpha():
        raise MalformedPayload("MessageStatus", f"not a status word (at most {MAX_STATUS_LENGTH} letters)")
    error_code = params.get("ErrorCode") or None
    if error_code is not None and len(error_code) > MAX_ERROR_CODE_LENGTH:
        raise MalformedPayload("ErrorCode", f"longer than {MAX_ERROR_CODE_LENGTH} characters")
    error_message = params.get("ErrorMessage") or None
    return StatusUpdate(
        message_sid=sid,
        status=status.lower(),
        error_code=error_code,
        # informational: a long one is cut rather than losing the delivery report
        error_message=error_message[:MAX_ERROR_MESSAGE_LENGTH] if error_message else None,
    )
