"""Issue 9: names made only of invisible characters are refused everywhere names are validated,
and identifier systems are URIs FHIR accepts, checked at input, so the FHIR export always validates."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.fhirtypes import UriType
from fhir.resources.R4B.patient import Patient as FhirPatient
from sqlalchemy import select

from prm.patients.models import Patient, PatientIdentifier

PROBLEM = "application/problem+json"
FHIR_URI = UriType.__metadata__[0].pattern  # FHIR's regex for `uri`, as fhir.resources declares it
INVISIBLE = ["\u200b", "\u200b\u200d", "\u0301\u0301", " \u200b ", "\ufeff\u2060"]


def _assert_422(r: httpx.Response, field: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert field in [e["field"] for e in r.json()["errors"]], r.text


@pytest.mark.parametrize("text", INVISIBLE)
async def test_invisible_names_are_422_naming_the_field(client: httpx.AsyncClient, text: str) -> None:
    patient = {"given_name": "Ana", "family_name": "Visible"}
    for field in ("given_name", "family_name"):
        _assert_422(await client.post("/patients", json={**patient, field: text}), field)
    created = (await client.post("/patients", json=patient)).json()
    _assert_422(await client.patch(f"/patients/{created['id']}", json={"given_name": text}), "given_name")

    cases: list[tuple[str, dict[str, Any]]] = [
        ("/practitioners", {"name": "Dr Visible", "timezone": "Europe/Madrid"}),
        ("/locations", {"name": "Visible clinic", "timezone": "Europe/Madrid"}),
        ("/services", {"name": "Visible cleaning", "duration_minutes": 30}),
    ]
    for path, body in cases:
        _assert_422(await client.post(path, json={**body, "name": text}), "name")
        made = await client.post(path, json=body)
        assert made.status_code == 201, (path, made.text)
        _assert_422(await client.patch(f"{path}/{made.json()['id']}", json={"name": text}), "name")

    user = {"email": f"{uuid.uuid4().hex[:8]}@example.org", "password": "long enough pw", "role": "coordinator"}
    _assert_422(await client.post("/admin/users", json={**user, "full_name": text}), "full_name")
    _assert_422(await client.post("/admin/api-keys", json={"name": text}), "name")


async def test_invisible_organisation_name_is_422(make_client) -> None:
    platform = await make_client("integration", platform_admin=True)
    r = await platform.post("/admin/organisations", json={
        "organisation": {"name": "\u200b\u200b", "slug": f"zw-{uuid.uuid4().hex[:8]}", "timezone": "UTC"},
        "admin": {"email": f"{uuid.uuid4().hex[:8]}@zw.example", "password": "long enough pw", "role": "admin"}})
    _assert_422(r, "organisation.name")


async def test_blank_practitioner_name_is_422(client: httpx.AsyncClient) -> None:
    """Blank names were refused for patients (stripped) but accepted for practitioners."""
    _assert_422(await client.post("/practitioners", json={"name": "   ", "timezone": "UTC"}), "name")


@pytest.mark.parametrize("system", ["urn:my system", "my system", "http://exa mple.org/id", "urn:x\u00a0y"])
async def test_identifier_systems_fhir_forbids_are_422(client: httpx.AsyncClient, system: str) -> None:
    body = {"given_name": "Ana", "family_name": "Ident",
            "identifiers": [{"system": "mrn", "value": "1"}, {"system": system, "value": "2"}]}
    _assert_422(await client.post("/patients", json=body), "identifiers.1.system")
    created = (await client.post("/patients", json={"given_name": "Ana", "family_name": "Ident"})).json()
    _assert_422(await client.patch(f"/patients/{created['id']}", json={"identifiers": body["identifiers"]}),
                "identifiers.1.system")


def _fhir_valid(resource: dict[str, Any]) -> FhirPatient:
    """Valid for fhir.resources R4B, and every identifier system matches FHIR's own `uri` regex in
    full (pydantic only anchors it at the start, so "urn:my system" would pass the model alone)."""
    patient = FhirPatient.model_validate(resource)
    for identifier in patient.identifier or []:
        assert FHIR_URI.fullmatch(identifier.system), identifier.system
    return patient


async def test_fhir_export_validates_with_fhir_resources(client: httpx.AsyncClient, session, org) -> None:
    created = (await client.post("/patients", json={
        "given_name": "Ana", "family_name": "Export",
        "identifiers": [{"system": "mrn", "value": "42"},
                        {"system": "urn:oid:2.16.840.1.113883.4.1", "value": "123-45-6789"},
                        {"system": "https://hospital.example/ids", "value": "H-7"}]})).json()
    r = await client.get(f"/patients/{created['id']}/fhir")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    exported = _fhir_valid(r.json())
    assert {i.system for i in exported.identifier or []} >= {"urn:prm:identifier:mrn", "urn:oid:2.16.840.1.113883.4.1",
                                                             "https://hospital.example/ids"}

    # A system stored before the input check still exports as a valid URI (percent-encoded).
    row = await session.scalar(select(PatientIdentifier).where(
        PatientIdentifier.patient_id == uuid.UUID(created["id"]), PatientIdentifier.system == "mrn"))
    row.system = "urn:my system"
    other = await session.scalar(select(PatientIdentifier).where(
        PatientIdentifier.patient_id == uuid.UUID(created["id"]), PatientIdentifier.value == "H-7"))
    other.system = "my local ids"
    await session.flush()
    session.expire(await session.get(Patient, uuid.UUID(created["id"])))
    r = await client.get(f"/patients/{created['id']}/fhir")
    assert r.status_code == 200, r.text
    systems = {i.system for i in _fhir_valid(r.json()).identifier or []}
    assert {"urn:my%20system", "urn:prm:identifier:my%20local%20ids"} <= systems
