"""Duplicate detection (the plan's named patient tests; merge is in test_merge.py)."""

from __future__ import annotations

from .support import PATIENT


async def test_detect_duplicates(client):
    original = (await client.post("/patients", json=PATIENT)).json()

    again = {"given_name": "Jose", "family_name": "Nunez Garcia", "birth_date": "1984-07-03",
             "phones": [{"number": "612345678", "kind": "mobile"}]}
    # 612345678 has no country code; the default region is US, so give it explicitly
    again["phones"] = [{"number": "+34612345678"}]
    response = await client.post("/patients", json=again)

    assert response.status_code == 201
    found = response.json()["possible_duplicates"]
    assert [c["patient"]["id"] for c in found] == [original["id"]]
    codes = {r["code"] for r in found[0]["reasons"]}
    assert codes == {"name_exact", "birth_date_transposed", "same_phone"}
    assert found[0]["score"] >= 0.9

    listed = await client.get(f"/patients/{original['id']}/duplicates")
    assert listed.status_code == 200
    assert [c["patient"]["id"] for c in listed.json()] == [response.json()["id"]]

    unrelated = await client.post("/patients", json={"given_name": "Ana", "family_name": "Pérez",
                                                     "birth_date": "2001-02-03"})
    assert unrelated.json()["possible_duplicates"] == []
    assert (await client.get(f"/patients/{unrelated.json()['id']}/duplicates")).json() == []
    # the threshold decides: with 0.99 even the near-identical record is not reported
    strict = await client.get(f"/patients/{original['id']}/duplicates", params={"threshold": 0.99})
    assert strict.json() == []
