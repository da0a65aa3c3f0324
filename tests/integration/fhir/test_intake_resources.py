"""Submitted intakes in the FHIR view: in the chart pushed to the EHR (every resource validated by the
peer), in the read API and in the bulk export."""

from __future__ import annotations

import json
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import select

from prm.core import clock, jobs
from prm.fhir.models import SyncRun
from tests.fixtures.fhir_peer import FhirPeer
from tests.integration.fhir.conftest import NOW
from tests.integration.fhir.test_sync import ALL, connect

QUESTIONNAIRE = {"key": "new-patient", "title": "New patient", "item": [
    {"linkId": "reason", "text": "What brings you in?", "type": "text", "required": True},
    {"linkId": "smoker", "text": "Do you smoke?", "type": "boolean", "required": True}]}
RECORDS = [
    {"client_item_id": "reason", "type": "answer", "data": {"link_id": "reason", "value": "Toothache"}},
    {"client_item_id": "smoker", "type": "answer", "data": {"link_id": "smoker", "value": False}},
    {"client_item_id": "cc", "type": "chief_complaint", "data": {"text": "Toothache for three days"}},
    {"client_item_id": "s1", "type": "symptom", "data": {"name": "toothache", "severity": "moderate",
                                                         "duration_days": 3}},
    {"client_item_id": "m1", "type": "medication", "data": {"name": "Ibuprofen", "dose": "400 mg",
                                                            "frequency": "every 8 hours"}},
    {"client_item_id": "a1", "type": "allergy", "data": {"substance": "Penicillin", "reaction": "hives",
                                                         "severity": "moderate", "category": "medication"}},
    {"client_item_id": "c1", "type": "condition", "data": {"name": "Asthma", "status": "active"}},
    {"client_item_id": "v1", "type": "vital", "data": {"kind": "blood_pressure", "systolic": 128, "diastolic": 82}},
    {"client_item_id": "f1", "type": "family_history", "data": {"relationship": "mother", "condition": "diabetes"}},
    {"client_item_id": "i1", "type": "insurance", "data": {"payer": "Sanitas", "member_number": "X-1"}},
]
EXPECTED = {"Questionnaire": 1, "QuestionnaireResponse": 1, "Observation": 2, "Condition": 2,
            "MedicationStatement": 1, "AllergyIntolerance": 1, "FamilyMemberHistory": 1, "DocumentReference": 1}


async def submit_intake(client: Any, session: Any, patient_id: Any) -> str:
    async def ok(r: Any, status: int = 200) -> Any:
        assert r.status_code == status, r.text
        return r.json()

    await ok(await client.post("/intake/questionnaires", json=QUESTIONNAIRE), 201)
    intake = await ok(await client.post("/intake/sessions", json={"source": "web_form",
                                                                   "questionnaire_key": "new-patient"}), 201)
    await ok(await client.post(f"/intake/sessions/{intake['id']}/records", json={"records": RECORDS}))
    await ok(await client.post(f"/intake/sessions/{intake['id']}/link", json={
        "patient_id": str(patient_id), "consent": {"granted": True, "method": "electronic"}}))
    await ok(await client.post(f"/intake/sessions/{intake['id']}/submit", json={}))
    return str(intake["id"])


async def test_a_submitted_intake_reaches_the_ehr_complete(world: Any, client: Any, session: Any,
                                                           fhir_peer: FhirPeer) -> None:
    await connect(client, fhir_peer)
    with clock.frozen(NOW):
        await jobs.run_due(session, names=ALL)
        await submit_intake(client, session, world.patient.id)
        for _ in range(3):  # submitted → sync; summary job → summarised → sync again
            await jobs.run_due(session, names=[*ALL, "intake.summarise"])
    assert fhir_peer.rejected == []
    counts = {t: len(fhir_peer.of_type(t)) for t in EXPECTED}
    assert counts == EXPECTED
    [patient] = fhir_peer.of_type("Patient")
    for t in ("Condition", "Observation", "MedicationStatement", "QuestionnaireResponse", "DocumentReference"):
        for resource in fhir_peer.of_type(t):
            assert resource["subject"]["reference"] == f"Patient/{patient['id']}", t
    [allergy] = fhir_peer.of_type("AllergyIntolerance")
    assert allergy["patient"]["reference"] == f"Patient/{patient['id']}"
    runs = list(await session.scalars(select(SyncRun).order_by(SyncRun.created_at)))
    assert {t for r in runs for t in r.triggers} >= {"intake.submitted", "intake.summarised"}
    assert all(r.status == "succeeded" for r in runs)


async def test_intake_resources_in_the_read_api_and_the_export(world: Any, client: Any, session: Any) -> None:
    with clock.frozen(NOW):
        await submit_intake(client, session, world.patient.id)
        await jobs.run_due(session, names=["intake.summarise"])
    pid = world.patient.id
    for resource_type, count in EXPECTED.items():
        params = {} if resource_type == "Questionnaire" else {"patient": f"Patient/{pid}"}
        r = await client.get(f"/fhir/R4/{resource_type}", params=params)
        assert r.status_code == 200, (resource_type, r.text)
        bundle = r.json()
        assert bundle["total"] == count, resource_type
        first = bundle["entry"][0]["resource"]
        r = await client.get(f"/fhir/R4/{resource_type}/{first['id']}")
        assert r.status_code == 200 and r.json() == first, resource_type
    r = await client.get("/fhir/R4/Observation", params={"patient": str(pid), "category": "vital-signs"})
    assert r.json()["total"] == 1
    r = await client.get("/fhir/R4/Condition")
    assert r.status_code == 400  # clinical searches name the patient
    assert (await client.get("/fhir/R4/Questionnaire", params={"name": "new-pat"})).json()["total"] == 1
    assert (await client.get("/fhir/R4/Questionnaire", params={"name": "new_pat"})).json()["total"] == 0
    r = await client.get("/fhir/R4/Patient/$export", headers={"Prefer": "respond-async"})
    assert r.status_code == 202
    with clock.frozen(NOW):
        await jobs.run_due(session, names=["fhir.export"])
        manifest = (await client.get(r.headers["content-location"].replace("https://prm.test", ""))).json()
    exported = {o["type"]: o for o in manifest["output"]}
    for resource_type, count in EXPECTED.items():
        if resource_type == "Questionnaire":
            continue  # not in the patient compartment
        assert exported[resource_type]["count"] == count, resource_type
        body = (await client.get(exported[resource_type]["url"].replace("https://prm.test", ""))).text
        for line in body.splitlines():
            resource = json.loads(line)
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
