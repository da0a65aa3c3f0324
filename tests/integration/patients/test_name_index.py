"""The name-word index behind fuzzy search follows every change of the record (trigger)."""

from __future__ import annotations

from sqlalchemy import select

from prm.patients import service as patients
from prm.patients.models import PatientNameTerm, PatientNameWord


async def _names(client, **params):
    r = await client.get("/patients", params=params)
    assert r.status_code == 200, r.text
    return [p["display_name"] for p in r.json()["items"]]


async def test_index_follows_renames_deletes_and_merges(client, session, org):
    ana = (await client.post("/patients", json={"given_name": "Ána", "family_name": "O'Brien-Núñez"})).json()
    words = set(await session.scalars(select(PatientNameWord.word).where(PatientNameWord.org_id == org.id)))
    assert words == {"ana", "o", "brien", "nunez"}
    terms = set(await session.scalars(select(PatientNameTerm.word).where(PatientNameTerm.org_id == org.id)))
    assert words <= terms
    assert await _names(client, q="obrien nunez") == ["Ána O'Brien-Núñez"]  # similar to "brien"
    assert await _names(client, q="o'brien nunez") == ["Ána O'Brien-Núñez"]

    await client.patch(f"/patients/{ana['id']}", json={"family_name": "Smith"})
    assert await _names(client, q="brien") == []
    assert await _names(client, q="ana smith") == ["Ána Smith"]

    bea = (await client.post("/patients", json={"given_name": "Bea", "family_name": "Smith"})).json()
    assert await _names(client, q="smith") == ["Ána Smith", "Bea Smith"]
    await client.post(f"/patients/{ana['id']}/merge", json={"duplicate_id": bea["id"]})
    assert await _names(client, q="smith") == ["Ána Smith"]
    merged = await _names(client, q="bea smith", include_merged="true")
    assert merged == ["Bea Smith"]  # merged patients are searched through the trigram index

    await client.delete(f"/patients/{ana['id']}")
    assert await _names(client, q="smith") == []
    assert await session.scalar(select(PatientNameWord.word).where(PatientNameWord.org_id == org.id)) is None


async def test_provisional_patient_becomes_searchable_when_named(client, session, org):
    patient = await patients.create_provisional(session, org.id, phone="+34612000800", source="sms")
    assert await _names(client, q="luis") == []
    await client.patch(f"/patients/{patient.id}", json={"given_name": "Luis", "family_name": "Gómez"})
    assert await _names(client, q="luis gomez") == ["Luis Gómez"]


async def test_ranking_exact_words_before_prefixes_before_similar_names(client):
    for given, family in [("Maria", "Lopez Svoboda"), ("Maria", "Lopez"), ("Mariana", "Lopez"),
                          ("Mario", "Lopes")]:
        await client.post("/patients", json={"given_name": given, "family_name": family})
    assert await _names(client, q="maria lopez") == [
        "Maria Lopez", "Maria Lopez Svoboda", "Mariana Lopez", "Mario Lopes"]
    page = (await client.get("/patients", params={"q": "maria lopez", "limit": 2, "offset": 2})).json()
    assert page["total"] == 4 and [p["display_name"] for p in page["items"]] == ["Mariana Lopez", "Mario Lopes"]
    beyond = (await client.get("/patients", params={"q": "maria lopez", "offset": 10})).json()
    assert beyond["items"] == [] and beyond["total"] == 4
    assert await _names(client, q="li") == []  # short words must match a whole word or its beginning
