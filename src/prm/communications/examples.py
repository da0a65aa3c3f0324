"""Documentation and examples of messages and channels (see docs/api-examples.md)."""

from __future__ import annotations

from prm.core.apidocs import Err, Op, ids, not_found

NOT_FOUND = not_found("communication", "communication_not_found", "Communication")

OPERATIONS = {
    "POST /communications": Op(
        "Queues a message to a patient (SMS, WhatsApp, email or voice) for the worker to deliver, after "
        "checking consent for the purpose; `send_at` schedules it. `idempotency_key` (or the "
        "`Idempotency-Key` header) makes retries safe.",
        body={
            "patient_id": ids.patient,
            "channel": "sms",
            "purpose": "care",
            "body": "Hola Maria, su resultado ya está disponible. Llámenos al 910 000 000.",
            "idempotency_key": "results-ready-4211",
        },
        errors=[
            Err(
                422,
                "no_address",
                "patient_id: the patient has no phone for sms",
                "The patient has no address on the channel",
            ),
            Err(
                422,
                "consent_refused",
                "patient_id: the patient refused marketing on sms",
                "The patient refused consent for the purpose on the channel",
            ),
            Err(
                409,
                "whatsapp_window_closed",
                "Free-form WhatsApp needs a reply from the patient in the last 24 hours; send a template (content_sid)",
                "WhatsApp free text outside the 24-hour window",
            ),
            Err(
                409,
                "channel_disabled",
                "The sms channel is disabled for this organisation",
                "The channel is turned off",
            ),
        ],
    ),
    "GET /communications": Op(
        "Messages in and out, newest first, filtered by patient, conversation, channel, status or direction.",
        query={"patient_id": ids.patient, "channel": "sms"},
        given=["communication"],
    ),
    "GET /communications/sandbox/outbox": Op(
        "What the sandbox provider 'sent' (development: nothing leaves the machine).",
        given=["communication", "jobs_run"],
    ),
    "GET /communications/channels": Op("Each channel's provider, sender and whether it is enabled."),
    "PUT /communications/channels/{channel}": Op(
        "Configures a channel: its provider and the sender (a phone number or email address that routes "
        "inbound messages to this organisation).",
        path={"channel": "whatsapp"},
        body={"provider": "twilio", "sender": "+34910000000", "sender_name": "Demo Clinic", "enabled": True},
        errors=[
            Err(
                409,
                "sender_taken",
                "This number is already configured by another organisation",
                "The sender belongs to another organisation",
            )
        ],
    ),
    "GET /communications/{communication_id}": Op(
        "One message in or out: channel, body, status with the provider's error "
        "if it failed, and when it was queued, sent and delivered."
    ),
    "POST /communications/{communication_id}/cancel": Op(
        "Cancels a message that has not gone out yet (scheduled or queued).",
        path={"communication_id": ids.scheduled_communication},
        errors=[
            Err(
                409,
                "not_cancellable",
                "A sent message can no longer be cancelled",
                "The message was already handed to the provider",
            )
        ],
    ),
}
