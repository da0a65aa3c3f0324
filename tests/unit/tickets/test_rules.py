"""Ticket rules without a database: transitions, SLA, urgent keywords, auto-assignment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prm.tickets import rules

T0 = datetime(2026, 11, 25, 9, tzinfo=UTC)
KEYWORDS = ["chest pain", "bleeding", "can't breathe", "dolor de pecho"]


def test_transitions() -> None:
    assert rules.can_transition("open", "in_progress")
    assert rules.can_transition("resolved", "open")  # reopen
    assert not rules.can_transition("closed", "open")
    assert not rules.can_transition("open", "open")
    assert rules.allowed_transitions("closed") == ()
    assert rules.allowed_transitions("nonsense") == ()
    for status, targets in rules.TRANSITIONS.items():
        assert status in rules.STATUSES and set(targets) <= set(rules.STATUSES)


def test_sla_due_times_per_priority() -> None:
    sla = rules.SlaPolicy(urgent_hours=1, high_hours=4, normal_hours=24, low_hours=72)
    assert rules.due_at("urgent", T0, sla) == T0 + timedelta(hours=1)
    assert rules.due_at("low", T0, sla) == T0 + timedelta(hours=72)
    assert rules.due_at("normal", T0, rules.SlaPolicy(normal_hours=0.5)) == T0 + timedelta(minutes=30)
    with pytest.raises(ValueError):
        rules.due_at("critical", T0, sla)


def test_overdue() -> None:
    assert rules.is_overdue("open", T0, T0)
    assert not rules.is_overdue("open", T0, T0 - timedelta(seconds=1))
    assert not rules.is_overdue("resolved", T0, T0 + timedelta(days=1))
    assert not rules.is_overdue("waiting", None, T0)


@pytest.mark.parametrize(("text", "found"), [
    ("Patient reports CHEST PAIN since morning", ["chest pain"]),
    ("bleeding gums and chest pain", ["chest pain", "bleeding"]),
    ("I can’t breathe well", ["can't breathe"]),  # typographic apostrophe
    ("Tengo dolor de pécho", ["dolor de pecho"]),  # accents ignored
    ("nosebleeding", []),  # whole words only
    ("wants to reschedule", []),
])
def test_urgent_keywords(text: str, found: list[str]) -> None:
    assert rules.urgent_keywords_in(text, KEYWORDS) == found


def test_effective_priority_raises_but_never_lowers() -> None:
    assert rules.effective_priority("low", "chest pain", KEYWORDS) == ("urgent", ["chest pain"])
    assert rules.effective_priority("high", "invoice question", KEYWORDS) == ("high", [])
    with pytest.raises(ValueError):
        rules.effective_priority("meh", "", KEYWORDS)


def test_choose_assignee_fewest_open_then_round_robin() -> None:
    a, b, c = "a", "b", "c"
    assert rules.choose_assignee([], {}, None) is None
    assert rules.choose_assignee([a, b, c], {a: 2, b: 0, c: 1}, None) == b
    # ties rotate after the last person auto-assigned
    assert rules.choose_assignee([a, b, c], {}, None) == a
    assert rules.choose_assignee([a, b, c], {}, a) == b
    assert rules.choose_assignee([c, b, a], {}, c) == a  # wraps around; input order is irrelevant
    assert rules.choose_assignee([a, b, c], {a: 1, b: 1, c: 3}, a) == b
    assert rules.choose_assignee([a, b, c], {a: 1, b: 1, c: 3}, b) == a
    assert rules.choose_assignee([a, b], {}, "gone") == a  # last one no longer eligible
