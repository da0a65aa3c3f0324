"""Documentation and examples of the voice-agent webhooks (see `prm.core.apidocs`, `docs/api-examples.md`).

The examples are signed with the demo organisation's voice-agent secret (`DEMO_VOICE_SECRET`, set by
the example world's `voice_channel`) at the examples' clock (Monday 2026-03-23 08:00 UTC), so the
walking test's request is a valid delivery; a real agent signs with your secret and its own clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from prm.core.apidocs import Err, Op, ids

DEMO_VOICE_SECRET = "demo-voice-agent-secret-0123456789"
EXAMPLE_MS = 1774252800000  # 2026-03-23T08:00:00Z, the examples' "now"
CONTENT_TYPE = "application/json; charset=utf-8"

EXTRACTED = {"given_name": "Maria", "family_name": "García López", "consent": True,
             "chief_complaint": "Toothache for three days",
             "symptoms": [{"name": "toothache", "severity": "moderate", "duration_days": 3}],
             "medications": [{"name": "Ibuprofen", "dose": "400 mg", "frequency": "every 8 hours"}]}
RETELL_BODY = json.dumps({"event": "call_analyzed", "call": {
    "call_id": "call_8f2c1d", "agent_id": "agent_front_desk", "call_status": "ended",
    "from_number": "+34611222333", "to_number": "+34910000001",
    "start_timestamp": EXAMPLE_MS - 360000, "end_timestamp": EXAMPLE_MS - 60000,
    "transcript": "Agent: How can I help?\nUser: I have had a toothache for three days.",
    "call_analysis": {"call_summary": "Toothache, wants an appointment", "custom_analysis_data": EXTRACTED}}},
    ensure_ascii=False)
VAPI_BODY = json.dumps({"message": {
    "type": "end-of-call-report", "endedReason": "customer-ended-call",
    "call": {"id": "vapi_2b7e90", "customer": {"number": "+34611222444"}, "phoneNumber": {"number": "+34910000001"}},
    "artifact": {"transcript": "User: I have had a toothache for three days."},
    "analysis": {"structuredData": EXTRACTED}, "startedAt": "2026-03-23T07:54:00Z",
    "endedAt": "2026-03-23T07:59:00Z"}}, ensure_ascii=False)
GENERIC_BODY = json.dumps({"call_id": "call_51aa07", "caller": "+34611222555", "callee": "+34910000001",
                           "transcript": "Agent: How can I help?\nCaller: I'd like a cleaning next week.",
                           "extracted": {"chief_complaint": "Dental cleaning"}, "duration_seconds": 95},
                          ensure_ascii=False)


def _hex(message: str) -> str:
    return hmac.new(DEMO_VOICE_SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()


SIGNATURE = Err(403, "invalid_signature", "Missing or invalid signature",
                "The signature is missing, does not match the raw body, or (Retell) is older than five minutes")
MALFORMED = Err(400, "malformed_webhook", "Malformed retell payload: call.call_id is required",
                "The payload cannot be read (`field` names what is wrong)", extra={"field": "call.call_id"})

OPERATIONS = {
    "POST /webhooks/voice-agent/{org_id}/{provider}": Op(
        path={"org_id": ids.org, "provider": "retell"}, content=RETELL_BODY, content_type=CONTENT_TYPE,
        headers={"x-retell-signature": f"v={EXAMPLE_MS},d={_hex(RETELL_BODY + str(EXAMPLE_MS))}"},
        given=["voice_channel"], errors=[SIGNATURE, MALFORMED]),
    "POST /webhooks/voice-agent/{org_id}": Op(
        path={"org_id": ids.org}, content=GENERIC_BODY, content_type=CONTENT_TYPE,
        headers={"X-Signature": f"sha256={_hex(GENERIC_BODY)}"}, given=["voice_channel"],
        errors=[SIGNATURE, Err(400, "malformed_webhook", "Malformed voice-agent payload",
                               "The payload cannot be read (`errors` names each field)")]),
}
