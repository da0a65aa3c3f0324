"""Every text the booking assistant says, and the words it understands, per locale.

Translators edit only this file. `render(key, locale, **values)` fills `{placeholders}` and falls
back to English for a locale or key that has no translation yet; a missing placeholder value is an
error (never a blank in a message to a patient). `vocabulary(locale)` gives the words the assistant
recognises (yes/no, intents, parts of the day), always including English.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from string import Formatter

from babel.dates import get_day_names, get_month_names

DEFAULT_LOCALE = "en"

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "greeting": "Hello{name_part}! I'm the booking assistant of {clinic}.",
        "ask_reason": (
            "What would you like to book? Tell me what the visit is for, or reply CANCEL or "
            "RESCHEDULE for an appointment you already have. Reply AGENT to talk to a person."
        ),
        "choose_service": "Which of these is it? Reply with the number:\n{options}",
        "no_services": (
            "Sorry, online booking is not available right now. A member of our team will help you."
        ),
        "offer_slots": (
            "These times are open for {service}:\n{options}\n"
            "Reply with a number, a day (for example \"tomorrow afternoon\"), or MORE for later times."
        ),
        "no_slots_then": "There is no open time for {service} then. Here are the next ones.",
        "no_slots": (
            "Sorry, there is no open time for {service} in the coming {days} days. "
            "Reply AGENT and a person will help you."
        ),
        "confirm_slot": "{service} on {when}. Shall I book it? (yes/no)",
        "slot_taken": "Sorry, that time was just taken by someone else. Here are new options.",
        "booking_declined": "No problem, nothing was booked.",
        "booked": (
            "Your appointment is booked: {service} on {when}. "
            "Reply CANCEL or RESCHEDULE if you need to change it."
        ),
        "rescheduled": "Your appointment is moved: {service} is now on {when}.",
        "no_upcoming": "You have no upcoming appointment with us.",
        "choose_appointment": "Which appointment? Reply with the number:\n{options}",
        "confirm_cancel": "Cancel your appointment for {service} on {when}? (yes/no)",
        "cancelled": "Your appointment for {service} on {when} is cancelled.",
        "cancel_declined": "All right, your appointment stays as it is.",
        "reschedule_intro": "Let's find a new time for your {service} on {when}.",
        "not_understood": "Sorry, I did not understand that.",
        "reprompt_number": "Please reply with one of the numbers shown.",
        "reprompt_yes_no": "Please reply YES or NO.",
        "handoff": "I'm passing you to a member of our team; they will reply here shortly.",
        "action_failed": "Sorry, something went wrong on our side. A member of our team will follow up.",
        "option_line": "{number}. {label}",
        "appointment_label": "{service} on {when}",
        "slot_label": "{when}{with_part}",
        "with_part": " with {practitioner}",
        "when": "{weekday} {day} {month}, {time}",
    },
    "es": {
        "greeting": "¡Hola{name_part}! Soy el asistente de citas de {clinic}.",
        "ask_reason": (
            "¿Qué desea reservar? Cuénteme el motivo de la visita, o responda CANCELAR o CAMBIAR "
            "para una cita que ya tiene. Responda AGENTE para hablar con una persona."
        ),
        "choose_service": "¿Cuál de estos es? Responda con el número:\n{options}",
        "no_services": (
            "Lo sentimos, la reserva en línea no está disponible ahora. Alguien del equipo le ayudará."
        ),
        "offer_slots": (
            "Estos horarios están libres para {service}:\n{options}\n"
            "Responda con un número, un día (por ejemplo \"mañana por la tarde\") o MÁS para ver otros."
        ),
        "no_slots_then": "No hay horario libre para {service} en ese momento. Estos son los siguientes.",
        "no_slots": (
            "Lo sentimos, no hay horarios libres para {service} en los próximos {days} días. "
            "Responda AGENTE y una persona le ayudará."
        ),
        "confirm_slot": "{service} el {when}. ¿La reservo? (sí/no)",
        "slot_taken": "Lo sentimos, otra persona acaba de reservar ese horario. Estas son otras opciones.",
        "booking_declined": "De acuerdo, no se ha reservado nada.",
        "booked": (
            "Su cita está reservada: {service} el {when}. "
            "Responda CANCELAR o CAMBIAR si necesita modificarla."
        ),
        "rescheduled": "Su cita se ha cambiado: {service} ahora es el {when}.",
        "no_upcoming": "No tiene ninguna cita próxima con nosotros.",
        "choose_appointment": "¿Qué cita? Responda con el número:\n{options}",
        "confirm_cancel": "¿Cancelar su cita de {service} el {when}? (sí/no)",
        "cancelled": "Su cita de {service} el {when} está cancelada.",
        "cancel_declined": "De acuerdo, su cita se mantiene.",
        "reschedule_intro": "Busquemos un nuevo horario para su {service} del {when}.",
        "not_understood": "Perdone, no le he entendido.",
        "reprompt_number": "Responda con uno de los números indicados.",
        "reprompt_yes_no": "Responda SÍ o NO.",
        "handoff": "Le paso con una persona del equipo; le responderá aquí en breve.",
        "action_failed": "Lo sentimos, algo ha fallado por nuestra parte. Alguien del equipo le contactará.",
        "with_part": " con {practitioner}",
        "when": "{weekday} {day} de {month}, {time}",
    },
}

@dataclass(frozen=True)
class Vocabulary:
    yes: frozenset[str]
    no: frozenset[str]
    cancel: frozenset[str]
    reschedule: frozenset[str]
    book: frozenset[str]
    human: frozenset[str]
    more: frozenset[str]
    # part of the day -> (first hour, hour after the last), local time
    parts_of_day: dict[str, tuple[int, int]]
    # words dropped before a date is parsed ("on friday", "el viernes")
    filler: frozenset[str]
    date_languages: tuple[str, ...]


_WORDS: dict[str, dict[str, set[str]]] = {
    "en": {
        "yes": {"yes", "y", "yeah", "yep", "yup", "ok", "okay", "sure", "confirm", "correct", "please do",
                "👍"},
        "no": {"no", "n", "nope", "nah", "no thanks", "👎"},
        "cancel": {"cancel", "cancel appointment", "cancel my appointment"},
        "reschedule": {"reschedule", "change", "move", "change appointment", "move appointment"},
        "book": {"book", "appointment", "booking", "new appointment", "schedule"},
        "human": {"agent", "human", "person", "operator", "receptionist"},
        "more": {"more", "later", "others", "other", "next"},
        "filler": {"on", "at", "for", "the", "please", "maybe", "how", "about", "what"},
    },
    "es": {
        "yes": {"si", "sí", "s", "vale", "claro", "de acuerdo", "confirmo", "correcto"},
        "no": {"no", "nop", "mejor no"},
        "cancel": {"cancelar", "anular", "cancelar cita"},
        "reschedule": {"cambiar", "mover", "reprogramar", "cambiar cita"},
        "book": {"reservar", "cita", "pedir cita", "nueva cita"},
        "human": {"agente", "humano", "persona", "operador", "recepción"},
        "more": {"más", "mas", "otros", "otras", "siguientes"},
        "filler": {"el", "la", "por", "a", "las", "los", "de", "para"},
    },
}
_PARTS_OF_DAY: dict[str, dict[str, tuple[int, int]]] = {
    "en": {"morning": (8, 12), "afternoon": (12, 17), "evening": (17, 21), "tonight": (17, 21)},
    "es": {"por la mañana": (8, 12), "por la tarde": (12, 20),
           "tarde": (12, 20), "noche": (19, 22)},
}


def locale_of(locale: str | None) -> str:
    """The supported locale for a preference such as `es-ES` (English when unsupported)."""
    if not locale:
        return DEFAULT_LOCALE
    base = locale.replace("_", "-").split("-", 1)[0].lower()
    return base if base in TEXTS else DEFAULT_LOCALE


def render(key: str, locale: str | None = None, **values: object) -> str:
    loc = locale_of(locale)
    template = TEXTS[loc].get(key) or TEXTS[DEFAULT_LOCALE][key]
    needed = {name for _, name, _, _ in Formatter().parse(template) if name}
    missing = needed - values.keys()
    if missing:
        raise KeyError(f"text {key!r} needs {sorted(missing)}")
    return template.format(**values)


def vocabulary(locale: str | None) -> Vocabulary:
    loc = locale_of(locale)
    words: dict[str, set[str]] = {k: set(v) for k, v in _WORDS[DEFAULT_LOCALE].items()}
    parts = dict(_PARTS_OF_DAY[DEFAULT_LOCALE])
    if loc != DEFAULT_LOCALE:
        for k, v in _WORDS[loc].items():
            words[k] |= v
        parts.update(_PARTS_OF_DAY[loc])
    languages = (loc,) if loc == DEFAULT_LOCALE else (loc, DEFAULT_LOCALE)
    return Vocabulary(
        yes=frozenset(words["yes"]), no=frozenset(words["no"]), cancel=frozenset(words["cancel"]),
        reschedule=frozenset(words["reschedule"]), book=frozenset(words["book"]),
        human=frozenset(words["human"]), more=frozenset(words["more"]), parts_of_day=parts,
        filler=frozenset(words["filler"]), date_languages=languages,
    )


def format_when(at_local: datetime, locale: str | None = None) -> str:
    """A local datetime as patients read it: `Thu 26 Nov, 10:30` (day and month names from babel's CLDR data)."""
    loc = locale_of(locale)
    return render(
        "when", loc, weekday=get_day_names("abbreviated", locale=loc)[at_local.weekday()], day=at_local.day,
        month=get_month_names("abbreviated", locale=loc)[at_local.month], time=at_local.strftime("%H:%M"),
    )
