"""The booking assistant patients talk to on WhatsApp or SMS: a deterministic, pure state machine.

`handle(state, context, event, facts, now, policy)` → `Outcome(state, context, replies, commands)`.
It does no I/O: the caller supplies what the assistant may need to know (`Facts`: services,
upcoming appointments, locale, time zone), executes the `commands` it returns (`FetchSlots`,
`Book`, `Reschedule`, `Cancel`, `SendConfirmation`, `Handoff`) and feeds each result back as an
event (`SlotsFound`, `Booked`, `BookingFailed`, `Cancelled`, `ActionFailed`) until no command is
left. `context` is a JSON-serialisable dict the caller stores with the conversation.

The flow: greet → ask what the visit is for → offer the services when the answer is ambiguous →
propose the next open slots as a numbered list (or slots on a day the patient names, "tomorrow
afternoon") → confirm → book → the confirmation. "cancel" and "reschedule" work on an upcoming
appointment. Input it does not understand is re-prompted; after `policy.max_failures` misses in a
row, or when the patient asks for a person, it hands off (and stays silent from then on). A context
idle for longer than `policy.stale_after` starts over. A slot taken by someone else between the
offer and the confirmation yields fresh offers.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import dateparser
from rapidfuzz import fuzz, process

from prm.conversations import texts

# --- states ------------------------------------------------------------------------------------

IDLE = "idle"
ASK_REASON = "ask_reason"
CHOOSE_SERVICE = "choose_service"
SEARCHING = "searching"
CHOOSE_SLOT = "choose_slot"
CONFIRM_SLOT = "confirm_slot"
BOOKING = "booking"
CHOOSE_APPOINTMENT = "choose_appointment"
CONFIRM_CANCEL = "confirm_cancel"
CANCELLING = "cancelling"
DONE = "done"
HANDOFF = "handoff"
STATES = (IDLE, ASK_REASON, CHOOSE_SERVICE, SEARCHING, CHOOSE_SLOT, CONFIRM_SLOT, BOOKING,
          CHOOSE_APPOINTMENT, CONFIRM_CANCEL, CANCELLING, DONE, HANDOFF)
WAITING_STATES = (SEARCHING, BOOKING, CANCELLING)  # waiting for the result of a command


# --- facts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class Slot:
    start_at: datetime
    end_at: datetime
    practitioner_id: str
    service_id: str
    location_id: str | None = None
    practitioner_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["start_at"] = self.start_at.isoformat()
        data["end_at"] = self.end_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Slot:
        return cls(**{**data, "start_at": datetime.fromisoformat(data["start_at"]),
                      "end_at": datetime.fromisoformat(data["end_at"])})


@dataclass(frozen=True)
class Appointment:
    id: str
    start_at: datetime
    service_id: str
    service_name: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "start_at": self.start_at.isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Appointment:
        return cls(**{**data, "start_at": datetime.fromisoformat(data["start_at"])})


@dataclass(frozen=True)
class Facts:
    services: tuple[Service, ...] = ()
    upcoming: tuple[Appointment, ...] = ()
    timezone: str = "UTC"
    locale: str = texts.DEFAULT_LOCALE
    patient_name: str | None = None
    clinic_name: str = "the clinic"


@dataclass(frozen=True)
class Policy:
    max_failures: int = 3
    stale_after: timedelta = timedelta(hours=2)
    slots_per_offer: int = 5
    search_days: int = 14


# --- events (what happened) --------------------------------------------------------------------


@dataclass(frozen=True)
class Inbound:
    text: str


@dataclass(frozen=True)
class SlotsFound:
    request: FetchSlots
    slots: tuple[Slot, ...]


@dataclass(frozen=True)
class Booked:
    appointment: Appointment
    rescheduled: bool = False


@dataclass(frozen=True)
class BookingFailed:
    code: str  # "slot_taken" yields new offers; anything else hands off


@dataclass(frozen=True)
class Cancelled:
    appointment: Appointment


@dataclass(frozen=True)
class ActionFailed:
    code: str


Event = Inbound | SlotsFound | Booked | BookingFailed | Cancelled | ActionFailed


# --- commands (what the caller must do) --------------------------------------------------------


@dataclass(frozen=True)
class FetchSlots:
    service_id: str
    start_at: datetime
    end_at: datetime
    limit: int
    fallback: bool = False  # True: the wide search after a narrow one found nothing


@dataclass(frozen=True)
class Book:
    slot: Slot


@dataclass(frozen=True)
class Reschedule:
    appointment_id: str
    slot: Slot


@dataclass(frozen=True)
class Cancel:
    appointment_id: str


@dataclass(frozen=True)
class SendConfirmation:
    appointment_id: str
    kind: str  # "booked" | "rescheduled"
    text: str


@dataclass(frozen=True)
class Handoff:
    reason: str  # "requested" | "not_understood" | "action_failed" | "no_services"


Command = FetchSlots | Book | Reschedule | Cancel | SendConfirmation | Handoff


@dataclass(frozen=True)
class Outcome:
    state: str
    context: dict[str, Any]
    replies: tuple[str, ...] = ()
    commands: tuple[Command, ...] = ()


# --- the machine -------------------------------------------------------------------------------


@dataclass
class _Turn:
    """Mutable scratch for one call of `handle`."""

    state: str
    context: dict[str, Any]
    facts: Facts
    now: datetime
    policy: Policy
    replies: list[str] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)

    @property
    def locale(self) -> str:
        return self.facts.locale

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.facts.timezone)

    def say(self, key: str, **values: object) -> None:
        self.replies.append(texts.render(key, self.locale, **values))

    def when(self, at: datetime) -> str:
        return texts.format_when(at.astimezone(self.tz), self.locale)

    def outcome(self) -> Outcome:
        self.context["updated_at"] = self.now.isoformat()
        return Outcome(self.state, self.context, tuple(self.replies), tuple(self.commands))


def handle(state: str, context: dict[str, Any] | None, event: Event, facts: Facts, now: datetime,
           policy: Policy | None = None) -> Outcome:
    """One step of the assistant: the new state and context, replies to send, commands to run."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    turn = _Turn(state=state if state in STATES else IDLE, context=dict(context or {}), facts=facts,
                 now=now, policy=policy or Policy())
    if turn.state == HANDOFF:
        return Outcome(HANDOFF, turn.context)  # a person has the conversation: the bot is silent
    if isinstance(event, Inbound):
        _on_inbound(turn, event.text)
    elif isinstance(event, SlotsFound):
        _on_slots(turn, event)
    elif isinstance(event, Booked):
        _on_booked(turn, event)
    elif isinstance(event, BookingFailed):
        _on_booking_failed(turn, event)
    elif isinstance(event, Cancelled):
        appt = event.appointment
        turn.say("cancelled", service=appt.service_name, when=turn.when(appt.start_at))
        _finish(turn)
    elif isinstance(event, ActionFailed):
        turn.say("action_failed")
        _handoff(turn, "action_failed", say=False)
    return turn.outcome()


def is_stale(context: dict[str, Any] | None, now: datetime, policy: Policy) -> bool:
    updated = (context or {}).get("updated_at")
    return isinstance(updated, str) and now - datetime.fromisoformat(updated) > policy.stale_after


def _on_inbound(turn: _Turn, raw: str) -> None:
    if turn.state not in (IDLE, DONE) and is_stale(turn.context, turn.now, turn.policy):
        turn.state, turn.context = IDLE, {}
    text = normalize(raw)
    vocab = texts.vocabulary(turn.locale)
    if _has_phrase(text, vocab.human):
        _handoff(turn, "requested")
        return
    if turn.state == DONE and _only_words(text, _PLEASANTRIES):
        return  # "thanks!" after a booking needs no answer
    if turn.state in (IDLE, DONE) or turn.state in WAITING_STATES:
        first = turn.state == IDLE
        turn.context = {}
        if first:
            name = turn.facts.patient_name
            turn.say("greeting", name_part=f" {name}" if name else "", clinic=turn.facts.clinic_name)
        _reason(turn, text, first_contact=True)
        return
    if turn.state == ASK_REASON:
        _reason(turn, text, first_contact=False)
    elif turn.state == CHOOSE_SERVICE:
        _choose_service(turn, text)
    elif turn.state == CHOOSE_SLOT:
        _choose_slot(turn, text)
    elif turn.state == CONFIRM_SLOT:
        _confirm_slot(turn, text)
    elif turn.state == CHOOSE_APPOINTMENT:
        _choose_appointment(turn, text)
    elif turn.state == CONFIRM_CANCEL:
        _confirm_cancel(turn, text)


# --- asking what the visit is for ---------------------------------------------------------------


def _reason(turn: _Turn, text: str, *, first_contact: bool) -> None:
    vocab = texts.vocabulary(turn.locale)
    if _has_phrase(text, vocab.cancel):
        _pick_appointment(turn, "cancel")
        return
    if _has_phrase(text, vocab.reschedule):
        _pick_appointment(turn, "reschedule")
        return
    services = turn.facts.services
    if not services:
        turn.say("no_services")
        _handoff(turn, "no_services", say=False)
        return
    matches = match_services(text, services)
    if len(matches) == 1:
        _progress(turn)
        _search(turn, matches[0], default_window=True)
        return
    if len(services) == 1 and (not text or _has_phrase(text, vocab.book) or first_contact):
        _progress(turn)
        _search(turn, services[0], default_window=True)
        return
    if first_contact and (not text or _only_words(text, vocab.book | _GREETINGS)):
        turn.state = ASK_REASON
        turn.say("ask_reason")
        return
    # Ambiguous or unknown: offer the services as a numbered list.
    options = matches or list(services)
    turn.context["choices"] = [s.id for s in options]
    turn.state = CHOOSE_SERVICE
    turn.say("choose_service", options=_numbered(turn, [s.name for s in options]))


def _choose_service(turn: _Turn, text: str) -> None:
    by_id = {s.id: s for s in turn.facts.services}
    choices = [by_id[i] for i in turn.context.get("choices", []) if i in by_id] or list(turn.facts.services)
    number = parse_number(text)
    chosen: Service | None = None
    if number is not None and 1 <= number <= len(choices):
        chosen = choices[number - 1]
    else:
        matches = match_services(text, choices)
        chosen = matches[0] if len(matches) == 1 else None
    if chosen is None:
        vocab = texts.vocabulary(turn.locale)
        if _has_phrase(text, vocab.cancel | vocab.reschedule):
            _reason(turn, text, first_contact=False)
            return
        _not_understood(turn, "choose_service", options=_numbered(turn, [s.name for s in choices]))
        return
    _progress(turn)
    _search(turn, chosen, default_window=True)


# --- slots ---------------------------------------------------------------------------------------


def _service(turn: _Turn, service_id: str | None) -> Service:
    for s in turn.facts.services:
        if s.id == service_id:
            return s
    target = turn.context.get("target")
    if target and target["service_id"] == service_id:
        return Service(id=str(service_id), name=target["service_name"])
    return Service(id=str(service_id), name="")


def _search(turn: _Turn, service: Service, *, default_window: bool, start_at: datetime | None = None,
            end_at: datetime | None = None) -> None:
    turn.context["service_id"] = service.id
    turn.context.setdefault("mode", "book")
    if default_window or start_at is None or end_at is None:
        start_at = start_at or turn.now
        end_at = start_at + timedelta(days=turn.policy.search_days)
    turn.state = SEARCHING
    turn.commands.append(FetchSlots(service_id=service.id, start_at=start_at, end_at=end_at,
                                    limit=turn.policy.slots_per_offer, fallback=default_window))


def _on_slots(turn: _Turn, event: SlotsFound) -> None:
    service = _service(turn, event.request.service_id)
    slots = [s for s in event.slots if s.start_at >= turn.now][: turn.policy.slots_per_offer]
    if not slots:
        if not event.request.fallback:
            turn.say("no_slots_then", service=service.name)
            _search(turn, service, default_window=True)
            return
        turn.say("no_slots", service=service.name, days=turn.policy.search_days)
        _finish(turn)
        return
    _offer(turn, service, slots)


def _offer(turn: _Turn, service: Service, slots: list[Slot]) -> None:
    turn.context["offered"] = [s.to_dict() for s in slots]
    turn.state = CHOOSE_SLOT
    options = _numbered(turn, [_slot_label(turn, s) for s in slots])
    turn.say("offer_slots", service=service.name, options=options)


def _slot_label(turn: _Turn, slot: Slot) -> str:
    with_part = texts.render("with_part", turn.locale, practitioner=slot.practitioner_name) \
        if slot.practitioner_name else ""
    return texts.render("slot_label", turn.locale, when=turn.when(slot.start_at), with_part=with_part)


def _offered(turn: _Turn) -> list[Slot]:
    return [Slot.from_dict(d) for d in turn.context.get("offered", [])]


def _choose_slot(turn: _Turn, text: str) -> None:
    offered = _offered(turn)
    service = _service(turn, turn.context.get("service_id"))
    number = parse_number(text)
    if number is not None and 1 <= number <= len(offered):
        slot = offered[number - 1]
        turn.context["chosen"] = slot.to_dict()
        turn.state = CONFIRM_SLOT
        _progress(turn)
        turn.say("confirm_slot", service=service.name, when=_slot_label(turn, slot))
        return
    vocab = texts.vocabulary(turn.locale)
    if _only_words(text, vocab.more) and offered:
        _progress(turn)
        start = max(s.start_at for s in offered) + timedelta(minutes=1)
        _search(turn, service, default_window=True, start_at=start)
        return
    window = parse_window(text, turn.now, turn.facts.timezone, turn.locale)
    if window is not None:
        _progress(turn)
        _search(turn, service, default_window=False, start_at=window[0], end_at=window[1])
        return
    if _has_phrase(text, vocab.cancel | vocab.reschedule):
        _reason(turn, text, first_contact=False)
        return
    _not_understood(turn, "reprompt_number")


def _confirm_slot(turn: _Turn, text: str) -> None:
    answer = parse_yes_no(text, turn.locale)
    chosen = turn.context.get("chosen")
    if answer is None or chosen is None:
        _not_understood(turn, "reprompt_yes_no")
        return
    _progress(turn)
    service = _service(turn, turn.context.get("service_id"))
    if not answer:
        turn.say("booking_declined")
        offered = _offered(turn)
        if offered:
            _offer(turn, service, offered)
        else:
            _finish(turn)
        return
    slot = Slot.from_dict(chosen)
    turn.state = BOOKING
    if turn.context.get("mode") == "reschedule" and turn.context.get("target"):
        turn.commands.append(Reschedule(appointment_id=turn.context["target"]["id"], slot=slot))
    else:
        turn.commands.append(Book(slot=slot))


def _on_booked(turn: _Turn, event: Booked) -> None:
    appt = event.appointment
    kind = "rescheduled" if event.rescheduled else "booked"
    text = texts.render(kind, turn.locale, service=appt.service_name, when=turn.when(appt.start_at))
    turn.commands.append(SendConfirmation(appointment_id=appt.id, kind=kind, text=text))
    _finish(turn)


def _on_booking_failed(turn: _Turn, event: BookingFailed) -> None:
    if event.code != "slot_taken":
        turn.say("action_failed")
        _handoff(turn, "action_failed", say=False)
        return
    turn.say("slot_taken")
    turn.context.pop("chosen", None)
    _search(turn, _service(turn, turn.context.get("service_id")), default_window=True)


# --- cancel and reschedule -----------------------------------------------------------------------


def _pick_appointment(turn: _Turn, mode: str) -> None:
    upcoming = sorted((a for a in turn.facts.upcoming if a.start_at > turn.now), key=lambda a: a.start_at)
    turn.context["mode"] = mode
    if not upcoming:
        turn.say("no_upcoming")
        turn.state = ASK_REASON
        turn.context.pop("mode")
        turn.say("ask_reason")
        return
    if len(upcoming) == 1:
        _target(turn, upcoming[0])
        return
    turn.context["appointments"] = [a.to_dict() for a in upcoming]
    turn.state = CHOOSE_APPOINTMENT
    turn.say("choose_appointment", options=_numbered(turn, [
        texts.render("appointment_label", turn.locale, service=a.service_name, when=turn.when(a.start_at))
        for a in upcoming
    ]))


def _choose_appointment(turn: _Turn, text: str) -> None:
    listed = [Appointment.from_dict(d) for d in turn.context.get("appointments", [])]
    number = parse_number(text)
    if number is None or not 1 <= number <= len(listed):
        _not_understood(turn, "reprompt_number")
        return
    _progress(turn)
    _target(turn, listed[number - 1])


def _target(turn: _Turn, appointment: Appointment) -> None:
    turn.context["target"] = appointment.to_dict()
    when = turn.when(appointment.start_at)
    if turn.context["mode"] == "cancel":
        turn.state = CONFIRM_CANCEL
        turn.say("confirm_cancel", service=appointment.service_name, when=when)
        return
    turn.say("reschedule_intro", service=appointment.service_name, when=when)
    service = _service(turn, appointment.service_id)
    _search(turn, service if service.name else Service(appointment.service_id, appointment.service_name),
            default_window=True)


def _confirm_cancel(turn: _Turn, text: str) -> None:
    answer = parse_yes_no(text, turn.locale)
    target = turn.context.get("target")
    if answer is None or target is None:
        _not_understood(turn, "reprompt_yes_no")
        return
    _progress(turn)
    if not answer:
        turn.say("cancel_declined")
        _finish(turn)
        return
    turn.state = CANCELLING
    turn.commands.append(Cancel(appointment_id=target["id"]))


# --- shared steps --------------------------------------------------------------------------------


def _finish(turn: _Turn) -> None:
    turn.state = DONE
    turn.context = {}


def _progress(turn: _Turn) -> None:
    turn.context["failures"] = 0


def _not_understood(turn: _Turn, reprompt_key: str, **values: object) -> None:
    failures = int(turn.context.get("failures", 0)) + 1
    turn.context["failures"] = failures
    if failures >= turn.policy.max_failures:
        _handoff(turn, "not_understood")
        return
    turn.say("not_understood")
    turn.say(reprompt_key, **values)


def _handoff(turn: _Turn, reason: str, *, say: bool = True) -> None:
    if say:
        turn.say("handoff")
    turn.state = HANDOFF
    turn.context = {"handoff_reason": reason}
    turn.commands.append(Handoff(reason=reason))


def _numbered(turn: _Turn, labels: list[str]) -> str:
    return "\n".join(texts.render("option_line", turn.locale, number=i, label=label)
                     for i, label in enumerate(labels, start=1))


# --- understanding text (pure helpers, tested on their own) --------------------------------------

_GREETINGS = frozenset({"hi", "hello", "hey", "hola", "buenas", "good morning", "good afternoon",
                        "buenos dias", "buenas tardes", "i", "want", "would", "like", "to", "a", "an",
                        "quiero", "una", "me", "gustaria", "please", "por", "favor", "make", "need"})
_PLEASANTRIES = frozenset({"thanks", "thank", "you", "thx", "ty", "ok", "okay", "great", "perfect", "cool",
                           "bye", "see", "gracias", "muchas", "vale", "perfecto", "genial", "adios", "hasta",
                           "luego", "👍", "🙏", "so", "much", "very", "many"})
_NUMBER = re.compile(r"(?:option|number|no\.?|num|#|n[ºo°]|opcion|numero)?\s*(\d{1,2})\s*[.)]?")


def normalize(text: str) -> str:
    """Lower case, accents removed, punctuation (except digits and :) turned into spaces."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = re.sub(r"[^\w\s:👍👎]", " ", plain)
    return " ".join(plain.split())


def _norm_set(words: frozenset[str]) -> set[str]:
    return {normalize(w) for w in words}


def _has_phrase(text: str, phrases: frozenset[str]) -> bool:
    padded = f" {text} "
    return any(f" {p} " in padded for p in _norm_set(phrases) if p)


def _only_words(text: str, words: frozenset[str]) -> bool:
    vocab = _norm_set(words)
    return bool(text) and (text in vocab or all(t in vocab for t in text.split()))


def parse_number(text: str) -> int | None:
    match = _NUMBER.fullmatch(normalize(text))
    return int(match.group(1)) if match else None


def parse_yes_no(text: str, locale: str | None = None) -> bool | None:
    vocab = texts.vocabulary(locale)
    norm = normalize(text)
    if not norm:
        return None
    yes, no = _norm_set(vocab.yes), _norm_set(vocab.no)
    first = norm.split()[0]
    if norm in yes or (first in yes and norm not in no):
        return True
    if norm in no or first in no:
        return False
    return None


SAID = 85  # how similar (0–100, rapidfuzz) a phrase and a part of the text must be: a typo or two in a word


def _said(phrase: str, text: str) -> float:
    """How surely `phrase` is said in `text`: its similarity with the best-matching part of the text
    (the whole text when the phrase is the longer: "check" is not "general check-up")."""
    if len(phrase) > len(text):
        return float(fuzz.ratio(phrase, text))
    return float(fuzz.partial_ratio(phrase, text))


def match_services(text: str, services: tuple[Service, ...] | list[Service]) -> list[Service]:
    """The services a free-text reason points to, best matches only: the service's name said (100), else
    its longest keyword said (50 + its length), else the long words of its name said (10 each) — each
    allowing for a typo."""
    norm = normalize(text)
    if not norm:
        return []
    words = norm.split()
    scored: list[tuple[int, Service]] = []
    for service in services:
        name = normalize(service.name)
        score = 0
        if name and _said(name, norm) >= SAID:
            score = 100
        for keyword in service.keywords:
            kw = normalize(keyword)
            if kw and _said(kw, norm) >= SAID:
                score = max(score, 50 + len(kw))
        named = [w for w in name.split() if len(w) > 3
                 and process.extractOne(w, words, scorer=fuzz.ratio, score_cutoff=SAID) is not None]
        score = max(score, 10 * len(named))
        if score:
            scored.append((score, service))
    if not scored:
        return []
    best = max(score for score, _ in scored)
    return [service for score, service in scored if score == best]


def parse_window(
    text: str, now: datetime, timezone: str, locale: str | None = None
) -> tuple[datetime, datetime] | None:
    """A time window from "tomorrow afternoon", "friday", "27 nov" ... in UTC; None if no date.

    Dates are read relative to `now` in the patient's/clinic's zone; a part of the day narrows
    the window (morning 8–12, afternoon 12–17, evening 17–21 local). Bare numbers are not dates.
    """
    vocab = texts.vocabulary(locale)
    tz = ZoneInfo(timezone)
    local_now = now.astimezone(tz)
    norm = normalize(text)
    hours: tuple[int, int] | None = None
    for phrase in sorted(vocab.parts_of_day, key=len, reverse=True):
        key = normalize(phrase)
        if f" {key} " in f" {norm} ":
            hours = vocab.parts_of_day[phrase]
            norm = f" {norm} ".replace(f" {key} ", " ").strip()
            break
    filler = _norm_set(vocab.filler)
    rest = " ".join(t for t in norm.split() if t not in filler)
    if rest and re.fullmatch(r"[\d\s]+", rest):
        return None
    if rest:
        parsed = dateparser.parse(
            rest, languages=list(vocab.date_languages),
            settings={"RELATIVE_BASE": local_now.replace(tzinfo=None), "PREFER_DATES_FROM": "future",
                      "RETURN_AS_TIMEZONE_AWARE": False},
        )
        if parsed is None:
            return None
        day = parsed.date()
    elif hours is not None:
        day = local_now.date()
    else:
        return None
    first, last = hours or (0, 24)
    start = datetime.combine(day, time(0), tzinfo=tz) + timedelta(hours=first)
    end = datetime.combine(day, time(0), tzinfo=tz) + timedelta(hours=last)
    if hours is not None and not rest and end <= local_now:  # "afternoon" said in the evening
        start, end = start + timedelta(days=1), end + timedelta(days=1)
    start = max(start, local_now)
    if end <= start:
        return None
    return start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC"))

