"""Linking an intake session to a patient, with the patient's intake consent.

* By id: the patient must exist in the organisation (a merged one is followed to its survivor).
* By matching: the session's contact (phone, email, name and birth date) goes through the
  patients' duplicate finder (`patients.service.find_duplicates`, its threshold). Exactly one
  likely patient → linked. Several → `needs_review` with the candidates for staff, never a guess.
  None → stays `unlinked` (staff link it, or create the patient and link by id).
* Consent: the patient's data-sharing consent `intake` (that this intake is kept in their record).
  Sent with the request, it is recorded first (consent history, audited); otherwise a consent
  already recorded is required: without it, 409 `intake_consent_required` and nothing is linked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import audit, clock, events, references
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound
from prm.core.events import Event
from prm.identity import service as identity
from prm.intake.models import IntakeSession
from prm.intake.schemas import ConsentIn
from prm.intake.sessions import bump, for_write
from prm.patients import service as patients

CONSENT_PURPOSE = "intake"


@dataclass(frozen=True)
class LinkOutcome:
    session: IntakeSession
    candidates: list[dict[str, Any]]


async def _record_consent(session: AsyncSession, who: Principal, patient_id: uuid.UUID, consent: ConsentIn,
                          source: str) -> None:
    await patients.set_consent(session, who, patient_id, channel=None, purpose=CONSENT_PURPOSE,
                               granted=consent.granted, source=f"{source}:{consent.method}")


async def link_to(session: AsyncSession, who: Principal, row: IntakeSession, patient_id: uuid.UUID, *,
                  consent: ConsentIn | None, field: str = "patient_id", source: str = "intake") -> IntakeSession:
    """Link the (locked, open) session to this patient, recording/checking the intake consent."""
    try:
        patient = await patients.resolve(session, who.org_id, patient_id)
    except NotFound:
        raise references.unknown(field, "patient") from None
    if consent is not None:
        await _record_consent(session, who, patient.id, consent, source)
    decision = await patients.data_sharing_allows(session, who.org_id, patient.id, purpose=CONSENT_PURPOSE)
    if not decision.allowed:
        raise Conflict("The patient has not consented to intake data being kept in their record "
                       f"({decision.reason}); send consent with the link", code="intake_consent_required",
                       reason=decision.reason)
    row.patient_id = patient.id
    row.link_status = "linked"
    row.match_candidates = []
    row.consent_recorded_at = decision.recorded_at or clock.now()
    bump(row)
    await audit.record(session, who, "link", "intake_session", row.id, patient_id=patient.id,
                       details={"consent_basis": decision.basis})
    await events.publish(session, Event(type="intake.linked", org_id=who.org_id, payload={
        "session_id": str(row.id), "patient_id": str(patient.id), "org_id": str(who.org_id)}))
    return row


def facts_of(contact: dict[str, Any], region: str) -> Any:
    phone = patients.try_normalise(contact.get("phone") or "", region) if contact.get("phone") else None
    birth = contact.get("birth_date")
    return patients.Facts.of(contact.get("given_name"), contact.get("family_name"),
                             date.fromisoformat(birth) if birth else None,
                             [phone] if phone else [], [contact["email"]] if contact.get("email") else [])


async def candidates_for(session: AsyncSession, org_id: uuid.UUID, contact: dict[str, Any]) -> list[dict[str, Any]]:
    """Likely patients for the contact, best first: [{patient_id, score, reasons}]."""
    region = (await identity.organisation_settings(session, org_id)).phone_region
    facts = facts_of(contact, region)
    if not (facts.phones or facts.emails or facts.birth_date or facts.given_name or facts.family_name):
        return []
    found = await patients.find_duplicates(session, org_id, facts)
    return [{"patient_id": str(c.patient.id), "score": round(c.match.score, 3),
             "reasons": [r.code for r in c.match.reasons]} for c in found]


async def link(session: AsyncSession, who: Principal, session_id: uuid.UUID, *, patient_id: uuid.UUID | None,
               consent: ConsentIn | None, expected_version: int | None, source: str = "intake") -> LinkOutcome:
    """Link by id, or by matching the contact (one likely patient: linked; several: staff review)."""
    row = await for_write(session, who, session_id, expected_version)
    if row.link_status == "linked" and patient_id in (None, row.patient_id):
        if consent is not None and row.patient_id is not None:
            await _record_consent(session, who, row.patient_id, consent, source)
        return LinkOutcome(row, [])
    if patient_id is not None:
        return LinkOutcome(await link_to(session, who, row, patient_id, consent=consent, source=source), [])
    found = await candidates_for(session, who.org_id, row.contact)
    if len(found) == 1:
        linked = await link_to(session, who, row, uuid.UUID(found[0]["patient_id"]), consent=consent, source=source)
        return LinkOutcome(linked, found)
    row.match_candidates = found
    row.link_status = "needs_review" if found else "unlinked"
    bump(row)
    await audit.record(session, who, "match", "intake_session", row.id,
                       details={"candidates": [c["patient_id"] for c in found]})
    if found:
        await events.publish(session, Event(type="intake.review_needed", org_id=who.org_id, payload={
            "session_id": str(row.id), "candidates": len(found), "org_id": str(who.org_id)}))
    return LinkOutcome(row, found)
