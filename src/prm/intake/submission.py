"""Submitting an intake: completeness, freeze, `intake.submitted`, the practitioner told, the summary queued.

Completeness: with a questionnaire, every required item of the session's version has an answer;
without one, at least a chief complaint. Missing items are a 422 naming each
(`records.<linkId>`), and nothing changes. A submitted session is frozen (records and session
fields answer 409). In the same transaction: the event `intake.submitted` (journeys and the EHR
hand-over react to it), a ticket for the assigned practitioner (their user; without one, the
intake queue's auto-assignment) and the summary job.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service as appointments
from prm.core import audit, clock, events, jobs
from prm.core.auth import Principal
from prm.core.errors import ValidationFailed
from prm.core.events import Event
from prm.intake import rules
from prm.intake.models import IntakeSession
from prm.intake.records import questionnaire_items
from prm.intake.sessions import bump, for_write, live_records
from prm.tickets import service as tickets
from prm.tickets.schemas import TicketCreate

log = structlog.get_logger(__name__)

SUMMARY_JOB = "intake.summarise"
TICKET_CATEGORY = "intake"


@dataclass(frozen=True)
class Submitted:
    session: IntakeSession
    ticket_id: uuid.UUID | None


async def missing(session: AsyncSession, row: IntakeSession) -> list[str]:
    """What keeps the session from being complete (linkIds, or `chief_complaint`)."""
    records = await live_records(session, row.org_id, row.id)
    items = await questionnaire_items(session, row)
    if items is None:
        return [] if any(r.type == "chief_complaint" for r in records) else ["chief_complaint"]
    answered = {str(r.data.get("link_id")) for r in records if r.type == "answer"}
    return rules.missing_required(items, answered)


async def _tell_practitioner(session: AsyncSession, who: Principal, row: IntakeSession) -> uuid.UUID | None:
    assignee = None
    name = None
    if row.assigned_practitioner_id is not None:
        practitioner = await appointments.get_practitioner(session, row.org_id, row.assigned_practitioner_id)
        assignee, name = practitioner.user_id, practitioner.name
    ticket = await tickets.create(session, Principal.system(row.org_id), TicketCreate(
        subject=f"Intake submitted ({row.source.replace('_', ' ')})" + (f" for {name}" if name else ""),
        description=f"Intake session {row.id} was submitted; its summary follows. Review it before the visit.",
        category=TICKET_CATEGORY, priority="normal", patient_id=row.patient_id, assignee_id=assignee,
        auto_assign=assignee is None, tags=["intake"],
    ), source="system")
    return ticket.id


async def submit(session: AsyncSession, who: Principal, session_id: uuid.UUID,
                 expected_version: int | None) -> Submitted:
    row = await for_write(session, who, session_id, expected_version)
    gaps = await missing(session, row)
    if gaps:
        raise ValidationFailed(
            "The intake is incomplete: " + ", ".join(gaps), code="intake_incomplete",
            errors=[{"field": f"records.{g}", "message": "required, not answered", "type": "intake_incomplete"}
                    for g in gaps],
        )
    records = await live_records(session, row.org_id, row.id)
    row.status = "submitted"
    row.submitted_at = clock.now()
    row.summary_status = "pending"
    bump(row)
    ticket_id = await _tell_practitioner(session, who, row)
    await jobs.defer(session, SUMMARY_JOB, org_id=str(row.org_id), session_id=str(row.id))
    counts: dict[str, int] = {}
    for r in records:
        counts[r.type] = counts.get(r.type, 0) + 1
    await events.publish(session, Event(type="intake.submitted", org_id=row.org_id, payload={
        "session_id": str(row.id), "org_id": str(row.org_id),
        "patient_id": str(row.patient_id) if row.patient_id else None,
        "source": row.source, "questionnaire_id": str(row.questionnaire_id) if row.questionnaire_id else None,
        "questionnaire_version": row.questionnaire_version, "record_counts": counts,
        "appointment_id": str(row.appointment_id) if row.appointment_id else None,
        "assigned_practitioner_id": str(row.assigned_practitioner_id) if row.assigned_practitioner_id else None,
        "ticket_id": str(ticket_id) if ticket_id else None,
    }))
    await audit.record(session, who, "submit", "intake_session", row.id, patient_id=row.patient_id,
                       details={"records": len(records)})
    log.info("intake.submitted", session_id=str(row.id), records=len(records))
    return Submitted(row, ticket_id)
