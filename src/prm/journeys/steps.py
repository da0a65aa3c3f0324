"""A journey definition as data: triggers, exit rules, stages and steps (a discriminated union on
`kind`), the conditions they test, and the structural checks publishing runs.

Pure: no database, no clock. The service adds the checks that need the database (templates exist).

    stage ──entry──▶ step ──next──▶ step ──next──▶ … (None: the stage's actions are done)

A stage's actions are the chain of steps starting at its `entry`. When the chain ends the instance
rests in the stage until it is advanced (by one of the stage's `advance_on` events, by an
`advance_stage` step, or by hand); a stage without `transitions` is final: ending its chain
completes the instance. An `end` step completes it at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import time
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

# Events a journey may react to (enrol, advance, resume a wait, exit). `intake.submitted` is
# listed ahead of the intake module so definitions can name it.
EventType = Literal[
    "patient.created",
    "patient.updated",
    "appointment.booked",
    "appointment.confirmed",
    "appointment.checked_in",
    "appointment.completed",
    "appointment.cancelled",
    "appointment.no_show",
    "appointment.rescheduled",
    "message.received",
    "voice_call.completed",
    "conversation.handed_off",
    "ticket.status_changed",
    "intake.submitted",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
EntryPolicy = Literal["once_per_patient", "once_per_key", "every_time"]
ENTRY_POLICIES: tuple[str, ...] = get_args(EntryPolicy)
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = get_args(Weekday)

Ref = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
FieldPath = Annotated[
    str, StringConstraints(min_length=1, max_length=120, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- conditions --------------------------------------------------------------------------------


class Condition(_Strict):
    """A test on one field of the facts (`event.service_id`, `patient.tags`, `context.channel`)."""

    field: FieldPath = Field(description="Dotted path: event.<payload field>, patient.<fact> or context.<key>")
    op: Literal["eq", "ne", "in", "not_in", "contains", "exists", "not_exists"] = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _value_fits(self) -> Condition:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"'{self.op}' needs a list value")
        if self.op in ("eq", "ne", "contains") and self.value is None:
            raise ValueError(f"'{self.op}' needs a value")
        return self


MISSING = object()


def lookup(facts: Mapping[str, Any], path: str) -> Any:
    value: Any = facts
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return MISSING
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    return bool(a == b) or (a is not None and b is not None and str(a) == str(b))


def holds(condition: Condition, facts: Mapping[str, Any]) -> bool:
    found = lookup(facts, condition.field)
    op, value = condition.op, condition.value
    if op == "exists":
        return found is not MISSING and found is not None
    if op == "not_exists":
        return found is MISSING or found is None
    if found is MISSING:
        return op in ("ne", "not_in")
    if op == "eq":
        return _same(found, value)
    if op == "ne":
        return not _same(found, value)
    if op == "in":
        return any(_same(found, v) for v in value)
    if op == "not_in":
        return not any(_same(found, v) for v in value)
    # contains: a list holding the value, or a text containing it
    if isinstance(found, list):
        return any(_same(item, value) for item in found)
    return isinstance(found, str) and str(value).lower() in found.lower()


def all_hold(conditions: Iterable[Condition], facts: Mapping[str, Any]) -> bool:
    return all(holds(c, facts) for c in conditions)


# --- triggers, exits, stages -------------------------------------------------------------------


class Trigger(_Strict):
    event: EventType
    conditions: list[Condition] = Field(default_factory=list, max_length=20)


class ExitRule(_Strict):
    event: EventType
    conditions: list[Condition] = Field(default_factory=list, max_length=20)
    reason: str = Field(default="exit_rule", max_length=64)


class StageAdvance(_Strict):
    """Advance to `to` when `event` arrives for the patient (and its conditions hold)."""

    event: EventType
    to: Ref
    conditions: list[Condition] = Field(default_factory=list, max_length=20)


class Stage(_Strict):
    key: Ref
    name: str = Field(min_length=1, max_length=200)
    entry: Ref | None = Field(default=None, description="The first step of the stage's actions")
    transitions: list[Ref] = Field(
        default_factory=list, max_length=20, description="Stages this one may advance to (none: final)"
    )
    advance_on: list[StageAdvance] = Field(default_factory=list, max_length=20)


# --- steps -------------------------------------------------------------------------------------


class _Step(_Strict):
    id: Ref
    name: str | None = Field(default=None, max_length=200)


class _Next(_Step):
    next: Ref | None = Field(default=None, description="The step after this one (none: the stage's actions end)")


class SendNotification(_Next):
    """Send a notification template (the notifications module picks the channel, checks consent and
    the WhatsApp window, and falls back as it always does)."""

    kind: Literal["send_notification"]
    template_key: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    channel: Literal["whatsapp", "sms", "email", "voice"] | None = None
    purpose: Literal["care", "reminders", "marketing"] = "care"
    variables: dict[str, str] = Field(default_factory=dict, max_length=30)


class CreateTicket(_Next):
    kind: Literal["create_ticket"]
    subject: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=5000)
    category: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")] = (
        "general"
    )
    priority: Literal["low", "normal", "high", "urgent"] = "normal"


class Wait(_Next):
    """Wait a duration: days count in the patient's local calendar (same wall time N days later, even
    across a DST change); hours and minutes are elapsed time."""

    kind: Literal["wait"]
    days: int = Field(default=0, ge=0, le=3660)
    hours: int = Field(default=0, ge=0, le=24 * 366)
    minutes: int = Field(default=0, ge=0, le=60 * 24 * 366)

    @model_validator(mode="after")
    def _some(self) -> Wait:
        if not (self.days or self.hours or self.minutes):
            raise ValueError("a wait needs days, hours or minutes")
        return self


class WaitUntil(_Next):
    """Wait until the next local time of day (optionally on given weekdays) in the patient's zone."""

    kind: Literal["wait_until"]
    at: time = Field(description="Local time of day, e.g. 09:00")
    weekdays: list[Weekday] = Field(default_factory=list, max_length=7, description="Empty: any day")


class WaitForEvent(_Next):
    """Wait for an event about the patient; after the timeout take `on_timeout` instead of `next`."""

    kind: Literal["wait_for_event"]
    event: EventType
    conditions: list[Condition] = Field(default_factory=list, max_length=20)
    timeout_days: int = Field(default=0, ge=0, le=3660)
    timeout_hours: int = Field(default=0, ge=0, le=24 * 366)
    timeout_minutes: int = Field(default=0, ge=0, le=60 * 24 * 366)
    on_timeout: Ref | None = Field(default=None, description="The step after a timeout (none: the stage ends)")

    @model_validator(mode="after")
    def _some(self) -> WaitForEvent:
        if not (self.timeout_days or self.timeout_hours or self.timeout_minutes):
            raise ValueError("a wait for an event needs a timeout (timeout_days, _hours or _minutes)")
        return self


class Branch(_Strict):
    conditions: list[Condition] = Field(min_length=1, max_length=20)
    next: Ref


class BranchStep(_Step):
    """Go to the first branch whose conditions all hold, else to `default`."""

    kind: Literal["branch"]
    branches: list[Branch] = Field(min_length=1, max_length=20)
    default: Ref | None = None


class AdvanceStage(_Step):
    kind: Literal["advance_stage"]
    to: Ref


class End(_Step):
    kind: Literal["end"]
    outcome: Literal["completed", "exited"] = "completed"


Step = Annotated[
    SendNotification | CreateTicket | Wait | WaitUntil | WaitForEvent | BranchStep | AdvanceStage | End,
    Field(discriminator="kind"),
]
STEP_KINDS = (
    "send_notification", "create_ticket", "wait", "wait_until", "wait_for_event", "branch", "advance_stage", "end",
)
WAIT_KINDS = ("wait", "wait_until", "wait_for_event")


class Definition(_Strict):
    """What a journey does. Editable as a draft; frozen in each published version."""

    triggers: list[Trigger] = Field(default_factory=list, max_length=20)
    exit_rules: list[ExitRule] = Field(default_factory=list, max_length=20)
    stages: list[Stage] = Field(default_factory=list, max_length=50)
    steps: list[Step] = Field(default_factory=list, max_length=200)

    def step(self, step_id: str) -> Any:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def stage(self, key: str) -> Stage:
        for s in self.stages:
            if s.key == key:
                return s
        raise KeyError(key)

    @property
    def first_stage(self) -> Stage | None:
        return self.stages[0] if self.stages else None

    def trigger_events(self) -> list[str]:
        return sorted({t.event for t in self.triggers})

    def template_keys(self) -> list[tuple[int, str, str | None]]:
        """(step index, template key, channel) of every notification step."""
        return [(i, s.template_key, s.channel) for i, s in enumerate(self.steps) if isinstance(s, SendNotification)]


def successors(step: Any) -> list[tuple[str, str]]:
    """(field, step id) of every step this one can lead to."""
    out: list[tuple[str, str]] = []
    if isinstance(step, _Next) and step.next:
        out.append(("next", step.next))
    if isinstance(step, WaitForEvent) and step.on_timeout:
        out.append(("on_timeout", step.on_timeout))
    if isinstance(step, BranchStep):
        out.extend((f"branches.{i}.next", b.next) for i, b in enumerate(step.branches))
        if step.default:
            out.append(("default", step.default))
    return out


def problems(definition: Definition) -> list[dict[str, str]]:
    """Everything that stops a definition from being published, each naming its field.

    Checks: at least one stage; unique stage keys and step ids; every reference (stage entry,
    transitions, advance targets, next/on_timeout/branch/default, advance_stage) exists; every
    advance target is one of the stage's transitions; every step is reachable from some stage's
    entry; no cycle without a wait (it would run forever without pausing).
    """
    out: list[dict[str, str]] = []

    def add(field: str, message: str) -> None:
        out.append({"field": f"definition.{field}", "message": message, "type": "invalid_definition"})

    if not definition.stages:
        add("stages", "a journey needs at least one stage")
    stage_keys: dict[str, int] = {}
    for i, stage in enumerate(definition.stages):
        if stage.key in stage_keys:
            add(f"stages.{i}.key", f"stage {stage.key!r} is defined twice")
        stage_keys.setdefault(stage.key, i)
    step_ids: dict[str, int] = {}
    for i, step in enumerate(definition.steps):
        if step.id in step_ids:
            add(f"steps.{i}.id", f"step {step.id!r} is defined twice")
        step_ids.setdefault(step.id, i)

    for i, stage in enumerate(definition.stages):
        if stage.entry is not None and stage.entry not in step_ids:
            add(f"stages.{i}.entry", f"no step {stage.entry!r}")
        for j, target in enumerate(stage.transitions):
            if target not in stage_keys:
                add(f"stages.{i}.transitions.{j}", f"no stage {target!r}")
            elif target == stage.key:
                add(f"stages.{i}.transitions.{j}", "a stage cannot advance to itself")
        for j, rule in enumerate(stage.advance_on):
            if rule.to not in stage_keys:
                add(f"stages.{i}.advance_on.{j}.to", f"no stage {rule.to!r}")
            elif rule.to not in stage.transitions:
                add(f"stages.{i}.advance_on.{j}.to", f"{rule.to!r} is not among the stage's transitions")

    for i, step in enumerate(definition.steps):
        for field, target in successors(step):
            if target not in step_ids:
                add(f"steps.{i}.{field}", f"no step {target!r}")
            elif target == step.id:
                add(f"steps.{i}.{field}", "a step cannot lead to itself")
        if isinstance(step, AdvanceStage) and step.to not in stage_keys:
            add(f"steps.{i}.to", f"no stage {step.to!r}")

    # reachability from every stage's entry
    reached: set[str] = set()
    todo = [s.entry for s in definition.stages if s.entry in step_ids]
    while todo:
        current = todo.pop()
        if current is None or current in reached:
            continue
        reached.add(current)
        todo.extend(t for _, t in successors(definition.steps[step_ids[current]]) if t in step_ids)
    for step_id, i in step_ids.items():
        if step_id not in reached:
            add(f"steps.{i}", f"step {step_id!r} is not reachable from any stage's entry")

    # a loop must pause somewhere
    for cycle_start in _cycles_without_wait(definition, step_ids):
        add(f"steps.{step_ids[cycle_start]}", f"step {cycle_start!r} is on a loop with no wait in it")
    return out


def _cycles_without_wait(definition: Definition, step_ids: dict[str, int]) -> Iterator[str]:
    edges = {
        s.id: [t for _, t in successors(s) if t in step_ids and definition.steps[step_ids[t]].kind not in WAIT_KINDS]
        for s in definition.steps
        if s.kind not in WAIT_KINDS
    }
    state: dict[str, int] = {}  # 1 visiting, 2 done
    reported: set[str] = set()

    def visit(node: str) -> Iterator[str]:
        state[node] = 1
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1 and nxt not in reported:
                reported.add(nxt)
                yield nxt
            elif nxt not in state:
                yield from visit(nxt)
        state[node] = 2

    for node in edges:
        if node not in state:
            yield from visit(node)


def entry_key(policy: str, *, key_value: str | None, source_event_id: str | None, fallback: str) -> str:
    """The value the database's unique (journey, patient, entry_key) holds for an entry.

    once_per_patient → "patient" (one ever); once_per_key → "key:<value>"; every_time → the source
    event id (a redelivered event enrols once) or, for a manual entry, `fallback` (fresh per call).
    """
    if policy == "once_per_patient":
        return "patient"
    if policy == "once_per_key":
        if not key_value:
            raise ValueError("once_per_key needs a key value")
        return "key:" + key_value
    return "event:" + source_event_id if source_event_id else "manual:" + fallback


_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def is_slug(value: str) -> bool:
    return bool(_SLUG.match(value))
