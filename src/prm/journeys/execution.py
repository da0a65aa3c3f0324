"""Running an instance: scheduling step runs, executing them in jobs, moving between stages.

Every step run is a row, unique per (instance, step, occurrence), and a `journeys.run_step` job
deferred in the same transaction (with `schedule_at` for a wait). The job locks its run and its
instance and re-checks both: a run already done, or an instance no longer active, does nothing.
Leaving a stage or the journey cancels the runs still waiting (their jobs too).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import clock, events, jobs
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound, ValidationFailed
from prm.core.events import Event
from prm.journeys import effects, steps, waits
from prm.journeys.definitions import definition_of
from prm.journeys.models import JourneyInstance, JourneyStageChange, JourneyStepRun

log = structlog.get_logger(__name__)

RUN_STEP_JOB = "journeys.run_step"


async def zone_for(session: AsyncSession, who: Principal, instance: JourneyInstance) -> Any:
    """The instance's local zone: patient → clinic (location of the triggering appointment) → organisation."""
    patient_zone = None
    try:
        patient_zone = (await effects.patient(session, who, instance.patient_id)).timezone
    except NotFound:
        pass
    clinic_zone = (instance.context or {}).get("clinic_timezone")
    return waits.resolve_zone(patient_zone, clinic_zone, await effects.organisation_zone(session, who))


async def _due_at(
    session: AsyncSession, who: Principal, instance: JourneyInstance, step: Any, now: datetime
) -> datetime:
    if isinstance(step, steps.Wait):
        zone = await zone_for(session, who, instance)
        return waits.after(now, zone, days=step.days, hours=step.hours, minutes=step.minutes)
    if isinstance(step, steps.WaitUntil):
        zone = await zone_for(session, who, instance)
        return waits.next_local_time(now, zone, step.at, step.weekdays)
    if isinstance(step, steps.WaitForEvent):
        zone = await zone_for(session, who, instance)
        return waits.after(now, zone, days=step.timeout_days, hours=step.timeout_hours, minutes=step.timeout_minutes)
    return now


async def schedule(
    session: AsyncSession, who: Principal, instance: JourneyInstance, definition: steps.Definition, step_id: str
) -> JourneyStepRun | None:
    """Create the next run of `step_id` and defer its job (at its due time). The caller holds the
    instance's row lock, so occurrences are numbered without gaps or races."""
    step = definition.step(step_id)
    now = clock.now()
    due = await _due_at(session, who, instance, step, now)
    occurrence = int(
        await session.scalar(
            select(func.coalesce(func.max(JourneyStepRun.occurrence), 0)).where(
                JourneyStepRun.instance_id == instance.id, JourneyStepRun.step_id == step_id
            )
        )
        or 0
    ) + 1
    run_id = await session.scalar(
        insert(JourneyStepRun)
        .values(
            id=uuid.uuid4(),
            org_id=instance.org_id,
            instance_id=instance.id,
            stage=instance.current_stage,
            step_id=step_id,
            kind=step.kind,
            occurrence=occurrence,
            status="scheduled",
            due_at=due,
            outcome={},
            created_at=now,
        )
        .on_conflict_do_nothing(constraint="uq_journey_step_runs_occurrence")
        .returning(JourneyStepRun.id)
    )
    if run_id is None:
        return None
    job_id = await jobs.defer(
        session, RUN_STEP_JOB, org_id=str(instance.org_id), run_id=str(run_id),
        schedule_at=due if due > now else None,
    )
    await session.execute(update(JourneyStepRun).where(JourneyStepRun.id == run_id).values(job_id=job_id))
    if isinstance(step, steps.WaitForEvent):
        instance.waiting_for = {
            "run_id": str(run_id),
            "step_id": step.id,
            "event": step.event,
            "conditions": [c.model_dump(mode="json") for c in step.conditions],
            "timeout_at": due.isoformat(),
        }
    return await session.get(JourneyStepRun, run_id)


async def cancel_pending(session: AsyncSession, instance: JourneyInstance, *, reason: str) -> int:
    """Cancel every run of the instance still waiting, and its job."""
    runs = list(
        await session.scalars(
            select(JourneyStepRun)
            .where(JourneyStepRun.instance_id == instance.id, JourneyStepRun.status == "scheduled")
            .with_for_update()
        )
    )
    for run in runs:
        if run.job_id is not None:
            await jobs.cancel_pending(session, run.job_id)
        run.status = "cancelled"
        run.finished_at = clock.now()
        run.outcome = {**(run.outcome or {}), "reason": reason}
    instance.waiting_for = None
    return len(runs)


async def _publish(session: AsyncSession, instance: JourneyInstance, kind: str, **extra: Any) -> None:
    await events.publish(
        session,
        Event(
            type=f"journey.{kind}",
            org_id=instance.org_id,
            payload={
                "instance_id": str(instance.id),
                "journey_id": str(instance.journey_id),
                "version": instance.version,
                "patient_id": str(instance.patient_id),
                "stage": instance.current_stage,
                **extra,
            },
        ),
    )


async def complete(session: AsyncSession, instance: JourneyInstance) -> None:
    await cancel_pending(session, instance, reason="completed")
    instance.status = "completed"
    instance.completed_at = clock.now()
    await session.flush()
    await _publish(session, instance, "completed")


async def leave(session: AsyncSession, instance: JourneyInstance, *, reason: str) -> None:
    """Exit the journey: pending waits are cancelled, nothing more runs."""
    await cancel_pending(session, instance, reason=f"exited:{reason}")
    instance.status = "exited"
    instance.exited_at = clock.now()
    instance.exit_reason = reason[:64]
    await session.flush()
    await _publish(session, instance, "exited", reason=reason)


async def enter_stage(
    session: AsyncSession,
    who: Principal,
    instance: JourneyInstance,
    definition: steps.Definition,
    to: str,
    *,
    cause: str,
    event: Event | None = None,
) -> None:
    """Move the instance to stage `to` and start its actions (or complete it: a final stage
    without actions)."""
    stage = definition.stage(to)
    previous = instance.current_stage
    await cancel_pending(session, instance, reason="stage_left")
    instance.current_stage = stage.key
    session.add(
        JourneyStageChange(
            id=uuid.uuid4(),
            org_id=instance.org_id,
            instance_id=instance.id,
            from_stage=previous,
            to_stage=stage.key,
            cause=cause,
            event_id=event.id if event else None,
            event_type=event.type if event else None,
            actor=who.credential,
            at=clock.now(),
        )
    )
    await session.flush()
    await _publish(session, instance, "stage_changed", from_stage=previous, cause=cause)
    if stage.entry:
        await schedule(session, who, instance, definition, stage.entry)
    elif not stage.transitions:
        await complete(session, instance)


async def _chain_ends(session: AsyncSession, instance: JourneyInstance, definition: steps.Definition) -> None:
    """The stage's actions are done: a final stage completes the journey, any other one rests."""
    if instance.current_stage is None:
        await complete(session, instance)
        return
    stage = definition.stage(instance.current_stage)
    if not stage.transitions:
        await complete(session, instance)


async def proceed(
    session: AsyncSession, who: Principal, instance: JourneyInstance, definition: steps.Definition, nxt: str | None
) -> None:
    if instance.status != "active":
        return
    if nxt:
        await schedule(session, who, instance, definition, nxt)
    else:
        await _chain_ends(session, instance, definition)


async def facts(session: AsyncSession, who: Principal, instance: JourneyInstance,
                event_payload: dict[str, Any] | None = None) -> dict[str, Any]:
    context = instance.context or {}
    patient_facts: dict[str, Any] = {}
    try:
        patient_facts = effects.patient_facts(await effects.patient(session, who, instance.patient_id))
    except NotFound:
        pass
    return {
        "event": event_payload if event_payload is not None else context.get("event", {}),
        "patient": patient_facts,
        "context": context.get("values", {}),
    }


def event_variables(instance: JourneyInstance) -> dict[str, Any]:
    """Template variables from the latest event that moved the instance (or the one that started it):
    its plain text and number fields, e.g. service_name, practitioner_name, location_name, local_start."""
    context = instance.context or {}
    payload = context.get("last_event") or context.get("event") or {}
    return {k: v for k, v in payload.items() if isinstance(v, str | int | float) and not isinstance(v, bool)}


async def _lock(session: AsyncSession, model: Any, row_id: uuid.UUID, org_id: uuid.UUID) -> Any:
    return await session.scalar(
        select(model)
        .where(model.id == row_id, model.org_id == org_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def run_step(session: AsyncSession, org_id: uuid.UUID, run_id: uuid.UUID) -> str:
    """Execute one step run (the job's body); returns what happened."""
    run: JourneyStepRun | None = await _lock(session, JourneyStepRun, run_id, org_id)
    if run is None or run.status != "scheduled":
        return "not_scheduled"
    instance: JourneyInstance | None = await _lock(session, JourneyInstance, run.instance_id, org_id)
    now = clock.now()
    if instance is None or instance.status != "active":
        run.status = "cancelled"
        run.finished_at = now
        run.outcome = {"reason": f"instance_{instance.status if instance else 'missing'}"}
        return "cancelled"
    who = Principal.system(org_id)
    definition = await definition_of(session, instance.version_id)
    step = definition.step(run.step_id)
    run.finished_at = now
    run.status = "succeeded"
    nxt: str | None = None
    if isinstance(step, steps.SendNotification):
        try:
            async with session.begin_nested():
                comm = await effects.send_notification(
                    session, who, patient_id=instance.patient_id, template_key=step.template_key,
                    channel=step.channel, purpose=step.purpose,
                    variables={**event_variables(instance), **step.variables},
                    idempotency_key=f"journey-run:{run.id}",
                )
            run.outcome = {"communication_id": str(comm.id), "channel": comm.channel}
        except (Conflict, ValidationFailed, NotFound) as exc:
            # the patient cannot be reached (consent, window, address): recorded, the journey goes on
            run.status = "skipped"
            run.outcome = {"reason": exc.code}
            log.info("journeys.message_skipped", run_id=str(run.id), code=exc.code)
        nxt = step.next
    elif isinstance(step, steps.CreateTicket):
        ticket = await effects.create_ticket(
            session, who, patient_id=instance.patient_id, subject=step.subject, description=step.description,
            category=step.category, priority=step.priority, tags=["journey"],
        )
        run.outcome = {"ticket_id": str(ticket.id)}
        nxt = step.next
    elif isinstance(step, steps.Wait | steps.WaitUntil):
        run.outcome = {"waited_until": run.due_at.isoformat()}
        nxt = step.next
    elif isinstance(step, steps.WaitForEvent):
        instance.waiting_for = None
        run.outcome = {"timed_out": True}
        nxt = step.on_timeout
    elif isinstance(step, steps.BranchStep):
        known = await facts(session, who, instance)
        chosen = next((i for i, b in enumerate(step.branches) if steps.all_hold(b.conditions, known)), None)
        run.outcome = {"branch": chosen if chosen is not None else "default"}
        nxt = step.branches[chosen].next if chosen is not None else step.default
    elif isinstance(step, steps.AdvanceStage):
        run.outcome = {"to_stage": step.to}
        await session.flush()
        await enter_stage(session, who, instance, definition, step.to, cause="step")
        return run.status
    elif isinstance(step, steps.End):
        run.outcome = {"outcome": step.outcome}
        await session.flush()
        if step.outcome == "exited":
            await leave(session, instance, reason="end_step")
        else:
            await complete(session, instance)
        return run.status
    await session.flush()
    await proceed(session, who, instance, definition, nxt)
    return run.status


async def resume_wait(
    session: AsyncSession, who: Principal, instance: JourneyInstance, definition: steps.Definition, event: Event
) -> bool:
    """The awaited event arrived: the waiting run succeeds (its timeout job is cancelled) and the
    step's `next` follows. False when the wait was already over."""
    waiting = instance.waiting_for or {}
    run: JourneyStepRun | None = await _lock(session, JourneyStepRun, uuid.UUID(waiting["run_id"]), instance.org_id)
    instance.waiting_for = None
    if run is None or run.status != "scheduled":
        return False
    if run.job_id is not None:
        await jobs.cancel_pending(session, run.job_id)
    run.status = "succeeded"
    run.finished_at = clock.now()
    run.outcome = {"event_id": str(event.id), "event_type": event.type}
    await session.flush()
    step = definition.step(run.step_id)
    await proceed(session, who, instance, definition, step.next)
    return True
