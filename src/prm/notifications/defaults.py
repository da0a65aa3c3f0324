"""Built-in notification templates, used when an organisation has not written its own.

Keyed by (template key, channel, locale). Every template declares its variables; `patient_name` is
always available (the service fills it from the patient record).
"""

from __future__ import annotations

from prm.notifications.templates import TemplateSource

_APPOINTMENT_VARS = ("patient_name", "service_name", "practitioner_name", "location_name", "when")

_T = TemplateSource

DEFAULTS: dict[tuple[str, str, str], TemplateSource] = {}


def _add(key: str, locale: str, *, short: str, subject: str, long: str, variables: tuple[str, ...]) -> None:
    for channel in ("sms", "whatsapp"):
        DEFAULTS[(key, channel, locale)] = _T(body=short, variables=variables)
    DEFAULTS[(key, "voice", locale)] = _T(body=short, variables=variables)
    DEFAULTS[(key, "email", locale)] = _T(
        subject=subject,
        body=long,
        html_body="<p>" + long.replace("\n\n", "</p><p>").replace("\n", "<br>") + "</p>",
        variables=variables,
    )


_add(
    "appointment_reminder",
    "en",
    variables=_APPOINTMENT_VARS,
    short="Hi {{ patient_name }}, this is a reminder of your {{ service_name }} appointment with "
    "{{ practitioner_name }} on {{ when }} at {{ location_name }}.",
    subject="Reminder: {{ service_name }} on {{ when }}",
    long="Hello {{ patient_name }},\n\nThis is a reminder of your {{ service_name }} appointment with "
    "{{ practitioner_name }} on {{ when }} at {{ location_name }}.\n\n"
    "If you cannot come, please let us know.",
)
_add(
    "appointment_reminder",
    "es",
    variables=_APPOINTMENT_VARS,
    short="Hola {{ patient_name }}, le recordamos su cita de {{ service_name }} con {{ practitioner_name }} "
    "el {{ when }} en {{ location_name }}.",
    subject="Recordatorio: {{ service_name }} el {{ when }}",
    long="Hola {{ patient_name }},\n\nLe recordamos su cita de {{ service_name }} "
    "con {{ practitioner_name }} "
    "el {{ when }} en {{ location_name }}.\n\nSi no puede acudir, avísenos por favor.",
)
_add(
    "appointment_confirmation",
    "en",
    variables=_APPOINTMENT_VARS,
    short="Hi {{ patient_name }}, your {{ service_name }} appointment with {{ practitioner_name }} is booked "
    "for {{ when }} at {{ location_name }}.",
    subject="Appointment confirmed: {{ service_name }} on {{ when }}",
    long="Hello {{ patient_name }},\n\nYour {{ service_name }} appointment with {{ practitioner_name }} is "
    "confirmed for {{ when }} at {{ location_name }}.",
)
_add(
    "appointment_confirmation",
    "es",
    variables=_APPOINTMENT_VARS,
    short="Hola {{ patient_name }}, su cita de {{ service_name }} con {{ practitioner_name }} "
    "queda reservada "
    "para el {{ when }} en {{ location_name }}.",
    subject="Cita confirmada: {{ service_name }} el {{ when }}",
    long="Hola {{ patient_name }},\n\nSu cita de {{ service_name }} con {{ practitioner_name }} queda "
    "confirmada para el {{ when }} en {{ location_name }}.",
)
_add(
    "appointment_cancelled",
    "en",
    variables=_APPOINTMENT_VARS,
    short="Hi {{ patient_name }}, your {{ service_name }} appointment on {{ when }} has been cancelled. "
    "Reply to book a new time.",
    subject="Appointment cancelled: {{ service_name }} on {{ when }}",
    long="Hello {{ patient_name }},\n\nYour {{ service_name }} appointment with {{ practitioner_name }} on "
    "{{ when }} at {{ location_name }} has been cancelled.\n\nReply to this message to book a new time.",
)
_add(
    "appointment_cancelled",
    "es",
    variables=_APPOINTMENT_VARS,
    short="Hola {{ patient_name }}, su cita de {{ service_name }} del {{ when }} ha sido cancelada. "
    "Responda para reservar otra.",
    subject="Cita cancelada: {{ service_name }} el {{ when }}",
    long="Hola {{ patient_name }},\n\nSu cita de {{ service_name }} con {{ practitioner_name }} "
    "del {{ when }} "
    "en {{ location_name }} ha sido cancelada.\n\nResponda a este mensaje para reservar otra.",
)
_RESCHEDULED_VARS = (*_APPOINTMENT_VARS, "previous_when")
_add(
    "appointment_rescheduled",
    "en",
    variables=_RESCHEDULED_VARS,
    short="Hi {{ patient_name }}, your {{ service_name }} appointment "
    "{% if previous_when %}on {{ previous_when }} {% endif %}has been moved to {{ when }} "
    "with {{ practitioner_name }} at {{ location_name }}.",
    subject="Appointment moved: {{ service_name }} on {{ when }}",
    long="Hello {{ patient_name }},\n\nYour {{ service_name }} appointment "
    "{% if previous_when %}on {{ previous_when }} {% endif %}has been moved to {{ when }} "
    "with {{ practitioner_name }} at {{ location_name }}.\n\nIf the new time does not suit you, "
    "please let us know.",
)
_add(
    "appointment_rescheduled",
    "es",
    variables=_RESCHEDULED_VARS,
    short="Hola {{ patient_name }}, su cita de {{ service_name }} "
    "{% if previous_when %}del {{ previous_when }} {% endif %}se ha cambiado al {{ when }} "
    "con {{ practitioner_name }} en {{ location_name }}.",
    subject="Cita cambiada: {{ service_name }} el {{ when }}",
    long="Hola {{ patient_name }},\n\nSu cita de {{ service_name }} "
    "{% if previous_when %}del {{ previous_when }} {% endif %}se ha cambiado al {{ when }} "
    "con {{ practitioner_name }} en {{ location_name }}.\n\nSi el nuevo horario no le viene bien, "
    "avísenos por favor.",
)


def builtin(key: str, channel: str, locale: str) -> TemplateSource | None:
    return DEFAULTS.get((key, channel, locale))


def template_keys() -> list[str]:
    return sorted({k for k, _, _ in DEFAULTS})
