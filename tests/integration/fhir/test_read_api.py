"""The FHIR R4 read API: metadata, read, search with paging, OperationOutcome errors, scoping, audit."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from sqlalchemy import select

from prm.core.audit import AuditEntry
from prm.fhir import search_params
from tests.fixtures.factories import make_patient

FHIR = "application/fhir+json"


async def test_metadata_is_a_capability_statement_listing_what_is_supported(anon_client: Any) -> None:
    r = await anon_client.get("/fhir/R4/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(FHIR)
    cs = CapabilityStatement.model_validate(r.json())
    assert cs.fhirVersion == "4.0.1" and cs.kind == "instance"
    listed = {res.type: res for res in cs.rest[0].resource}
    assert set(search_params.RESOURCES) <= set(listed)
    assert [i.code for i in listed["Slot"].interaction] == ["search-type"]
    assert {p.name for p in listed["Patient"].searchParam} >= {"_id", "identifier", "name", "birthdate", "phone"}
    assert {p.name for p in listed["Appointment"].searchParam} >= {"patient", "date", "status"}


async def test_read_patient_validates_and_other_org_is_not_found(world: Any, client: Any, make_client: Any,
                                                                  other_org: Any) -> None:
    r = await client.get(f"/fhir/R4/Patient/{world.patient.id}")
    assert r.status_code == 200 and r.headers["content-type"].startswith(FHIR)
    body = r.json()
    assert body["resourceType"] == "Patient" and body["gender"] == "female" and body["birthDate"] == "1985-04-12"
    assert {"system": "urn:prm:patient", "value": str(world.patient.id)} in body["identifier"]
    other = await make_client("admin", for_org=other_org)
    r = await other.get(f"/fhir/R4/Patient/{world.patient.id}")
    assert r.status_code == 404
    outcome = OperationOutcome.model_validate(r.json())
    assert outcome.issue[0].code == "not-found"
    r = await other.get("/fhir/R4/Patient", params={"_id": str(world.patient.id)})
    assert r.status_code == 200 and r.json()["total"] == 0


async def test_read_each_resource_type(world: Any, client: Any, org: Any) -> None:
    c = world.clinic
    for path in (f"Practitioner/{c.vega.id}", f"Location/{c.location.id}", f"Organization/{org.id}",
                 f"HealthcareService/{c.cleaning.id}", f"Schedule/{c.vega.id}",
                 f"Appointment/{world.appointment.id}"):
        r = await client.get(f"/fhir/R4/{path}")
        assert r.status_code == 200, (path, r.text)
        assert r.json()["resourceType"] == path.split("/")[0]
    appt = (await client.get(f"/fhir/R4/Appointment/{world.appointment.id}")).json()
    assert appt["status"] == "booked"
    refs = {p["actor"]["reference"] for p in appt["participant"]}
    assert refs == {f"Patient/{world.patient.id}", f"Practitioner/{c.vega.id}", f"Location/{c.location.id}"}


async def test_search_patients_by_common_parameters(world: Any, client: Any) -> None:
    pid = str(world.patient.id)
    for params in ({"name": "lucia"}, {"family": "Fern"}, {"birthdate": "1985-04-12"}, {"birthdate": "ge1985"},
                   {"phone": "+34 600 11 12 22"}, {"phone": "+34600111222"},
                   {"identifier": "urn:prm:identifier:mrn|MRN-0042"},
                   {"identifier": f"urn:prm:patient|{pid}"}, {"email": "LUCIA@example.org"}, {"gender": "female"}):
        r = await client.get("/fhir/R4/Patient", params=params)
        assert r.status_code == 200, (params, r.text)
        bundle = Bundle.model_validate(r.json())
        assert bundle.type == "searchset"
        assert [e.resource.id for e in bundle.entry or []] == [pid], params
    for params in ({"name": "nobody"}, {"birthdate": "lt1985"}, {"gender": "male"}):
        r = await client.get("/fhir/R4/Patient", params=params)
        assert r.json()["total"] == 0, params


async def test_search_paging_links(world: Any, client: Any, session: Any, org: Any) -> None:
    for i in range(4):
        await make_patient(session, org, given_name=f"Pager{i}", family_name="Zeta")
    r = await client.get("/fhir/R4/Patient", params={"family": "Zeta", "_count": "3"})
    page1 = r.json()
    assert page1["total"] == 4 and len(page1["entry"]) == 3
    links = {link["relation"]: link["url"] for link in page1["link"]}
    assert "next" in links and "previous" not in links
    r = await client.get(links["next"].replace("https://prm.test", ""))
    page2 = r.json()
    assert len(page2["entry"]) == 1 and "next" not in {link["relation"] for link in page2["link"]}
    ids = {e["resource"]["id"] for e in page1["entry"]} | {e["resource"]["id"] for e in page2["entry"]}
    assert len(ids) == 4


async def test_search_appointments_by_patient_date_status(world: Any, client: Any) -> None:
    pid = world.patient.id
    for params, expected in (({"patient": f"Patient/{pid}"}, 1), ({"patient": str(pid), "date": "2026-03-24"}, 1),
                             ({"date": "gt2026-03-24"}, 0), ({"status": "booked"}, 1), ({"status": "cancelled"}, 0),
                             ({"status:not": "booked"}, 0)):
        r = await client.get("/fhir/R4/Appointment", params=params)
        assert r.status_code == 200, r.text
        assert r.json()["total"] == expected, params


async def test_errors_are_operation_outcomes(world: Any, client: Any, anon_client: Any, make_client: Any) -> None:
    cases = [
        (client, "/fhir/R4/Patient?birthdate=yesterday", 400, "invalid"),
        (client, "/fhir/R4/Appointment?status=bogus", 400, "code-invalid"),
        (client, "/fhir/R4/Observationz", 404, "not-found"),
        (client, "/fhir/R4/Patient/not-a-uuid", 404, "not-found"),
        (client, "/fhir/R4/Slot/abc", 405, "not-supported"),
        (anon_client, "/fhir/R4/Patient", 401, "login"),
        (await make_client("support_agent"), "/fhir/R4/Patient", 403, "forbidden"),
    ]
    for c, url, status, code in cases:
        r = await c.get(url)
        assert r.status_code == status, (url, r.text)
        assert r.headers["content-type"].startswith(FHIR), url
        assert OperationOutcome.model_validate(r.json()).issue[0].code == code, url
    r = await client.get("/fhir/R4/Patient", params={"shoe-size": "42"}, headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    r = await client.get("/fhir/R4/Patient", params={"shoe-size": "42"})
    assert r.status_code == 200
    assert r.json()["entry"][-1]["search"]["mode"] == "outcome"


async def test_reads_and_searches_of_patient_data_are_audited(world: Any, client: Any, session: Any) -> None:
    await client.get(f"/fhir/R4/Patient/{world.patient.id}")
    await client.get("/fhir/R4/Appointment", params={"patient": str(world.patient.id)})
    rows = list(await session.scalars(select(AuditEntry).where(AuditEntry.resource_type.like("fhir_%"))))
    assert {(r.action, r.resource_type) for r in rows} >= {("read", "fhir_patient"), ("search", "fhir_appointment")}
    read = next(r for r in rows if r.action == "read")
    assert read.patient_id == world.patient.id


async def test_slots_are_searchable_free_time(world: Any, client: Any) -> None:
    from prm.core import clock
    from tests.integration.fhir.conftest import NOW

    with clock.frozen(NOW):
        r = await client.get("/fhir/R4/Slot", params={"service-type": str(world.clinic.cleaning.id),
                                                      "schedule": f"Schedule/{world.clinic.vega.id}",
                                                      "start": ["ge2026-03-24", "le2026-03-24"]})
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["total"] > 0
    starts = {e["resource"]["start"] for e in bundle["entry"]}
    assert "2026-03-24T09:00:00+00:00" not in starts  # the booked appointment's time is not free
    r = await client.get("/fhir/R4/Slot")
    assert r.status_code == 400
