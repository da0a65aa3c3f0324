"""Twilio WhatsApp, SMS and voice over Twilio's REST API, with httpx.

Direct HTTP (rather than the SDK's synchronous client) keeps sending async and lets tests fake
Twilio faithfully at the HTTP layer with `respx`. Errors are classified for the retry policy:

* transient: timeouts and connection errors, HTTP 429, HTTP 5xx;
* permanent: any other 4xx, e.g. 21211 invalid `To` number, 21610 recipient unsubscribed (STOP),
  63016 WhatsApp free-form message outside the 24-hour window, 21408 region not enabled.

No number, body or credential is ever logged.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import structlog
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from prm.adapters.channels import (
    OutboundCall,
    OutboundMessage,
    PermanentDeliveryError,
    SendResult,
    TransientDeliveryError,
)

log = structlog.get_logger(__name__)

API_VERSION = "2010-04-01"
WHATSAPP_PREFIX = "whatsapp:"

# Codes Twilio documents as "the request can never succeed as sent" (kept for reference and docs;
# every 4xx other than 429 is treated as permanent anyway).
PERMANENT_CODES = {
    "21211": "invalid 'To' phone number",
    "21408": "permission to send to this region is not enabled",
    "21610": "recipient has unsubscribed (replied STOP)",
    "21612": "the 'To' number cannot be reached on this channel",
    "21614": "'To' number is not a mobile number",
    "63016": "WhatsApp free-form message outside the 24-hour session window; use a template",
}


def address(channel: str, number: str) -> str:
    """The address Twilio expects: `whatsapp:+34...` on WhatsApp, plain E.164 otherwise."""
    if channel == "whatsapp" and not number.startswith(WHATSAPP_PREFIX):
        return WHATSAPP_PREFIX + number
    return number


def strip_channel(number: str) -> tuple[str, str]:
    """(`whatsapp` or `sms`, bare E.164) for an address Twilio sent us."""
    if number.startswith(WHATSAPP_PREFIX):
        return "whatsapp", number[len(WHATSAPP_PREFIX) :]
    return "sms", number


def message_twiml(reply: str | None = None) -> str:
    """TwiML answering an inbound message: a `<Message>` with `reply`, or nothing."""
    twiml = MessagingResponse()
    if reply:
        twiml.message(reply)
    return str(twiml.to_xml())


def say_twiml(text: str, language: str = "en") -> str:
    lang = {"en": "en-US", "es": "es-ES", "fr": "fr-FR", "de": "de-DE", "pt": "pt-PT"}.get(language, language)
    twiml = VoiceResponse()
    twiml.say(text, language=lang)
    return str(twiml.to_xml(xml_declaration=False))


class TwilioChannel:
    """`TextChannel` and `VoiceChannel` for Twilio."""

    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        base_url: str = "https://api.twilio.com",
        timeout_seconds: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.account_sid = account_sid
        self._auth = (account_sid, auth_token)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout_seconds
        self._http = http

    def _url(self, resource: str) -> str:
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/{resource}.json"

    async def _post(self, resource: str, form: list[tuple[str, str]]) -> dict[str, Any]:
        try:
            if self._http is not None:
                response = await self._http.post(
                    self._url(resource), data=dict(_multi(form)), auth=self._auth, timeout=self.timeout
                )
            else:
                async with httpx.AsyncClient(timeout=self.timeout) as http:
                    response = await http.post(self._url(resource), data=dict(_multi(form)), auth=self._auth)
        except (httpx.ConnectTimeout, httpx.ConnectError, httpx.PoolTimeout) as exc:  # never reached Twilio
            log.warning("twilio.unreachable", resource=resource, error=type(exc).__name__)
            raise TransientDeliveryError("Twilio could not be reached", code="connection_error") from None
        except httpx.TimeoutException:  # sent, no answer: Twilio may have accepted it
            log.warning("twilio.timeout", resource=resource)
            raise TransientDeliveryError("Twilio did not answer in time", code="timeout", uncertain=True) from None
        except httpx.TransportError as exc:  # the connection broke after the request went out
            log.warning("twilio.connection_lost", resource=resource, error=type(exc).__name__)
            raise TransientDeliveryError("The connection to Twilio broke", code="connection_error",
                                         uncertain=True) from None
        return _classify(response, resource)

    async def _get(self, resource: str, params: dict[str, str]) -> dict[str, Any]:
        try:
            if self._http is not None:
                response = await self._http.get(self._url(resource), params=params, auth=self._auth,
                                                timeout=self.timeout)
            else:
                async with httpx.AsyncClient(timeout=self.timeout) as http:
                    response = await http.get(self._url(resource), params=params, auth=self._auth)
        except httpx.TransportError as exc:
            log.warning("twilio.lookup_failed", resource=resource, error=type(exc).__name__)
            raise TransientDeliveryError("Twilio could not be reached for a lookup", code="lookup_failed") from None
        return _classify(response, resource)

    async def find_message(self, message: OutboundMessage, *, since: datetime) -> SendResult | None:
        """The message Twilio accepted for this send since `since`, if any (Messages list API).

        Matched on To, From, the body (templates: on To and From alone) and a creation time no
        earlier than `since` (less a few minutes for clock skew).
        """
        params = {"To": address(message.channel, message.to), "PageSize": "50"}
        if message.from_:
            params["From"] = address(message.channel, message.from_)
        data = await self._get("Messages", params)
        for found in data.get("messages") or []:
            if not _created_since(found, since):
                continue
            if message.body and not message.content_sid and not (found.get("body") or "").endswith(message.body):
                continue
            return SendResult(provider=self.name, provider_message_id=found.get("sid"),
                              status=_our_status(found.get("status")))
        return None

    async def find_call(self, call: OutboundCall, *, since: datetime) -> SendResult | None:
        """The call Twilio accepted for this send since `since`, if any (Calls list API)."""
        params = {"To": call.to, "PageSize": "50"}
        if call.from_:
            params["From"] = call.from_
        data = await self._get("Calls", params)
        for found in data.get("calls") or []:
            if _created_since(found, since):
                return SendResult(provider=self.name, provider_message_id=found.get("sid"), status="sent",
                                  details={"call_status": found.get("status")})
        return None

    async def send_message(self, message: OutboundMessage) -> SendResult:
        form: list[tuple[str, str]] = [("To", address(message.channel, message.to))]
        if message.from_:
            form.append(("From", address(message.channel, message.from_)))
        if message.content_sid:
            form.append(("ContentSid", message.content_sid))
            if message.content_variables:
                form.append(("ContentVariables", json.dumps(message.content_variables)))
        elif message.body is not None:
            form.append(("Body", message.body))
        form += [("MediaUrl", url) for url in message.media_urls]
        if message.status_callback:
            form.append(("StatusCallback", message.status_callback))
        data = await self._post("Messages", form)
        return SendResult(
            provider=self.name, provider_message_id=data.get("sid"), status=_our_status(data.get("status"))
        )

    async def place_call(self, call: OutboundCall) -> SendResult:
        form = [("To", call.to), ("Twiml", say_twiml(call.say, call.language))]
        if call.from_:
            form.append(("From", call.from_))
        if call.status_callback:
            form.append(("StatusCallback", call.status_callback))
        data = await self._post("Calls", form)
        return SendResult(
            provider=self.name,
            provider_message_id=data.get("sid"),
            status="sent",
            details={"call_status": data.get("status")},
        )


CLOCK_SKEW = timedelta(minutes=5)


def _created_since(resource: dict[str, Any], since: datetime) -> bool:
    try:
        created = parsedate_to_datetime(str(resource.get("date_created") or ""))
    except (TypeError, ValueError):
        return False
    return created >= since - CLOCK_SKEW


def _multi(form: list[tuple[str, str]]) -> dict[str, Any]:
    """httpx takes repeated form fields as lists (`MediaUrl=a&MediaUrl=b`)."""
    out: dict[str, Any] = {}
    for key, value in form:
        if key in out:
            out[key] = [*out[key], value] if isinstance(out[key], list) else [out[key], value]
        else:
            out[key] = value
    return out


# Twilio's message and call statuses in our words (the one copy: status callbacks use it too).
TWILIO_STATUS = {
    "accepted": "sent",
    "scheduled": "sent",
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "undelivered",
    "canceled": "failed",
    # voice calls
    "initiated": "sent",
    "ringing": "sent",
    "in-progress": "sent",
    "completed": "delivered",
    "busy": "failed",
    "no-answer": "failed",
}


def from_twilio_status(value: str | None) -> str | None:
    return TWILIO_STATUS.get((value or "").lower())


def _our_status(twilio_status: str | None) -> str:
    return from_twilio_status(twilio_status) or "sent"


def _classify(response: httpx.Response, resource: str) -> dict[str, Any]:
    if response.status_code < 400:
        try:
            return dict(response.json())
        except ValueError:
            raise TransientDeliveryError(
                "Twilio answered with something that is not JSON",
                code="bad_response",
                http_status=response.status_code,
            ) from None
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    code = str(problem.get("code")) if problem.get("code") is not None else None
    reason = PERMANENT_CODES.get(code or "") or str(problem.get("message") or f"HTTP {response.status_code}")
    log.warning("twilio.error", resource=resource, http_status=response.status_code, twilio_code=code)
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientDeliveryError(
            reason, code=code or f"http_{response.status_code}", http_status=response.status_code
        )
    raise PermanentDeliveryError(reason, code=code or f"http_{response.status_code}", http_status=response.status_code)
