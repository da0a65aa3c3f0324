"""The lifecycle table: allowed paths, final statuses, and errors that list what is allowed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from icalendar import Calendar

from prm.appointments import state_machine as sm
from prm.appointments.calendar import Invite, to_ics


def test_happy_path_and_walk_in() -> None:
    status = "booked"
    for action in ("confirm", "check_in", "complete"):
        status = sm.transition(status, action)
    assert status == "completed"
    assert sm.transition("booked", "check_in") == "checked_in"
    assert sm.transition("confirmed", "reschedule") == "booked"


@pytest.mark.parametrize("final", sm.FINAL)
def test_final_statuses_allow_nothing(final: str) -> None:
    assert sm.allowed_actions(final) == []
    with pytest.raises(sm.InvalidTransition) as err:
        sm.transition(final, "cancel")
    problem = err.value.problem()
    assert err.value.status == 409 and problem["code"] == "invalid_transition"
    assert problem["allowed_actions"] == []


def test_invalid_transition_lists_allowed_actions() -> None:
    with pytest.raises(sm.InvalidTransition) as err:
        sm.transition("checked_in", "cancel")
    problem = err.value.problem()
    assert problem["allowed_actions"] == ["complete"]
    assert problem["allowed_transitions"] == [{"action": "complete", "to": "completed"}]
    assert "allowed: complete" in problem["detail"]
    with pytest.raises(ValueError):
        sm.transition("booked", "teleport")


def test_which_statuses_hold_time() -> None:
    assert [s for s in sm.STATUSES if sm.holds_time(s)] == ["booked", "confirmed", "checked_in", "completed"]
    assert set(sm.EVENTS) == {"book", *sm.ACTIONS}


def test_ics_document() -> None:
    appointment_id = uuid.uuid4()
    invite = Invite(
        appointment_id=appointment_id,
        start_at=datetime(2026, 3, 30, 7, tzinfo=UTC),
        end_at=datetime(2026, 3, 30, 7, 30, tzinfo=UTC),
        status="booked",
        sequence=2,
        summary="Cleaning with Dr Vega",
        location="Centro",
        timezone="Europe/Madrid",
        mode="in_person",
        stamp=datetime(2026, 3, 1, tzinfo=UTC),
        organizer_email="desk@example.org",
    )
    cal = Calendar.from_ical(to_ics(invite))
    event = cal.walk("VEVENT")[0]
    assert str(event["uid"]) == f"appointment-{appointment_id}@prm.dev"
    assert event.decoded("dtstart") == invite.start_at
    assert event.decoded("dtend") == invite.end_at
    assert int(event["sequence"]) == 2 and str(event["status"]) == "CONFIRMED"
    cancelled = Calendar.from_ical(to_ics(Invite(**{**invite.__dict__, "status": "cancelled"})))
    assert str(cancelled["method"]) == "CANCEL"
    assert str(cancelled.walk("VEVENT")[0]["status"]) == "CANCELLED"
