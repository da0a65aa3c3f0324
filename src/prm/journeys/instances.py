"""Journey instances (enrolments): enrol by trigger or by hand, advance stages, exit, timeline, and
the reaction to every domain event about a patient.

Entry is one `INSERT ... ON CONFLICT DO NOTHING` on the unique (journey, patient, entry_key): the
database, not a check in code, decides whether a patient enters, so a trigger delivered twice or by
twenty concurrent workers enrols once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Select, and_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import audit, clock, references
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound, ValidationFailed
from prm.core.events import Event
from prm.core.pagination import PageParams, matching, paginate
from prm.journeys import definitions, effects, execution, steps
from prm.journeys.models import Journey, JourneyInstance, JourneyStageChange, JourneyStepRun, JourneyVersion
from prm.journeys.schemas import InstanceCreate

log = structlog.get_logger(__name__)


def _not_found(instance_id: object) -> NotFound:
    return NotFound(f"Journey instance {instance_id} not found", code="journey_instance_not_found")


# --- entering ----------------------------------------------------------------------------------


async def _active_version(session: AsyncSession, journey: Journey) -> JourneyVersion | None:
    if journey.retired_at is not None or journey.active_version is None:
        return None
    return await session.scalar(
        select(JourneyVersion).where(
            JourneyVersion.journey_id == journey.id, JourneyVersion.version == journey.active_version
        )
    )


async def enrol(
    session: AsyncSession,
    who: Principal,
    journey: Journey,
    version: JourneyVersion,
    patient_id: uuid.UUID,
    *,
    entry_key: str,
    event: Event | None = None,
    context: dict[str, Any] | None = None,
) -> JourneyInstance | None:
    """Insert the instance unless the entry policy's unique key is taken (then None), and enter
    the first stage."""
    now = clock.now()
    instance_id = await session.scalar(
        insert(JourneyInstance)
        .values(
            id=uuid.uuid4(),
            org_id=who.org_id,
            journey_id=journey.id,
            version_id=version.id,
            version=version.version,
            patient_id=patient_id,
            status="active",
            entry_policy=journey.entry_policy,
            entry_key=entry_key,
            source_event_id=event.id if event else None,
            source_event_type=event.type if event else None,
            context=context or {},
            enrolled_by=who.credential,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(constraint="uq_journey_instances_entry")
        .returning(JourneyInstance.id)
    )
    if instance_id is None:
        return None
    instance = await session.get(JourneyInstance, instance_id)
    assert instance is not None
    definition = await definitions.definition_of(session, version.id)
    await audit.record(
        session, who, "create", "journey_instance", instance.id, patient_id=patient_id,
        details={"journey_id": str(journey.id), "version": version.version,
                 "trigger": event.type if event else "manual"},
    )
    first = definition.first_stage
    if first is not None:
        await execution.enter_stage(session, who, instance, definition, first.key, cause="enrol", event=event)
    else:
        await execution.complete(session, instance)
    return instance


async def enrol_by_hand(
    session: AsyncSession, who: Principal, journey_id: uuid.UUID, data: InstanceCreate
) -> JourneyInstance:
    """Create an instance from the journey's active version for one patient (409 when the entry
    policy has already let this patient, or this key, in)."""
    journey = await definitions.get(session, who, journey_id)
    version = await _active_version(session, journey)
    if version is None:
        raise Conflict(
            f"Journey {journey.key!r} has no active version (publish it first)", code="journey_not_active",
            status_now=definitions.status_of(journey),
        )
    try:
        await effects.patient(session, who, data.patient_id)
    except NotFound:
        raise ValidationFailed.field("patient_id", "no such patient in this organisation",
                                     code="patient_not_found") from None
    if journey.entry_policy == "once_per_key" and not data.key:
        raise ValidationFailed.field("key", "this journey enrols once per key: give the key", code="key_required")
    entry_key = steps.entry_key(journey.entry_policy, key_value=data.key, source_event_id=None,
                                fallback=uuid.uuid4().hex)
    context = {"values": dict(data.context), "event": {}}
    instance = await enrol(session, who, journey, version, data.patient_id, entry_key=entry_key, context=context)
    if instance is None:
        existing = await session.scalar(
            select(JourneyInstance.id).where(
                JourneyInstance.journey_id == journey.id, JourneyInstance.patient_id == data.patient_id,
                JourneyInstance.entry_key == entry_key,
            )
        )
        raise Conflict(
            "The patient has already been enrolled in this journey"
            + (" for this key" if journey.entry_policy == "once_per_key" else ""),
            code="already_enrolled",
            instance_id=str(existing) if existing else None,
            entry_policy=journey.entry_policy,
        )
    return instance


# --- reading -----------------------------------------------------------------------------------


async def get(
    session: AsyncSession, who: Principal, instance_id: uuid.UUID, *, for_update: bool = False, audited: bool = True
) -> JourneyInstance:
    stmt = select(JourneyInstance).where(JourneyInstance.id == instance_id, JourneyInstance.org_id == who.org_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    instance = await session.scalar(stmt)
    if instance is None:
        raise _not_found(instance_id)
    if audited:
        await audit.record(session, who, "read", "journey_instance", instance.id, patient_id=instance.patient_id)
    return instance


async def allowed_transitions(session: AsyncSession, instance: JourneyInstance) -> list[str]:
    if instance.status != "active" or instance.current_stage is None:
        return []
    definition = await definitions.definition_of(session, instance.version_id)
    return list(definition.stage(instance.current_stage).transitions)


@dataclass
class InstanceFilters:
    journey_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None
    status: str | None = None
    stage: str | None = None


def _filtered(org_id: uuid.UUID, f: InstanceFilters) -> Select[Any]:
    stmt = matching(select(JourneyInstance).where(JourneyInstance.org_id == org_id), JourneyInstance,
                    journey_id=f.journey_id, patient_id=f.patient_id, status=f.status, current_stage=f.stage)
    return stmt.order_by(JourneyInstance.created_at.desc(), JourneyInstance.id)


async def list_instances(
    session: AsyncSession, who: Principal, filters: InstanceFilters, paging: PageParams
) -> tuple[list[JourneyInstance], int]:
    await references.require(session, who.org_id, "journey", filters.journey_id, field="journey_id")
    await references.require(session, who.org_id, "patient", filters.patient_id, field="patient_id")
    rows, total = await paginate(session, _filtered(who.org_id, filters), paging)
    for row in rows:
        await audit.record(session, who, "read", "journey_instance", row.id, patient_id=row.patient_id)
    return rows, total


async def timeline(
    session: AsyncSession, who: Principal, instance_id: uuid.UUID
) -> tuple[JourneyInstance, list[dict[str, Any]]]:
    """Every stage change and step run of the instance, oldest first (with the message or ticket made)."""
    instance = await get(session, who, instance_id)
    entries: list[dict[str, Any]] = []
    for change in await session.scalars(
        select(JourneyStageChange).where(JourneyStageChange.instance_id == instance.id)
    ):
        entries.append({"at": change.at, "type": "stage_changed", "stage": change.to_stage,
                        "from_stage": change.from_stage, "cause": change.cause,
                        "outcome": {"event_type": change.event_type} if change.event_type else {}})
    for run in await session.scalars(select(JourneyStepRun).where(JourneyStepRun.instance_id == instance.id)):
        entries.append({"at": run.created_at, "type": "step", "stage": run.stage, "step_id": run.step_id,
                        "kind": run.kind, "occurrence": run.occurrence, "status": run.status,
                        "due_at": run.due_at, "finished_at": run.finished_at, "outcome": run.outcome or {}})
    entries.sort(key=lambda e: (e["at"], 0 if e["type"] == "stage_changed" else 1))
    return instance, entries


# --- moving --------------------------------------------------------------------------------------


def _require_active(instance: JourneyInstance) -> None:
    if instance.status != "active":
        raise Conflict(f"The journey instance is {instance.status}", code="instance_not_active",
                       status_now=instance.status)


async def advance(session: AsyncSession, who: Principal, instance_id: uuid.UUID, to_stage: str) -> JourneyInstance:
    """Move the instance to `to_stage` by hand; 409 `invalid_stage_transition` lists the allowed ones."""
    instance = await get(session, who, instance_id, for_update=True, audited=False)
    _require_active(instance)
    definition = await definitions.definition_of(session, instance.version_id)
    allowed = list(definition.stage(instance.current_stage).transitions) if instance.current_stage else []
    if to_stage not in allowed:
        raise Conflict(
            f"Cannot advance from stage {instance.current_stage!r} to {to_stage!r}; allowed: "
            f"{', '.join(allowed) or 'none (final stage)'}",
            code="invalid_stage_transition",
            stage_now=instance.current_stage,
            to_stage=to_stage,
            allowed_transitions=allowed,
        )
    await execution.enter_stage(session, who, instance, definition, to_stage, cause="manual")
    await audit.record(session, who, "advance", "journey_instance", instance.id, patient_id=instance.patient_id,
                       details={"to_stage": to_stage})
    return instance


async def execute_stage(session: AsyncSession, who: Principal, instance_id: uuid.UUID) -> JourneyStepRun:
    """Run the current stage's actions again, from its entry step (a new occurrence of each)."""
    instance = await get(session, who, instance_id, for_update=True, audited=False)
    _require_active(instance)
    definition = await definitions.definition_of(session, instance.version_id)
    stage = definition.stage(instance.current_stage) if instance.current_stage else None
    if stage is None or not stage.entry:
        raise Conflict("The current stage has no actions", code="stage_has_no_actions",
                       stage_now=instance.current_stage)
    await execution.cancel_pending(session, instance, reason="stage_rerun")
    run = await execution.schedule(session, who, instance, definition, stage.entry)
    assert run is not None
    await audit.record(session, who, "execute", "journey_instance", instance.id, patient_id=instance.patient_id,
                       details={"stage": stage.key})
    return run


async def exit_instance(session: AsyncSession, who: Principal, instance_id: uuid.UUID, reason: str) -> JourneyInstance:
    instance = await get(session, who, instance_id, for_update=True, audited=False)
    _require_active(instance)
    await execution.leave(session, instance, reason=reason)
    await audit.record(session, who, "exit", "journey_instance", instance.id, patient_id=instance.patient_id,
                       details={"reason": reason})
    return instance


# --- reacting to events ------------------------------------------------------------------------


def _event_context(event: Event) -> dict[str, Any]:
    context: dict[str, Any] = {"event": dict(event.payload), "values": {}}
    zone = event.payload.get("timezone")
    if isinstance(zone, str) and zone:
        context["clinic_timezone"] = zone
    return context


async def react(session: AsyncSession, event: Event) -> dict[str, int]:
    """Apply one domain event about a patient: exit rules, stage advances and awaited events of the
    patient's active instances, then the triggers of active journeys. Idempotent per event."""
    raw = event.payload.get("patient_id")
    counts = {"exited": 0, "advanced": 0, "resumed": 0, "enrolled": 0}
    try:
        patient_id = uuid.UUID(str(raw)) if raw else None
    except ValueError:
        patient_id = None
    if patient_id is None:
        return counts
    who = Principal.system(event.org_id)
    facts_cache: dict[str, Any] | None = None

    async def facts() -> dict[str, Any]:
        nonlocal facts_cache
        if facts_cache is None:
            try:
                p = effects.patient_facts(await effects.patient(session, who, patient_id))
            except NotFound:
                p = {}
            facts_cache = {"event": dict(event.payload), "patient": p, "context": {}}
        return facts_cache

    active = list(
        await session.scalars(
            select(JourneyInstance)
            .where(JourneyInstance.org_id == event.org_id, JourneyInstance.patient_id == patient_id,
                   JourneyInstance.status == "active")
            .order_by(JourneyInstance.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    for instance in active:
        if instance.source_event_id == event.id:
            continue  # the event that started it does not also move it
        if event.type == "patient.deleted":
            await execution.leave(session, instance, reason="patient_deleted")
            counts["exited"] += 1
            continue
        definition = await definitions.definition_of(session, instance.version_id)
        known = {**await facts(), "context": (instance.context or {}).get("values", {})}
        rule = next((r for r in definition.exit_rules
                     if r.event == event.type and steps.all_hold(r.conditions, known)), None)
        if rule is not None:
            await execution.leave(session, instance, reason=rule.reason)
            counts["exited"] += 1
            continue
        if instance.current_stage is not None:
            stage = definition.stage(instance.current_stage)
            move = next((a for a in stage.advance_on
                         if a.event == event.type and steps.all_hold(a.conditions, known)), None)
            if move is not None:
                instance.context = {**(instance.context or {}), "last_event": dict(event.payload)}
                await execution.enter_stage(session, who, instance, definition, move.to, cause="event", event=event)
                counts["advanced"] += 1
                continue
        waiting = instance.waiting_for
        if waiting and waiting.get("event") == event.type:
            conditions = [steps.Condition.model_validate(c) for c in waiting.get("conditions", [])]
            if steps.all_hold(conditions, known) and await execution.resume_wait(
                session, who, instance, definition, event
            ):
                counts["resumed"] += 1

    counts["enrolled"] = await _enrol_on_triggers(session, who, event, patient_id, facts)
    return counts


async def _enrol_on_triggers(
    session: AsyncSession, who: Principal, event: Event, patient_id: uuid.UUID, facts: Any
) -> int:
    if event.type == "patient.deleted":
        return 0
    rows = (
        await session.execute(
            select(Journey, JourneyVersion)
            .join(JourneyVersion, and_(JourneyVersion.journey_id == Journey.id,
                                       JourneyVersion.version == Journey.active_version))
            .where(Journey.org_id == event.org_id, Journey.retired_at.is_(None),
                   JourneyVersion.trigger_events.contains([event.type]))
            .order_by(Journey.key)
        )
    ).all()
    enrolled = 0
    for journey, version in rows:
        definition = await definitions.definition_of(session, version.id)
        known = await facts()
        if not known.get("patient"):
            return enrolled  # the patient is gone (deleted, or another organisation's)
        if not any(t.event == event.type and steps.all_hold(t.conditions, known) for t in definition.triggers):
            continue
        key_value = None
        if journey.entry_policy == "once_per_key":
            found = steps.lookup(known, journey.entry_key_field or "")
            if found is None or found is steps.MISSING or isinstance(found, dict | list):
                log.info("journeys.trigger_without_key", journey_id=str(journey.id), event_type=event.type)
                continue
            key_value = str(found)
        entry = steps.entry_key(journey.entry_policy, key_value=key_value, source_event_id=str(event.id),
                                fallback=str(event.id))
        instance = await enrol(session, who, journey, version, patient_id, entry_key=entry, event=event,
                               context=_event_context(event))
        if instance is not None:
            enrolled += 1
            log.info("journeys.enrolled", journey_id=str(journey.id), instance_id=str(instance.id),
                     event_type=event.type)
    return enrolled
