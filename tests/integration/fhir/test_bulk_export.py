"""Bulk Data $export: kick-off, polling, manifest, NDJSON files whose every line validates, _type and
_since, one export per client (429), cancel, scoping."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from prm.core import clock, jobs
from tests.integration.fhir.conftest import NOW

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


async def kick_off(client: Any, url: str = "/fhir/R4/$export", **params: Any) -> str:
    r = await client.get(url, params=params, headers=ASYNC)
    assert r.status_code == 202, r.text
    return str(r.headers["content-location"]).replace("https://prm.test", "")


async def complete(client: Any, session: Any, status_url: str) -> dict[str, Any]:
    r = await client.get(status_url)
    assert r.status_code == 202 and r.headers["retry-after"] and r.headers["x-progress"]
    with clock.frozen(NOW):
        await jobs.run_due(session, names=["fhir.export"])
        r = await client.get(status_url)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def lines_of(client: Any, url: str) -> list[dict[str, Any]]:
    r = await client.get(url.replace("https://prm.test", ""))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+ndjson")
    return [json.loads(line) for line in r.text.splitlines()]


async def test_system_export_every_line_validates(world: Any, client: Any, session: Any) -> None:
    status_url = await kick_off(client)
    manifest = await complete(client, session, status_url)
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    counts = {o["type"]: o["count"] for o in manifest["output"]}
    assert counts["Patient"] == 1 and counts["Appointment"] == 1 and counts["Practitioner"] == 2
    assert counts["Organization"] == 1 and counts["HealthcareService"] == 2 and counts["Schedule"] == 2
    for output in manifest["output"]:
        resources = await lines_of(client, output["url"])
        assert len(resources) == output["count"]
        for resource in resources:
            assert resource["resourceType"] == output["type"]
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)


async def test_type_since_group_and_patient_levels(world: Any, client: Any, session: Any, org: Any) -> None:
    manifest = await complete(client, session, await kick_off(client, "/fhir/R4/Patient/$export",
                                                                 _type="Patient,Appointment"))
    assert sorted(o["type"] for o in manifest["output"]) == ["Appointment", "Patient"]
    later = (NOW + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    manifest = await complete(client, session, await kick_off(client, _type="Patient", _since=later))
    assert manifest["output"] == []  # nothing changed since
    manifest = await complete(client, session, await kick_off(client, f"/fhir/R4/Group/{world.clinic.vega.id}/$export"))
    assert {o["type"]: o["count"] for o in manifest["output"]}["Patient"] == 1
    manifest = await complete(client, session, await kick_off(client, f"/fhir/R4/Group/{world.clinic.ruiz.id}/$export"))
    assert "Patient" not in {o["type"] for o in manifest["output"]}  # nobody booked with Dr Ruiz


async def test_kick_off_rules(world: Any, client: Any, session: Any, make_client: Any, other_org: Any) -> None:
    r = await client.get("/fhir/R4/$export")
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    r = await client.get("/fhir/R4/Patient/$export", params={"_type": "Practitioner"}, headers=ASYNC)
    assert r.status_code == 400
    r = await client.get("/fhir/R4/$export", params={"_since": "yesterday"}, headers=ASYNC)
    assert r.status_code == 400
    status_url = await kick_off(client)
    r = await client.get("/fhir/R4/$export", headers=ASYNC)
    assert r.status_code == 429 and r.headers["retry-after"]
    other = await make_client("admin", for_org=other_org)
    assert (await other.get(status_url)).status_code == 404  # another organisation's export
    r = await other.get(f"/fhir/R4/Group/{world.clinic.vega.id}/$export", headers=ASYNC)
    assert r.status_code == 404  # another organisation's practitioner
    r = await client.delete(status_url)
    assert r.status_code == 202
    assert (await client.get(status_url)).status_code == 404
    with clock.frozen(NOW):
        report = await jobs.run_due(session, names=["fhir.export"])
    assert report.failed == []
    await kick_off(client)  # the cancelled one no longer blocks the client


async def test_post_kick_off_with_parameters(world: Any, client: Any, session: Any) -> None:
    r = await client.post("/fhir/R4/$export", headers=ASYNC, json={
        "resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Practitioner"}]})
    assert r.status_code == 202, r.text
    manifest = await complete(client, session, r.headers["content-location"].replace("https://prm.test", ""))
    assert [o["type"] for o in manifest["output"]] == ["Practitioner"]
    r = await client.get(manifest["output"][0]["url"].replace("Practitioner.ndjson", "Patient.ndjson")
                         .replace("https://prm.test", ""))
    assert r.status_code == 404


async def test_a_bulk_export_of_the_demo_clinic_validates_line_by_line(session: Any, app: Any) -> None:
    import httpx
    from sqlalchemy import select

    from prm import demo
    from prm.identity.models import Organisation
    from tests.fixtures.factories import make_api_key

    org = await session.scalar(select(Organisation).where(Organisation.slug == demo.DEMO_SLUG))
    if org is None:
        assert await demo.seed_if_empty(session) is not None
        org = await session.scalar(select(Organisation).where(Organisation.slug == demo.DEMO_SLUG))
    _, key = await make_api_key(session, org, role="integration")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://prm.test",
                                 headers={"Authorization": f"Bearer {key}"}) as demo_client:
        r = await demo_client.get("/fhir/R4/$export", headers=ASYNC)
        assert r.status_code == 202, r.text
        await jobs.run_due(session, names=["fhir.export"])
        r = await demo_client.get(r.headers["content-location"].replace("https://prm.test", ""))
        assert r.status_code == 200, r.text
        manifest = r.json()
        counts = {o["type"]: o["count"] for o in manifest["output"]}
        assert counts["Patient"] >= 3 and counts["Appointment"] >= 1 and counts["Practitioner"] >= 1
        total = 0
        for output in manifest["output"]:
            body = (await demo_client.get(output["url"].replace("https://prm.test", ""))).text
            lines = body.splitlines()
            assert len(lines) == output["count"]
            for line in lines:
                resource = json.loads(line)
                get_fhir_model_class(resource["resourceType"]).model_validate(resource)
                total += 1
        assert total == sum(counts.values())
