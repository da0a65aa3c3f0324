"""The plan's journeys service tests, plus versioning, entry policies, waits and exits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications.models import Communication
from prm.core import clock, jobs
from prm.core.errors import Conflict, NotFound, ValidationFailed
from prm.identity.models import Organisation
from prm.journeys import service
from prm.journeys.models import JourneyInstance, JourneyStepRun
from prm.journeys.schemas import InstanceCreate, JourneyCreate, JourneyUpdate, StageCreate
from tests.fixtures.factories import principal
from tests.fixtures.messaging import patient_with_contacts
from tests.integration.journeys.conftest import journey_body, new_patient_definition

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


async def _sent_templates(session: AsyncSession, patient_id: uuid.UUID) -> list[str]:
    rows = await session.scalars(
        select(Communication.template_key)
        .where(Communication.patient_id == patient_id, Communication.direction == "outbound")
        .order_by(Communication.created_at, Communication.id)
    )
    return [r for r in rows if r]


async def _published(session: AsyncSession, org: Organisation, **overrides: Any) -> Any:
    who = principal(org)
    journey = await service.create(session, who, JourneyCreate.model_validate(journey_body(**overrides)))
    await service.publish(session, who, journey.id)
    return journey


async def test_create_journey_definition(session: AsyncSession, org: Organisation, templates: None) -> None:
    who = principal(org)
    journey = await service.create(session, who, JourneyCreate.model_validate(journey_body()))
    assert journey.key == "new-patient" and service.status_of(journey) == "draft"
    assert journey.active_version is None and journey.latest_version == 0
    assert [s["key"] for s in journey.draft["stages"]] == ["welcome", "booking", "confirmation", "completed"]

    with pytest.raises(Conflict) as taken:
        await service.create(session, who, JourneyCreate.model_validate(journey_body()))
    assert taken.value.code == "journey_key_taken"

    with pytest.raises(ValidationFailed) as no_key:
        await service.create(session, who, JourneyCreate.model_validate(
            journey_body(key="per-visit", entry_policy="once_per_key")))
    assert no_key.value.errors and no_key.value.errors[0]["field"] == "entry_key_field"


async def test_list_journeys(session: AsyncSession, org: Organisation, other_org: Organisation,
                             templates: None) -> None:
    who = principal(org)
    await _published(session, org, key="new-patient", name="New patient")
    await service.create(session, who, JourneyCreate.model_validate(
        journey_body(key="follow-up", name="Follow-up", definition=new_patient_definition(trigger=False))))
    retired = await _published(session, org, key="old-one", name="Old one")
    await service.retire(session, who, retired.id)
    await service.create(session, principal(other_org), JourneyCreate.model_validate(journey_body(key="theirs")))

    def keys(rows: list[Any]) -> list[str]:
        return [j.key for j in rows]

    paging = service.JourneyFilters
    from prm.core.pagination import PageParams

    rows, total = await service.list_journeys(session, who, paging(), PageParams())
    assert total == 3 and keys(rows) == ["follow-up", "new-patient", "old-one"]
    rows, _ = await service.list_journeys(session, who, paging(status="active"), PageParams())
    assert keys(rows) == ["new-patient"]
    rows, _ = await service.list_journeys(session, who, paging(status="draft"), PageParams())
    assert keys(rows) == ["follow-up"]
    rows, _ = await service.list_journeys(session, who, paging(status="retired"), PageParams())
    assert keys(rows) == ["old-one"]
    rows, _ = await service.list_journeys(session, who, paging(q="follow"), PageParams())
    assert keys(rows) == ["follow-up"]
    rows, _ = await service.list_journeys(session, who, paging(trigger="patient.created"), PageParams())
    assert keys(rows) == ["new-patient"]


async def test_get_journey_by_id(session: AsyncSession, org: Organisation, other_org: Organisation,
                                 templates: None) -> None:
    journey = await _published(session, org)
    found = await service.get(session, principal(org), journey.id)
    assert found.id == journey.id and service.status_of(found) == "active" and found.active_version == 1
    with pytest.raises(NotFound):
        await service.get(session, principal(other_org), journey.id)


async def test_update_journey(session: AsyncSession, org: Organisation, templates: None) -> None:
    who = principal(org)
    journey = await _published(session, org)
    changed = new_patient_definition()
    changed["steps"][0]["template_key"] = "journey_feedback"
    updated = await service.update(session, who, journey.id,
                                   JourneyUpdate(name="New patients", definition=changed))  # type: ignore[arg-type]
    assert updated.name == "New patients"
    assert updated.draft["steps"][0]["template_key"] == "journey_feedback"
    # the published version is frozen: editing the draft did not touch it
    v1 = await service.version(session, who, journey.id, 1)
    assert v1.definition["steps"][0]["template_key"] == "journey_welcome"
    with pytest.raises(ValidationFailed) as null_name:
        await service.update(session, who, journey.id, JourneyUpdate.model_validate({"name": None}))
    assert null_name.value.errors and null_name.value.errors[0]["field"] == "name"


async def test_add_journey_stage(session: AsyncSession, org: Organisation, templates: None) -> None:
    who = principal(org)
    journey = await service.create(session, who, JourneyCreate.model_validate(journey_body()))
    data = StageCreate.model_validate({
        "stage": {"key": "follow-up", "name": "Follow-up", "entry": "ask-feedback"},
        "steps": [{"id": "ask-feedback", "kind": "send_notification", "template_key": "journey_feedback"}],
    })
    updated = await service.add_stage(session, who, journey.id, data)
    assert [s["key"] for s in updated.draft["stages"]][-1] == "follow-up"
    assert updated.draft["steps"][-1]["id"] == "ask-feedback"
    with pytest.raises(Conflict) as again:
        await service.add_stage(session, who, journey.id, data)
    assert again.value.code == "stage_exists"
    # nothing leads into the new stage yet, but it has its own entry: publishable
    version = await service.publish(session, who, journey.id)
    assert version.version == 1 and "follow-up" in [s["key"] for s in version.definition["stages"]]


async def test_create_journey_instance(session: AsyncSession, org: Organisation, templates: None,
                                       messaging_settings: Any) -> None:
    who = principal(org)
    journey = await _published(session, org, definition=new_patient_definition(trigger=False))
    with clock.frozen(T0):
        patient = await patient_with_contacts(session, org, preferred_channel="sms")
        instance = await service.enrol_by_hand(session, who, journey.id, InstanceCreate(patient_id=patient.id))
        assert instance.status == "active" and instance.current_stage == "welcome" and instance.version == 1
        await jobs.run_due(session)
        assert await _sent_templates(session, patient.id) == ["journey_welcome"]
        with pytest.raises(Conflict) as twice:
            await service.enrol_by_hand(session, who, journey.id, InstanceCreate(patient_id=patient.id))
        assert twice.value.code == "already_enrolled"
        with pytest.raises(ValidationFailed) as unknown:
            await service.enrol_by_hand(session, who, journey.id, InstanceCreate(patient_id=uuid.uuid4()))
        assert unknown.value.errors and unknown.value.errors[0]["field"] == "patient_id"


async def test_advance_journey_stage(session: AsyncSession, org: Organisation, templates: None,
                                     messaging_settings: Any) -> None:
    who = principal(org)
    journey = await _published(session, org, definition=new_patient_definition(trigger=False))
    with clock.frozen(T0) as c:
        patient = await patient_with_contacts(session, org, preferred_channel="sms")
        instance = await service.enrol_by_hand(session, who, journey.id, InstanceCreate(patient_id=patient.id))
        await jobs.run_due(session)
        c.advance(timedelta(minutes=1))
        advanced = await service.advance(session, who, instance.id, "booking")
        assert advanced.current_stage == "booking"
        await jobs.run_due(session)
        assert await _sent_templates(session, patient.id) == ["journey_welcome", "journey_book_invite"]
        assert await service.allowed_transitions(session, advanced) == ["confirmation"]
        c.advance(timedelta(minutes=1))
        await service.advance(session, who, instance.id, "confirmation")
        await jobs.run_due(session)
        done = await service.get_instance(session, who, instance.id)
        assert done.current_stage == "completed" and done.status == "completed" and done.completed_at
        _, entries = await service.timeline(session, who, instance.id)
        moves = [(e["from_stage"], e["stage"], e["cause"]) for e in entries if e["type"] == "stage_changed"]
        assert moves == [(None, "welcome", "enrol"), ("welcome", "booking", "manual"),
                         ("booking", "confirmation", "manual"), ("confirmation", "completed", "step")]
        sends = [e for e in entries if e["type"] == "step" and e["kind"] == "send_notification"]
        assert all(e["status"] == "succeeded" and e["outcome"]["communication_id"] for e in sends)


async def test_execute_stage_action(session: AsyncSession, org: Organisation, templates: None,
                                    messaging_settings: Any) -> None:
    who = principal(org)
    journey = await _published(session, org, definition=new_patient_definition(trigger=False))
    with clock.frozen(T0) as c:
        patient = await patient_with_contacts(session, org, preferred_channel="sms")
        instance = await service.enrol_by_hand(session, who, journey.id, InstanceCreate(patient_id=patient.id))
        await jobs.run_due(session)
        c.advance(timedelta(hours=1))
        run = await service.execute_stage(session, who, instance.id)
        assert run.step_id == "send-welcome" and run.occurrence == 2 and run.status == "scheduled"
        await jobs.run_due(session)
        assert await _sent_templates(session, patient.id) == ["journey_welcome", "journey_welcome"]
        await session.refresh(run)
        assert run.status == "succeeded" and run.outcome["channel"] == "sms"
        # the same run executed again (a redelivered job) does nothing
        assert await service.run_step(session, org.id, run.id) == "not_scheduled"
        assert len(await _sent_templates(session, patient.id)) == 2


async def test_journey_not_found(session: AsyncSession, org: Organisation, other_org: Organisation,
                                 templates: None, messaging_settings: Any) -> None:
    who = principal(org)
    with pytest.raises(NotFound) as missing:
        await service.get(session, who, uuid.uuid4())
    assert missing.value.code == "journey_not_found"
    journey = await _published(session, org, definition=new_patient_definition(trigger=False))
    patient = await patient_with_contacts(session, org)
    instance = await service.enrol_by_hand(session, who, journey.id, InstanceCreate(patient_id=patient.id))
    theirs = principal(other_org)
    for call in (
        service.get(session, theirs, journey.id),
        service.publish(session, theirs, journey.id),
        service.get_instance(session, theirs, instance.id),
        service.advance(session, theirs, instance.id, "booking"),
        service.exit_instance(session, theirs, instance.id, "manual"),
    ):
        with pytest.raises(NotFound):
            await call


async def test_invalid_stage_transition(session: AsyncSession, org: Organisation, templates: None,
                                        messaging_settings: Any) -> None:
    who = principal(org)
    journey = await _published(session, org, definition=new_patient_definition(trigger=False))
    patient = await patient_with_contacts(session, org)
    instance = await service.enrol_by_hand(session, who, journey.id, InstanceCreate(patient_id=patient.id))
    with pytest.raises(Conflict) as wrong:
        await service.advance(session, who, instance.id, "completed")
    assert wrong.value.code == "invalid_stage_transition"
    assert wrong.value.extra["allowed_transitions"] == ["booking"]
    assert wrong.value.extra["stage_now"] == "welcome"
    await service.exit_instance(session, who, instance.id, "manual")
    with pytest.raises(Conflict) as gone:
        await service.advance(session, who, instance.id, "booking")
    assert gone.value.code == "instance_not_active"


# --- beyond the plan's list --------------------------------------------------------------------


async def test_publish_refuses_an_inconsistent_draft(session: AsyncSession, org: Organisation) -> None:
    who = principal(org)
    definition = new_patient_definition()
    definition["steps"].append({"id": "orphan", "kind": "end"})
    definition["stages"][0]["transitions"] = ["nowhere"]
    definition["steps"][0]["next"] = "missing-step"
    journey = await service.create(session, who, JourneyCreate.model_validate(journey_body(definition=definition)))
    with pytest.raises(ValidationFailed) as bad:
        await service.publish(session, who, journey.id)
    fields = {e["field"]: e["message"] for e in bad.value.errors or []}
    assert "definition.stages.0.transitions.0" in fields
    assert "definition.steps.0.next" in fields
    assert "not reachable" in fields["definition.steps.4"]
    # no templates in this organisation: the journey_* ones are missing
    assert "definition.steps.0.template_key" in fields and "definition.steps.2.template_key" in fields
    assert (await service.get(session, who, journey.id)).active_version is None


async def test_publishing_v2_leaves_v1_instances_on_v1(session: AsyncSession, org: Organisation,
                                                       templates: None, messaging_settings: Any) -> None:
    who = principal(org)
    journey = await _published(session, org, definition=new_patient_definition(trigger=False))
    with clock.frozen(T0) as c:
        first = await patient_with_contacts(session, org, preferred_channel="sms")
        old = await service.enrol_by_hand(session, who, journey.id, InstanceCreate(patient_id=first.id))
        await jobs.run_due(session)
        changed = new_patient_definition(trigger=False)
        changed["steps"][1]["template_key"] = "journey_feedback"  # the booking stage now says something else
        await service.update(session, who, journey.id, JourneyUpdate.model_validate({"definition": changed}))
        v2 = await service.publish(session, who, journey.id)
        assert v2.version == 2
        second = await patient_with_contacts(session, org, preferred_channel="sms")
        new = await service.enrol_by_hand(session, who, journey.id, InstanceCreate(patient_id=second.id))
        assert (old.version, new.version) == (1, 2)
        c.advance(timedelta(minutes=5))
        await service.advance(session, who, old.id, "booking")
        await service.advance(session, who, new.id, "booking")
        await jobs.run_due(session)
        assert (await _sent_templates(session, first.id))[-1] == "journey_book_invite"
        assert (await _sent_templates(session, second.id))[-1] == "journey_feedback"
        assert [v.version for v in await service.versions(session, who, journey.id)] == [1, 2]


async def test_exit_during_a_wait_cancels_it(session: AsyncSession, org: Organisation, templates: None,
                                             messaging_settings: Any) -> None:
    who = principal(org)
    definition = {
        "stages": [{"key": "nurture", "name": "Nurture", "entry": "wait"}],
        "steps": [{"id": "wait", "kind": "wait", "days": 2, "next": "nudge"},
                  {"id": "nudge", "kind": "send_notification", "template_key": "journey_book_invite"}],
        "exit_rules": [{"event": "appointment.booked", "reason": "booked"}],
    }
    journey = await _published(session, org, key="nurture", definition=definition)
    with clock.frozen(T0) as c:
        patient = await patient_with_contacts(session, org, preferred_channel="sms")
        instance = await service.enrol_by_hand(session, who, journey.id, InstanceCreate(patient_id=patient.id))
        [wait] = list(await session.scalars(select(JourneyStepRun).where(JourneyStepRun.instance_id == instance.id)))
        assert wait.status == "scheduled" and wait.due_at == T0 + timedelta(days=2) and wait.job_id
        c.advance(timedelta(days=1))
        await service.exit_instance(session, who, instance.id, "patient_request")
        job_status = await session.scalar(text("SELECT status FROM procrastinate_jobs WHERE id = :id"),
                                          {"id": wait.job_id})
        assert job_status == "cancelled"
        c.advance(timedelta(days=2))
        await jobs.run_due(session)
        await session.refresh(wait)
        assert wait.status == "cancelled" and wait.outcome["reason"] == "exited:patient_request"
        assert await _sent_templates(session, patient.id) == []
        exited = await session.get(JourneyInstance, instance.id)
        assert exited is not None and exited.status == "exited" and exited.exit_reason == "patient_request"


async def test_trigger_enrols_once_and_exit_rule_applies(session: AsyncSession, org: Organisation,
                                                         templates: None, messaging_settings: Any) -> None:
    await _published(session, org)
    with clock.frozen(T0):
        patient = await patient_with_contacts(session, org, preferred_channel="sms")
        await jobs.run_due(session)
        [instance] = list(await session.scalars(
            select(JourneyInstance).where(JourneyInstance.patient_id == patient.id)))
        assert instance.source_event_type == "patient.created" and instance.entry_key == "patient"
        assert await _sent_templates(session, patient.id) == ["journey_welcome"]
        # the same event handled again (a redelivery that slipped past the delivery record): no second one
        from prm.core import events

        event = await events.load(session, instance.source_event_id)  # type: ignore[arg-type]
        assert event is not None
        counts = await service.react(session, event)
        assert counts["enrolled"] == 0
