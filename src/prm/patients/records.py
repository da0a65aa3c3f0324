"""Writing the patient record: create, update, delete; and the timeline merged from every module."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import audit, clock, events
from prm.core.auth import Principal
from prm.core.errors import ValidationFailed
from prm.core.events import Event
from prm.patients import names
from prm.patients.deduplication import Candidate, _facts, find_duplicates
from prm.patients.models import (
    Patient,
    PatientEmail,
    PatientIdentifier,
    PatientPhone,
)
from prm.patients.reads import _require_readable, get
from prm.patients.registry import TimelineEntry, timeline_sources
from prm.patients.schemas import (
    PatientCreate,
    PatientUpdate,
)
from prm.patients.validation import (
    _check_birth_date,
    _check_identifiers_free,
    _check_timezone,
    _clean_tags,
    _email_rows,
    _flush,
    _identifier_rows,
    _merged_conflict,
    _normalise_language,
    _phone_region,
    _phone_rows,
    _sync_primaries,
)


async def create(session: AsyncSession, who: Principal, data: PatientCreate, *, source: str = "api",
                 threshold: float | None = None) -> tuple[Patient, list[Candidate]]:
    """Create a patient; return it with the existing patients that look like duplicates of it."""
    org_id = who.org_id
    _check_birth_date(data.birth_date)
    _check_birth_date(data.deceased_date, "deceased_date")
    phone_rows = _phone_rows(data.phones, await _phone_region(session, org_id))
    email_rows = _email_rows(data.emails)
    identifier_rows = _identifier_rows(data.identifiers)
    await _check_identifiers_free(session, org_id, identifier_rows)

    patient = Patient(
        org_id=org_id,
        given_name=names.tidy(data.given_name),
        family_name=names.tidy(data.family_name),
        birth_date=data.birth_date,
        gender=data.gender,
        preferred_language=_normalise_language(data.preferred_language),
        preferred_channel=data.preferred_channel,
        timezone=_check_timezone(data.timezone),
        address=data.address.model_dump(exclude_none=True) if data.address else None,
        tags=_clean_tags(data.tags),
        status=data.status,
        deceased_date=data.deceased_date,
        is_provisional=False,
        source=source,
    )
    patient.phones = [PatientPhone(org_id=org_id, number=n, kind=k, is_primary=p) for n, k, p in phone_rows]
    patient.emails = [PatientEmail(org_id=org_id, email=e, kind=k, is_primary=p) for e, k, p in email_rows]
    patient.identifiers = [PatientIdentifier(org_id=org_id, system=s, value=v, label=lb)
                           for s, v, lb in identifier_rows]
    _sync_primaries(patient)

    candidates = await find_duplicates(session, org_id, _facts(patient), threshold=threshold)
    session.add(patient)
    await _flush(session)
    await audit.record(session, who, "create", "patient", patient.id, patient_id=patient.id,
                       details={"possible_duplicates": [str(c.patient.id) for c in candidates]})
    await events.publish(session, Event(type="patient.created", org_id=org_id,
                                        payload={"patient_id": str(patient.id), "provisional": False,
                                                 "source": source}))
    return patient, candidates


async def update(session: AsyncSession, who: Principal, patient_id: uuid.UUID,
                 data: PatientUpdate) -> Patient:
    """Partial update: only the fields present in `data` change (lists are replaced whole)."""
    org_id = who.org_id
    patient = await get(session, org_id, patient_id, with_contacts=True, for_update=True)
    if patient.merged_into_id is not None:
        raise _merged_conflict(patient)
    sent = data.model_fields_set
    for name in ("given_name", "family_name", "gender", "status"):
        if name in sent and getattr(data, name) is None:
            raise ValidationFailed.field(name, "must not be null")
    changed: list[str] = []

    def put(name: str, value: Any) -> None:
        if getattr(patient, name) != value:
            setattr(patient, name, value)
            changed.append(name)

    if "given_name" in sent:
        put("given_name", names.tidy(data.given_name))
    if "family_name" in sent:
        put("family_name", names.tidy(data.family_name))
    if "birth_date" in sent:
        _check_birth_date(data.birth_date)
        put("birth_date", data.birth_date)
    if "deceased_date" in sent:
        _check_birth_date(data.deceased_date, "deceased_date")
        put("deceased_date", data.deceased_date)
    if "gender" in sent:
        put("gender", data.gender)
    if "status" in sent:
        put("status", data.status)
    if "preferred_language" in sent:
        put("preferred_language", _normalise_language(data.preferred_language or "en"))
    if "preferred_channel" in sent:
        put("preferred_channel", data.preferred_channel)
    if "timezone" in sent:
        put("timezone", _check_timezone(data.timezone))
    if "address" in sent:
        put("address", data.address.model_dump(exclude_none=True) if data.address else None)
    if "tags" in sent:
        put("tags", _clean_tags(data.tags or []))
    if "phones" in sent:
        rows = _phone_rows(data.phones or [], await _phone_region(session, org_id))
        if [(p.number, p.kind, p.is_primary) for p in patient.phones] != rows:
            existing = {p.number: p for p in patient.phones}
            kept = []
            for number, kind, primary in rows:
                row = existing.get(number) or PatientPhone(org_id=org_id, number=number)
                row.kind, row.is_primary = kind, False
                kept.append((row, primary))
            await _replace_children(session, patient, "phones", kept)
            changed.append("phones")
    if "emails" in sent:
        rows_e = _email_rows(data.emails or [])
        if [(e.email, e.kind, e.is_primary) for e in patient.emails] != rows_e:
            existing_e = {e.email.lower(): e for e in patient.emails}
            kept_e = []
            for email, kind, primary in rows_e:
                row_e = existing_e.get(email.lower()) or PatientEmail(org_id=org_id, email=email)
                row_e.email, row_e.kind, row_e.is_primary = email, kind, False
                kept_e.append((row_e, primary))
            await _replace_children(session, patient, "emails", kept_e)
            changed.append("emails")
    if "identifiers" in sent:
        rows_i = _identifier_rows(data.identifiers or [])
        if {(i.system, i.value, i.label) for i in patient.identifiers} != set(rows_i):
            await _check_identifiers_free(session, org_id, rows_i, patient.id)
            existing_i = {(i.system, i.value): i for i in patient.identifiers}
            new_ids = []
            for system, value, label in rows_i:
                row_i = existing_i.get((system, value)) or PatientIdentifier(org_id=org_id, system=system,
                                                                              value=value)
                row_i.label = label
                new_ids.append(row_i)
            patient.identifiers = new_ids
            changed.append("identifiers")
    if "is_provisional" in sent and data.is_provisional is not None:
        put("is_provisional", data.is_provisional)
    elif patient.is_provisional and ({"given_name", "family_name"} & set(changed)):
        put("is_provisional", False)  # a provisional record that now has a name is a real patient

    _sync_primaries(patient)
    if changed:
        patient.updated_at = clock.now()
        await _flush(session)
        await events.publish(session, Event(type="patient.updated", org_id=org_id,
                                            payload={"patient_id": str(patient.id), "fields": changed}))
    await audit.record(session, who, "update", "patient", patient.id, patient_id=patient.id,
                       details={"fields": changed})
    return patient


async def _replace_children(session: AsyncSession, patient: Patient, attr: str,
                            rows: list[tuple[Any, bool]]) -> None:
    """Replace a phones/emails collection, clearing the old primary first (partial unique index)."""
    setattr(patient, attr, [row for row, _ in rows])
    await _flush(session)
    for row, primary in rows:
        row.is_primary = primary


async def delete_patient(session: AsyncSession, who: Principal, patient_id: uuid.UUID) -> None:
    """Soft delete: the row stays (other modules' references stay valid) but reads say 404; its
    identifiers are released."""
    patient = await get(session, who.org_id, patient_id, for_update=True)
    if patient.merged_into_id is not None:
        raise _merged_conflict(patient)
    patient.deleted_at = clock.now()
    # Identifiers are unique per organisation and system: release them so they can be registered again.
    released = await session.execute(delete(PatientIdentifier).where(
        PatientIdentifier.org_id == who.org_id, PatientIdentifier.patient_id == patient.id))
    await session.flush()
    await audit.record(session, who, "delete", "patient", patient.id, patient_id=patient.id,
                       details={"identifiers_released": int(getattr(released, "rowcount", 0) or 0)})
    await events.publish(session, Event(type="patient.deleted", org_id=who.org_id,
                                        payload={"patient_id": str(patient.id)}))


# --- timeline ----------------------------------------------------------------------------------------


async def timeline(session: AsyncSession, who: Principal, patient_id: uuid.UUID, *,
                   before: datetime | None = None, limit: int = 50) -> list[TimelineEntry]:
    """Newest first, strictly older than `before`: every module's entries for the patient, merged."""
    patient = await _require_readable(session, who, patient_id)
    entries: list[TimelineEntry] = []
    for _, source in sorted(timeline_sources().items()):
        entries.extend(await source(session, who.org_id, patient.id, before, limit))
    entries.sort(key=lambda e: (e.at, e.source, e.resource_id), reverse=True)
    await audit.record(session, who, "read", "patient_timeline", patient.id, patient_id=patient.id)
    return entries[:limit]
