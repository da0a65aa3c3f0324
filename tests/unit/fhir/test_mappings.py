"""Every mapping gives a resource that validates with fhir.resources R4B and holds only codes of its
value sets, for generated records (property tests); the code check refuses what the library accepts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given, settings
from hypothesis import strategies as st

from prm.fhir import capability, codes, mapping
from prm.fhir.bundles import ChartEntry, Known, digest, transaction

text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
when = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
ids = st.uuids()


def roundtrip(resource: dict[str, Any]) -> None:
    codes.check(resource)
    model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    assert model.model_dump(mode="json", by_alias=True, exclude_none=True) == resource


@settings(max_examples=60, deadline=None)
@given(ids, text, text, st.one_of(st.none(), st.emails()), st.booleans(), st.one_of(st.none(), when))
def test_practitioner(pid: uuid.UUID, name: str, title: str, email: str | None, active: bool,
                      updated: datetime | None) -> None:
    roundtrip(mapping.practitioner(SimpleNamespace(id=pid, name=name, title=title, email=email, is_active=active,
                                                   updated_at=updated)))


@settings(max_examples=60, deadline=None)
@given(ids, ids, text, text, st.sampled_from(["Europe/Madrid", "UTC", "America/New_York"]), st.booleans(),
       st.booleans())
def test_location_and_organisation(lid: uuid.UUID, org_id: uuid.UUID, name: str, address: str, tz: str,
                                   virtual: bool, active: bool) -> None:
    roundtrip(mapping.location(SimpleNamespace(id=lid, name=name, address=address, timezone=tz, is_virtual=virtual,
                                               is_active=active, updated_at=None), org_id))
    roundtrip(mapping.organization(SimpleNamespace(id=org_id, name=name, slug="clinic-1", is_active=active,
                                                   updated_at=None)))


@settings(max_examples=60, deadline=None)
@given(ids, ids, text, text, st.integers(1, 600), st.sampled_from(["in_person", "video"]), st.booleans())
def test_healthcare_service(sid: uuid.UUID, org_id: uuid.UUID, name: str, description: str, minutes: int,
                            mode: str, active: bool) -> None:
    roundtrip(mapping.healthcare_service(SimpleNamespace(id=sid, org_id=org_id, name=name, description=description,
                                                         duration_minutes=minutes, mode=mode, is_active=active,
                                                         updated_at=None)))


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(list(codes.APPOINTMENT_TO_FHIR)), when, st.integers(5, 240), text, st.one_of(st.none(), text),
       st.sampled_from(["in_person", "video"]), st.one_of(st.none(), text))
def test_appointment_status_both_ways(status: str, start: datetime, minutes: int, notes: str,
                                      reason: str | None, mode: str, service_name: str | None) -> None:
    row = SimpleNamespace(id=uuid.uuid4(), patient_id=uuid.uuid4(), practitioner_id=uuid.uuid4(),
                          service_id=uuid.uuid4(), location_id=uuid.uuid4(), start_at=start,
                          end_at=start + timedelta(minutes=minutes), status=status, mode=mode, notes=notes,
                          created_at=start, updated_at=start, cancel_reason=reason)
    resource = mapping.appointment(row, service_name=service_name)
    roundtrip(resource)
    assert status in codes.appointment_statuses_from_fhir(resource["status"])  # the mapping back covers it


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(list(codes.COMMUNICATION_TO_FHIR)), st.sampled_from(["sms", "whatsapp", "email", "voice"]),
       st.sampled_from(["inbound", "outbound"]), st.sampled_from([None, "care", "reminders", "marketing"]),
       st.one_of(st.none(), text), st.one_of(st.none(), text), st.one_of(st.none(), when))
def test_communication(status: str, channel: str, direction: str, purpose: str | None, subject: str | None,
                       body: str | None, at: datetime | None) -> None:
    row = SimpleNamespace(id=uuid.uuid4(), org_id=uuid.uuid4(), patient_id=uuid.uuid4(), channel=channel,
                          direction=direction, purpose=purpose, status=status, subject=subject, body=body,
                          error_code="30003", sent_at=at, delivered_at=at, received_at=at, updated_at=at)
    resource = mapping.communication(row)
    roundtrip(resource)
    assert status in codes.communication_statuses_from_fhir(resource["status"])


@settings(max_examples=40, deadline=None)
@given(ids, ids, ids, when, st.integers(5, 120))
def test_slot_and_schedule(pid: uuid.UUID, lid: uuid.UUID, sid: uuid.UUID, start: datetime, minutes: int) -> None:
    slot = mapping.slot(practitioner_id=pid, location_id=lid, service_id=sid, service_name="Cleaning",
                        start_at=start, end_at=start + timedelta(minutes=minutes))
    roundtrip(slot)
    assert len(slot["id"]) <= 64
    practitioner = SimpleNamespace(id=pid, name="Dr Vega", title="", email=None, is_active=True, updated_at=None)
    roundtrip(mapping.schedule(practitioner, [lid, lid], [(sid, "Cleaning")]))


def test_the_code_check_refuses_what_fhir_resources_accepts() -> None:
    bad = {"resourceType": "Patient", "gender": "robot"}
    get_fhir_model_class("Patient").model_validate(bad)  # the library lets it through
    with pytest.raises(codes.InvalidCode):
        codes.check(bad)
    with pytest.raises(mapping.MappingError, match=r"Appointment\.status"):
        mapping.validated({"resourceType": "Appointment", "status": "done", "participant": [
            {"actor": {"reference": "Patient/1"}, "status": "accepted"}]})
    with pytest.raises(codes.InvalidCode):
        codes.check({"resourceType": "Communication", "status": "completed", "medium": [
            {"coding": [{"system": codes.PARTICIPATION_MODE_SYSTEM, "code": "SMS"}]}]})
    with pytest.raises(codes.InvalidCode):
        codes.check({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "gender": "robot"}}]})


def test_capability_statement_validates() -> None:
    cs = capability.statement(base_url="https://prm.test/fhir/R4", software_version="0.1.0",
                              published_at=datetime(2026, 11, 30, tzinfo=UTC))
    roundtrip(cs)


def test_transaction_conditional_create_then_put_then_nothing() -> None:
    pid, aid = str(uuid.uuid4()), str(uuid.uuid4())
    patient = {"resourceType": "Patient", "id": pid, "identifier": [{"system": "urn:prm:patient", "value": pid}]}
    appointment = {"resourceType": "Appointment", "id": aid, "status": "booked",
                   "participant": [{"actor": {"reference": f"Patient/{pid}"}, "status": "accepted"}]}
    entries = [ChartEntry("Patient", pid, patient, pid), ChartEntry("Appointment", aid, appointment, pid)]
    bundle, carried = transaction(entries, {})
    assert bundle is not None and len(carried) == 2
    first = bundle["entry"][0]
    assert first["request"] == {"method": "POST", "url": "Patient",
                                "ifNoneExist": f"identifier=urn:prm:patient|{pid}"}
    assert "id" not in first["resource"] and first["fullUrl"] == f"urn:uuid:{pid}"
    assert bundle["entry"][1]["resource"]["participant"][0]["actor"]["reference"] == f"urn:uuid:{pid}"
    # the patient is known and unchanged, the appointment known but changed: only a PUT of it
    known = {("Patient", pid): Known("17", digest(patient)), ("Appointment", aid): Known("18", "old")}
    bundle, carried = transaction(entries, known)
    assert bundle is not None and [e.resource_type for e in carried] == ["Appointment"]
    [entry] = bundle["entry"]
    assert entry["request"] == {"method": "PUT", "url": "Appointment/18"} and entry["resource"]["id"] == "18"
    assert entry["resource"]["participant"][0]["actor"]["reference"] == "Patient/17"
    known[("Appointment", aid)] = Known("18", digest(appointment))
    assert transaction(entries, known) == (None, [])


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["male", "female", "other", "unknown"]), text, text,
       st.one_of(st.none(), st.dates(min_value=datetime(1900, 1, 1).date(), max_value=datetime(2030, 1, 1).date())),
       st.sampled_from(["active", "inactive", "deceased"]), st.sampled_from(["en", "es", "pt-BR"]),
       st.one_of(st.none(), st.fixed_dictionaries({"line": st.lists(text, max_size=2), "city": text,
                                                   "postal_code": text, "country": st.sampled_from(["ES", "GB"])})))
def test_patient(gender: str, given_name: str, family_name: str, birth_date: Any, status: str, language: str,
                 address: dict[str, Any] | None) -> None:
    from prm.patients.service import Patient, to_fhir

    patient = Patient(id=uuid.uuid4(), org_id=uuid.uuid4(), gender=gender, given_name=given_name,
                      family_name=family_name, birth_date=birth_date, status=status, preferred_language=language,
                      address=address, primary_phone="+34600111222", primary_email="a@example.org")
    roundtrip(mapping.patient(to_fhir(patient)))


def test_a_summary_without_a_questionnaire_response_relates_to_nothing() -> None:
    """A voice or staff intake has no questionnaire and no answers, so no QuestionnaireResponse: its
    summary must not point at one (an EHR refuses the dangling reference)."""
    from prm.fhir import clinical

    common: dict[str, Any] = {"session_id": uuid.uuid4(), "patient_id": uuid.uuid4(), "text": "Reason: cough",
                              "generated_at": datetime(2026, 11, 30, 9, tzinfo=UTC), "machine_generated": True,
                              "edited": False, "generator": "offline"}
    with_form = clinical.summary_document(**common)
    voice = clinical.summary_document(**common, has_response=False)
    assert with_form["context"]["related"] == [{"reference": f"QuestionnaireResponse/{common['session_id']}"}]
    assert "context" not in voice
