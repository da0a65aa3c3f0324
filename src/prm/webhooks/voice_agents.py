"""Voice-agent providers' end-of-call webhooks (Retell, Vapi): signatures and payloads. Pure, no I/O.

* Retell: `x-retell-signature: v=<unix ms>,d=<hex HMAC-SHA256(key, raw body + "<unix ms>")>`, the key
  being the organisation's voice-agent secret (Retell's webhook API key); a timestamp more than five
  minutes away from now is refused (a replayed old delivery). Events: `call_started`, `call_ended`,
  `call_analyzed` (the one with the extracted data, `call.call_analysis.custom_analysis_data`).
* Vapi: an HMAC credential, `x-vapi-signature: <hex HMAC-SHA256(secret, raw body)>`. Messages:
  `{"message": {"type": "end-of-call-report", "call": {...}, "artifact": {"transcript": ...},
  "analysis": {"structuredData": {...}}}}`.

Both are checked on the raw bytes, before parsing. `parse_*` return the event name and, for the
events that end a call, the call in our own shape (`VoiceAgentCall`); other events are acknowledged
and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from prm.webhooks.schemas import VoiceAgentCall

PROVIDERS = ("retell", "vapi")
RETELL_TOLERANCE_MS = 5 * 60 * 1000
FINAL_EVENTS = {"retell": "call_analyzed", "vapi": "end-of-call-report"}
AUDIO_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".m4a": "audio/mp4"}


class Malformed(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def retell_signature(secret: str, body: bytes, timestamp_ms: int) -> str:
    """The header Retell sends (tests and the simulator sign with it)."""
    return f"v={timestamp_ms},d={_hex_hmac(secret, body + str(timestamp_ms).encode())}"


def retell_valid(secret: str | None, body: bytes, header: str | None, now_ms: int) -> bool:
    if not secret or not header:
        return False
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    stamp, digest = parts.get("v", ""), parts.get("d", "")
    if not stamp.isdigit() or abs(now_ms - int(stamp)) > RETELL_TOLERANCE_MS:
        return False
    return hmac.compare_digest(_hex_hmac(secret, body + stamp.encode()), digest.strip().lower())


def vapi_signature(secret: str, body: bytes) -> str:
    return _hex_hmac(secret, body)


def vapi_valid(secret: str | None, body: bytes, header: str | None) -> bool:
    if not secret or not header:
        return False
    return hmac.compare_digest(_hex_hmac(secret, body), header.strip().lower())


def signature_valid(provider: str, secret: str | None, body: bytes, headers: Mapping[str, str], now: datetime) -> bool:
    if provider == "retell":
        return retell_valid(secret, body, headers.get("x-retell-signature"), int(now.timestamp() * 1000))
    if provider == "vapi":
        return vapi_valid(secret, body, headers.get("x-vapi-signature"))
    return False


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(field, "must be an object")
    return value


def _ms(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, tz=UTC) if isinstance(value, int | float) and value > 0 else None


def _call(fields: dict[str, Any], prefix: str) -> VoiceAgentCall:
    try:
        return VoiceAgentCall.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Malformed(f"{prefix}.{'.'.join(str(p) for p in first['loc'])}", first["msg"]) from None


def parse_retell(body: bytes) -> tuple[str, VoiceAgentCall | None]:
    payload = _object(_json(body), "body")
    event = payload.get("event")
    if not isinstance(event, str) or not event:
        raise Malformed("event", "is required")
    call = _object(payload.get("call"), "call")
    if not isinstance(call.get("call_id"), str):
        raise Malformed("call.call_id", "is required")
    if event != FINAL_EVENTS["retell"]:
        return event, None
    analysis = call.get("call_analysis") or {}
    started, ended = _ms(call.get("start_timestamp")), _ms(call.get("end_timestamp"))
    return event, _call({
        "call_id": call["call_id"], "caller": call.get("from_number"), "callee": call.get("to_number"),
        "transcript": call.get("transcript") or "",
        "extracted": analysis.get("custom_analysis_data") or {} if isinstance(analysis, dict) else {},
        "started_at": started, "ended_at": ended,
        "duration_seconds": int((ended - started).total_seconds()) if started and ended else None,
        "recording_url": call.get("recording_url"),
    }, "call")


def parse_vapi(body: bytes) -> tuple[str, VoiceAgentCall | None]:
    message = _object(_object(_json(body), "body").get("message"), "message")
    event = message.get("type")
    if not isinstance(event, str) or not event:
        raise Malformed("message.type", "is required")
    call = _object(message.get("call") or {}, "message.call")
    if not isinstance(call.get("id"), str):
        raise Malformed("message.call.id", "is required")
    if event != FINAL_EVENTS["vapi"]:
        return event, None
    artifact = message.get("artifact") or {}
    analysis = message.get("analysis") or {}
    customer = call.get("customer") or {}
    number = call.get("phoneNumber") or message.get("phoneNumber") or {}
    return event, _call({
        "call_id": call["id"], "caller": customer.get("number") if isinstance(customer, dict) else None,
        "callee": number.get("number") if isinstance(number, dict) else None,
        "transcript": (artifact.get("transcript") if isinstance(artifact, dict) else None)
        or message.get("transcript") or "",
        "extracted": (analysis.get("structuredData") if isinstance(analysis, dict) else None) or {},
        "started_at": message.get("startedAt"), "ended_at": message.get("endedAt"),
        "duration_seconds": int(message["durationSeconds"]) if isinstance(message.get("durationSeconds"),
                                                                          int | float) else None,
        "recording_url": (artifact.get("recordingUrl") if isinstance(artifact, dict) else None)
        or message.get("recordingUrl"),
    }, "message")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise Malformed("body", "is not JSON") from None


def parse(provider: str, body: bytes) -> tuple[str, VoiceAgentCall | None]:
    return parse_retell(body) if provider == "retell" else parse_vapi(body)


def call_id_of(provider: str, body: bytes) -> str:
    """The call id of any event (already parsed once; used for the deduplication key)."""
    payload = json.loads(body)
    return str(payload["call"]["call_id"] if provider == "retell" else payload["message"]["call"]["id"])


def recording_type(url: str) -> str:
    """The audio type a recording URL names by its extension (WAV when it says nothing)."""
    path = url.split("?", 1)[0].lower()
    return next((t for ext, t in AUDIO_TYPES.items() if path.endswith(ext)), "audio/wav")
