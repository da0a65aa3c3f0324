"""Questionnaires: publish, versions, FHIR shape, definition errors, sessions keep their version."""

from __future__ import annotations

import copy

import httpx

from tests.integration.intake.support import QUESTIONNAIRE, ok

FORM = {"source": "web_form", "questionnaire_key": "new-patient"}


async def test_publish_versions_and_sessions_keep_theirs(session, org, client: httpx.AsyncClient) -> None:
    v1 = await ok(await client.post("/intake/questionnaires", json=QUESTIONNAIRE), 201)
    assert (v1["key"], v1["version"], v1["versions"]) == ("new-patient", 1, [1])
    resource = v1["resource"]
    assert resource["resourceType"] == "Questionnaire" and resource["status"] == "active"
    assert resource["version"] == "1" and resource["item"][0] == {
        "linkId": "reason", "text": "What brings you in?", "type": "text", "required": True}
    assert resource["item"][3]["answerOption"] == [{"valueString": "in person"}, {"valueString": "video"}]
    old = await ok(await client.post("/intake/sessions", json=FORM), 201)
    changed = copy.deepcopy(QUESTIONNAIRE)
    changed["item"][1]["type"] = "string"  # "smoker" becomes free text in version 2
    v2 = await ok(await client.post("/intake/questionnaires", json=changed), 201)
    assert (v2["id"], v2["version"], v2["versions"]) == (v1["id"], 2, [1, 2])
    new = await ok(await client.post("/intake/sessions", json=FORM), 201)
    assert (old["questionnaire_version"], new["questionnaire_version"]) == (1, 2)
    answer = {"type": "answer", "data": {"link_id": "smoker", "value": "sometimes"}}
    assert (await client.put(f"/intake/sessions/{old['id']}/records/s", json=answer)).status_code == 422
    assert (await client.put(f"/intake/sessions/{new['id']}/records/s", json=answer)).status_code == 201
    first = await ok(await client.get(f"/intake/questionnaires/{v1['id']}", params={"version": 1}))
    assert first["resource"]["item"][1]["type"] == "boolean"
    # retired: no new sessions, old ones unaffected
    await ok(await client.post(f"/intake/questionnaires/{v1['id']}/retire"))
    refused = await client.post("/intake/sessions", json=FORM)
    assert refused.status_code == 422
    assert await ok(await client.get("/intake/questionnaires")) == []
    assert len(await ok(await client.get("/intake/questionnaires", params={"include_retired": True}))) == 1


async def test_definition_errors_name_the_item(client: httpx.AsyncClient) -> None:
    bad = {"key": "bad", "title": "Bad", "item": [
        {"linkId": "a", "type": "text"},
        {"linkId": "a", "type": "choice"},
        {"linkId": "g", "type": "group"},
        {"linkId": "d", "type": "display", "required": True},
    ]}
    r = await client.post("/intake/questionnaires", json=bad)
    assert r.status_code == 422 and r.json()["code"] == "invalid_questionnaire"
    assert [e["field"] for e in r.json()["errors"]] == ["item.1.linkId", "item.1.answerOption", "item.2.item",
                                                        "item.3.required"]
    unknown_type = await client.post("/intake/questionnaires", json={"key": "x", "title": "X",
                                                                     "item": [{"linkId": "a", "type": "matrix"}]})
    assert unknown_type.status_code == 422
