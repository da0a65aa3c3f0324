"""The plan's fourth integration scenario: a voice call becomes a clinical intake (and a booking).

A Retell-like agent (a real peer on 127.0.0.1: it signs as Retell does and serves the call's
recording from a signed link) reports a finished call: transcript, extracted symptoms, medications,
an allergy, the caller's consent and a slot they confirmed. The webhook answers at once; the jobs
then create the intake session, upsert the records, link the caller with their consent, book the
slot, send the SMS confirmation and email the calendar invite (to a real SMTP sink), copy the
recording into media storage, submit the intake and write its summary; `intake.submitted` is the
hand-over to the EHR sync.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from icalendar import Calendar
from sqlalchemy import func, select

from prm.appointments.models import Appointment
from prm.communications.models import InboundEvent, SandboxMessage
from prm.core import clock, jobs
from prm.core.audit import AuditEntry
from prm.fhir.models import SyncRun
from prm.intake.models import IntakeRecord, IntakeSession, IntakeSummary
from prm.media.models import Media
from prm.patients import service as patients
from prm.patients.models import Patient
from prm.tickets.models import Ticket
from prm.vector.models import SearchChunk
from tests.fixtures import media_samples as samples
from tests.fixtures.fhir_peer import FhirPeer
from tests.fixtures.messaging import CLINIC_NUMBER, configure_channel, new_phone
from tests.fixtures.voice_agent import VoiceAgentPeer
from tests.integration.fhir.test_sync import connect
from tests.integration.intake.support import events_of

# Monday 2026-03-23 08:00 UTC (09:00 in Madrid).
NOW = datetime(2026, 3, 23, 8, 0, tzinfo=UTC)
KEY = "retell-webhook-key-" + uuid.uuid4().hex


async def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


async def clinic(client: httpx.AsyncClient) -> dict[str, str]:
    location = await _ok(await client.post("/locations", json={"name": "Centro", "timezone": "Europe/Madrid"}), 201)
    doctor = await _ok(await client.post("/practitioners", json={"name": "Dr Ana Ruiz", "timezone": "Europe/Madrid"}),
                       201)
    for weekday in range(5):
        await _ok(await client.post(f"/practitioners/{doctor['id']}/availability/rules", json={
            "location_id": location["id"], "weekday": weekday, "start_time": "09:00", "end_time": "14:00"}), 201)
    service = await _ok(await client.post("/services", json={
        "name": "General consultation", "duration_minutes": 30, "min_notice_minutes": 0,
        "practitioner_ids": [doctor["id"]]}), 201)
    return {"location_id": location["id"], "practitioner_id": doctor["id"], "service_id": service["id"]}


def call_payload(call_id: str, caller: str, extracted: dict[str, Any], recording_url: str | None = None,
                 start: datetime = NOW) -> dict[str, Any]:
    started = int((start - timedelta(minutes=6)).timestamp() * 1000)
    return {
        "call_id": call_id, "agent_id": "agent_intake", "call_status": "ended",
        "from_number": caller, "to_number": CLINIC_NUMBER,
        "start_timestamp": started, "end_timestamp": started + 5 * 60 * 1000,
        "transcript": "Agent: How can I help?\nUser: I have had a dry cough and a fever since Thursday.\n"
                      "Agent: Any medication?\nUser: Paracetamol, one gram three times a day.",
        "recording_url": recording_url,
        "call_analysis": {"call_summary": "Cough and fever; booked", "custom_analysis_data": extracted},
    }


def extraction(slot: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    return {
        "given_name": "Lucía", "family_name": "Martín", "birth_date": "1987-04-12",
        "email": "lucia.martin@example.org", "consent": True,
        "chief_complaint": "Dry cough and fever since Thursday",
        "symptoms": [{"name": "dry cough", "severity": "moderate", "duration_days": 4},
                     {"name": "fever", "onset_text": "Thursday", "severity": "mild"}],
        "medications": [{"name": "Paracetamol", "dose": "1 g", "frequency": "three times a day"}],
        "allergies": [{"substance": "Penicillin", "reaction": "rash", "severity": "moderate"}],
        "vitals": [{"kind": "body_temperature", "value": 38.1}, {"kind": "heart_rate", "value": "fast"}],
        "booking": {"service_id": ids["service_id"], "practitioner_id": ids["practitioner_id"],
                    "start_at": slot["start_at"], "confirmed": True},
    }


async def drain(session: Any) -> None:
    for _ in range(10):
        report = await jobs.run_due(session)
        if not report.ran:
            return


async def test_voice_call_intake_flow(session, org, client: httpx.AsyncClient, anon_client: httpx.AsyncClient,
                                      smtp_sink, voice_agent: VoiceAgentPeer, fhir_peer: FhirPeer) -> None:
    await configure_channel(session, org, "voice", webhook_secret=KEY)
    await connect(client, fhir_peer)  # the clinic's EHR (a FHIR server on 127.0.0.1)
    caller = new_phone()
    with clock.frozen(NOW):
        ids = await clinic(client)
        slots = await _ok(await client.get("/slots", params={"service_id": ids["service_id"],
                                                             "start_date": "2026-03-24", "end_date": "2026-03-26"}))
        slot = slots[2]  # "suggested" by the agent's booking tool, confirmed by the caller
        recording = samples.wav(6000)
        url = voice_agent.recording("call-001.wav", recording, fail_first=True)
        body, headers = voice_agent.retell(KEY, "call_analyzed",
                                           call_payload("call-001", caller, extraction(slot, ids), url),
                                           int(NOW.timestamp() * 1000))
        r = await anon_client.post(f"/webhooks/voice-agent/{org.id}/retell", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["status"] == "processed", r.text
        # answered before any intake work: that happens in the subscribers' jobs
        assert await session.scalar(select(func.count()).select_from(IntakeSession)
                                    .where(IntakeSession.org_id == org.id)) == 0
        await drain(session)
        with clock.frozen(NOW + timedelta(minutes=5)):  # the recording's retry, when it is due
            await drain(session)

    row = await session.scalar(select(IntakeSession).where(IntakeSession.org_id == org.id))
    assert (row.source, row.external_ref, row.status, row.link_status) == (
        "voice", "voice:retell:call-001", "submitted", "linked")
    assert str(row.communication_id) == r.json()["communication_id"]
    # the records the agent extracted (the unreadable heart rate left out)
    stored = {(x.type, x.client_item_id): x.data for x in await session.scalars(
        select(IntakeRecord).where(IntakeRecord.session_id == row.id))}
    assert stored[("chief_complaint", "voice-chief_complaint-1")] == {"text": "Dry cough and fever since Thursday"}
    assert stored[("medication", "voice-medication-1")]["dose"] == "1 g"
    assert stored[("vital", "voice-vital-1")] == {"kind": "body_temperature", "value": 38.1, "unit": "Cel"}
    assert len([k for k in stored if k[0] == "symptom"]) == 2 and ("vital", "voice-vital-2") not in stored
    # the caller: the patient created for the number is completed from the call and linked, with consent
    patient = await session.get(Patient, row.patient_id)
    await session.refresh(patient)
    assert (patient.given_name, patient.family_name, patient.primary_phone, patient.is_provisional) == (
        "Lucía", "Martín", caller, False)
    assert patient.primary_email == "lucia.martin@example.org"
    consent = await patients.data_sharing_allows(session, org.id, patient.id, purpose="intake")
    assert consent.allowed and consent.source == "voice:retell:call-001:verbal"
    # the appointment the caller confirmed, booked by phone
    appointment = await session.get(Appointment, row.appointment_id)
    assert (appointment.patient_id, str(appointment.practitioner_id), appointment.source, appointment.status) == (
        patient.id, ids["practitioner_id"], "phone", "booked")
    assert appointment.start_at == datetime.fromisoformat(slot["start_at"].replace("Z", "+00:00"))
    assert str(row.assigned_practitioner_id) == ids["practitioner_id"]
    # one SMS confirmation (not also the standard notice) and the invite by email, with the .ics
    sms = (await session.scalars(select(SandboxMessage).where(SandboxMessage.org_id == org.id,
                                                              SandboxMessage.channel == "sms"))).all()
    assert len(sms) == 1 and sms[0].to_address == caller and "General consultation" in sms[0].payload["body"]
    [mail] = smtp_sink.messages
    assert mail["To"] == "lucia.martin@example.org"
    [invite] = [p for p in mail.walk() if p.get_filename() == "appointment.ics"]
    event = next(c for c in Calendar.from_ical(invite.get_payload(decode=True)).walk() if c.name == "VEVENT")
    assert event.decoded("dtstart") == appointment.start_at
    # the recording, copied into our storage after the provider's first 503
    media_row = await session.scalar(select(Media).where(Media.org_id == org.id,
                                                         Media.message_id == row.communication_id))
    assert (media_row.status, media_row.sha256, media_row.content_type) == ("available", samples.sha256(recording),
                                                                            "audio/wav")
    assert [s for _, s in voice_agent.downloads] == [503, 200]
    # the transcript went to search (the call's communication, chunked and embedded)
    chunks = (await session.scalars(select(SearchChunk).where(SearchChunk.org_id == org.id,
                                                              SearchChunk.source_id == row.communication_id))).all()
    assert chunks and any("dry cough" in c.text for c in chunks)
    # the summary, and the hand-over event for the EHR sync
    summary = await session.get(IntakeSummary, row.id)
    assert summary.machine_generated and summary.generator == "offline"
    assert summary.content["medications"] == ["Paracetamol 1 g three times a day"]
    assert summary.content["allergies"] == ["Penicillin (rash, moderate)"]
    [submitted] = await events_of(session, org.id, "intake.submitted")
    assert submitted.payload["patient_id"] == str(patient.id)
    assert submitted.payload["appointment_id"] == str(appointment.id)
    assert submitted.payload["record_counts"] == {"chief_complaint": 1, "symptom": 2, "medication": 1, "allergy": 1,
                                                  "vital": 1}
    # the clinical record reached the EHR (the FHIR peer validated every resource)
    assert fhir_peer.rejected == []
    [medication] = fhir_peer.of_type("MedicationStatement")
    assert medication["medicationCodeableConcept"]["text"] == "Paracetamol"
    assert len(fhir_peer.of_type("AllergyIntolerance")) == 1 and fhir_peer.of_type("Observation")
    runs = list(await session.scalars(select(SyncRun).where(SyncRun.org_id == org.id)))
    assert "intake.submitted" in {t for r in runs for t in r.triggers} and all(r.status == "succeeded" for r in runs)
    # the audit trail shows every step
    actions = {(a.resource_type, a.action) for a in await session.scalars(
        select(AuditEntry).where(AuditEntry.org_id == org.id, AuditEntry.patient_id == patient.id))}
    for step in [("patient", "consent"), ("intake_session", "link"), ("appointment", "create"),
                 ("communication", "create"), ("intake_session", "submit"), ("intake_session", "summarise")]:
        assert step in actions, (step, sorted(actions))
    of_session = {(a.resource_type, a.action) for a in await session.scalars(
        select(AuditEntry).where(AuditEntry.org_id == org.id, AuditEntry.resource_id == str(row.id)))}
    assert {("intake_session", "create"), ("intake_record", "upsert")} <= of_session


async def test_forged_replayed_stale_and_other_events(session, org, client: httpx.AsyncClient,
                                                      anon_client: httpx.AsyncClient,
                                                      voice_agent: VoiceAgentPeer) -> None:
    await configure_channel(session, org, "voice", webhook_secret=KEY)
    caller = new_phone()
    path = f"/webhooks/voice-agent/{org.id}/retell"
    with clock.frozen(NOW):
        now_ms = int(NOW.timestamp() * 1000)
        call = call_payload("call-002", caller, {"chief_complaint": "Headache", "consent": True})
        body, headers = voice_agent.retell(KEY, "call_analyzed", call, now_ms)
        forged = await anon_client.post(path, content=body.replace(b"Headache", b"Nothing!"), headers=headers)
        wrong_key = voice_agent.retell("not-the-key", "call_analyzed", call, now_ms)
        stale = voice_agent.retell(KEY, "call_analyzed", call, now_ms - 6 * 60 * 1000)
        other_org = await anon_client.post(f"/webhooks/voice-agent/{uuid.uuid4()}/retell", content=body,
                                           headers=headers)
        refused = [forged, await anon_client.post(path, content=wrong_key[0], headers=wrong_key[1]),
                   await anon_client.post(path, content=stale[0], headers=stale[1]), other_org,
                   await anon_client.post(path, content=body)]
        assert [x.status_code for x in refused] == [403] * 5
        assert {x.json()["code"] for x in refused} == {"invalid_signature"}
        assert await session.scalar(select(func.count()).select_from(InboundEvent)
                                    .where(InboundEvent.org_id == org.id)) == 0
        first = await anon_client.post(path, content=body, headers=headers)
        again = await anon_client.post(path, content=body, headers=headers)
        assert (first.json()["status"], again.json()["status"]) == ("processed", "duplicate")
        # the call's other events: acknowledged once each, nothing recorded
        started = voice_agent.retell(KEY, "call_started", {"call_id": "call-002"}, now_ms)
        acks = [(await anon_client.post(path, content=started[0], headers=started[1])).json()["status"]
                for _ in range(2)]
        assert acks == ["ignored", "duplicate"]
        malformed = voice_agent.retell(KEY, "call_analyzed", {"call_id": "call-003", "from_number": "nobody"}, now_ms)
        bad = await anon_client.post(path, content=malformed[0], headers=malformed[1])
        assert bad.status_code == 400 and bad.json()["code"] == "malformed_webhook"
        await drain(session)
    sessions = (await session.scalars(select(IntakeSession).where(IntakeSession.org_id == org.id))).all()
    assert len(sessions) == 1 and sessions[0].status == "submitted"
    records = (await session.scalars(select(IntakeRecord).where(IntakeRecord.session_id == sessions[0].id))).all()
    assert [r.data for r in records] == [{"text": "Headache"}]


async def test_vapi_report_without_consent_is_kept_unlinked(session, org, anon_client: httpx.AsyncClient,
                                                            client: httpx.AsyncClient,
                                                            voice_agent: VoiceAgentPeer) -> None:
    """Vapi's end-of-call report; the caller gave no consent: the intake is kept, nobody is linked
    and nothing is booked (a ticket asks staff to call back and book)."""
    await configure_channel(session, org, "voice", webhook_secret=KEY)
    caller = new_phone()
    ids = await clinic(client)
    message = {
        "type": "end-of-call-report", "endedReason": "customer-ended-call",
        "call": {"id": "vapi-call-9", "customer": {"number": caller}, "phoneNumber": {"number": CLINIC_NUMBER}},
        "artifact": {"transcript": "User: my knee hurts"},
        "analysis": {"structuredData": {"reason": "Knee pain after running", "consent": "false",
                                        "booking": {**ids, "start_at": "2026-12-01T10:00:00+01:00",
                                                    "confirmed": True}}},
        "startedAt": "2026-11-30T08:00:00Z", "endedAt": "2026-11-30T08:03:00Z",
    }
    body, headers = voice_agent.vapi(KEY, message)
    forged = await anon_client.post(f"/webhooks/voice-agent/{org.id}/vapi", content=body,
                                    headers={**headers, "x-vapi-signature": "0" * 64})
    assert forged.status_code == 403
    r = await anon_client.post(f"/webhooks/voice-agent/{org.id}/vapi", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "processed", r.text
    await drain(session)
    row = await session.scalar(select(IntakeSession).where(IntakeSession.org_id == org.id))
    assert (row.external_ref, row.link_status, row.patient_id, row.appointment_id) == (
        "voice:vapi:vapi-call-9", "unlinked", None, None)
    assert row.status == "submitted"  # complete (a reason), kept for staff to link
    assert await session.scalar(select(func.count()).select_from(Appointment)
                                .where(Appointment.org_id == org.id)) == 0
    subjects = sorted((await session.scalars(select(Ticket.subject).where(Ticket.org_id == org.id))).all())
    assert subjects == ["Call back to book: caller not identified", "Intake submitted (voice)"]


@pytest.mark.slow
async def test_the_same_call_delivered_five_times_at_once_makes_one_session_and_one_booking(
    committed, voice_agent: VoiceAgentPeer
) -> None:
    org, key = await committed.org()
    client = committed.client(key)
    async with committed.session() as s:
        await configure_channel(s, org, "voice", webhook_secret=KEY)
        await s.commit()
    ids = await clinic(client)
    start = (clock.now() + timedelta(days=2)).date()
    slots = await _ok(await client.get("/slots", params={"service_id": ids["service_id"],
                                                         "start_date": start.isoformat(),
                                                         "end_date": (start + timedelta(days=4)).isoformat()}))
    body, headers = voice_agent.retell(KEY, "call_analyzed",
                                       call_payload("call-five", new_phone(), extraction(slots[0], ids),
                                                    start=clock.now()),
                                       int(clock.now().timestamp() * 1000))
    answers = await asyncio.gather(*(committed.client().post(f"/webhooks/voice-agent/{org.id}/retell",
                                                             content=body, headers=headers) for _ in range(5)))
    assert sorted(a.json()["status"] for a in answers) == ["duplicate"] * 4 + ["processed"], [a.text for a in answers]
    await committed.run_worker()
    async with committed.session() as s:
        sessions = (await s.scalars(select(IntakeSession).where(IntakeSession.org_id == org.id))).all()
        booked = await s.scalar(select(func.count()).select_from(Appointment).where(Appointment.org_id == org.id))
    assert len(sessions) == 1 and booked == 1 and sessions[0].appointment_id is not None


async def test_a_call_with_nothing_clinical_makes_no_intake(session, org, anon_client: httpx.AsyncClient,
                                                            voice_agent: VoiceAgentPeer) -> None:
    await configure_channel(session, org, "voice", webhook_secret=KEY)
    with clock.frozen(NOW):
        body, headers = voice_agent.retell(KEY, "call_analyzed", call_payload(
            "call-hours", new_phone(), {"intent": "opening_hours"}), int(NOW.timestamp() * 1000))
        r = await anon_client.post(f"/webhooks/voice-agent/{org.id}/retell", content=body, headers=headers)
        assert r.json()["status"] == "processed"
        await drain(session)
    assert await session.scalar(select(func.count()).select_from(IntakeSession)
                                .where(IntakeSession.org_id == org.id)) == 0
