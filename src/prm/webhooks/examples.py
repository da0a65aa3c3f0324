"""Documentation and examples of inbound webhooks (see docs/api-examples.md). No API key: Twilio signs
with `X-Twilio-Signature`, the voice agent with `X-Signature`; the examples' signatures are computed by
the test with the service's own secrets."""

from __future__ import annotations

from prm.core.apidocs import Err, Op, ids

TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response />'
BAD_SIGNATURE = Err(403, "invalid_signature", "Missing or invalid Twilio signature",
                    "`X-Twilio-Signature` is missing or does not match the URL and parameters")
MALFORMED = Err(400, "malformed_webhook", "Malformed Twilio message: From is required",
                "A required Twilio parameter is missing or malformed", extra={"field": "From"})

OPERATIONS = {
    "POST /webhooks/twilio/messaging": Op(
        "Twilio calls this for every inbound WhatsApp or SMS message (set it as the number's webhook). The "
        "message is matched to the organisation owning the `To` number and to the patient by `From` (a "
        "provisional patient is created for an unknown number), stored once per `MessageSid`, and added to "
        "the patient's open conversation. STOP/START keywords change consent and are answered in TwiML.",
        form={"MessageSid": "SM6b3f0c2a9d8e4f1a0b2c3d4e5f6a7b8c", "AccountSid": "AC0123456789abcdef0123456789abcdef",
              "From": "whatsapp:+34612345678", "To": "whatsapp:+34910000000",
              "Body": "Hola, quería pedir cita para una limpieza el martes por la mañana", "NumMedia": "0",
              "ProfileName": "Maria"},
        headers={"X-Twilio-Signature": "kCqAwYJ2bpX3jd9m0nH4R1k2fZg="}, given=["twilio_whatsapp"],
        response=TWIML_EMPTY, errors=[BAD_SIGNATURE, MALFORMED]),
    "POST /webhooks/twilio/status": Op(
        "Twilio's delivery status callback for a message the service sent (`queued` → `sent` → `delivered` "
        "or `failed`/`undelivered` with an error code). Unknown `MessageSid`s are kept and applied when the "
        "sending job records the id.",
        form={"MessageSid": "SM6b3f0c2a9d8e4f1a0b2c3d4e5f6a7b8c", "AccountSid": "AC0123456789abcdef0123456789abcdef",
              "MessageStatus": "delivered", "To": "whatsapp:+34612345678", "From": "whatsapp:+34910000000"},
        headers={"X-Twilio-Signature": "kCqAwYJ2bpX3jd9m0nH4R1k2fZg="},
        response=TWIML_EMPTY, errors=[BAD_SIGNATURE, MALFORMED]),
    "POST /webhooks/voice-agent/{org_id}": Op(
        path={"org_id": ids.org},
        body={"call_id": "call_8d2f61", "caller": "+34612345678", "callee": "+34910000000",
              "transcript": "Paciente: Quería cambiar mi cita del martes. Agente: ¿Le viene bien el miércoles?",
              "extracted": {"intent": "reschedule", "preferred_day": "wednesday"},
              "started_at": "2026-03-23T08:40:00Z", "ended_at": "2026-03-23T08:43:10Z", "duration_seconds": 190,
              "language": "es"},
        headers={"X-Signature": "sha256=3f1c5b0e9a7d2c4b6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f"},
        given=["voice_agent_secret"],
        errors=[Err(403, "invalid_signature", "Missing or invalid signature",
                    "`X-Signature` is not the HMAC-SHA256 of the raw body with the organisation's secret"),
                Err(400, "malformed_webhook", "Malformed voice-agent payload", "The body does not parse")]),
    "POST /webhooks/voice-agent/{org_id}/{provider}": Op(
        path={"org_id": ids.org, "provider": "retell"},
        body={"event": "call_analyzed", "call": {
            "call_id": "call_5c1e0b", "agent_id": "agent_front_desk", "call_status": "ended",
            "from_number": "+34612345678", "to_number": "+34910000000",
            "start_timestamp": 1774252440000, "end_timestamp": 1774252740000,
            "transcript": "Agente: ¿En qué puedo ayudarle?\nPaciente: Tengo dolor de muelas desde hace tres días.",
            "call_analysis": {"call_summary": "Toothache; asks for an appointment", "custom_analysis_data": {
                "given_name": "Maria", "family_name": "García López", "consent": True,
                "chief_complaint": "Toothache for three days",
                "symptoms": [{"name": "toothache", "severity": "moderate", "duration_days": 3}],
                "medications": [{"name": "Ibuprofen", "dose": "400 mg", "frequency": "every 8 hours"}]}}}},
        headers={"x-retell-signature": "v=1774252800000,"
                                       "d=9a3c5e7f0b1d2c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e"},
        given=["voice_agent_secret"],
        errors=[Err(403, "invalid_signature", "Missing or invalid signature",
                    "The provider's signature (Retell `x-retell-signature`, Vapi `x-vapi-signature`) does not "
                    "match the raw body with the organisation's secret, or (Retell) is older than five minutes"),
                Err(400, "malformed_webhook", "Malformed retell payload: call.call_id is required",
                    "The payload cannot be read (`field` names what is wrong)", extra={"field": "call.call_id"})]),
}
