"""The functions other modules call: get, resolve, find_by_phone, create_provisional, to_fhir."""

from __future__ import annotations

import uuid

import pytest
from fhir.resources.R4B.patient import Patient as FhirPatient
from sqlalchemy import select

from prm.core.audit import AuditEntry
from prm.core.errors import NotFound, ValidationFailed
from prm.patients import service as patients
from prm.patients.models import Patient
from tests.fixtures.factories import make_patient


async def test_get_is_scoped_to_the_org_and_hides_deleted(client, session, org, other_org):
    mine = await make_patient(session, org, given_name="Ana")
    assert (await patients.get(session, org.id, mine.id)).given_name == "Ana"
    with pytest.raises(NotFound):
        await patients.get(session, other_org.id, mine.id)
    with pytest.raises(NotFound):
        await patients.get(session, org.id, uuid.uuid4())
    await client.delete(f"/patients/{mine.id}")
    with pytest.raises(NotFound):
        await patients.get(session, org.id, mine.id)


async def test_find_by_phone_accepts_any_format_and_ignores_other_orgs(session, org, other_org):
    ana = await make_patient(session, org, given_name="Ana", phone="+34 612 345 678")
    await make_patient(session, other_org, given_name="Eve", phone="+34612345679")
    for raw in ["+34612345678", "0034 612 34 56 78", "whatsapp:+34612345678", "tel:+34-612-345-678"]:
        found = await patients.find_by_phone(session, org.id, raw)
        assert found is not None and found.id == ana.id, raw
    assert await patients.find_by_phone(session, org.id, "+34612345679") is None  # other org's number
    assert await patients.find_by_phone(session, org.id, "garbage") is None
    assert await patients.find_by_phone(session, org.id, "+14155550100") is None


async def test_find_by_phone_prefers_confirmed_patients(session, org):
    provisional = await patients.create_provisional(session, org.id, phone="+34612000300", source="whatsapp")
    assert (await patients.find_by_phone(session, org.id, "+34612000300")).id == provisional.id
    real = await make_patient(session, org, given_name="Ana", phone="+34612000300")
    assert (await patients.find_by_phone(session, org.id, "+34612000300")).id == real.id


async def test_create_provisional(session, org):
    patient = await patients.create_provisional(session, org.id, phone="+1 (415) 555-0177", source="sms")

    assert patient.is_provisional and patient.primary_phone == "+14155550177"
    assert patient.source == "sms" and patient.status == "active"
    assert patient.preferred_channel == "sms"
    assert patient.display_name == "+14155550177"
    again = await patients.create_provisional(session, org.id, phone="4155550177", source="sms")
    assert again.id == patient.id  # get-or-create
    stored = (await session.scalars(select(Patient).where(Patient.org_id == org.id))).all()
    assert len(stored) == 1
    audit = await session.scalar(select(AuditEntry).where(AuditEntry.patient_id == patient.id))
    assert audit.action == "create" and audit.actor_kind == "system"
    with pytest.raises(ValidationFailed):
        await patients.create_provisional(session, org.id, phone="not a phone", source="sms")


async def test_naming_a_provisional_patient_confirms_it(client, session, org):
    patient = await patients.create_provisional(session, org.id, phone="+34612000400", source="voice")
    r = await client.patch(f"/patients/{patient.id}", json={"given_name": "Luis", "family_name": "Gómez"})
    assert r.status_code == 200
    assert r.json()["is_provisional"] is False and r.json()["primary_phone"] == "+34612000400"


async def test_to_fhir_is_a_valid_r4b_patient(client, session, org):
    created = (await client.post("/patients", json={
        "given_name": "José Luis", "family_name": "Núñez", "birth_date": "1984-03-07", "gender": "male",
        "phones": [{"number": "+34612345678"}], "emails": [{"email": "jl@example.org", "kind": "work"}],
        "identifiers": [{"system": "mrn", "value": "M1"},
                        {"system": "https://ehr.example.org/id", "value": "E1"}],
        "address": {"line": ["Calle Mayor 1"], "city": "Madrid", "country": "ES"},
        "preferred_language": "es", "status": "deceased", "deceased_date": "2026-01-01",
    })).json()
    patient = await patients.get(session, org.id, uuid.UUID(created["id"]), with_contacts=True)

    resource = patients.to_fhir(patient)

    assert isinstance(resource, FhirPatient)
    data = resource.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert data["name"][0]["family"] == "Núñez" and data["name"][0]["given"] == ["José", "Luis"]
    assert data["gender"] == "male" and data["birthDate"] == "1984-03-07"
    assert {"system": "phone", "value": "+34612345678", "use": "mobile", "rank": 1} in data["telecom"]
    assert {(i["system"], i["value"]) for i in data["identifier"]} >= {
        ("urn:prm:identifier:mrn", "M1"), ("https://ehr.example.org/id", "E1")}
    assert data["deceasedDateTime"] == "2026-01-01"
    assert data["communication"][0]["language"]["coding"][0]["code"] == "es"
    FhirPatient.model_validate(data)  # round-trips

    api = await client.get(f"/patients/{created['id']}/fhir")
    assert api.status_code == 200 and api.headers["content-type"].startswith("application/fhir+json")
    assert api.json()["resourceType"] == "Patient"

    patient.gender = "robot"
    with pytest.raises(ValueError, match="administrative-gender"):
        patients.to_fhir(patient)


async def test_to_fhir_without_loaded_contacts_uses_the_primaries(session, org):
    made = await make_patient(session, org, phone="+34612000500", email="p@example.org")
    session.expunge_all()
    plain = await patients.get(session, org.id, made.id)
    data = patients.to_fhir(plain).model_dump(mode="json", exclude_none=True)
    assert {t["value"] for t in data["telecom"]} == {"+34612000500", "p@example.org"}


async def test_reads_and_searches_are_audited(client, session, org):
    created = (await client.post("/patients", json={"given_name": "Ana", "family_name": "Pérez"})).json()
    await client.get(f"/patients/{created['id']}")
    await client.get("/patients", params={"q": "ana"})
    rows = (await session.scalars(select(AuditEntry).where(AuditEntry.org_id == org.id)
                                  .order_by(AuditEntry.id))).all()
    actions = [(r.action, r.resource_type) for r in rows]
    assert ("read", "patient") in actions
    search = next(r for r in rows if r.action == "search")
    assert search.details["filters"] == ["q"] and search.details["patient_ids"] == [created["id"]]
    assert "Ana" not in str(search.details)  # no PHI in audit details


async def test_roles(make_client):
    support = await make_client("support_agent")
    assert (await support.get("/patients")).status_code == 200
    denied = await support.post("/patients", json={"given_name": "A", "family_name": "B"})
    assert denied.status_code == 403
    anonymous = await make_client("anonymous")
    assert (await anonymous.get("/patients")).status_code == 401


async def test_identifier_unique_per_org_and_system(client, make_client, other_org):
    body = {"given_name": "A", "family_name": "B", "identifiers": [{"system": "mrn", "value": "X-1"}]}
    assert (await client.post("/patients", json=body)).status_code == 201
    taken = await client.post("/patients", json=body)
    assert taken.status_code == 409 and taken.json()["code"] == "identifier_taken"
    other_system = {**body, "identifiers": [{"system": "urn:oid:9.9", "value": "X-1"}]}
    assert (await client.post("/patients", json=other_system)).status_code == 201
    theirs = await make_client("admin", for_org=other_org)
    assert (await theirs.post("/patients", json=body)).status_code == 201

    second = (await client.post("/patients", json={"given_name": "C", "family_name": "D"})).json()
    holder = (await client.get("/patients", params={"identifier": "mrn|X-1"})).json()["items"][0]
    assert (await client.delete(f"/patients/{holder['id']}")).status_code == 204
    reused = await client.post("/patients", json={**body, "given_name": "Again"})
    assert reused.status_code == 201  # a deleted patient's identifiers are released

    steal = await client.patch(f"/patients/{second['id']}",
                               json={"identifiers": [{"system": "mrn", "value": "X-1"}]})
    assert steal.status_code == 409


async def test_update_validates_and_changes_nothing_on_error(client):
    created = (await client.post("/patients", json={"given_name": "A", "family_name": "B",
                                                    "phones": [{"number": "+34612000600"}]})).json()
    bad = await client.patch(f"/patients/{created['id']}", json={
        "given_name": "Changed", "phones": [{"number": "+34612000601"}, {"number": "nope"}]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "phones.1.number"
    two_primaries = await client.patch(f"/patients/{created['id']}", json={
        "phones": [{"number": "+34612000601", "is_primary": True},
                   {"number": "+34612000602", "is_primary": True}]})
    assert two_primaries.status_code == 422
    null_name = await client.patch(f"/patients/{created['id']}", json={"given_name": None})
    assert null_name.status_code == 422
    lang = await client.patch(f"/patients/{created['id']}", json={"preferred_language": "not a tag!"})
    assert lang.status_code == 422 and lang.json()["errors"][0]["field"] == "preferred_language"
    after = (await client.get(f"/patients/{created['id']}")).json()
    assert after["given_name"] == "A" and after["primary_phone"] == "+34612000600"


async def test_list_filters_by_status_tag_and_provisional(client, session, org):
    await client.post("/patients", json={"given_name": "A", "family_name": "Active", "tags": ["VIP"]})
    await client.post("/patients", json={"given_name": "I", "family_name": "Inactive", "status": "inactive"})
    await patients.create_provisional(session, org.id, phone="+34612000700", source="sms")

    async def families(**params):
        return [p["family_name"] for p in (await client.get("/patients", params=params)).json()["items"]]

    assert await families(status="inactive") == ["Inactive"]
    assert await families(tag="vip") == ["Active"]
    assert await families(is_provisional="true") == [""]
    assert len(await families()) == 3


async def test_update_replaces_identifiers_and_emails(client, session, org):
    created = (await client.post("/patients", json={
        "given_name": "A", "family_name": "B", "emails": [{"email": "a@example.org"}],
        "identifiers": [{"system": "mrn", "value": "K-1"}, {"system": "urn:oid:1.2", "value": "OLD"}]})).json()

    r = await client.patch(f"/patients/{created['id']}", json={
        "emails": [{"email": "new@example.org", "is_primary": True}, {"email": "A@Example.org", "kind": "work"}],
        "identifiers": [{"system": "mrn", "value": "K-1", "label": "MRN"}, {"system": "urn:oid:1.2", "value": "NEW"}],
        "address": {"line": ["1 High St"], "city": "London"}, "tags": ["a", "A", "b"],
        "preferred_language": "en-gb", "gender": "female",
    })

    assert r.status_code == 200, r.text
    body = r.json()
    assert [(e["email"], e["kind"], e["is_primary"]) for e in body["emails"]] == [
        ("new@example.org", "personal", True), ("A@example.org", "work", False)]
    assert body["primary_email"] == "new@example.org"
    assert {(i["system"], i["value"], i["label"]) for i in body["identifiers"]} == {
        ("mrn", "K-1", "MRN"), ("urn:oid:1.2", "NEW", None)}
    assert body["address"] == {"line": ["1 High St"], "city": "London"}
    assert body["tags"] == ["a", "b"] and body["preferred_language"] == "en-GB"
    # the old identifier is free again
    other = await client.post("/patients", json={"given_name": "C", "family_name": "D",
                                                 "identifiers": [{"system": "urn:oid:1.2", "value": "OLD"}]})
    assert other.status_code == 201
    # an update that changes nothing records no change
    same = await client.patch(f"/patients/{created['id']}", json={"gender": "female"})
    assert same.status_code == 200
    items = (await client.get(f"/patients/{created['id']}/timeline")).json()["items"]
    assert [i["kind"] for i in items].count("patient.updated") == 1
