"""The patient as a FHIR R4B `Patient` resource, validated by `fhir.resources`. Pure mapping, no I/O."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fhir.resources.R4B.patient import Patient as FhirPatient
from sqlalchemy import inspect as sa_inspect

from prm.core.fields import is_uri
from prm.patients.models import GENDERS, Patient

_PHONE_USE = {"mobile": "mobile", "home": "home", "work": "work", "other": "temp"}
_EMAIL_USE = {"personal": "home", "work": "work", "other": "temp"}
PRM_PATIENT_SYSTEM = "urn:prm:patient"


def _identifier_system(system: str) -> str:
    """A FHIR `uri`. Systems are checked at input (prm.core.fields.IdentifierSystem); one stored
    before that check (e.g. "urn:my system") is percent-encoded rather than exported invalid."""
    uri = system if ":" in system else f"urn:prm:identifier:{system}"
    if is_uri(uri):
        return uri
    encoded = quote(uri, safe=":/?#[]@!$&'()*+,;=")
    return encoded if is_uri(encoded) else f"urn:prm:identifier:{quote(system, safe='')}"


def to_fhir(patient: Patient) -> Any:
    """The patient as a validated FHIR R4B `Patient` (fhir.resources.R4B.patient.Patient).

    Uses the loaded phones/emails/identifiers when present, else the primary phone and email.
    Raises ValueError for a gender outside FHIR's administrative-gender codes (fhir.resources
    does not check code values).
    """
    if patient.gender not in GENDERS:
        raise ValueError(f"gender {patient.gender!r} is not a FHIR administrative-gender code")
    unloaded = sa_inspect(patient).unloaded
    phone_rows = [] if "phones" in unloaded else list(patient.phones)
    email_rows = [] if "emails" in unloaded else list(patient.emails)
    identifier_rows = [] if "identifiers" in unloaded else list(patient.identifiers)

    telecom: list[dict[str, Any]] = []
    if phone_rows:
        telecom += [{"system": "phone", "value": p.number, "use": _PHONE_USE.get(p.kind, "temp"),
                     **({"rank": 1} if p.is_primary else {})} for p in phone_rows]
    elif patient.primary_phone:
        telecom.append({"system": "phone", "value": patient.primary_phone, "rank": 1})
    if email_rows:
        telecom += [{"system": "email", "value": e.email, "use": _EMAIL_USE.get(e.kind, "temp"),
                     **({"rank": 1} if e.is_primary else {})} for e in email_rows]
    elif patient.primary_email:
        telecom.append({"system": "email", "value": patient.primary_email, "rank": 1})

    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(patient.id),
        "identifier": [{"system": PRM_PATIENT_SYSTEM, "value": str(patient.id)}]
        + [{"system": _identifier_system(i.system), "value": i.value,
            **({"type": {"text": i.label}} if i.label else {})} for i in identifier_rows],
        "active": patient.status not in ("inactive", "merged") and patient.deleted_at is None,
        "gender": patient.gender,
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47",
                                                    "code": patient.preferred_language}]},
                           "preferred": True}],
    }
    if patient.updated_at is not None:
        resource["meta"] = {"lastUpdated": patient.updated_at.isoformat()}
    if patient.given_name or patient.family_name:
        name: dict[str, Any] = {"use": "official", "text": patient.display_name}
        if patient.family_name:
            name["family"] = patient.family_name
        if patient.given_name:
            name["given"] = patient.given_name.split()
        resource["name"] = [name]
    if telecom:
        resource["telecom"] = telecom
    if patient.birth_date:
        resource["birthDate"] = patient.birth_date.isoformat()
    if patient.status == "deceased":
        if patient.deceased_date:
            resource["deceasedDateTime"] = patient.deceased_date.isoformat()
        else:
            resource["deceasedBoolean"] = True
    if patient.address:
        a = patient.address
        lines = [line for line in a.get("line") or [] if line and line.strip()]  # FHIR strings are non-empty
        address = {"line": lines or None, "city": a.get("city"), "district": a.get("district"),
                   "state": a.get("state"), "postalCode": a.get("postal_code"), "country": a.get("country")}
        address = {k: v for k, v in address.items() if v}
        if address:
            resource["address"] = [address]
    if patient.merged_into_id is not None:
        survivor = {"reference": f"Patient/{patient.merged_into_id}"}
        resource["link"] = [{"other": survivor, "type": "replaced-by"}]
    return FhirPatient.model_validate(resource)

