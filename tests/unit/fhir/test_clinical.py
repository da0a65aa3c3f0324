"""The intake mappings validate with fhir.resources R4B and our code check, for generated records."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given, settings
from hypothesis import strategies as st

from prm.fhir import clinical, codes

words = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
maybe = st.one_of(st.none(), words)
AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def check(resource: dict[str, Any]) -> None:
    codes.check(resource)
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


RECORDS = st.one_of(
    st.fixed_dictionaries({"type": st.just("condition"), "data": st.fixed_dictionaries(
        {"name": words}, optional={"status": st.sampled_from(["active", "resolved", "unknown"]),
                                   "onset_date": st.dates().map(str), "notes": maybe})}),
    st.fixed_dictionaries({"type": st.just("symptom"), "data": st.fixed_dictionaries(
        {"name": words}, optional={"severity": st.sampled_from(["mild", "moderate", "severe"]),
                                   "onset_text": words, "duration_days": st.integers(0, 400), "notes": maybe})}),
    st.fixed_dictionaries({"type": st.just("allergy"), "data": st.fixed_dictionaries(
        {"substance": words}, optional={"reaction": maybe, "severity": st.sampled_from(["mild", "moderate", "severe"]),
                                        "category": st.sampled_from(["food", "medication", "environment",
                                                                     "biologic"])})}),
    st.fixed_dictionaries({"type": st.just("medication"), "data": st.fixed_dictionaries(
        {"name": words}, optional={"dose": maybe, "frequency": maybe, "route": maybe,
                                   "status": st.sampled_from(["active", "stopped", "unknown"])})}),
    st.fixed_dictionaries({"type": st.just("vital"), "data": st.one_of(
        st.fixed_dictionaries({"kind": st.sampled_from(sorted(set(clinical.VITALS) - {"blood_pressure"})),
                               "value": st.floats(0, 500), "unit": st.sampled_from(["kg", "cm", "Cel", "/min"])}),
        st.fixed_dictionaries({"kind": st.just("blood_pressure"), "systolic": st.integers(50, 250),
                               "diastolic": st.integers(30, 150), "unit": st.just("mm[Hg]")}))}),
    st.fixed_dictionaries({"type": st.just("social_history"), "data": st.fixed_dictionaries(
        {"aspect": st.sampled_from(["smoking", "alcohol", "occupation", "other"]), "value": words})}),
    st.fixed_dictionaries({"type": st.just("chief_complaint"), "data": st.fixed_dictionaries({"text": words})}),
    st.fixed_dictionaries({"type": st.just("family_history"), "data": st.fixed_dictionaries(
        {"relationship": words, "condition": words})}),
)


@settings(max_examples=150, deadline=None)
@given(RECORDS)
def test_every_record_type_maps_to_a_valid_resource(rec: dict[str, Any]) -> None:
    resource = clinical.record(record_id=uuid.uuid4(), record_type=rec["type"], data=rec["data"],
                               patient_id=uuid.uuid4(), recorded_at=AT)
    assert resource is not None and resource["resourceType"] == clinical.RECORD_RESOURCE[rec["type"]]
    check(resource)


def test_vitals_carry_loinc_and_ucum() -> None:
    bp = clinical.record(record_id=uuid.uuid4(), record_type="vital", patient_id=uuid.uuid4(), recorded_at=AT,
                         data={"kind": "blood_pressure", "systolic": 128, "diastolic": 82, "unit": "mm[Hg]"})
    assert bp is not None and bp["code"]["coding"][0]["code"] == "85354-9"
    assert [c["valueQuantity"]["value"] for c in bp["component"]] == [128, 82]
    assert bp["component"][0]["valueQuantity"]["system"] == clinical.UCUM
    assert clinical.record(record_id=uuid.uuid4(), record_type="insurance", data={"payer": "X"},
                           patient_id=uuid.uuid4(), recorded_at=AT) is None


def test_questionnaire_and_response_and_summary() -> None:
    items = [{"linkId": "smoker", "text": "Do you smoke?", "type": "boolean", "required": True},
             {"linkId": "pain", "text": "Pain 0-10", "type": "integer"},
             {"linkId": "reason", "text": "Reason", "type": "choice",
              "answerOption": [{"valueCoding": {"system": "urn:prm:reason", "code": "checkup"}}]},
             {"linkId": "meds", "text": "Medicines", "type": "string", "repeats": True}]
    qid, sid, pid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    q = clinical.questionnaire(questionnaire_id=qid, key="new-patient", title="New patient", description="",
                               version=3, items=items)
    check(q)
    qr = clinical.questionnaire_response(
        session_id=sid, status="submitted", patient_id=pid, questionnaire_key="new-patient", questionnaire_version=3,
        items=items, answers=[{"link_id": "smoker", "value": False}, {"link_id": "pain", "value": 4},
                              {"link_id": "reason", "value": "checkup"}, {"link_id": "meds", "value": ["a", "b"]}],
        authored_at=AT)
    check(qr)
    assert qr["status"] == "completed" and qr["questionnaire"] == f"{q['url']}|3"
    answers = {i["linkId"]: i["answer"] for i in qr["item"]}
    assert answers["smoker"] == [{"valueBoolean": False}] and answers["pain"] == [{"valueInteger": 4}]
    assert answers["reason"][0]["valueCoding"]["code"] == "checkup" and len(answers["meds"]) == 2
    doc = clinical.summary_document(session_id=sid, patient_id=pid, text="Ana, 41: toothache for 3 days.",
                                    generated_at=AT, machine_generated=True, edited=False, generator="offline")
    check(doc)
    assert doc["docStatus"] == "preliminary"
    assert base64.b64decode(doc["content"][0]["attachment"]["data"]).decode().startswith("Ana")
