"""What sends a patient's chart to the EHR: booked or changed appointments, an updated or merged
patient, a submitted (then summarised) intake. Each queues a sync run per enabled connection
(coalescing with one already waiting); nothing is queued for an organisation without one."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import events
from prm.fhir import sync

PATIENT_TRIGGERS = (
    "appointment.booked",
    "appointment.rescheduled",
    "appointment.confirmed",
    "appointment.checked_in",
    "appointment.completed",
    "appointment.cancelled",
    "appointment.no_show",
    "patient.updated",
    "intake.submitted",  # the patient's answers, records ...
    "intake.summarised",  # ... and, once written, the summary
)


async def _sync_patient(session: AsyncSession, event: events.Event) -> None:
    patient_id = event.payload.get("patient_id")
    if patient_id:
        await sync.enqueue(session, event.org_id, uuid.UUID(str(patient_id)), event.type)


# No delivery job at all for an organisation without an enabled EHR connection (most events of most
# clinics): checked in the statement that publishes the event.
HAS_CONNECTION = "EXISTS (SELECT 1 FROM fhir_ehr_connections WHERE org_id = :org_id AND enabled)"

for _event_type in PATIENT_TRIGGERS:
    events.subscriber(_event_type, name=f"fhir.sync_on_{_event_type.replace('.', '_')}",
                      only_if=HAS_CONNECTION)(_sync_patient)


@events.subscriber("patient.merged", name="fhir.sync_on_patient_merged", only_if=HAS_CONNECTION)
async def sync_merged(session: AsyncSession, event: events.Event) -> None:
    """The survivor's chart (it now holds the duplicate's records), and the duplicate itself if the
    EHR has it (sent inactive with a `replaced-by` link to the survivor)."""
    for key in ("survivor_id", "duplicate_id"):
        if event.payload.get(key):
            await sync.enqueue(session, event.org_id, uuid.UUID(str(event.payload[key])), "patient.merged")


@events.subscriber(sync.SYNCED_EVENT, name="fhir.tell_practitioner")
async def tell_practitioner(session: AsyncSession, event: events.Event) -> None:
    """The plan's intake-to-EHR flow: when a submitted intake has reached the EHR, the practitioner of
    the patient's next appointment is told (a ticket assigned to their user, or auto-assigned when
    the practitioner has no user), with the EHR's id of the patient so they can open the chart."""
    if "intake.submitted" not in (event.payload.get("triggers") or []):
        return
    payload = event.payload
    await sync.tell_practitioner(session, event.org_id, uuid.UUID(str(payload["patient_id"])),
                                 uuid.UUID(str(payload["connection_id"])), uuid.UUID(str(payload["run_id"])))
