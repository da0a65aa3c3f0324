"""Stored consent: the current decisions, recording changes, the overview (rules in `consent.py`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import audit, clock, events
from prm.core.auth import Principal
from prm.core.errors import ValidationFailed
from prm.core.events import Event
from prm.patients import consent as consent_rules
from prm.patients.consent import ConsentDecision
from prm.patients.models import (
    CHANNELS,
    CONTACT_PURPOSES,
    DATA_SHARING_PURPOSES,
    Consent,
    Patient,
)
from prm.patients.reads import _require_readable, get, resolve
from prm.patients.validation import _merged_conflict, _not_found, _settings
from prm.settings import Settings

# --- consent -----------------------------------------------------------------------------------------


async def _current_consents(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID
                            ) -> dict[tuple[str | None, str], Consent]:
    """The newest record per (channel, purpose)."""
    rows = (await session.execute(
        select(Consent).where(Consent.org_id == org_id, Consent.patient_id == patient_id)
        .ext(distinct_on(Consent.channel, Consent.purpose))
        .order_by(Consent.channel, Consent.purpose, Consent.recorded_at.desc(), Consent.id.desc())
    )).scalars().all()
    return {(row.channel, row.purpose): row for row in rows}


def _data_sharing_defaults(s: Settings) -> dict[str, bool]:
    return {"ai_processing": s.consent_default_ai_processing, "ehr_export": s.consent_default_ehr_export,
            "intake": s.consent_default_intake}


def _decide(
    patient: Patient, channel: str | None, purpose: str, record: Consent | None, settings: Settings
) -> ConsentDecision:
    return consent_rules.decide(
        channel=channel, purpose=purpose,
        granted=record.granted if record else None,
        recorded_at=record.recorded_at if record else None,
        source=record.source if record else None,
        patient_status=patient.status, deleted=patient.deleted_at is not None,
        data_sharing_defaults=_data_sharing_defaults(settings),
    )


def _check_consent_key(channel: str | None, purpose: str, prefix: str = "") -> None:
    try:
        consent_rules.check_key(channel, purpose)
    except ValueError as exc:
        name = "channel" if channel is not None and channel not in CHANNELS else "purpose"
        raise ValidationFailed.field(prefix + name, str(exc))


async def _consent_subject(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID) -> Patient:
    """The patient whose consent applies: the survivor of a merge; a deleted one too (it denies all)."""
    # populate_existing: decide on the row as it is now, never on a copy this session loaded before
    # a delete/merge made elsewhere (a job indexing after the patient was deleted must see it).
    patient = await session.scalar(select(Patient).where(Patient.org_id == org_id, Patient.id == patient_id)
                                   .execution_options(populate_existing=True))
    if patient is None:
        raise _not_found(patient_id)
    if patient.deleted_at is None and patient.merged_into_id is not None:
        return await resolve(session, org_id, patient.id)
    return patient


async def consent_allows(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, *,
                         channel: str, purpose: str) -> ConsentDecision:
    """May we contact this patient on `channel` for `purpose`? (rules and defaults: `consent.py`).

    With no record, care and reminders are allowed and marketing is denied until opted in.
    A merged patient is answered for its survivor; a deceased one is never contacted.
    """
    _check_consent_key(channel, purpose)
    patient = await _consent_subject(session, org_id, patient_id)
    record = await session.scalar(
        select(Consent).where(Consent.org_id == org_id, Consent.patient_id == patient.id,
                              Consent.channel == channel, Consent.purpose == purpose)
        .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(1))
    return _decide(patient, channel, purpose, record, _settings(session))


async def consents_allow(session: AsyncSession, patient: Patient, *, channels: Sequence[str], purpose: str
                         ) -> dict[str, ConsentDecision]:
    """`consent_allows` for several channels at once, for a patient this transaction has just read
    (`get`): one statement for the newest record of each channel instead of two per channel.

    A merged patient (answered for its survivor) takes `consent_allows`, channel by channel.
    """
    for channel in channels:
        _check_consent_key(channel, purpose)
    if patient.deleted_at is None and patient.merged_into_id is not None:
        return {channel: await consent_allows(session, patient.org_id, patient.id, channel=channel, purpose=purpose)
                for channel in channels}
    if not channels:
        return {}
    rows = (await session.execute(
        select(Consent.channel, Consent.granted, Consent.recorded_at, Consent.source)
        .where(Consent.org_id == patient.org_id, Consent.patient_id == patient.id,
               Consent.channel.in_(list(channels)), Consent.purpose == purpose)
        .ext(distinct_on(Consent.channel))
        .order_by(Consent.channel, Consent.recorded_at.desc(), Consent.id.desc())
    )).all()
    newest = {row.channel: row for row in rows}
    settings = _settings(session)
    return {channel: _decide(patient, channel, purpose, newest.get(channel), settings)  # type: ignore[arg-type]
            for channel in channels}


async def data_sharing_allows(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, *,
                              purpose: str) -> ConsentDecision:
    """May this patient's data be used for `purpose` (`ai_processing` or `ehr_export`)?"""
    _check_consent_key(None, purpose)
    patient = await _consent_subject(session, org_id, patient_id)
    record = await session.scalar(
        select(Consent).where(Consent.org_id == org_id, Consent.patient_id == patient.id,
                              Consent.channel.is_(None), Consent.purpose == purpose)
        .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(1))
    return _decide(patient, None, purpose, record, _settings(session))


async def set_consent(session: AsyncSession,
    who: Principal,
    patient_id: uuid.UUID,
    *,
    channel: str | None,
    purpose: str | None,
    granted: bool,
    source: str,
    note: str | None = None) -> list[Consent]:
    """Record a consent decision; `purpose=None` means every contact purpose of `channel` (STOP/START).

    `channel=None` records data-sharing consent (`purpose` is then `ai_processing` or `ehr_export`).
    A decision equal to the newest record is not repeated. Returns the rows written.
    """
    org_id = who.org_id
    if channel is None and purpose is None:
        raise ValidationFailed.field("purpose", "is required for data-sharing consent")
    purposes = list(CONTACT_PURPOSES) if purpose is None else [purpose]
    for p in purposes:
        _check_consent_key(channel, p)
    patient = await resolve(session, org_id, patient_id)
    current = await _current_consents(session, org_id, patient.id)
    now = clock.now()
    written: list[Consent] = []
    for p in purposes:
        previous = current.get((channel, p))
        if previous is not None and previous.granted == granted:
            continue
        row = Consent(org_id=org_id, patient_id=patient.id, channel=channel, purpose=p, granted=granted,
                      source=source[:64], recorded_at=now, recorded_by_kind=who.kind,
                      recorded_by_id=who.subject_id, note=note)
        session.add(row)
        written.append(row)
    if written:
        await session.flush()
        changes = [{"channel": r.channel, "purpose": r.purpose, "granted": r.granted} for r in written]
        await audit.record(session, who, "consent", "patient", patient.id, patient_id=patient.id,
                           details={"changes": changes, "source": source})
        await events.publish(session, Event(type="patient.consent_changed", org_id=org_id,
                                            payload={"patient_id": str(patient.id), "changes": changes,
                                                     "source": source}))
    return written


@dataclass(frozen=True)
class ConsentOverview:
    patient_id: uuid.UUID
    contact: list[tuple[str | None, str, ConsentDecision]]
    data_sharing: list[tuple[str | None, str, ConsentDecision]]
    history: list[Consent]


async def consent_overview(session: AsyncSession, who: Principal, patient_id: uuid.UUID) -> ConsentOverview:
    """Every channel × purpose decision, the data-sharing ones, and the full history (audited)."""
    patient = await _require_readable(session, who, patient_id)
    current = await _current_consents(session, who.org_id, patient.id)
    settings = _settings(session)
    contact: list[tuple[str | None, str, ConsentDecision]] = [
        (c, p, _decide(patient, c, p, current.get((c, p)), settings)) for c in CHANNELS for p in CONTACT_PURPOSES]
    sharing: list[tuple[str | None, str, ConsentDecision]] = [
        (None, p, _decide(patient, None, p, current.get((None, p)), settings)) for p in DATA_SHARING_PURPOSES]
    history = (await session.execute(
        select(Consent).where(Consent.org_id == who.org_id, Consent.patient_id == patient.id)
        .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(500))).scalars().all()
    await audit.record(session, who, "read", "patient_consent", patient.id, patient_id=patient.id)
    return ConsentOverview(patient.id, contact, sharing, list(history))


async def change_consent(session: AsyncSession, who: Principal, patient_id: uuid.UUID,
                         changes: Sequence[Any]) -> ConsentOverview:
    """The API write: several changes at once, all or nothing."""
    patient = await get(session, who.org_id, patient_id)
    if patient.merged_into_id is not None:
        raise _merged_conflict(patient)
    for i, change in enumerate(changes):
        if change.channel is None and change.purpose is None:
            raise ValidationFailed.field(f"changes.{i}.purpose", "is required for data-sharing consent")
        if change.purpose is not None:
            _check_consent_key(change.channel, change.purpose, prefix=f"changes.{i}.")
    for change in changes:
        await set_consent(
            session,
            who,
            patient.id,
            channel=change.channel,
            purpose=change.purpose,
            granted=change.granted,
            source=change.source,
            note=change.note,
        )
    return await consent_overview(session, who, patient.id)
