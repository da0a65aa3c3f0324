"""Documentation and examples of notifications: templates, sends, batches, settings
(see docs/api-examples.md)."""

from __future__ import annotations

from prm.core.apidocs import Err, Op, ids, not_found

NOT_FOUND = {
    **not_found("template", "template_not_found", "Template"),
    **not_found("batch", "batch_not_found", "Batch"),
}
APPT = {
    "service_name": "Dental cleaning",
    "practitioner_name": "Dr Elena Vega",
    "location_name": "Clínica Centro",
    "when": "martes 24 de marzo, 10:00",
}
NO_TEMPLATE = Err(
    422,
    "template_not_found",
    "template_key: no template 'spring_checkup' for sms",
    "No template with this key for the channel (neither the organisation's nor a built-in one)",
)
TEMPLATE = {
    "key": "post_visit_follow_up",
    "channel": "whatsapp",
    "locale": "es",
    "body": "Hola {{ patient_name }}, ¿qué tal se encuentra después de su {{ service_name }}? "
    "Responda a este mensaje si necesita algo.",
    "variables": ["patient_name", "service_name"],
    "description": "Sent the day after a visit",
}

OPERATIONS = {
    "GET /notifications/templates": Op(
        "The organisation's own templates (built-in ones: `/builtin`).",
        query={"channel": "whatsapp"},
        given=["template"],
    ),
    "POST /notifications/templates": Op(
        "Adds a template for a key, channel and locale (Jinja2 `{{ variables }}`); it overrides the built-in "
        "one with the same key. WhatsApp templates outside the 24-hour window need Twilio's `content_sid`.",
        body=TEMPLATE,
        errors=[
            Err(
                409,
                "template_exists",
                "A template with this key, channel and locale exists",
                "The key, channel and locale are taken: PATCH that template",
            ),
            Err(422, "template_error", "body: unexpected '}'", "The template does not render"),
        ],
    ),
    "GET /notifications/templates/builtin": Op(
        "The built-in templates (appointment reminders, confirmations, cancellations ...) in every locale."
    ),
    "POST /notifications/templates/preview": Op(
        "Renders a stored template (`key`, `channel`, `locale`) or a `draft` with variables, without sending.",
        body={
            "key": "appointment_reminder",
            "channel": "sms",
            "locale": "es",
            "variables": {"patient_name": "Maria", **APPT},
        },
        errors=[
            Err(
                404,
                "template_not_found",
                "No template 'spring_checkup' for sms",
                "No template with this key for the channel",
            )
        ],
    ),
    "GET /notifications/templates/{template_id}": Op(
        "One of the organisation's templates: key, channel, locale, text, declared variables and, for WhatsApp, "
        "the Twilio Content template it maps to."
    ),
    "PATCH /notifications/templates/{template_id}": Op(
        "Changes the text or variables of a template.",
        body={"body": "Hola {{ patient_name }}, ¿cómo se encuentra tras su visita?"},
    ),
    "DELETE /notifications/templates/{template_id}": Op("Deletes a template; the built-in one applies again."),
    "POST /notifications/send": Op(
        "Sends one templated message to a patient, on the channel given or their preferred one, checking "
        "consent for the purpose. The answer is the queued communication.",
        body={
            "patient_id": ids.patient,
            "template_key": "appointment_reminder",
            "channel": "sms",
            "purpose": "reminders",
            "variables": APPT,
        },
        errors=[
            NO_TEMPLATE,
            Err(
                422,
                "no_channel_available",
                "patient_id: no channel the patient can be reached on",
                "The patient has no address on the channel, or refused consent for the purpose",
            ),
        ],
    ),
    "POST /notifications/batches": Op(
        "Sends a templated message to many patients (ids, or a filter) in the background; follow it with "
        "`GET /notifications/batches/{batch_id}`.",
        body={
            "template_key": "appointment_reminder",
            "channel": "sms",
            "purpose": "reminders",
            "variables": APPT,
            "patient_ids": [ids.patient],
        },
        errors=[
            NO_TEMPLATE,
            Err(
                422,
                "unknown_patients",
                "patient_ids: unknown patient(s)",
                "A patient id is unknown in the organisation",
            ),
        ],
    ),
    "GET /notifications/batches/{batch_id}": Op(
        "A batch's progress: how many messages are queued, sent, delivered, failed or skipped "
        "(no consent, no address), and whether it finished."
    ),
    "GET /notifications/batches/{batch_id}/items": Op("A batch's recipients with the status of each message."),
    "GET /notifications/settings": Op("Which automatic appointment notices go out (booked, rescheduled, cancelled)."),
    "PATCH /notifications/settings": Op(
        "Turns automatic appointment notices on or off for the organisation (null: the service default).",
        body={"appointment_booked": True, "appointment_rescheduled": True, "appointment_cancelled": False},
    ),
}
