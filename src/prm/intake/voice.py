"""A finished voice-agent call becomes an intake, and — when a slot was confirmed — an appointment.

`voice_call.completed` (published by the webhook, in its transaction; handled here in the
subscriber's job, so the provider got its answer at once) carries the agent's extracted fields
(`VoiceExtraction`). The handler, idempotent end to end (a redelivered event, a retried job):

1. creates the session `voice:<provider>:<call id>` (unique per organisation: one session per call),
   unless the agent extracted nothing for an intake (no record, booking or name);
2. upserts the extracted records with deterministic item ids (`voice-<type>-<n>`): a retry
   rewrites the same rows; an item the agent got wrong is left out and counted, never fatal;
3. links the caller when they consented on the call: the duplicate finder on the contact they gave
   (phone, name, birth date, email) — one likely patient is linked; none, and the caller's number
   belongs to a patient created for this call (provisional), that patient is completed from the
   call and linked; anything else goes to staff review (`needs_review`), never a guess;
4. books the slot the caller confirmed (`booking`), or adopts the appointment the agent already
   booked through the booking tool (`appointment_id`); the practitioner becomes the session's;
   a slot taken meanwhile opens a ticket to call the patient back;
5. sends the SMS confirmation and emails the calendar invite (`.ics`) — instead of the standard
   booking notice, so the patient gets one confirmation per channel;
6. submits the session when it is complete (a chief complaint): the summary job and
   `intake.submitted` (the EHR hand-over) follow.
"""

from __future__ import annotations

import base64
import uuid
from datetime import date
from typing import Any

import structlog
from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service as appointments
from prm.communications import service as communications
from prm.communications.schemas import AttachmentIn, CommunicationCreate
from prm.core import audit, events
from prm.core.auth import Principal
from prm.core.errors import DomainError
from prm.intake import linking, records, rules, sessions, submission
from prm.intake.models import IntakeSession
from prm.intake.schemas import Contact, RecordItem, SessionCreate
from prm.patients import service as patients
from prm.patients.schemas import EmailIn, PatientUpdate
from prm.tickets import service as tickets
from prm.tickets.schemas import TicketCreate

log = structlog.get_logger(__name__)

# extracted list field -> record type
LISTS = {"symptoms": "symptom", "medications": "medication", "allergies": "allergy", "conditions": "condition",
         "family_history": "family_history", "social_history": "social_history", "vitals": "vital",
         "insurance": "insurance"}


class Booking(BaseModel):
    model_config = ConfigDict(extra="ignore")

    service_id: uuid.UUID
    practitioner_id: uuid.UUID
    location_id: uuid.UUID | None = None
    start_at: AwareDatetime
    confirmed: bool = False


class VoiceExtraction(BaseModel):
    """What a voice agent extracts from a call (Retell `custom_analysis_data`, Vapi `structuredData`)."""

    model_config = ConfigDict(extra="ignore")

    given_name: str | None = Field(default=None, max_length=200)
    family_name: str | None = Field(default=None, max_length=200)
    birth_date: date | None = None
    email: str | None = Field(default=None, max_length=320)
    consent: bool = Field(default=False, validation_alias=AliasChoices("consent", "intake_consent"))
    chief_complaint: str | None = Field(default=None, max_length=2000,
                                        validation_alias=AliasChoices("chief_complaint", "reason"))
    notes: list[str] | str | None = None
    booking: dict[str, Any] | None = None
    appointment_id: uuid.UUID | None = None


def _items(raw: dict[str, Any], extraction: VoiceExtraction) -> tuple[list[RecordItem], int]:
    """The records of the call, and how many items were left out as unreadable."""
    items: list[RecordItem] = []
    skipped = 0
    if extraction.chief_complaint:
        items.append(RecordItem(client_item_id="voice-chief_complaint-1", type="chief_complaint",
                                data={"text": extraction.chief_complaint}))
    notes = [extraction.notes] if isinstance(extraction.notes, str) else extraction.notes or []
    for i, text in enumerate(n for n in notes if n and n.strip()):
        items.append(RecordItem(client_item_id=f"voice-note-{i + 1}", type="note", data={"text": text}))
    for key, record_type in LISTS.items():
        values = raw.get(key) or []
        for i, value in enumerate(values if isinstance(values, list) else [values]):
            if not isinstance(value, dict):
                skipped += 1
                continue
            data, problems = rules.record_data(record_type, value)
            if problems:
                skipped += 1
                continue
            items.append(RecordItem(client_item_id=f"voice-{record_type}-{i + 1}", type=record_type, data=data))
    return items, skipped


def _contact(extraction: VoiceExtraction, phone: str | None) -> Contact:
    return Contact(given_name=extraction.given_name or None, family_name=extraction.family_name or None,
                   birth_date=extraction.birth_date, phone=phone, email=extraction.email or None)


async def _complete_provisional(session: AsyncSession, who: Principal, patient: Any,
                                extraction: VoiceExtraction) -> None:
    """A patient known only by the number this call came from gets the name (and email) they gave."""
    changes: dict[str, Any] = {"is_provisional": False}
    if extraction.given_name and extraction.family_name:
        changes.update(given_name=extraction.given_name, family_name=extraction.family_name)
    if extraction.birth_date:
        changes["birth_date"] = extraction.birth_date
    if extraction.email and not patient.emails:
        changes["emails"] = [EmailIn(email=extraction.email, is_primary=True)]
    await patients.update(session, who, patient.id, PatientUpdate(**changes))


async def _link(session: AsyncSession, who: Principal, row: IntakeSession, extraction: VoiceExtraction,
                caller_patient_id: uuid.UUID | None, call_ref: str) -> None:
    if row.link_status == "linked" or not extraction.consent:
        return
    consent = linking.ConsentIn(granted=True, method="verbal")
    found = await linking.candidates_for(session, who.org_id, row.contact)
    if len(found) == 1:
        await linking.link_to(session, who, row, uuid.UUID(found[0]["patient_id"]), consent=consent,
                              source=call_ref)
        return
    if not found and caller_patient_id is not None:
        caller = await patients.get(session, who.org_id, caller_patient_id, with_contacts=True)
        if caller.is_provisional:
            async with session.begin_nested():
                await _complete_provisional(session, who, caller, extraction)
            await linking.link_to(session, who, row, caller.id, consent=consent, source=call_ref)
            return
        found = [{"patient_id": str(caller.id), "score": 0.0, "reasons": ["caller_number"]}]
    row.match_candidates = found
    row.link_status = "needs_review"
    await audit.record(session, who, "match", "intake_session", row.id,
                       details={"candidates": [c["patient_id"] for c in found]})
    await events.publish(session, events.Event(type="intake.review_needed", org_id=who.org_id, payload={
        "session_id": str(row.id), "candidates": len(found), "org_id": str(who.org_id)}))


async def _ticket(session: AsyncSession, row: IntakeSession, subject: str, description: str) -> None:
    await tickets.create(session, Principal.system(row.org_id), TicketCreate(
        subject=subject, description=description, category=submission.TICKET_CATEGORY, priority="high",
        patient_id=row.patient_id, tags=["intake", "voice"]), source="system")


async def _book(session: AsyncSession, who: Principal, row: IntakeSession, extraction: VoiceExtraction) -> bool:
    """Book (or adopt) the call's appointment; True when the session has one now."""
    if row.appointment_id is not None:
        return True
    if extraction.appointment_id is not None and row.patient_id is not None:
        try:
            appointment = await appointments.get_appointment(session, who, extraction.appointment_id)
        except DomainError:
            appointment = None
        if appointment is not None and appointment.patient_id == row.patient_id:
            row.appointment_id, row.assigned_practitioner_id = appointment.id, appointment.practitioner_id
            return True
        log.warning("intake.voice_appointment_unknown", session_id=str(row.id))
        return False
    if not extraction.booking:
        return False
    try:
        booking = Booking.model_validate(extraction.booking)
    except ValidationError:
        await _ticket(session, row, "Call back: the voice agent's booking could not be read",
                      f"Intake session {row.id}: the slot the caller chose could not be read; call them back.")
        return False
    if not booking.confirmed:
        return False
    if row.patient_id is None:
        await _ticket(session, row, "Call back to book: caller not identified",
                      f"Intake session {row.id}: the caller confirmed a slot, but is not linked to a patient "
                      "(no consent, or several patients match). Link them, then book.")
        return False
    try:
        async with session.begin_nested():
            appointment = await appointments.book(session, who, {
                "patient_id": row.patient_id, "service_id": booking.service_id,
                "practitioner_id": booking.practitioner_id, "location_id": booking.location_id,
                "start_at": booking.start_at, "source": "phone",
                "notes": f"Booked by the voice agent (intake {row.id})"}, notify_patient=False)
    except DomainError as exc:
        log.info("intake.voice_booking_refused", session_id=str(row.id), code=exc.code)
        await _ticket(session, row, "Call back: the confirmed slot could not be booked",
                      f"Intake session {row.id}: booking the slot the caller confirmed failed ({exc.code}). "
                      "Offer another time.")
        return False
    row.appointment_id, row.assigned_practitioner_id = appointment.id, appointment.practitioner_id
    return True


async def _confirm(session: AsyncSession, who: Principal, row: IntakeSession) -> None:
    """The SMS confirmation and the calendar invite by email (each once: keyed by the session)."""
    assert row.appointment_id is not None and row.patient_id is not None
    appointment = await appointments.get_appointment(session, who, row.appointment_id, audit_read=False)
    described = await appointments.describe(session, appointment)
    when = f"{described.get('local_start', appointment.start_at.isoformat())}"[:16].replace("T", " ")
    text = (f"Your appointment is booked: {described.get('service_name', 'visit')} with "
            f"{described.get('practitioner_name', 'the clinic')} on {when} at {described.get('location_name', '')}."
            .replace(" at .", "."))
    sends = [CommunicationCreate(patient_id=row.patient_id, channel="sms", purpose="care", body=text,
                                 idempotency_key=f"intake:{row.id}:sms")]
    patient = await patients.get(session, who.org_id, row.patient_id)
    if patient.primary_email:
        invite = await appointments.ics(session, who, appointment.id)
        sends.append(CommunicationCreate(
            patient_id=row.patient_id, channel="email", purpose="care", subject="Your appointment",
            body=text + "\nThe calendar invite is attached.", idempotency_key=f"intake:{row.id}:ics",
            attachments=[AttachmentIn(filename="appointment.ics", content_type="text/calendar",
                                      content_base64=base64.b64encode(invite).decode())]))
    for message in sends:
        try:
            async with session.begin_nested():
                await communications.send(session, who, message)
        except DomainError as exc:  # no address, no consent, channel off: logged, staff see the session
            log.info("intake.voice_confirmation_refused", session_id=str(row.id), channel=message.channel,
                     code=exc.code)


async def from_call(session: AsyncSession, event: events.Event) -> IntakeSession | None:
    """Handle one `voice_call.completed` (see the module docs). Idempotent. A call from which the
    agent extracted nothing for an intake (no record, no booking, no name) makes no session."""
    org_id = event.org_id
    who = Principal.system(org_id)
    payload = event.payload
    provider = str(payload.get("provider") or "voice_agent")
    call_ref = f"voice:{provider}:{payload.get('call_id')}"[:200]
    extracted = payload.get("extracted")
    raw: dict[str, Any] = extracted if isinstance(extracted, dict) else {}
    try:
        extraction = VoiceExtraction.model_validate(raw)
    except ValidationError as exc:
        log.info("intake.voice_extraction_partial", errors=len(exc.errors()))
        extraction = VoiceExtraction.model_validate(
            {k: v for k, v in raw.items() if k not in {str(e["loc"][0]) for e in exc.errors() if e["loc"]}})
    items, skipped = _items(raw, extraction)
    if not (items or extraction.booking or extraction.appointment_id or extraction.given_name
            or extraction.family_name):
        log.info("intake.voice_nothing_extracted", call_ref=call_ref, skipped=skipped)
        return None  # a call about nothing clinical (opening hours ...): no intake
    communication_id = uuid.UUID(str(payload["communication_id"])) if payload.get("communication_id") else None
    comm = await communications.find(session, org_id, communication_id) if communication_id else None
    caller_patient_id = uuid.UUID(str(payload["patient_id"])) if payload.get("patient_id") else None
    row, created = await sessions.create(session, who, SessionCreate(
        source="voice", external_ref=call_ref, contact=_contact(extraction, comm.from_address if comm else None)),
        communication_id=comm.id if comm else None)
    row = await sessions.for_write(session, who, row.id, None, allow_frozen=True)
    if row.status != "open":
        return row  # handled before: a redelivery
    if items:
        await records.upsert(session, who, row.id, items, None)
    await _link(session, who, row, extraction, caller_patient_id, call_ref)
    if await _book(session, who, row, extraction) and row.patient_id is not None:
        await _confirm(session, who, row)
    sessions.bump(row)
    if skipped:
        log.info("intake.voice_items_skipped", session_id=str(row.id), skipped=skipped)
    if not await submission.missing(session, row):
        await submission.submit(session, who, row.id, None)
    log.info("intake.voice_call_handled", session_id=str(row.id), created=created, records=len(items),
             link_status=row.link_status, booked=row.appointment_id is not None)
    return row

