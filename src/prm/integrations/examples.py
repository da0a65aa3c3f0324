"""Documentation and examples of outbound webhooks and n8n (see docs/api-examples.md and
docs/integrations.md). Request bodies default to the schemas' own examples."""

from __future__ import annotations

from prm.core.apidocs import Err, Op, ids, not_found

NOT_FOUND = {
    **not_found("endpoint", "webhook_endpoint_not_found", "Webhook endpoint"),
    **not_found("message", "webhook_message_not_found", "Webhook message"),
    **not_found("integration", "n8n_integration_not_found", "n8n integration"),
}
RUN_NOT_FOUND = Err(
    404, "workflow_run_not_found", "No such workflow run", "`run_id` is unknown in the caller's organisation"
)
UNSAFE = Err(
    422,
    "unsafe_url",
    "url: 'http://169.254.169.254/' resolves to a private or link-local address",
    "The URL is not a public http(s) URL",
)
DISABLED = Err(422, "endpoint_disabled", "The endpoint is disabled", "The endpoint is disabled")
N8N = {
    "name": "main",
    "base_url": "http://localhost:5678",
    "workflows": {"triage": "webhook/prm-triage", "booking": "webhook/prm-booking"},
    "event_triggers": {"message.received": "triage"},
    "callback_timeout_seconds": 600,
    "fallback": "ticket",
}

OPERATIONS = {
    "GET /integrations/webhooks/endpoints": Op(
        "The organisation's webhook endpoints (never their secrets).", given=["endpoint"]
    ),
    "POST /integrations/webhooks/endpoints": Op(
        "Subscribes a URL to events (`appointment.*` patterns allowed). Deliveries are signed the Standard "
        "Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with the `secret` shown in "
        "this response only; failed deliveries are retried with backoff. Only public addresses are "
        "accepted unless OUTBOUND_ALLOW_PRIVATE_TARGETS=true (the example's local receiver needs it).",
        body={
            "url": "http://localhost:8088/prm-webhooks",
            "description": "Front-desk dashboard",
            "event_types": ["appointment.*", "patient.created"],
        },
        errors=[UNSAFE],
    ),
    "GET /integrations/webhooks/endpoints/{endpoint_id}": Op(
        "One endpoint: URL, subscribed event patterns, whether it is enabled (it is disabled after repeated "
        "failures) and when its secret was rotated."
    ),
    "PATCH /integrations/webhooks/endpoints/{endpoint_id}": Op(
        "Changes the URL, description, subscribed events or pauses it (`enabled: false`).",
        body={"event_types": ["appointment.*", "patient.*"], "enabled": True},
        errors=[UNSAFE],
    ),
    "DELETE /integrations/webhooks/endpoints/{endpoint_id}": Op("Deletes the endpoint; pending deliveries stop."),
    "POST /integrations/webhooks/endpoints/{endpoint_id}/rotate-secret": Op(
        "A new signing secret (shown once); deliveries are signed with the old and the new one for a while."
    ),
    "POST /integrations/webhooks/endpoints/{endpoint_id}/test": Op(
        "Queues a `webhook.test` event to the endpoint to check the receiver.", errors=[DISABLED]
    ),
    "POST /integrations/webhooks/endpoints/{endpoint_id}/replay": Op(
        "Queues again every subscribed event since a time (after the receiver was down).",
        body={"since": "2026-03-23T07:00:00Z"},
        errors=[DISABLED],
    ),
    "GET /integrations/webhooks/endpoints/{endpoint_id}/messages": Op(
        "The endpoint's messages with their delivery status, newest first.", given=["message"]
    ),
    "GET /integrations/webhooks/messages/{message_id}": Op("One message with its payload and delivery attempts."),
    "POST /integrations/webhooks/messages/{message_id}/redeliver": Op(
        "Queues the message for delivery again, now (the receiver deduplicates on `webhook-id`).", errors=[DISABLED]
    ),
    "GET /integrations/n8n/integrations": Op(
        "The organisation's n8n connections (never their secrets).", given=["integration"]
    ),
    "POST /integrations/n8n/integrations": Op(
        "Connects an n8n instance: named workflows (webhook paths), events that trigger them, how long to "
        "wait for the callback and what to do when it does not come (open a ticket, hand over to staff). "
        "The shared `secret` is in this response only. The example is n8n on its default local port, "
        "accepted with OUTBOUND_ALLOW_PRIVATE_TARGETS=true (development).",
        body=N8N,
        errors=[
            UNSAFE,
            Err(409, "integration_exists", "An n8n integration named 'main' exists already", "The name is taken"),
        ],
    ),
    "GET /integrations/n8n/integrations/{integration_id}": Op(
        "One n8n integration: base URL, named workflows, event triggers, timeouts and fallback."
    ),
    "PATCH /integrations/n8n/integrations/{integration_id}": Op(
        "Changes only the fields sent; `workflows` and `event_triggers`, when sent, replace the whole mapping.",
        body={"callback_timeout_seconds": 900, "fallback": "handoff"},
    ),
    "DELETE /integrations/n8n/integrations/{integration_id}": Op(
        "Removes the n8n integration; its runs stay for the record."
    ),
    "POST /integrations/n8n/integrations/{integration_id}/rotate-secret": Op(
        "A new shared secret (shown once); triggers are signed with it at once."
    ),
    "POST /integrations/n8n/runs": Op(
        "Starts a workflow run: the worker posts the data (with the patient's context and a callback URL and "
        "token) to the workflow's webhook; n8n answers on the callback.",
        body={
            "integration": "main",
            "workflow_key": "triage",
            "data": {"reason": "follow-up"},
            "patient_id": ids.patient,
        },
        given=["integration"],
        errors=[
            Err(422, "unknown_workflow", "workflow_key: no workflow with this key", "No such workflow"),
            Err(422, "unknown_integration", "integration: no n8n integration with this name", "No such integration"),
        ],
    ),
    "GET /integrations/n8n/runs": Op(
        "Workflow runs, newest first, with their status (pending, succeeded, failed, "
        "timed out) and the action n8n answered.",
        query={"workflow_key": "triage"},
        given=["n8n_run"],
    ),
    "GET /integrations/n8n/runs/{run_id}": Op(
        "One run with its status, result and attempts.", path={"run_id": ids.n8n_run}, errors=[RUN_NOT_FOUND]
    ),
    "POST /integrations/n8n/runs/{run_id}/retry": Op(
        "Starts a failed or timed-out run again: the workflow is triggered anew with a fresh callback token.",
        path={"run_id": ids.failed_n8n_run},
        errors=[
            RUN_NOT_FOUND,
            Err(
                409,
                "run_not_retryable",
                "Only failed or timed-out runs can be retried",
                "The run is pending or succeeded",
                extra={"allowed": ["failed", "timed_out"]},
            ),
        ],
    ),
    "POST /integrations/n8n/runs/{run_id}/callback": Op(
        path={"run_id": ids.n8n_run},
        headers={"Authorization": f"Bearer {ids.n8n_callback_token}"},
        body={
            "action": "triage",
            "subject": "Patient asks about fasting before blood test",
            "priority": "normal",
            "category": "triage",
        },
        errors=[
            Err(
                401,
                "invalid_callback_token",
                "Missing or invalid callback token for this run",
                "The `Authorization` bearer is not this run's callback token",
            ),
            RUN_NOT_FOUND,
            Err(
                409,
                "run_finished",
                "The run is succeeded already; a different callback cannot change it",
                "A different callback came first",
            ),
            Err(409, "run_expired", "The run's callback deadline has passed", "Too late: the fallback ran"),
        ],
    ),
}
