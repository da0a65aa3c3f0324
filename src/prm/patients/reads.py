"""Reading the patient record: get, resolve (follow merges), find by phone, provisional patients, the audited read."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from prm.core import audit, events, references
from prm.core.auth import Principal
from prm.core.errors import Conflict
from prm.core.events import Event
from prm.patients import phones
from prm.patients.models import (
    CHANNELS,
    Patient,
    PatientPhone,
)
from prm.patients.validation import MAX_MERGE_CHAIN, PatientMoved, _flush, _not_found, _phone_region, normalise_phone

# --- reads -------------------------------------------------------------------------------------------


# Any patient of the organisation (merged and deleted ones too: their history stays queryable).
references.resolver("patient")(references.in_organisation(Patient))


def _live(org_id: uuid.UUID | ColumnElement[Any]) -> Select[Any]:
    return select(Patient).where(Patient.org_id == org_id, Patient.deleted_at.is_(None))


def _with_contacts(stmt: Select[Any]) -> Select[Any]:
    return stmt.options(selectinload(Patient.phones), selectinload(Patient.emails),
                        selectinload(Patient.identifiers))


# The lookup (every job about a patient makes it), built once: a call only binds its values
_GET = _live(bindparam("org_id")).where(Patient.id == bindparam("patient_id"))


async def get(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, *,
              with_contacts: bool = False, for_update: bool = False) -> Patient:
    """The patient (merged ones included); NotFound when unknown, another org's, or deleted."""
    stmt = _GET
    if with_contacts:
        stmt = _with_contacts(stmt)
    if for_update:
        stmt = stmt.with_for_update()
    patient = (await session.execute(stmt, {"org_id": org_id, "patient_id": patient_id})).scalar_one_or_none()
    if patient is None:
        raise _not_found(patient_id)
    return patient


async def resolve(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, *,
                  with_contacts: bool = False) -> Patient:
    """The patient, or the survivor it was (transitively) merged into."""
    patient = await get(session, org_id, patient_id, with_contacts=with_contacts)
    for _ in range(MAX_MERGE_CHAIN):
        if patient.merged_into_id is None:
            return patient
        patient = await get(session, org_id, patient.merged_into_id, with_contacts=with_contacts)
    raise Conflict(f"Merge chain of patient {patient_id} is too long", code="merge_chain_too_long")


def _bookable(org_id: Any, patient_id: Any) -> list[ColumnElement[bool]]:
    """Can take part in new activity (appointments): this organisation's, not deleted, not merged
    into another record. The rule lives here only."""
    return [Patient.id == patient_id, Patient.org_id == org_id, Patient.deleted_at.is_(None),
            Patient.status != "merged"]


async def bookable(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID) -> Patient | None:
    """The patient if it can take part in new activity (`_bookable`), else None."""
    return (await session.execute(select(Patient).where(*_bookable(org_id, patient_id)))).scalar_one_or_none()


def bookable_exists(org_id: Any, patient_id: Any) -> ColumnElement[bool]:
    """`EXISTS` the patient and it is bookable, for a caller to read inside a statement it sends anyway
    (the booking's first statement: one round trip instead of two). The ids may be bind parameters."""
    return exists().where(*_bookable(org_id, patient_id))


async def find_by_phone(session: AsyncSession, org_id: uuid.UUID, phone: str) -> Patient | None:
    """The live patient with this number in any format (merged and deleted ones are ignored).

    When several share it (a family phone), confirmed patients come before provisional ones,
    active before inactive/deceased, primary numbers before secondary, older before newer.
    """
    number = phones.try_normalise(phone, await _phone_region(session, org_id))
    if number is None:
        return None
    return await _find_by_number(session, org_id, number)


async def _find_by_number(session: AsyncSession, org_id: uuid.UUID, number: str) -> Patient | None:
    """`find_by_phone` for a number already in E.164 (no region to look up)."""
    stmt = (
        _live(org_id)
        .join(PatientPhone, and_(PatientPhone.patient_id == Patient.id, PatientPhone.org_id == org_id))
        .where(PatientPhone.number == number, Patient.status != "merged")
        .order_by(Patient.is_provisional, (Patient.status != "active"), PatientPhone.is_primary.desc(),
                  Patient.created_at, Patient.id)
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def create_provisional(session: AsyncSession, org_id: uuid.UUID, *, phone: str, source: str) -> Patient:
    """A patient known only by a phone number (an inbound message or call from an unknown number).

    Get-or-create: concurrent callers for the same number are serialised by a transaction-scoped
    advisory lock, and a live patient that already has the number is returned instead. A `source`
    that is a channel (`whatsapp`, `sms`, `voice`, `email`) becomes the preferred channel.
    """
    number = normalise_phone(phone, region=await _phone_region(session, org_id))
    lock_key = func.hashtext(f"patient-phone:{org_id}:{number}")
    await session.execute(select(func.pg_advisory_xact_lock(lock_key)))
    existing = await _find_by_number(session, org_id, number)
    if existing is not None:
        return existing
    patient = Patient(org_id=org_id, is_provisional=True, source=source[:32], primary_phone=number,
                      given_name="", family_name="", gender="unknown", preferred_language="en", tags=[],
                      status="active", preferred_channel=source if source in CHANNELS else None)
    patient.phones = [PatientPhone(org_id=org_id, number=number, kind="mobile", is_primary=True)]
    patient.emails = []
    patient.identifiers = []
    session.add(patient)
    await _flush(session)
    await audit.record(session, Principal.system(org_id), "create", "patient", patient.id,
                       patient_id=patient.id, details={"provisional": True, "source": source})
    await events.publish(session, Event(type="patient.created", org_id=org_id,
                                        payload={"patient_id": str(patient.id), "provisional": True,
                                                 "source": source}))
    return patient


async def read(session: AsyncSession, who: Principal, patient_id: uuid.UUID, *, follow_merged: bool = True
               ) -> Patient:
    """The API read: audited; a merged patient raises PatientMoved unless `follow_merged` is False."""
    patient = await get(session, who.org_id, patient_id, with_contacts=True)
    await audit.record(session, who, "read", "patient", patient.id, patient_id=patient.id)
    if follow_merged and patient.merged_into_id is not None:
        survivor = await resolve(session, who.org_id, patient.id)
        raise PatientMoved(patient.id, survivor.id)
    return patient


async def _require_readable(session: AsyncSession, who: Principal, patient_id: uuid.UUID) -> Patient:
    """For sub-resource reads (timeline, consent, duplicates): NotFound / PatientMoved / the patient."""
    patient = await get(session, who.org_id, patient_id)
    if patient.merged_into_id is not None:
        survivor = await resolve(session, who.org_id, patient.id)
        raise PatientMoved(patient.id, survivor.id)
    return patient
