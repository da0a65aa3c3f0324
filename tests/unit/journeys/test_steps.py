"""The definition's discriminated union, conditions and publish checks (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from prm.journeys import steps


def _definition(**overrides: Any) -> steps.Definition:
    data: dict[str, Any] = {
        "triggers": [{"event": "appointment.booked", "conditions": [
            {"field": "event.service_id", "op": "eq", "value": "abc"}]}],
        "stages": [
            {"key": "start", "name": "Start", "entry": "hello", "transitions": ["done"],
             "advance_on": [{"event": "appointment.completed", "to": "done"}]},
            {"key": "done", "name": "Done"},
        ],
        "steps": [
            {"id": "hello", "kind": "send_notification", "template_key": "welcome", "next": "pick"},
            {"id": "pick", "kind": "branch", "branches": [
                {"conditions": [{"field": "patient.tags", "op": "contains", "value": "vip"}], "next": "call"}],
             "default": "wait"},
            {"id": "call", "kind": "create_ticket", "subject": "Call the VIP"},
            {"id": "wait", "kind": "wait_for_event", "event": "message.received", "timeout_days": 2,
             "next": "finish", "on_timeout": "call-late"},
            {"id": "call-late", "kind": "create_ticket", "subject": "No reply"},
            {"id": "finish", "kind": "end"},
        ],
    }
    data.update(overrides)
    return steps.Definition.model_validate(data)


def test_a_consistent_definition_has_no_problems() -> None:
    definition = _definition()
    assert steps.problems(definition) == []
    assert definition.trigger_events() == ["appointment.booked"]
    assert definition.template_keys() == [(0, "welcome", None)]
    assert isinstance(definition.step("wait"), steps.WaitForEvent)


def test_unknown_kind_and_extra_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        steps.Definition.model_validate({"steps": [{"id": "x", "kind": "teleport"}]})
    with pytest.raises(ValidationError):
        steps.Definition.model_validate({"steps": [{"id": "x", "kind": "end", "colour": "red"}]})
    with pytest.raises(ValidationError):
        steps.Definition.model_validate({"steps": [{"id": "x", "kind": "wait"}]})  # no duration
    with pytest.raises(ValidationError):
        steps.Definition.model_validate({"triggers": [{"event": "appointment.exploded"}]})


def test_dangling_references_and_unreachable_steps_are_named() -> None:
    definition = _definition(
        stages=[{"key": "start", "name": "Start", "entry": "hello", "transitions": ["nowhere"],
                 "advance_on": [{"event": "appointment.completed", "to": "start"}]}],
        steps=[
            {"id": "hello", "kind": "send_notification", "template_key": "welcome", "next": "missing"},
            {"id": "lost", "kind": "end"},
            {"id": "jump", "kind": "advance_stage", "to": "elsewhere"},
        ],
    )
    fields = {p["field"]: p["message"] for p in steps.problems(definition)}
    assert "no stage 'nowhere'" in fields["definition.stages.0.transitions.0"]
    assert "not among" in fields["definition.stages.0.advance_on.0.to"]
    assert "no step 'missing'" in fields["definition.steps.0.next"]
    assert "not reachable" in fields["definition.steps.1"]
    assert "no stage 'elsewhere'" in fields["definition.steps.2.to"]


def test_duplicates_and_a_loop_without_a_wait() -> None:
    definition = _definition(
        stages=[{"key": "a", "name": "A", "entry": "one"}, {"key": "a", "name": "Again"}],
        steps=[
            {"id": "one", "kind": "create_ticket", "subject": "x", "next": "two"},
            {"id": "two", "kind": "create_ticket", "subject": "y", "next": "one"},
        ],
    )
    messages = [p["message"] for p in steps.problems(definition)]
    assert any("defined twice" in m for m in messages)
    assert any("loop with no wait" in m for m in messages)
    looping_with_wait = _definition(
        stages=[{"key": "a", "name": "A", "entry": "one"}],
        steps=[
            {"id": "one", "kind": "create_ticket", "subject": "x", "next": "pause"},
            {"id": "pause", "kind": "wait", "days": 7, "next": "one"},
        ],
    )
    assert steps.problems(looping_with_wait) == []


def test_no_stage_is_a_problem() -> None:
    assert steps.problems(steps.Definition())[0]["field"] == "definition.stages"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"field": "event.channel", "op": "eq", "value": "WhatsApp"}, True),
        ({"field": "event.channel", "op": "ne", "value": "sms"}, True),
        ({"field": "event.channel", "op": "in", "value": ["sms", "whatsapp"]}, True),
        ({"field": "event.channel", "op": "not_in", "value": ["whatsapp"]}, False),
        ({"field": "patient.tags", "op": "contains", "value": "diabetes"}, True),
        ({"field": "patient.tags", "op": "contains", "value": "asthma"}, False),
        ({"field": "event.missing", "op": "exists"}, False),
        ({"field": "event.missing", "op": "not_exists"}, True),
        ({"field": "event.missing", "op": "eq", "value": "x"}, False),
        ({"field": "event.missing", "op": "ne", "value": "x"}, True),
        ({"field": "event.count", "op": "eq", "value": "3"}, True),
    ],
)
def test_conditions(condition: dict[str, Any], expected: bool) -> None:
    facts = {"event": {"channel": "whatsapp", "count": 3}, "patient": {"tags": ["diabetes"]}}
    assert steps.holds(steps.Condition.model_validate(condition), facts) is expected


def test_condition_values_must_fit_the_operator() -> None:
    with pytest.raises(ValidationError):
        steps.Condition.model_validate({"field": "event.x", "op": "in", "value": "a"})
    with pytest.raises(ValidationError):
        steps.Condition.model_validate({"field": "event.x", "op": "eq"})


def test_entry_keys_follow_the_policy() -> None:
    assert steps.entry_key("once_per_patient", key_value=None, source_event_id="e1", fallback="f") == "patient"
    assert steps.entry_key("once_per_key", key_value="appt-1", source_event_id="e1", fallback="f") == "key:appt-1"
    assert steps.entry_key("every_time", key_value=None, source_event_id="e1", fallback="f") == "event:e1"
    assert steps.entry_key("every_time", key_value=None, source_event_id=None, fallback="f") == "manual:f"
    with pytest.raises(ValueError):
        steps.entry_key("once_per_key", key_value=None, source_event_id="e1", fallback="f")
