"""The booking assistant as a pure state machine: every path, driven through a tiny fake executor."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from prm.conversations import assistant as a
from prm.conversations import texts

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # a Wednesday; 10:00 in Madrid
CLEANING = a.Service("svc-clean", "Dental cleaning", ("cleaning", "hygiene"))
CHECKUP = a.Service("svc-check", "General check-up", ("check-up", "checkup", "review"))
WHITENING = a.Service("svc-white", "Teeth whitening", ("whitening",))
FACTS = a.Facts(services=(CLEANING, CHECKUP, WHITENING), timezone="Europe/Madrid", patient_name="Ana",
                clinic_name="Sonrisa")


def slot(day_offset: int, hour: int, service: a.Service = CLEANING, minute: int = 0) -> a.Slot:
    start = datetime(2026, 11, 25, hour, minute, tzinfo=UTC) + timedelta(days=day_offset)
    return a.Slot(start, start + timedelta(minutes=30), "prac-1", service.id, "loc-1", "Dr. Ruiz")


@dataclass
class Fake:
    """Runs commands like the real executor would, against an in-memory calendar."""

    calendar: list[a.Slot]
    facts: a.Facts = FACTS
    state: str = a.IDLE
    context: dict = field(default_factory=dict)
    taken: set[datetime] = field(default_factory=set)
    executed: list[a.Command] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    policy: a.Policy = field(default_factory=a.Policy)

    def say(self, text: str, now: datetime = NOW) -> list[str]:
        return self.run(a.Inbound(text), now)

    def run(self, event: a.Event, now: datetime = NOW) -> list[str]:
        replies: list[str] = []
        pending: list[a.Event] = [event]
        while pending:
            out = a.handle(self.state, self.context, pending.pop(0), self.facts, now, self.policy)
            self.state, self.context = out.state, out.context
            replies.extend(out.replies)
            for cmd in out.commands:
                self.executed.append(cmd)
                result = self.execute(cmd)
                if result is not None:
                    pending.append(result)
        self.sent.extend(replies)
        return replies

    def execute(self, cmd: a.Command) -> a.Event | None:
        if isinstance(cmd, a.FetchSlots):
            found = [s for s in self.calendar if s.service_id == cmd.service_id
                     and cmd.start_at <= s.start_at < cmd.end_at and s.start_at not in self.taken]
            return a.SlotsFound(cmd, tuple(found[: cmd.limit]))
        if isinstance(cmd, a.Book | a.Reschedule):
            if cmd.slot.start_at in self.taken:
                return a.BookingFailed("slot_taken")
            self.taken.add(cmd.slot.start_at)
            name = next(s.name for s in self.facts.services if s.id == cmd.slot.service_id)
            appt = a.Appointment("appt-1", cmd.slot.start_at, cmd.slot.service_id, name)
            return a.Booked(appt, rescheduled=isinstance(cmd, a.Reschedule))
        if isinstance(cmd, a.Cancel):
            appt = next(x for x in self.facts.upcoming if x.id == cmd.appointment_id)
            return a.Cancelled(appt)
        if isinstance(cmd, a.SendConfirmation):
            self.sent.append(cmd.text)
        return None


def calendar() -> list[a.Slot]:
    return [slot(1, 9), slot(1, 13), slot(1, 14), slot(2, 9), slot(2, 15), slot(3, 8), slot(1, 9, CHECKUP)]


def test_conversation_state_machine() -> None:
    """Greet → reason → service list → slots → confirm → book → confirmation, state by state."""
    bot = Fake(calendar())
    replies = bot.say("Hi")
    assert bot.state == a.ASK_REASON
    assert replies[0].startswith("Hello Ana! I'm the booking assistant of Sonrisa")
    assert "What would you like to book" in replies[1]

    replies = bot.say("something for my mouth")  # unknown: every service is offered
    assert bot.state == a.CHOOSE_SERVICE
    assert "1. Dental cleaning" in replies[0] and "3. Teeth whitening" in replies[0]

    replies = bot.say("1")
    assert bot.state == a.CHOOSE_SLOT
    fetch = next(c for c in bot.executed if isinstance(c, a.FetchSlots))
    assert fetch.service_id == CLEANING.id and fetch.start_at == NOW
    assert "1. Thu 26 Nov, 10:00 with Dr. Ruiz" in replies[0]  # local Madrid time
    assert "5. Fri 27 Nov, 16:00" in replies[0]
    assert len(bot.context["offered"]) == 5

    replies = bot.say("2")
    assert bot.state == a.CONFIRM_SLOT
    assert replies == ["Dental cleaning on Thu 26 Nov, 14:00 with Dr. Ruiz. Shall I book it? (yes/no)"]

    bot.say("yes please")
    assert bot.state == a.DONE and bot.context == {"updated_at": NOW.isoformat()}
    book = next(c for c in bot.executed if isinstance(c, a.Book))
    assert book.slot == slot(1, 13)
    confirmation = next(c for c in bot.executed if isinstance(c, a.SendConfirmation))
    assert confirmation.kind == "booked"
    assert confirmation.text.startswith("Your appointment is booked: Dental cleaning on Thu 26 Nov, 14:00")


def test_thanks_after_booking_needs_no_answer_but_a_new_request_works() -> None:
    bot = Fake(calendar())
    for text in ("cleaning", "1", "yes"):
        bot.say(text)
    assert bot.state == a.DONE
    assert bot.say("Thank you so much!") == [] and bot.state == a.DONE
    replies = bot.say("another cleaning for my son")
    assert bot.state == a.CHOOSE_SLOT and "open for Dental cleaning" in replies[0]
    assert not replies[0].startswith("Hello")  # no second greeting


def test_reason_matching_a_service_goes_straight_to_slots() -> None:
    bot = Fake(calendar())
    replies = bot.say("I'd like a check-up please")
    assert bot.state == a.CHOOSE_SLOT
    assert replies[0].startswith("Hello Ana!")
    assert "open for General check-up" in replies[1]


def test_single_service_clinic_skips_the_question() -> None:
    bot = Fake(calendar(), facts=a.Facts(services=(CLEANING,), timezone="Europe/Madrid"))
    replies = bot.say("hello")
    assert replies[0] == "Hello! I'm the booking assistant of the clinic."
    assert bot.state == a.CHOOSE_SLOT


def test_more_and_dates_narrow_the_offer() -> None:
    bot = Fake(calendar())
    bot.say("cleaning")
    bot.say("more")
    last = [c for c in bot.executed if isinstance(c, a.FetchSlots)][-1]
    assert last.start_at == slot(2, 15).start_at + timedelta(minutes=1)
    assert bot.state == a.CHOOSE_SLOT and len(bot.context["offered"]) == 1

    replies = bot.say("tomorrow afternoon")
    last = [c for c in bot.executed if isinstance(c, a.FetchSlots)][-1]
    # tomorrow 12:00–17:00 in Madrid = 11:00–16:00 UTC
    assert last.start_at == datetime(2026, 11, 26, 11, tzinfo=UTC)
    assert last.end_at == datetime(2026, 11, 26, 16, tzinfo=UTC)
    assert "1. Thu 26 Nov, 14:00" in replies[0] and "2. Thu 26 Nov, 15:00" in replies[0]
    assert "10:00" not in replies[0]


def test_date_without_slots_falls_back_to_next_open_times() -> None:
    bot = Fake(calendar())
    bot.say("cleaning")
    replies = bot.say("next monday")
    assert replies[0] == "There is no open time for Dental cleaning then. Here are the next ones."
    assert bot.state == a.CHOOSE_SLOT and "1. Thu 26 Nov, 10:00" in replies[1]


def test_no_slots_at_all_finishes_politely() -> None:
    bot = Fake([])
    replies = bot.say("cleaning")
    assert "no open time for Dental cleaning in the coming 14 days" in replies[-1]
    assert bot.state == a.DONE


def test_slot_taken_between_offer_and_confirmation_gives_new_offers() -> None:
    bot = Fake(calendar())
    bot.say("cleaning")
    bot.say("1")
    bot.taken.add(slot(1, 9).start_at)  # someone else books it meanwhile
    replies = bot.say("yes")
    assert replies[0].startswith("Sorry, that time was just taken")
    assert bot.state == a.CHOOSE_SLOT
    assert "1. Thu 26 Nov, 14:00" in replies[1]
    bot.say("1")
    bot.say("yes")
    assert bot.state == a.DONE
    assert [c.slot.start_at for c in bot.executed if isinstance(c, a.Book)][-1] == slot(1, 13).start_at


def test_declining_the_confirmation_reoffers() -> None:
    bot = Fake(calendar())
    bot.say("cleaning")
    bot.say("1")
    replies = bot.say("no")
    assert replies[0] == "No problem, nothing was booked."
    assert bot.state == a.CHOOSE_SLOT
    assert not any(isinstance(c, a.Book) for c in bot.executed)


def test_repeated_misunderstanding_hands_off() -> None:
    bot = Fake(calendar(), policy=a.Policy(max_failures=3))
    bot.say("cleaning")
    first = bot.say("blorp")
    assert first == ["Sorry, I did not understand that.", "Please reply with one of the numbers shown."]
    bot.say("99")  # a number not offered is a miss too
    assert bot.context["failures"] == 2
    replies = bot.say("zzz")
    assert bot.state == a.HANDOFF
    assert replies == [texts.render("handoff")]
    assert bot.executed[-1] == a.Handoff("not_understood")
    assert bot.say("hello?") == []  # silenced


def test_progress_resets_the_failure_count() -> None:
    bot = Fake(calendar(), policy=a.Policy(max_failures=2))
    bot.say("cleaning")
    bot.say("blorp")
    bot.say("1")
    assert bot.context["failures"] == 0
    bot.say("maybe")
    assert bot.state == a.CONFIRM_SLOT


@pytest.mark.parametrize("text", ["agent", "Can I talk to a HUMAN?", "persona por favor"])
def test_asking_for_a_person_hands_off_from_any_state(text: str) -> None:
    bot = Fake(calendar(), facts=a.Facts(services=FACTS.services, locale="es", timezone="Europe/Madrid"))
    bot.say("limpieza dental")
    out = bot.say(text)
    assert bot.state == a.HANDOFF
    assert out == [texts.render("handoff", "es")]
    assert bot.executed[-1] == a.Handoff("requested")


def test_context_management() -> None:
    """The context carries what the flow needs, is JSON-safe, and resets when stale."""
    import json

    bot = Fake(calendar(), policy=a.Policy(stale_after=timedelta(hours=2)))
    bot.say("cleaning")
    bot.say("3")
    ctx = json.loads(json.dumps(bot.context))  # stored as JSONB: must round-trip
    assert ctx["service_id"] == CLEANING.id and ctx["mode"] == "book"
    assert a.Slot.from_dict(ctx["chosen"]) == slot(1, 14)
    assert ctx["updated_at"] == NOW.isoformat()

    # An hour later the context still holds: "yes" books the chosen slot.
    resumed = Fake(calendar(), state=bot.state, context=ctx)
    resumed.say("yes", now=NOW + timedelta(hours=1))
    assert resumed.state == a.DONE

    # Three hours later it is stale: the same "yes" starts over with a greeting.
    stale = Fake(calendar(), state=bot.state, context=ctx)
    replies = stale.say("yes", now=NOW + timedelta(hours=3))
    assert replies[0].startswith("Hello Ana!")
    assert not any(isinstance(c, a.Book) for c in stale.executed)
    assert "chosen" not in stale.context


UPCOMING = (
    a.Appointment("appt-9", datetime(2026, 12, 1, 9, tzinfo=UTC), CLEANING.id, CLEANING.name),
    a.Appointment("appt-8", datetime(2026, 11, 28, 9, tzinfo=UTC), CHECKUP.id, CHECKUP.name),
)


def with_upcoming(upcoming: tuple[a.Appointment, ...]) -> a.Facts:
    return a.Facts(services=FACTS.services, upcoming=upcoming, timezone="Europe/Madrid")


def test_cancel_an_upcoming_appointment() -> None:
    bot = Fake(calendar(), facts=with_upcoming(UPCOMING[:1]))
    replies = bot.say("I need to cancel")
    assert bot.state == a.CONFIRM_CANCEL
    assert replies[-1] == "Cancel your appointment for Dental cleaning on Tue 1 Dec, 10:00? (yes/no)"
    replies = bot.say("yes")
    assert a.Cancel("appt-9") in bot.executed
    assert replies == ["Your appointment for Dental cleaning on Tue 1 Dec, 10:00 is cancelled."]
    assert bot.state == a.DONE


def test_cancel_with_several_appointments_asks_which_and_can_be_declined() -> None:
    bot = Fake(calendar(), facts=with_upcoming(UPCOMING))
    replies = bot.say("cancel")
    assert bot.state == a.CHOOSE_APPOINTMENT
    assert "1. General check-up on Sat 28 Nov, 10:00" in replies[-1]  # soonest first
    bot.say("5")
    assert bot.context["failures"] == 1
    bot.say("2")
    assert bot.state == a.CONFIRM_CANCEL and bot.context["target"]["id"] == "appt-9"
    assert bot.say("no") == ["All right, your appointment stays as it is."]
    assert not any(isinstance(c, a.Cancel) for c in bot.executed)


def test_cancel_without_appointments_says_so() -> None:
    bot = Fake(calendar())
    replies = bot.say("cancel my appointment")
    assert "You have no upcoming appointment with us." in replies
    assert bot.state == a.ASK_REASON


def test_reschedule_moves_the_appointment() -> None:
    bot = Fake(calendar(), facts=with_upcoming(UPCOMING[:1]))
    replies = bot.say("reschedule")
    assert replies[-2] == "Let's find a new time for your Dental cleaning on Tue 1 Dec, 10:00."
    assert bot.state == a.CHOOSE_SLOT
    bot.say("2")
    bot.say("y")
    moved = next(c for c in bot.executed if isinstance(c, a.Reschedule))
    assert moved.appointment_id == "appt-9" and moved.slot == slot(1, 13)
    confirmation = next(c for c in bot.executed if isinstance(c, a.SendConfirmation))
    assert confirmation.kind == "rescheduled"
    assert confirmation.text == "Your appointment is moved: Dental cleaning is now on Thu 26 Nov, 14:00."


def test_failed_actions_and_missing_services_hand_off() -> None:
    bot = Fake(calendar())
    bot.say("cleaning")
    bot.say("1")
    bot.state = a.BOOKING
    out = a.handle(a.BOOKING, bot.context, a.BookingFailed("outside_availability"), FACTS, NOW)
    assert out.state == a.HANDOFF and out.commands == (a.Handoff("action_failed"),)
    out = a.handle(a.CANCELLING, {}, a.ActionFailed("boom"), FACTS, NOW)
    assert out.state == a.HANDOFF
    out = a.handle(a.IDLE, {}, a.Inbound("hi"), a.Facts(), NOW)
    assert out.commands == (a.Handoff("no_services"),)


def test_spanish_texts_and_words() -> None:
    bot = Fake(calendar(), facts=a.Facts(services=FACTS.services, timezone="Europe/Madrid", locale="es-ES",
                                         patient_name="Ana", clinic_name="Sonrisa"))
    replies = bot.say("Hola, quiero una limpieza dental")
    assert replies[0] == "¡Hola Ana! Soy el asistente de citas de Sonrisa."
    assert "1. jue 26 de nov, 10:00 con Dr. Ruiz" in replies[1]
    replies = bot.say("mañana por la tarde")
    assert "1. jue 26 de nov, 14:00" in replies[0]
    bot.say("1")
    bot.say("sí")
    assert bot.state == a.DONE


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        a.handle(a.IDLE, {}, a.Inbound("hi"), FACTS, datetime(2026, 1, 1))


@pytest.mark.parametrize(("text", "expected"), [
    ("2", 2), (" 2. ", 2), ("#3", 3), ("option 4", 4), ("Nº 1", 1), ("two", None), ("12:30", None),
    ("", None),
])
def test_parse_number(text: str, expected: int | None) -> None:
    assert a.parse_number(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("yes", True), ("Yes please!", True), ("ok", True), ("👍", True), ("no", False), ("No thanks", False),
    ("nope", False), ("maybe", None), ("", None),
])
def test_parse_yes_no(text: str, expected: bool | None) -> None:
    assert a.parse_yes_no(text) is expected


def test_parse_yes_no_spanish() -> None:
    assert a.parse_yes_no("Sí", "es") is True
    assert a.parse_yes_no("vale", "es") is True
    assert a.parse_yes_no("mejor no", "es") is False


@pytest.mark.parametrize(("text", "window"), [
    ("tomorrow", ((2026, 11, 25, 23), (2026, 11, 26, 23))),
    ("tomorrow morning", ((2026, 11, 26, 7), (2026, 11, 26, 11))),
    ("on friday", ((2026, 11, 26, 23), (2026, 11, 27, 23))),
    ("this evening", None),  # "this" is not a date dateparser reads
    ("afternoon", ((2026, 11, 25, 11), (2026, 11, 25, 16))),
])
def test_parse_window(text: str, window: tuple | None) -> None:
    got = a.parse_window(text, NOW, "Europe/Madrid")
    if window is None:
        assert got is None
    else:
        assert got == (datetime(*window[0], tzinfo=UTC), datetime(*window[1], tzinfo=UTC))


def test_parse_window_spanish() -> None:
    start, end = a.parse_window("mañana por la mañana", NOW, "Europe/Madrid", "es")  # type: ignore[misc]
    assert (start, end) == (datetime(2026, 11, 26, 7, tzinfo=UTC), datetime(2026, 11, 26, 11, tzinfo=UTC))
    start, _ = a.parse_window("por la tarde", NOW, "Europe/Madrid", "es")  # type: ignore[misc]
    assert start == datetime(2026, 11, 25, 11, tzinfo=UTC)


def test_parse_window_rejects_numbers_and_rolls_past_parts_of_day() -> None:
    assert a.parse_window("3", NOW, "Europe/Madrid") is None
    assert a.parse_window("blorp", NOW, "Europe/Madrid") is None
    late = datetime(2026, 11, 25, 19, tzinfo=UTC)  # 20:00 in Madrid: "afternoon" means tomorrow's
    start, _ = a.parse_window("afternoon", late, "Europe/Madrid")  # type: ignore[misc]
    assert start == datetime(2026, 11, 26, 11, tzinfo=UTC)
    today = a.parse_window("today", datetime(2026, 11, 25, 15, tzinfo=UTC), "Europe/Madrid")
    assert today is not None and today[0] == datetime(2026, 11, 25, 15, tzinfo=UTC)  # not in the past


def test_parse_window_is_dst_correct() -> None:
    # The day after Madrid's spring change (29 March 2026): morning 08:00 local = 06:00 UTC (CEST).
    start, end = a.parse_window("tomorrow morning", datetime(2026, 3, 28, 12, tzinfo=UTC), "Europe/Madrid")  # type: ignore[misc]
    assert start == datetime(2026, 3, 29, 6, tzinfo=UTC) and end == datetime(2026, 3, 29, 10, tzinfo=UTC)


def test_match_services() -> None:
    services = FACTS.services
    assert a.match_services("teeth cleaning", services) == [CLEANING]
    assert a.match_services("hygiene appointment", services) == [CLEANING]
    assert a.match_services("whitening", services) == [WHITENING]
    assert a.match_services("my tooth hurts", services) == []
    assert a.match_services("", services) == []
    # a typo is still understood (rapidfuzz); a short word that is part of a longer name is not a match
    assert a.match_services("I need a cleanign", services) == [CLEANING]
    assert a.match_services("chek-up please", services) == [CHECKUP]
    assert a.match_services("yes", services) == []


def test_texts_render_fallback_and_missing_values() -> None:
    assert texts.render("handoff", "fr") == texts.render("handoff", "en")
    assert texts.locale_of("es_ES") == "es" and texts.locale_of(None) == "en"
    with pytest.raises(KeyError):
        texts.render("booked", "en", service="x")
    for locale, table in texts.TEXTS.items():  # every translation uses the English placeholders
        for key, template in table.items():
            english = texts.TEXTS["en"][key]
            assert set(_fields(template)) == set(_fields(english)), (locale, key)


def _fields(template: str) -> list[str]:
    from string import Formatter

    return [name for _, name, _, _ in Formatter().parse(template) if name]


def test_dates_are_written_with_the_locales_day_and_month_names() -> None:
    """Day and month names come from babel's CLDR data (no hand-made tables)."""

    at = datetime(2026, 9, 3, 10, 30)
    assert texts.format_when(at, "en") == "Thu 3 Sep, 10:30"
    assert texts.format_when(at, "es-ES") == "jue 3 de sept, 10:30"
    assert texts.format_when(at, "xx") == "Thu 3 Sep, 10:30"  # unsupported: English
