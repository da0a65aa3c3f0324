"""The patient record's own timeline entries: created, details updated, duplicates merged in,
consent changes. Other modules add theirs with `registry.timeline_source`."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core.audit import AuditEntry
from prm.patients.models import Consent, Patient
from prm.patients.registry import TimelineEntry, timeline_source


@timeline_source("patients")
async def patient_entries(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID,
                          before: datetime | None, limit: int) -> list[TimelineEntry]:
    """The record's own history: created, updated (from the audit log), merges, consent changes."""
    entries: list[TimelineEntry] = []
    patient = await session.get(Patient, patient_id)
    if patient is None or patient.org_id != org_id:
        return []
    if before is None or patient.created_at < before:
        entries.append(TimelineEntry(at=patient.created_at, kind="patient.created", source="patients",
                                     resource_id=str(patient.id),
                                     summary="Provisional patient created" if patient.is_provisional
                                     else "Patient created",
                                     data={"source": patient.source}))
    merged = select(Patient).where(Patient.org_id == org_id, Patient.merged_into_id == patient_id,
                                   Patient.merged_at.is_not(None))
    if before is not None:
        merged = merged.where(Patient.merged_at < before)
    for row in (await session.execute(merged.order_by(Patient.merged_at.desc()).limit(limit))).scalars():
        assert row.merged_at is not None
        entries.append(TimelineEntry(at=row.merged_at, kind="patient.merged", source="patients",
                                     resource_id=str(row.id), summary="A duplicate record was merged in",
                                     data={"duplicate_id": str(row.id)}))
    consents = select(Consent).where(Consent.org_id == org_id, Consent.patient_id == patient_id)
    if before is not None:
        consents = consents.where(Consent.recorded_at < before)
    for c in (await session.execute(consents.order_by(Consent.recorded_at.desc()).limit(limit))).scalars():
        what = f"{c.channel} {c.purpose}" if c.channel else c.purpose
        entries.append(TimelineEntry(at=c.recorded_at, kind="consent.changed", source="patients",
                                     resource_id=str(c.id),
                                     summary=f"Consent {'granted' if c.granted else 'withdrawn'}: {what}",
                                     data={"channel": c.channel, "purpose": c.purpose, "granted": c.granted,
                                           "source": c.source}))
    updates = select(AuditEntry).where(
        AuditEntry.org_id == org_id, AuditEntry.patient_id == patient_id,
        AuditEntry.resource_type == "patient", AuditEntry.action == "update")
    if before is not None:
        updates = updates.where(AuditEntry.at < before)
    for a in (await session.execute(updates.order_by(AuditEntry.at.desc()).limit(limit))).scalars():
        fields = list((a.details or {}).get("fields") or [])
        if fields:
            entries.append(TimelineEntry(at=a.at, kind="patient.updated", source="patients",
                                         resource_id=str(a.id),
                                         summary="Details updated: " + ", ".join(fields),
                                         data={"fields": fields}))
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:limit]
