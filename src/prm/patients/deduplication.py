"""Duplicates and merge: likely duplicates of a patient, and merging a duplicate into a survivor."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy import update as sa_update
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import audit, clock, events, references
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound
from prm.core.events import Event
from prm.patients import consent as consent_rules
from prm.patients import duplicates, names
from prm.patients.consents import _current_consents
from prm.patients.models import (
    Consent,
    Patient,
    PatientEmail,
    PatientIdentifier,
    PatientPhone,
)
from prm.patients.reads import _live, _require_readable, _with_contacts, get
from prm.patients.registry import merge_handlers
from prm.patients.validation import _clean_tags, _settings, _sync_primaries

# --- create / update / delete ------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    patient: Patient
    match: duplicates.Match


# --- duplicates --------------------------------------------------------------------------------------


def _facts(patient: Patient) -> duplicates.Facts:
    return duplicates.Facts.of(patient.given_name, patient.family_name, patient.birth_date,
                               [p.number for p in patient.phones], [e.email for e in patient.emails])


async def find_duplicates(session: AsyncSession, org_id: uuid.UUID, facts: duplicates.Facts, *,
                          exclude: Iterable[uuid.UUID] = (), threshold: float | None = None,
                          limit: int = 10) -> list[Candidate]:
    """Live patients scoring at least `threshold` against `facts`, best first.

    Candidates come from four indexed lookups (same phone, same email, same or transposed birth
    date, similar name by trigram), then each is scored in Python by `duplicates.score`.
    """
    threshold = _settings(session).patient_duplicate_threshold if threshold is None else threshold
    excluded = set(exclude)
    ids: set[uuid.UUID] = set()
    if facts.phones:
        ids.update((await session.execute(
            select(PatientPhone.patient_id).where(PatientPhone.org_id == org_id,
                                                  PatientPhone.number.in_(sorted(facts.phones))).limit(200)
        )).scalars())
    if facts.emails:
        ids.update((await session.execute(
            select(PatientEmail.patient_id).where(PatientEmail.org_id == org_id,
                                                  func.lower(PatientEmail.email).in_(sorted(facts.emails)))
            .limit(200)
        )).scalars())
    if facts.birth_date is not None:
        days = [facts.birth_date, *duplicates.transpositions(facts.birth_date)]
        ids.update((await session.execute(
            select(Patient.id).where(Patient.org_id == org_id, Patient.birth_date.in_(days),
                                     Patient.deleted_at.is_(None), Patient.status != "merged").limit(500)
        )).scalars())
    full = names.full_name(facts.given_name, facts.family_name)
    # A name alone scores at most NAME_WEIGHT: above that, every candidate that can reach the
    # threshold shares a phone, an email or a (transposed) birth date, all found above.
    if full and threshold <= duplicates.NAME_WEIGHT:
        # Only names similar enough to reach the threshold together with the other signals matter.
        await session.execute(select(func.set_config("pg_trgm.similarity_threshold", "0.45", True)))
        ids.update((await session.execute(
            select(Patient.id).where(Patient.org_id == org_id, Patient.search_name.op("%")(full),
                                     Patient.deleted_at.is_(None), Patient.status != "merged")
            .order_by(Patient.search_name.op("<->")(full)).limit(50)
        )).scalars())
    ids -= excluded
    if not ids:
        return []
    rows = (await session.execute(
        _with_contacts(_live(org_id).where(Patient.id.in_(ids), Patient.status != "merged"))
    )).scalars().all()
    found = []
    for row in rows:
        match = duplicates.score(facts, _facts(row))
        if match.is_likely(threshold):
            found.append(Candidate(row, match))
    found.sort(key=lambda c: (-c.match.score, str(c.patient.id)))
    return found[:limit]


async def duplicates_of(session: AsyncSession, who: Principal, patient_id: uuid.UUID, *,
                        threshold: float | None = None) -> list[Candidate]:
    """The API view: likely duplicates of an existing patient (audited)."""
    await _require_readable(session, who, patient_id)
    patient = await get(session, who.org_id, patient_id, with_contacts=True)
    found = await find_duplicates(session, who.org_id, _facts(patient), exclude=[patient.id],
                                  threshold=threshold)
    await audit.record(session, who, "read", "patient_duplicates", patient.id, patient_id=patient.id,
                       details={"candidates": [str(c.patient.id) for c in found]})
    return found


# --- merge -------------------------------------------------------------------------------------------


@dataclass
class MergeOutcome:
    survivor: Patient
    duplicate_id: uuid.UUID
    moved: dict[str, int] = field(default_factory=dict)


async def merge(session: AsyncSession, who: Principal, survivor_id: uuid.UUID, duplicate_id: uuid.UUID
                ) -> MergeOutcome:
    """Fold `duplicate_id` into `survivor_id` in the caller's transaction.

    Contact points and identifiers move over (without repeats), blanks of the survivor are filled
    from the duplicate, consent history moves (an opt-out wins where the two disagree), every
    module's rows move through `registry.on_merge` handlers, and the duplicate becomes `merged`
    with `merged_into_id` set (patients merged into it earlier now point at the survivor).
    """
    org_id = who.org_id
    if survivor_id == duplicate_id:
        raise Conflict("A patient cannot be merged into itself", code="merge_into_self")
    # Lock both rows in a fixed order so two crossing merges cannot deadlock.
    locked = {}
    for pid in sorted([survivor_id, duplicate_id], key=str):
        try:
            locked[pid] = await get(session, org_id, pid, with_contacts=True, for_update=True)
        except NotFound:
            if pid == duplicate_id:  # named in the body: a 422 naming it (the survivor, in the path, is a 404)
                raise references.unknown("duplicate_id", "patient") from None
            raise
    survivor, duplicate = locked[survivor_id], locked[duplicate_id]
    if survivor.merged_into_id is not None:
        raise Conflict(f"Patient {survivor.id} is itself merged into {survivor.merged_into_id}",
                       code="survivor_merged", merged_into_id=str(survivor.merged_into_id))
    if duplicate.merged_into_id is not None:
        raise Conflict(f"Patient {duplicate.id} is already merged into {duplicate.merged_into_id}",
                       code="already_merged", merged_into_id=str(duplicate.merged_into_id))

    moved: dict[str, int] = {}
    moved["patients.phones"] = await _move_phones(session, survivor, duplicate)
    moved["patients.emails"] = await _move_emails(session, survivor, duplicate)
    moved["patients.identifiers"] = len(duplicate.identifiers)
    await session.execute(sa_update(PatientIdentifier).where(PatientIdentifier.org_id == org_id,
                                                          PatientIdentifier.patient_id == duplicate.id)
                          .values(patient_id=survivor.id))
    moved["patients.consents"] = await _move_consents(session, who, survivor.id, duplicate.id)
    _fill_blanks(survivor, duplicate)

    for module, handler in sorted(merge_handlers().items()):
        moved[module] = int(await handler(session, org_id, duplicate.id, survivor.id) or 0)

    now = clock.now()
    await session.execute(sa_update(Patient)
                          .where(Patient.org_id == org_id, Patient.merged_into_id == duplicate.id)
                          .values(merged_into_id=survivor.id))
    duplicate.status = "merged"
    duplicate.merged_into_id = survivor.id
    duplicate.merged_at = now
    duplicate.updated_at = now
    survivor.updated_at = now
    await session.flush()
    session.expire(duplicate, ["phones", "emails", "identifiers"])
    # Rows moved with UPDATE statements: reload the survivor and its children from the database.
    survivor = (await session.execute(
        _with_contacts(_live(org_id).where(Patient.id == survivor.id))
        .execution_options(populate_existing=True))).scalar_one()
    _sync_primaries(survivor)
    await session.flush()
    details = {"survivor_id": str(survivor.id), "duplicate_id": str(duplicate.id), "moved": moved}
    for pid in (survivor.id, duplicate.id):
        await audit.record(session, who, "merge", "patient", pid, patient_id=pid, details=details)
    await events.publish(session, Event(type="patient.merged", org_id=org_id, payload=details))
    return MergeOutcome(survivor=survivor, duplicate_id=duplicate.id, moved=moved)


async def _move_phones(session: AsyncSession, survivor: Patient, duplicate: Patient) -> int:
    have = {p.number for p in survivor.phones}
    has_primary = any(p.is_primary for p in survivor.phones)
    count = 0
    for phone in list(duplicate.phones):
        if phone.number in have:
            continue
        await session.execute(sa_update(PatientPhone).where(PatientPhone.id == phone.id).values(
            patient_id=survivor.id, is_primary=phone.is_primary and not has_primary))
        count += 1
    await session.execute(delete(PatientPhone).where(PatientPhone.patient_id == duplicate.id))
    return count


async def _move_emails(session: AsyncSession, survivor: Patient, duplicate: Patient) -> int:
    have = {e.email.lower() for e in survivor.emails}
    has_primary = any(e.is_primary for e in survivor.emails)
    count = 0
    for email in list(duplicate.emails):
        if email.email.lower() in have:
            continue
        await session.execute(sa_update(PatientEmail).where(PatientEmail.id == email.id).values(
            patient_id=survivor.id, is_primary=email.is_primary and not has_primary))
        count += 1
    await session.execute(delete(PatientEmail).where(PatientEmail.patient_id == duplicate.id))
    return count


async def _move_consents(session: AsyncSession, who: Principal, survivor_id: uuid.UUID,
                         duplicate_id: uuid.UUID) -> int:
    before_survivor = await _current_consents(session, who.org_id, survivor_id)
    before_duplicate = await _current_consents(session, who.org_id, duplicate_id)
    result = await session.execute(sa_update(Consent).where(Consent.org_id == who.org_id,
                                                         Consent.patient_id == duplicate_id)
                                   .values(patient_id=survivor_id))
    for key in set(before_survivor) & set(before_duplicate):
        if consent_rules.merged_state(before_survivor[key].granted, before_duplicate[key].granted) is False:
            channel, purpose = key
            session.add(Consent(org_id=who.org_id, patient_id=survivor_id, channel=channel, purpose=purpose,
                                granted=False, source="merge", recorded_at=clock.now(),
                                recorded_by_kind=who.kind, recorded_by_id=who.subject_id,
                                note=f"records disagreed when merging {duplicate_id}; the opt-out wins"))
    return int(getattr(result, "rowcount", 0) or 0)


def _fill_blanks(survivor: Patient, duplicate: Patient) -> None:
    if not survivor.given_name and not survivor.family_name:
        survivor.given_name, survivor.family_name = duplicate.given_name, duplicate.family_name
    for attr in ("birth_date", "address", "timezone", "preferred_channel", "deceased_date"):
        if getattr(survivor, attr) is None and getattr(duplicate, attr) is not None:
            setattr(survivor, attr, getattr(duplicate, attr))
    if survivor.gender == "unknown" and duplicate.gender != "unknown":
        survivor.gender = duplicate.gender
    survivor.tags = _clean_tags([*(survivor.tags or []), *(duplicate.tags or [])])
    if survivor.is_provisional and not duplicate.is_provisional:
        survivor.is_provisional = False
