"""Triggers (conditions, entry policies, duplicate and concurrent deliveries), waits across DST,
waiting for an event with a timeout, branches and tickets."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications.models import Communication
from prm.core import clock, events, jobs
from prm.core.events import Event
from prm.identity.models import Organisation
from prm.journeys import service
from prm.journeys.models import JourneyInstance, JourneyStepRun
from prm.journeys.schemas import InstanceCreate, JourneyCreate
from prm.tickets.models import Ticket
from tests.fixtures.factories import make_patient, principal
from tests.fixtures.messaging import patient_with_contacts
from tests.integration.journeys.conftest import add_templates


async def _journey(session: AsyncSession, org: Organisation, key: str, definition: dict[str, Any],
                   **fields: Any) -> Any:
    who = principal(org)
    journey = await service.create(session, who, JourneyCreate.model_validate(
        {"key": key, "name": key, "definition": definition, **fields}))
    await service.publish(session, who, journey.id)
    return journey


async def _instances(session: AsyncSession, journey_id: uuid.UUID) -> list[JourneyInstance]:
    return list(await session.scalars(select(JourneyInstance).where(JourneyInstance.journey_id == journey_id)))


async def _sent_at(session: AsyncSession, patient_id: uuid.UUID) -> list[tuple[str | None, datetime]]:
    rows = await session.execute(
        select(Communication.template_key, Communication.created_at)
        .where(Communication.patient_id == patient_id, Communication.direction == "outbound")
        .order_by(Communication.created_at)
    )
    return [(k, at) for k, at in rows.all()]


ONLY_STAGE = [{"key": "in", "name": "In"}]  # no actions, final: entering completes the instance


async def test_trigger_delivered_twice_and_raced_by_20_deliveries_enrols_once(committed: Any) -> None:
    org, _ = await committed.org()
    async with committed.session() as s:
        once = await _journey(s, org, "once", {"triggers": [{"event": "patient.created"}], "stages": ONLY_STAGE})
        every = await _journey(s, org, "every", {"triggers": [{"event": "patient.created"}], "stages": ONLY_STAGE},
                               entry_policy="every_time")
        patient = await make_patient(s, org)
        await s.commit()
    event = Event(type="patient.created", org_id=org.id, payload={"patient_id": str(patient.id)})  # type: ignore[attr-defined]
    async with committed.session() as s:
        await events.publish(s, event)
        await s.commit()

    async def deliver() -> None:
        async with committed.session() as s:
            await service.react(s, event)
            await s.commit()

    await asyncio.gather(*(deliver() for _ in range(20)))
    await deliver()  # and once more, after the race
    # the queued deliveries run too (the event's own jobs, plus the patient's first event)
    await committed.run_worker()
    async with committed.session() as s:
        assert len(await _instances(s, once.id)) == 1
        # every_time: one per source event (the factory's patient.created and ours), never more
        every_rows = await _instances(s, every.id)
        assert sorted(i.entry_key for i in every_rows).count(f"event:{event.id}") == 1
        assert len(every_rows) == 2
        # a new, distinct event enrols again for every_time, never for once-per-patient
        second = Event(type="patient.created", org_id=org.id, payload={"patient_id": str(patient.id)})  # type: ignore[attr-defined]
        await service.react(s, second)
        await s.commit()
        assert len(await _instances(s, once.id)) == 1
        assert len(await _instances(s, every.id)) == 3


async def test_trigger_conditions_and_once_per_key(session: AsyncSession, org: Organisation) -> None:
    definition = {"triggers": [{"event": "appointment.cancelled",
                                "conditions": [{"field": "event.reason", "op": "ne", "value": "duplicate"},
                                               {"field": "patient.tags", "op": "contains", "value": "vip"}]}],
                  "stages": ONLY_STAGE}
    journey = await _journey(session, org, "win-back", definition, entry_policy="once_per_key",
                             entry_key_field="event.appointment_id")
    vip = await make_patient(session, org, tags=["vip"])
    plain = await make_patient(session, org)
    appointment_a, appointment_b = str(uuid.uuid4()), str(uuid.uuid4())

    def cancelled(patient: Any, appointment: str, reason: str = "ill") -> Event:
        return Event(type="appointment.cancelled", org_id=org.id,
                     payload={"patient_id": str(patient.id), "appointment_id": appointment, "reason": reason})

    assert (await service.react(session, cancelled(plain, appointment_a)))["enrolled"] == 0  # not a VIP
    assert (await service.react(session, cancelled(vip, appointment_a, "duplicate")))["enrolled"] == 0
    assert (await service.react(session, cancelled(vip, appointment_a)))["enrolled"] == 1
    assert (await service.react(session, cancelled(vip, appointment_a)))["enrolled"] == 0  # same key, new event
    assert (await service.react(session, cancelled(vip, appointment_b)))["enrolled"] == 1
    keys = sorted(i.entry_key for i in await _instances(session, journey.id))
    assert keys == sorted([f"key:{appointment_a}", f"key:{appointment_b}"])


async def test_a_wait_across_both_dst_changes_fires_at_the_local_time(
    session: AsyncSession, org: Organisation, messaging_settings: Any
) -> None:
    await add_templates(session, org)
    definition = {
        "stages": [{"key": "care", "name": "Care", "entry": "first-wait"}],
        "steps": [
            {"id": "first-wait", "kind": "wait", "days": 1, "next": "spring"},
            {"id": "spring", "kind": "send_notification", "template_key": "journey_welcome", "next": "long-wait"},
            {"id": "long-wait", "kind": "wait", "days": 210, "next": "autumn"},
            {"id": "autumn", "kind": "send_notification", "template_key": "journey_feedback"},
        ],
    }
    journey = await _journey(session, org, "seasons", definition)
    start = datetime(2026, 3, 28, 9, 0, tzinfo=UTC)  # Saturday 10:00 in Madrid (CET)
    with clock.frozen(start) as c:
        patient = await patient_with_contacts(session, org, preferred_channel="sms", timezone="Europe/Madrid")
        await service.enrol_by_hand(session, principal(org), journey.id, InstanceCreate(patient_id=patient.id))
        # Sunday 29 March is 23 hours long: 10:00 CEST is 08:00 UTC, not 09:00
        c.set(datetime(2026, 3, 29, 7, 59, tzinfo=UTC))
        await jobs.run_due(session)
        assert await _sent_at(session, patient.id) == []
        c.set(datetime(2026, 3, 29, 8, 0, tzinfo=UTC))
        await jobs.run_due(session)
        assert [k for k, _ in await _sent_at(session, patient.id)] == ["journey_welcome"]
        # 210 days later is Sunday 25 October, 25 hours long: 10:00 CET is 09:00 UTC (a naive
        # 210 × 24 h would have fired at 08:00 UTC, 09:00 local)
        c.set(datetime(2026, 10, 25, 8, 0, tzinfo=UTC))
        await jobs.run_due(session)
        assert len(await _sent_at(session, patient.id)) == 1
        c.set(datetime(2026, 10, 25, 9, 0, tzinfo=UTC))
        await jobs.run_due(session)
        sent = await _sent_at(session, patient.id)
        assert [k for k, _ in sent] == ["journey_welcome", "journey_feedback"]
        assert sent[1][1].astimezone(__import__("zoneinfo").ZoneInfo("Europe/Madrid")).hour == 10


async def test_wait_for_event_resumes_on_the_event_or_times_out_into_a_ticket(
    session: AsyncSession, org: Organisation, messaging_settings: Any
) -> None:
    await add_templates(session, org)
    definition = {
        "stages": [{"key": "survey", "name": "Survey", "entry": "ask"}],
        "steps": [
            {"id": "ask", "kind": "send_notification", "template_key": "journey_feedback", "next": "await-reply"},
            {"id": "await-reply", "kind": "wait_for_event", "event": "message.received", "timeout_days": 2,
             "conditions": [{"field": "event.channel", "op": "eq", "value": "sms"}],
             "next": "vip-or-not", "on_timeout": "chase"},
            {"id": "vip-or-not", "kind": "branch",
             "branches": [{"conditions": [{"field": "patient.tags", "op": "contains", "value": "vip"}],
                           "next": "vip-call"}]},
            {"id": "vip-call", "kind": "create_ticket", "subject": "Call back a VIP who answered the survey",
             "priority": "high"},
            {"id": "chase", "kind": "create_ticket", "subject": "No answer to the survey"},
        ],
    }
    journey = await _journey(session, org, "survey", definition)
    who = principal(org)
    t0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    with clock.frozen(t0) as c:
        answering = await patient_with_contacts(session, org, preferred_channel="sms", tags=["vip"])
        silent = await patient_with_contacts(session, org, preferred_channel="sms")
        a = await service.enrol_by_hand(session, who, journey.id, InstanceCreate(patient_id=answering.id))
        b = await service.enrol_by_hand(session, who, journey.id, InstanceCreate(patient_id=silent.id))
        await jobs.run_due(session)
        assert a.waiting_for and a.waiting_for["event"] == "message.received"
        c.advance(timedelta(hours=3))
        # a WhatsApp reply does not match the condition; an SMS one does
        payload = {"patient_id": str(answering.id), "communication_id": str(uuid.uuid4())}
        assert (await service.react(session, Event(type="message.received", org_id=org.id,
                                                   payload={**payload, "channel": "whatsapp"})))["resumed"] == 0
        assert (await service.react(session, Event(type="message.received", org_id=org.id,
                                                   payload={**payload, "channel": "sms"})))["resumed"] == 1
        await jobs.run_due(session)
        c.advance(timedelta(days=2))
        await jobs.run_due(session)
        tickets = {t.patient_id: t for t in await session.scalars(select(Ticket).where(Ticket.org_id == org.id))}
        assert tickets[answering.id].subject.startswith("Call back a VIP") and tickets[answering.id].priority == "high"
        assert tickets[silent.id].subject == "No answer to the survey"
        for instance in (a, b):
            await session.refresh(instance)
            assert instance.status == "completed" and instance.waiting_for is None
        timed_out = await session.scalar(select(JourneyStepRun).where(
            JourneyStepRun.instance_id == a.id, JourneyStepRun.step_id == "await-reply"))
        assert timed_out is not None and timed_out.status == "succeeded" and "event_id" in timed_out.outcome
        # the resumed wait's timeout job was cancelled: no second pass through the branch
        assert await session.scalar(select(func.count()).select_from(JourneyStepRun).where(
            JourneyStepRun.instance_id == a.id, JourneyStepRun.step_id == "vip-or-not")) == 1
        _, entries = await service.timeline(session, who, a.id)
        assert any(e["outcome"].get("ticket_id") == str(tickets[answering.id].id) for e in entries)


async def test_a_booking_advances_the_active_journey_and_an_exit_rule_ends_another(
    session: AsyncSession, org: Organisation, messaging_settings: Any
) -> None:
    await add_templates(session, org)
    booking = {
        "stages": [
            {"key": "booking", "name": "Booking", "transitions": ["booked"],
             "advance_on": [{"event": "appointment.booked", "to": "booked"}]},
            {"key": "booked", "name": "Booked"},
        ],
    }
    nurture = {
        "exit_rules": [{"event": "appointment.booked", "reason": "booked"}],
        "stages": [{"key": "nurture", "name": "Nurture", "entry": "pause"}],
        "steps": [{"id": "pause", "kind": "wait", "days": 3, "next": "nudge"},
                  {"id": "nudge", "kind": "send_notification", "template_key": "journey_book_invite"}],
    }
    who = principal(org)
    j1 = await _journey(session, org, "booking", booking)
    j2 = await _journey(session, org, "nurture", nurture)
    patient = await patient_with_contacts(session, org)
    first = await service.enrol_by_hand(session, who, j1.id, InstanceCreate(patient_id=patient.id))
    second = await service.enrol_by_hand(session, who, j2.id, InstanceCreate(patient_id=patient.id))
    counts = await service.react(session, Event(type="appointment.booked", org_id=org.id, payload={
        "patient_id": str(patient.id), "appointment_id": str(uuid.uuid4()), "timezone": "Europe/Madrid"}))
    assert counts == {"exited": 1, "advanced": 1, "resumed": 0, "enrolled": 0}
    await session.refresh(first)
    await session.refresh(second)
    assert first.status == "completed" and first.current_stage == "booked"
    assert second.status == "exited" and second.exit_reason == "booked"
    pause = await session.scalar(select(JourneyStepRun).where(JourneyStepRun.instance_id == second.id))
    assert pause is not None and pause.status == "cancelled"
