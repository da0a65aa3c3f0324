"""Patient search (the plan's named patient tests)."""

from __future__ import annotations


async def test_search_patients(client):
    for given, family, phone, dob in [
        ("José", "Núñez García", "+34612345678", "1984-03-07"),
        ("Maria", "Garcia Lopez", "+34699111222", "1990-01-01"),
        ("John", "Smith", "+14155550100", "1975-05-05"),
    ]:
        r = await client.post("/patients", json={"given_name": given, "family_name": family,
                                                 "phones": [{"number": phone}], "birth_date": dob,
                                                 "emails": [{"email": f"{given.lower()}@example.org"}],
                                                 "identifiers": [{"system": "mrn", "value": f"M-{given}"}]})
        assert r.status_code == 201

    async def names(**params):
        r = await client.get("/patients", params=params)
        assert r.status_code == 200, r.text
        return [p["display_name"] for p in r.json()["items"]]

    # fuzzy, accent- and case-insensitive, best match first
    assert (await names(q="jose nunez"))[0] == "José Núñez García"
    assert set(await names(q="GARCÍA")) == {"José Núñez García", "Maria Garcia Lopez"}
    assert (await names(q="garsia"))[0] in {"José Núñez García", "Maria Garcia Lopez"}
    assert await names(q="jo smit") == ["John Smith"]  # what is typed so far
    assert await names(q="john smitt") == ["John Smith"]  # a typo
    assert await names(q="mari") == ["Maria Garcia Lopez"]
    # phone in any format
    assert await names(phone="0034 612-34-56-78") == ["José Núñez García"]
    assert await names(phone="(415) 555 0100") == ["John Smith"]
    assert await names(email="MARIA@EXAMPLE.ORG") == ["Maria Garcia Lopez"]
    assert await names(birth_date="1975-05-05") == ["John Smith"]
    assert await names(identifier="mrn|M-Maria") == ["Maria Garcia Lopez"]
    assert await names(identifier="M-John") == ["John Smith"]
    assert await names(q="garcia", birth_date="1990-01-01") == ["Maria Garcia Lopez"]
    assert await names(q="zzzzqqq") == []

    r = await client.get("/patients", params={"limit": 2, "offset": 0})
    page = r.json()
    assert page["total"] == 3 and len(page["items"]) == 2 and page["limit"] == 2
    r = await client.get("/patients", params={"limit": 2, "offset": 2})
    assert len(r.json()["items"]) == 1
    past_the_end = (await client.get("/patients", params={"offset": 10})).json()
    assert past_the_end["items"] == [] and past_the_end["total"] == 3
