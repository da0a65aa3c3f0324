"""Create, read, update and the timeline of a patient (the plan's named patient tests)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select

from prm.core import clock
from prm.core.audit import AuditEntry
from prm.core.events import EventRecord
from prm.patients.models import Patient, PatientPhone

from .support import PATIENT


async def test_create_patient(client, session, org):
    response = await client.post("/patients", json=PATIENT)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["display_name"] == "José Núñez García"
    assert body["primary_phone"] == "+34612345678"
    assert [p["number"] for p in body["phones"]] == ["+34612345678", "+14155550132"]
    assert body["phones"][0]["is_primary"] is True and body["phones"][1]["is_primary"] is False
    assert body["primary_email"] == "Jose.Nunez@example.org"
    assert body["identifiers"] == [{"system": "mrn", "value": "MRN-0001", "label": "Hospital MRN"}]
    assert body["preferred_language"] == "es-ES"
    assert body["tags"] == ["vip", "diabetes"]
    assert body["status"] == "active" and body["is_provisional"] is False
    assert body["possible_duplicates"] == []

    stored = await session.get(Patient, uuid.UUID(body["id"]))
    assert stored is not None and stored.org_id == org.id
    assert stored.search_name == "jose nunez garcia"
    phones = (await session.execute(select(PatientPhone.number).where(PatientPhone.patient_id == stored.id)))
    assert set(phones.scalars()) == {"+34612345678", "+14155550132"}
    audits = (await session.scalars(select(AuditEntry).where(AuditEntry.patient_id == stored.id))).all()
    assert [a.action for a in audits] == ["create"]
    event_types = await session.scalars(select(EventRecord.type).where(EventRecord.org_id == org.id))
    assert "patient.created" in set(event_types)


async def test_update_patient(client, session):
    created = (await client.post("/patients", json=PATIENT)).json()

    response = await client.patch(f"/patients/{created['id']}", json={
        "family_name": "Núñez",
        "phones": [{"number": "+1 415 555 0199", "is_primary": True}, {"number": "+34612345678"}],
        "emails": [],
        "timezone": None,
    })

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["family_name"] == "Núñez" and body["given_name"] == "José"  # untouched fields stay
    assert body["birth_date"] == "1984-03-07"
    assert body["primary_phone"] == "+14155550199"
    assert [(p["number"], p["is_primary"]) for p in body["phones"]] == [("+14155550199", True),
                                                                         ("+34612345678", False)]
    assert body["emails"] == [] and body["primary_email"] is None
    assert body["timezone"] is None
    stored = await session.get(Patient, uuid.UUID(created["id"]))
    await session.refresh(stored)
    assert stored.primary_phone == "+14155550199" and stored.search_name == "jose nunez"
    audit = (await session.execute(select(AuditEntry).where(
        AuditEntry.patient_id == stored.id, AuditEntry.action == "update"))).scalar_one()
    assert set(audit.details["fields"]) == {"family_name", "phones", "emails", "timezone"}

    bad = await client.patch(f"/patients/{created['id']}", json={"birth_date": "2999-01-01"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "birth_date"


async def test_get_patient_timeline(client):
    created = (await client.post("/patients", json={"given_name": "Ana", "family_name": "Pérez"})).json()
    pid = created["id"]
    start = clock.now()
    with clock.frozen(start + timedelta(minutes=5)) as c:
        await client.patch(f"/patients/{pid}", json={"family_name": "Pérez Ruiz"})
        c.advance(timedelta(minutes=5))
        await client.post(f"/patients/{pid}/consent",
                          json={"changes": [{"channel": "sms", "purpose": "marketing", "granted": True}]})
        c.advance(timedelta(minutes=5))
        dup = (await client.post("/patients", json={"given_name": "Ana", "family_name": "Perez Ruiz"})).json()
        c.advance(timedelta(minutes=5))
        await client.post(f"/patients/{pid}/merge", json={"duplicate_id": dup["id"]})

    response = await client.get(f"/patients/{pid}/timeline")

    assert response.status_code == 200
    items = response.json()["items"]
    kinds = [i["kind"] for i in items]
    assert kinds[:3] == ["patient.merged", "consent.changed", "patient.updated"]
    assert kinds[-1] == "patient.created"
    ats = [i["at"] for i in items]
    assert ats == sorted(ats, reverse=True)

    first = (await client.get(f"/patients/{pid}/timeline", params={"limit": 2})).json()
    assert [i["kind"] for i in first["items"]] == kinds[:2]
    rest = (await client.get(f"/patients/{pid}/timeline", params={"before": first["next_before"]})).json()
    assert [i["kind"] for i in rest["items"]] == kinds[2:]


async def test_patient_not_found(client, make_client, other_org):
    missing = await client.get(f"/patients/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.json()["code"] == "patient_not_found"

    theirs = await make_client("admin", for_org=other_org)
    created = (await theirs.post("/patients", json={"given_name": "Eve", "family_name": "Other"})).json()
    for method, path, kwargs in [
        ("GET", f"/patients/{created['id']}", {}),
        ("PATCH", f"/patients/{created['id']}", {"json": {"given_name": "Mallory"}}),
        ("DELETE", f"/patients/{created['id']}", {}),
        ("GET", f"/patients/{created['id']}/timeline", {}),
        ("GET", f"/patients/{created['id']}/consent", {}),
        ("GET", f"/patients/{created['id']}/duplicates", {}),
        ("GET", f"/patients/{created['id']}/fhir", {}),
    ]:
        r = await client.request(method, path, **kwargs)
        assert r.status_code == 404, (method, path, r.status_code)
    assert (await theirs.get(f"/patients/{created['id']}")).json()["given_name"] == "Eve"

    deleted = (await client.post("/patients", json={"given_name": "Del", "family_name": "Eted"})).json()
    assert (await client.delete(f"/patients/{deleted['id']}")).status_code == 204
    assert (await client.get(f"/patients/{deleted['id']}")).status_code == 404
    assert (await client.get("/patients", params={"q": "del eted"})).json()["items"] == []
