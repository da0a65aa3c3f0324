"""Input validation of the patient record (the plan's named patient tests)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from sqlalchemy import func, select

from prm.core.events import EventRecord
from prm.patients.models import Patient, PatientPhone

from .support import PATIENT


async def _written_by_bad_phone_requests(session, org) -> tuple[int, int, int]:
    """What a refused "Bad Phone" request could have left in `org`: patients, phones, patient events."""
    patients = await session.scalar(select(func.count()).select_from(Patient).where(
        Patient.org_id == org.id, Patient.family_name == "Phone"))
    phones = await session.scalar(select(func.count()).select_from(PatientPhone).where(
        PatientPhone.org_id == org.id, PatientPhone.number == "+34612345678"))
    created = await session.scalar(select(func.count()).select_from(EventRecord).where(
        EventRecord.org_id == org.id, EventRecord.type == "patient.created"))
    return patients, phones, created


async def test_invalid_phone_number(client, session, org):
    assert await _written_by_bad_phone_requests(session, org) == (0, 0, 0)
    for number in ["not a number", "+34 12", "+1 555 000 0000000000", "12"]:
        response = await client.post("/patients", json={
            "given_name": "Bad", "family_name": "Phone",
            "phones": [{"number": "+34612345678"}, {"number": number}]})
        assert response.status_code == 422, number
        body = response.json()
        assert body["errors"][0]["field"] == "phones.1.number"
        assert body["code"] == "invalid_phone_number"
    # nothing written: no patient, none of its phones (the valid first one included), no event
    assert await _written_by_bad_phone_requests(session, org) == (0, 0, 0)

    search = await client.get("/patients", params={"phone": "banana"})
    assert search.status_code == 422 and search.json()["errors"][0]["field"] == "phone"


async def test_invalid_email_and_future_birth_date(client):
    r = await client.post("/patients", json={"given_name": "A", "family_name": "B",
                                             "emails": [{"email": "not-an-email"}]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "emails.0.email"
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    r = await client.post("/patients", json={"given_name": "A", "family_name": "B", "birth_date": tomorrow})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "birth_date"
    r = await client.post("/patients", json={"given_name": "A", "family_name": "B", "timezone": "Mars/Base"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "timezone"
    r = await client.post("/patients", json={"given_name": "A", "family_name": "B", "gender": "robot"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "gender"


async def test_blank_address_line_is_422_and_fhir_export_skips_stored_blank_lines(client, session, org):
    """Found by fuzzing: a blank address line was stored, then the FHIR export failed with a 500."""
    r = await client.post("/patients", json={**PATIENT, "address": {"line": ["Calle Mayor 1", "  "]}})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in r.json()["errors"]] == ["address.line.1"]

    created = (await client.post("/patients", json=PATIENT)).json()
    patient = await session.get(Patient, uuid.UUID(created["id"]))
    patient.address = {"line": ["", "Calle Mayor 1"], "city": "Madrid"}  # written before the rule existed
    await session.flush()
    r = await client.get(f"/patients/{created['id']}/fhir")
    assert r.status_code == 200, r.text
    assert r.json()["address"] == [{"line": ["Calle Mayor 1"], "city": "Madrid"}]


async def test_time_zone_folder_or_overlong_name_is_422(client):
    """Found by fuzzing: `zoneinfo` raises OSError (not ValueError) for `America` or a 300-letter name."""
    for zone in ("America", "E" * 60 + "/" + "x" * 3):
        r = await client.post("/patients", json={**PATIENT, "timezone": zone})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "timezone"
