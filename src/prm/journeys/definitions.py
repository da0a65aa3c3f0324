"""Journey definitions: create, read, list, edit the draft, add a stage, publish a version, retire.

A draft is free to edit. Publishing validates it (structure in `steps.problems`, templates here)
and freezes it as version N (locking the journey row, so two publishes cannot both be N); that
version becomes the one new patients enter. Instances stay on the version they entered. Retiring
stops new enrolments; running instances carry on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import audit, clock, events, references
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound, ValidationFailed
from prm.core.events import Event
from prm.core.pagination import PageParams, paginate
from prm.journeys import effects, steps
from prm.journeys.models import Journey, JourneyVersion
from prm.journeys.schemas import JourneyCreate, JourneyUpdate, StageCreate


def status_of(journey: Journey) -> str:
    if journey.retired_at is not None:
        return "retired"
    return "active" if journey.active_version is not None else "draft"


def draft_of(journey: Journey) -> steps.Definition:
    return steps.Definition.model_validate(journey.draft or {})


def _not_found(journey_id: object) -> NotFound:
    return NotFound(f"Journey {journey_id} not found", code="journey_not_found")


def _check_entry(policy: str, key_field: str | None) -> None:
    if policy == "once_per_key" and not key_field:
        raise ValidationFailed.field(
            "entry_key_field", "a once_per_key journey needs the field that names the key",
            code="entry_key_field_missing",
        )


references.resolver("journey")(references.in_organisation(Journey))


async def get(session: AsyncSession, who: Principal, journey_id: uuid.UUID, *, for_update: bool = False) -> Journey:
    stmt = select(Journey).where(Journey.id == journey_id, Journey.org_id == who.org_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    journey = await session.scalar(stmt)
    if journey is None:
        raise _not_found(journey_id)
    return journey


async def create(session: AsyncSession, who: Principal, data: JourneyCreate) -> Journey:
    _check_entry(data.entry_policy, data.entry_key_field)
    journey = Journey(
        id=uuid.uuid4(),
        org_id=who.org_id,
        key=data.key,
        name=data.name,
        description=data.description,
        entry_policy=data.entry_policy,
        entry_key_field=data.entry_key_field,
        draft=data.definition.model_dump(mode="json"),
        latest_version=0,
    )
    try:
        async with session.begin_nested():
            session.add(journey)
            await session.flush()
    except IntegrityError:
        raise Conflict(
            f"A journey with key {data.key!r} exists",
            code="journey_key_taken",
            errors=[{"field": "key", "message": "already used in this organisation", "type": "journey_key_taken"}],
        ) from None
    await audit.record(session, who, "create", "journey", journey.id, details={"key": journey.key})
    return journey


@dataclass
class JourneyFilters:
    status: str | None = None
    q: str | None = None
    trigger: str | None = None


def _filtered(org_id: uuid.UUID, f: JourneyFilters) -> Select[Any]:
    stmt = select(Journey).where(Journey.org_id == org_id)
    if f.status == "retired":
        stmt = stmt.where(Journey.retired_at.is_not(None))
    elif f.status == "active":
        stmt = stmt.where(Journey.retired_at.is_(None), Journey.active_version.is_not(None))
    elif f.status == "draft":
        stmt = stmt.where(Journey.retired_at.is_(None), Journey.active_version.is_(None))
    if f.q and f.q.strip():
        pattern = "%" + f.q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(Journey.name.ilike(pattern), Journey.key.ilike(pattern)))
    if f.trigger:
        active = select(JourneyVersion.journey_id).where(
            JourneyVersion.org_id == org_id,
            JourneyVersion.journey_id == Journey.id,
            JourneyVersion.version == Journey.active_version,
            JourneyVersion.trigger_events.contains([f.trigger]),
        )
        stmt = stmt.where(active.exists())
    return stmt.order_by(Journey.name, Journey.id)


async def list_journeys(
    session: AsyncSession, who: Principal, filters: JourneyFilters, paging: PageParams
) -> tuple[list[Journey], int]:
    return await paginate(session, _filtered(who.org_id, filters), paging)


async def update(session: AsyncSession, who: Principal, journey_id: uuid.UUID, data: JourneyUpdate) -> Journey:
    journey = await get(session, who, journey_id, for_update=True)
    changes = data.model_dump(exclude_unset=True)
    for field in ("name", "entry_policy"):
        if field in changes and changes[field] is None:
            raise ValidationFailed.field(field, "may not be null")
    if "name" in changes:
        journey.name = changes["name"]
    if "description" in changes:
        journey.description = changes["description"] or ""
    if "entry_policy" in changes:
        journey.entry_policy = changes["entry_policy"]
    if "entry_key_field" in changes:
        journey.entry_key_field = changes["entry_key_field"]
    if data.definition is not None:
        journey.draft = data.definition.model_dump(mode="json")
    _check_entry(journey.entry_policy, journey.entry_key_field)
    journey.updated_at = clock.now()
    await session.flush()
    await audit.record(session, who, "update", "journey", journey.id, details={"fields": sorted(changes)})
    return journey


async def add_stage(session: AsyncSession, who: Principal, journey_id: uuid.UUID, data: StageCreate) -> Journey:
    """Append a stage (and its steps) to the draft; 409 when the stage key or a step id is taken."""
    journey = await get(session, who, journey_id, for_update=True)
    draft = draft_of(journey)
    if any(s.key == data.stage.key for s in draft.stages):
        raise Conflict(
            f"The draft already has a stage {data.stage.key!r}",
            code="stage_exists",
            errors=[{"field": "stage.key", "message": "already in the draft", "type": "stage_exists"}],
        )
    taken = {s.id for s in draft.steps}
    for i, step in enumerate(data.steps):
        if step.id in taken:
            raise Conflict(
                f"The draft already has a step {step.id!r}",
                code="step_exists",
                errors=[{"field": f"steps.{i}.id", "message": "already in the draft", "type": "step_exists"}],
            )
    updated = steps.Definition(
        triggers=draft.triggers,
        exit_rules=draft.exit_rules,
        stages=[*draft.stages, data.stage],
        steps=[*draft.steps, *data.steps],
    )
    journey.draft = updated.model_dump(mode="json")
    journey.updated_at = clock.now()
    await session.flush()
    await audit.record(session, who, "update", "journey", journey.id, details={"added_stage": data.stage.key})
    return journey


async def publication_problems(
    session: AsyncSession, who: Principal, journey: Journey, definition: steps.Definition
) -> list[dict[str, str]]:
    found = steps.problems(definition)
    if journey.entry_policy == "once_per_key" and not journey.entry_key_field:
        found.append({"field": "entry_key_field", "message": "a once_per_key journey needs it",
                      "type": "invalid_definition"})
    for i, key, channel in definition.template_keys():
        if not await effects.template_exists(session, who, key, channel):
            on = f" for {channel}" if channel else ""
            found.append({"field": f"definition.steps.{i}.template_key",
                          "message": f"no template {key!r}{on} in this organisation or built in",
                          "type": "template_not_found"})
    return found


async def publish(session: AsyncSession, who: Principal, journey_id: uuid.UUID) -> JourneyVersion:
    """Validate the draft and freeze it as the next version, which becomes the active one."""
    journey = await get(session, who, journey_id, for_update=True)
    definition = draft_of(journey)
    found = await publication_problems(session, who, journey, definition)
    if found:
        raise ValidationFailed(
            f"The draft cannot be published: {len(found)} problem(s); the first: "
            f"{found[0]['field']}: {found[0]['message']}",
            code="invalid_definition",
            errors=found,
        )
    number = journey.latest_version + 1
    version = JourneyVersion(
        id=uuid.uuid4(),
        org_id=who.org_id,
        journey_id=journey.id,
        version=number,
        definition=definition.model_dump(mode="json"),
        trigger_events=definition.trigger_events(),
        published_at=clock.now(),
        published_by=who.credential,
    )
    session.add(version)
    journey.latest_version = number
    journey.active_version = number
    journey.retired_at = None
    journey.updated_at = clock.now()
    await session.flush()
    await audit.record(session, who, "publish", "journey", journey.id, details={"version": number})
    await events.publish(
        session,
        Event(type="journey.published", org_id=who.org_id,
              payload={"journey_id": str(journey.id), "key": journey.key, "version": number}),
    )
    return version


async def retire(session: AsyncSession, who: Principal, journey_id: uuid.UUID) -> Journey:
    journey = await get(session, who, journey_id, for_update=True)
    if journey.retired_at is None:
        journey.retired_at = clock.now()
        journey.active_version = None
        journey.updated_at = clock.now()
        await session.flush()
        await audit.record(session, who, "retire", "journey", journey.id)
    return journey


async def versions(session: AsyncSession, who: Principal, journey_id: uuid.UUID) -> list[JourneyVersion]:
    await get(session, who, journey_id)
    return list(
        await session.scalars(
            select(JourneyVersion)
            .where(JourneyVersion.org_id == who.org_id, JourneyVersion.journey_id == journey_id)
            .order_by(JourneyVersion.version)
        )
    )


async def version(session: AsyncSession, who: Principal, journey_id: uuid.UUID, number: int) -> JourneyVersion:
    row = await session.scalar(
        select(JourneyVersion).where(
            JourneyVersion.org_id == who.org_id,
            JourneyVersion.journey_id == journey_id,
            JourneyVersion.version == number,
        )
    )
    if row is None:
        raise NotFound(f"Journey {journey_id} has no version {number}", code="journey_version_not_found")
    return row


_definitions: dict[uuid.UUID, steps.Definition] = {}


async def definition_of(session: AsyncSession, version_id: uuid.UUID) -> steps.Definition:
    """A published version's definition (frozen, so cached by id)."""
    cached = _definitions.get(version_id)
    if cached is not None:
        return cached
    row = await session.get(JourneyVersion, version_id)
    if row is None:
        raise NotFound(f"Journey version {version_id} not found", code="journey_version_not_found")
    parsed = steps.Definition.model_validate(row.definition)
    if len(_definitions) > 1000:
        _definitions.clear()
    _definitions[version_id] = parsed
    return parsed
