"""Merging a duplicate into a survivor: one transaction, every module's rows move, reads redirect."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from prm.core.audit import AuditEntry
from prm.patients import registry
from prm.patients import service as patients
from prm.patients.models import Consent, Patient, PatientIdentifier


async def _create(client, **body):
    body.setdefault("given_name", "Ana")
    body.setdefault("family_name", "Pérez")
    r = await client.post("/patients", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def test_merge_moves_contacts_identifiers_consent_and_module_rows(client, session, org, monkeypatch):
    calls = []

    async def fake_module(session_, org_id, duplicate_id, survivor_id):
        calls.append((org_id, duplicate_id, survivor_id))
        return 3

    monkeypatch.setitem(registry._merge_handlers, "appointments_fake", fake_module)
    survivor = await _create(client, phones=[{"number": "+34612000001"}], birth_date="1980-01-02",
                             identifiers=[{"system": "mrn", "value": "S-1"}])
    duplicate = await _create(client, family_name="Perez", gender="female", timezone="Europe/Madrid",
                              phones=[{"number": "+34612000001"}, {"number": "+34612000002"}],
                              emails=[{"email": "ana@example.org"}],
                              identifiers=[{"system": "urn:oid:1.2.3", "value": "EXT-9"}], tags=["vip"])
    await client.post(f"/patients/{duplicate['id']}/consent",
                      json={"changes": [{"channel": "sms", "purpose": "marketing", "granted": True}]})

    r = await client.post(f"/patients/{survivor['id']}/merge", json={"duplicate_id": duplicate["id"]})

    assert r.status_code == 200, r.text
    body = r.json()
    merged = body["survivor"]
    assert body["moved"]["appointments_fake"] == 3
    assert calls == [(org.id, uuid.UUID(duplicate["id"]), uuid.UUID(survivor["id"]))]
    assert [p["number"] for p in merged["phones"]] == ["+34612000001", "+34612000002"]
    assert merged["primary_phone"] == "+34612000001"
    assert merged["primary_email"] == "ana@example.org"  # the survivor had none: adopted
    assert {i["value"] for i in merged["identifiers"]} == {"S-1", "EXT-9"}
    assert merged["gender"] == "female" and merged["timezone"] == "Europe/Madrid"  # blanks filled
    assert merged["birth_date"] == "1980-01-02" and merged["tags"] == ["vip"]

    dup = await session.get(Patient, uuid.UUID(duplicate["id"]))
    await session.refresh(dup)
    assert dup.status == "merged" and dup.merged_into_id == uuid.UUID(survivor["id"])
    owners = set(await session.scalars(select(PatientIdentifier.patient_id).where(
        PatientIdentifier.org_id == org.id)))
    assert owners == {uuid.UUID(survivor["id"])}
    consents = (await session.scalars(select(Consent).where(Consent.org_id == org.id))).all()
    assert {c.patient_id for c in consents} == {uuid.UUID(survivor["id"])}
    decision = await patients.consent_allows(session, org.id, uuid.UUID(survivor["id"]), channel="sms",
                                             purpose="marketing")
    assert decision.allowed
    actions = set(await session.scalars(select(AuditEntry.action).where(
        AuditEntry.patient_id == uuid.UUID(duplicate["id"]))))
    assert "merge" in actions

    # the merged patient's phone now finds the survivor; reads of the duplicate redirect
    found = await patients.find_by_phone(session, org.id, "+34 612 000 002")
    assert found is not None and str(found.id) == survivor["id"]
    moved = await client.get(f"/patients/{duplicate['id']}")
    assert moved.status_code == 308
    assert moved.headers["location"] == f"/patients/{survivor['id']}"
    assert moved.json()["merged_into_id"] == survivor["id"]
    timeline = await client.get(f"/patients/{duplicate['id']}/timeline", params={"limit": 5})
    assert timeline.status_code == 308
    assert timeline.headers["location"] == f"/patients/{survivor['id']}/timeline?limit=5"
    raw = await client.get(f"/patients/{duplicate['id']}", params={"follow_merged": "false"})
    assert raw.status_code == 200 and raw.json()["status"] == "merged"
    resolved = await patients.resolve(session, org.id, uuid.UUID(duplicate["id"]))
    assert str(resolved.id) == survivor["id"]
    listed = await client.get("/patients", params={"q": "ana perez"})
    assert [p["id"] for p in listed.json()["items"]] == [survivor["id"]]


async def test_merge_conflicts(client):
    a = await _create(client)
    b = await _create(client, given_name="Bea")
    c = await _create(client, given_name="Cris")

    same = await client.post(f"/patients/{a['id']}/merge", json={"duplicate_id": a["id"]})
    assert same.status_code == 409 and same.json()["code"] == "merge_into_self"

    first = await client.post(f"/patients/{a['id']}/merge", json={"duplicate_id": b["id"]})
    assert first.status_code == 200
    into_merged = await client.post(f"/patients/{b['id']}/merge", json={"duplicate_id": c["id"]})
    assert into_merged.status_code == 409 and into_merged.json()["code"] == "survivor_merged"
    again = await client.post(f"/patients/{c['id']}/merge", json={"duplicate_id": b["id"]})
    assert again.status_code == 409 and again.json()["code"] == "already_merged"
    missing = await client.post(f"/patients/{a['id']}/merge", json={"duplicate_id": str(uuid.uuid4())})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "duplicate_id"  # an id in a body
    no_survivor = await client.post(f"/patients/{uuid.uuid4()}/merge", json={"duplicate_id": a["id"]})
    assert no_survivor.status_code == 404  # the path's patient

    edit = await client.patch(f"/patients/{b['id']}", json={"given_name": "X"})
    assert edit.status_code == 409 and edit.json()["merged_into_id"] == a["id"]
    assert (await client.delete(f"/patients/{b['id']}")).status_code == 409


async def test_merge_is_all_or_nothing(client, session, org, monkeypatch):
    async def broken(session_, org_id, duplicate_id, survivor_id):
        raise RuntimeError("module failed")

    monkeypatch.setitem(registry._merge_handlers, "zz_broken", broken)
    a = await _create(client, phones=[{"number": "+34612000011"}])
    b = await _create(client, phones=[{"number": "+34612000012"}],
                      identifiers=[{"system": "mrn", "value": "B"}])

    failed = await client.post(f"/patients/{a['id']}/merge", json={"duplicate_id": b["id"]})
    assert failed.status_code == 500 and failed.json()["code"] == "internal_error"

    dup = await session.get(Patient, uuid.UUID(b["id"]))
    await session.refresh(dup)
    assert dup.status == "active" and dup.merged_into_id is None
    owner = await session.scalar(select(PatientIdentifier.patient_id).where(
        PatientIdentifier.value == "B", PatientIdentifier.org_id == org.id))
    assert owner == uuid.UUID(b["id"])


async def test_merge_consent_disagreement_keeps_the_opt_out(client, session, org):
    a = await _create(client)
    b = await _create(client, given_name="Bea")
    await client.post(f"/patients/{a['id']}/consent",
                      json={"changes": [{"channel": "email", "purpose": "reminders", "granted": True}]})
    await client.post(f"/patients/{b['id']}/consent",
                      json={"changes": [{"channel": "email", "purpose": "reminders", "granted": False}]})
    r = await client.post(f"/patients/{a['id']}/merge", json={"duplicate_id": b["id"]})
    assert r.status_code == 200
    decision = await patients.consent_allows(session, org.id, uuid.UUID(a["id"]), channel="email",
                                             purpose="reminders")
    assert not decision.allowed and decision.reason == "opted_out"
    # asking about the merged patient answers for the survivor
    via_dup = await patients.consent_allows(session, org.id, uuid.UUID(b["id"]), channel="email",
                                            purpose="reminders")
    assert via_dup == decision


async def test_chained_merge_points_at_the_final_survivor(client, session, org):
    a = await _create(client)
    b = await _create(client, given_name="Bea")
    c = await _create(client, given_name="Cris")
    await client.post(f"/patients/{b['id']}/merge", json={"duplicate_id": c["id"]})
    await client.post(f"/patients/{a['id']}/merge", json={"duplicate_id": b["id"]})
    stored = await session.get(Patient, uuid.UUID(c["id"]))
    await session.refresh(stored)
    assert stored.merged_into_id == uuid.UUID(a["id"])
    r = await client.get(f"/patients/{c['id']}")
    assert r.status_code == 308 and r.headers["location"] == f"/patients/{a['id']}"
