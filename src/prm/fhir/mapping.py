"""Our records as FHIR R4 resources (validated with the `fhir.resources` R4B models, whose R4B
resources are R4's for everything emitted here, and with our own check of code values).

Pure: every function takes loaded rows (or plain values) and returns the resource as a JSON-ready
dict, after `validated(...)` has run the code check and the pydantic model over it. Nothing here
reads the database.

Identifiers: every resource carries `urn:prm:<kind>|<our id>` (`IDENTIFIER_SYSTEMS`), the system an
EHR's conditional create (`ifNoneExist`) matches on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any, Protocol

from fhir.resources.R4B import get_fhir_model_class

from prm.fhir import codes

TIMEZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"
IDENTIFIER_SYSTEMS = {
    "Patient": "urn:prm:patient",
    "Practitioner": "urn:prm:practitioner",
    "Location": "urn:prm:location",
    "Organization": "urn:prm:organisation",
    "HealthcareService": "urn:prm:service",
    "Appointment": "urn:prm:appointment",
    "Communication": "urn:prm:communication",
    "Schedule": "urn:prm:schedule",
    "Questionnaire": "urn:prm:questionnaire",
    "QuestionnaireResponse": "urn:prm:intake-session",
    "Condition": "urn:prm:intake-record",
    "AllergyIntolerance": "urn:prm:intake-record",
    "MedicationStatement": "urn:prm:intake-record",
    "Observation": "urn:prm:intake-record",
    "FamilyMemberHistory": "urn:prm:intake-record",
    "DocumentReference": "urn:prm:intake-summary",
}
SERVICE_SYSTEM = IDENTIFIER_SYSTEMS["HealthcareService"]


class MappingError(ValueError):
    """A record that cannot be expressed as a valid resource (the message names the element)."""


@cache
def _model(resource_type: str) -> Any:
    return get_fhir_model_class(resource_type)


def validated(resource: dict[str, Any]) -> dict[str, Any]:
    """`resource` checked (our code check, then the R4B model) and dumped back as JSON-ready data."""
    try:
        codes.check(resource)
    except codes.InvalidCode as exc:
        raise MappingError(str(exc)) from None
    try:
        model = _model(resource["resourceType"]).model_validate(resource)
    except Exception as exc:  # pydantic.ValidationError, or an unknown resourceType (KeyError)
        raise MappingError(f"{resource.get('resourceType')}: {exc}") from None
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def identifier(resource_type: str, local_id: object) -> dict[str, str]:
    return {"system": IDENTIFIER_SYSTEMS[resource_type], "value": str(local_id)}


def token(resource_type: str, local_id: object) -> str:
    """The `identifier` search token of a resource: `system|value` (ifNoneExist, searches)."""
    ident = identifier(resource_type, local_id)
    return f"{ident['system']}|{ident['value']}"


def _meta(updated_at: datetime | None) -> dict[str, Any]:
    return {"meta": {"lastUpdated": updated_at.isoformat()}} if updated_at is not None else {}


def _text(value: str | None) -> str | None:
    """FHIR strings may not be empty or whitespace only."""
    return value.strip() if value and value.strip() else None


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None and v != [] and v != {}}


# --- people and places ----------------------------------------------------------------------------


def patient(resource: Any) -> dict[str, Any]:
    """A patient already mapped by `patients.service.to_fhir` (US Core must-support elements): that
    model is validated already, so only our code check runs on it here (a dict goes through both)."""
    if isinstance(resource, dict):
        return validated(resource)
    data: dict[str, Any] = resource.model_dump(mode="json", by_alias=True, exclude_none=True)
    try:
        codes.check(data)
    except codes.InvalidCode as exc:
        raise MappingError(str(exc)) from None
    return data


class PractitionerRow(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def name(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def email(self) -> str | None: ...

    @property
    def is_active(self) -> bool: ...

    @property
    def updated_at(self) -> datetime | None: ...



def split_name(full: str) -> tuple[str | None, list[str]]:
    """(family, given) of a name kept as one string: the last word is the family name."""
    words = full.split()
    if not words:
        return None, []
    if len(words) == 1:
        return words[0], []
    return words[-1], words[:-1]


def practitioner(row: PractitionerRow) -> dict[str, Any]:
    family, given = split_name(row.name)
    name = _drop_none({"use": "official", "text": _text(row.name), "family": family, "given": given,
                       "prefix": [row.title.strip()] if _text(row.title) else None})
    return validated(_drop_none({
        "resourceType": "Practitioner",
        "id": str(row.id),
        **_meta(row.updated_at),
        "identifier": [identifier("Practitioner", row.id)],
        "active": row.is_active,
        "name": [name] if len(name) > 1 else None,
        "telecom": [{"system": "email", "value": row.email, "use": "work"}] if _text(row.email) else None,
    }))


class LocationRow(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def name(self) -> str: ...

    @property
    def address(self) -> str: ...

    @property
    def timezone(self) -> str: ...

    @property
    def is_virtual(self) -> bool: ...

    @property
    def is_active(self) -> bool: ...

    @property
    def updated_at(self) -> datetime | None: ...



def location(row: LocationRow, org_id: uuid.UUID) -> dict[str, Any]:
    return validated(_drop_none({
        "resourceType": "Location",
        "id": str(row.id),
        **_meta(row.updated_at),
        "extension": [{"url": TIMEZONE_EXTENSION, "valueCode": row.timezone}],
        "identifier": [identifier("Location", row.id)],
        "status": "active" if row.is_active else "inactive",
        "mode": "instance",
        "name": _text(row.name),
        "description": "Virtual (video) location" if row.is_virtual else None,
        "address": {"text": _text(row.address)} if _text(row.address) else None,
        "managingOrganization": {"reference": f"Organization/{org_id}"},
    }))


class OrganisationRow(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def name(self) -> str: ...

    @property
    def slug(self) -> str: ...

    @property
    def is_active(self) -> bool: ...

    @property
    def updated_at(self) -> datetime | None: ...



def organization(row: OrganisationRow) -> dict[str, Any]:
    return validated(_drop_none({
        "resourceType": "Organization",
        "id": str(row.id),
        **_meta(row.updated_at),
        "identifier": [identifier("Organization", row.id)],
        "active": row.is_active,
        "name": _text(row.name),
        "alias": [row.slug] if _text(row.slug) else None,
    }))


class ServiceRow(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def org_id(self) -> uuid.UUID: ...

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def duration_minutes(self) -> int: ...

    @property
    def mode(self) -> str: ...

    @property
    def is_active(self) -> bool: ...

    @property
    def updated_at(self) -> datetime | None: ...



def service_type(service_id: uuid.UUID, name: str | None) -> dict[str, Any]:
    """The CodeableConcept naming one of our services (Appointment/Slot/Schedule.serviceType)."""
    return {"coding": [_drop_none({"system": SERVICE_SYSTEM, "code": str(service_id), "display": _text(name)})],
            **({"text": name.strip()} if name and name.strip() else {})}


def healthcare_service(row: ServiceRow) -> dict[str, Any]:
    return validated(_drop_none({
        "resourceType": "HealthcareService",
        "id": str(row.id),
        **_meta(row.updated_at),
        "identifier": [identifier("HealthcareService", row.id)],
        "active": row.is_active,
        "providedBy": {"reference": f"Organization/{row.org_id}"},
        "type": [service_type(row.id, row.name)],
        "name": _text(row.name),
        "comment": _text(row.description),
        "extraDetails": f"{row.duration_minutes} minutes, {'video' if row.mode == 'video' else 'in person'}",
        "appointmentRequired": True,
    }))


def schedule(practitioner_row: PractitionerRow, location_ids: Iterable[uuid.UUID],
             services: Iterable[tuple[uuid.UUID, str]]) -> dict[str, Any]:
    """A practitioner's bookable time (one Schedule per practitioner, id = the practitioner's id):
    its actors are the practitioner and the locations of their availability rules."""
    actors = [{"reference": f"Practitioner/{practitioner_row.id}", "display": _text(practitioner_row.name)}]
    actors += [{"reference": f"Location/{lid}"} for lid in sorted(set(location_ids), key=str)]
    return validated(_drop_none({
        "resourceType": "Schedule",
        "id": str(practitioner_row.id),
        **_meta(practitioner_row.updated_at),
        "identifier": [identifier("Schedule", practitioner_row.id)],
        "active": practitioner_row.is_active,
        "serviceType": [service_type(sid, name) for sid, name in services] or None,
        "actor": [_drop_none(a) for a in actors],
    }))


def slot_id(practitioner_id: uuid.UUID, location_id: uuid.UUID, service_id: uuid.UUID, start: datetime) -> str:
    """A stable id for a computed free slot (FHIR ids: at most 64 of [A-Za-z0-9-.])."""
    return f"{practitioner_id.hex[:12]}-{location_id.hex[:12]}-{service_id.hex[:12]}-{int(start.timestamp())}"


def slot(*, practitioner_id: uuid.UUID, location_id: uuid.UUID, service_id: uuid.UUID, service_name: str,
         start_at: datetime, end_at: datetime) -> dict[str, Any]:
    """A free slot computed from availability (status `free`; busy time is not published)."""
    return validated({
        "resourceType": "Slot",
        "id": slot_id(practitioner_id, location_id, service_id, start_at),
        "schedule": {"reference": f"Schedule/{practitioner_id}"},
        "serviceType": [service_type(service_id, service_name)],
        "status": "free",
        "start": start_at.isoformat(),
        "end": end_at.isoformat(),
        "comment": f"Location/{location_id}",
    })


# --- appointments and communications --------------------------------------------------------------


class AppointmentRow(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def patient_id(self) -> uuid.UUID: ...

    @property
    def practitioner_id(self) -> uuid.UUID: ...

    @property
    def service_id(self) -> uuid.UUID: ...

    @property
    def location_id(self) -> uuid.UUID: ...

    @property
    def start_at(self) -> datetime: ...

    @property
    def end_at(self) -> datetime: ...

    @property
    def status(self) -> str: ...

    @property
    def mode(self) -> str: ...

    @property
    def notes(self) -> str: ...

    @property
    def created_at(self) -> datetime | None: ...

    @property
    def updated_at(self) -> datetime | None: ...

    @property
    def cancel_reason(self) -> str | None: ...



def appointment(row: AppointmentRow, *, service_name: str | None = None, refs: dict[str, str] | None = None
                ) -> dict[str, Any]:
    """`refs` replaces a `Type/id` reference by another (a bundle's `urn:uuid:` full URLs)."""
    refs = refs or {}

    def ref(kind: str, local: uuid.UUID) -> str:
        key = f"{kind}/{local}"
        return refs.get(key, key)

    status = codes.appointment_status_to_fhir(row.status)
    minutes = int((row.end_at - row.start_at).total_seconds() // 60)
    participants = [
        {"actor": {"reference": ref("Patient", row.patient_id)}, "required": "required",
         "status": codes.PATIENT_PARTICIPATION[row.status]},
        {"type": [{"coding": [{"system": codes.PARTICIPANT_TYPE_SYSTEM, "code": "PPRF"}]}],
         "actor": {"reference": ref("Practitioner", row.practitioner_id)}, "required": "required",
         "status": "accepted"},
        {"actor": {"reference": ref("Location", row.location_id)}, "required": "required", "status": "accepted"},
    ]
    return validated(_drop_none({
        "resourceType": "Appointment",
        "id": str(row.id),
        **_meta(row.updated_at),
        "identifier": [identifier("Appointment", row.id)],
        "status": status,
        "cancelationReason": {"text": _text(row.cancel_reason)} if status == "cancelled" and
        _text(row.cancel_reason) else None,
        "serviceType": [service_type(row.service_id, service_name)],
        "start": row.start_at.isoformat(),
        "end": row.end_at.isoformat(),
        "minutesDuration": minutes if minutes > 0 else None,
        "created": row.created_at.isoformat() if row.created_at else None,
        "comment": _text(row.notes),
        "description": "Video consultation" if row.mode == "video" else None,
        "participant": participants,
    }))


class CommunicationRow(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def org_id(self) -> uuid.UUID: ...

    @property
    def patient_id(self) -> uuid.UUID: ...

    @property
    def channel(self) -> str: ...

    @property
    def direction(self) -> str: ...

    @property
    def purpose(self) -> str | None: ...

    @property
    def status(self) -> str: ...

    @property
    def subject(self) -> str | None: ...

    @property
    def body(self) -> str | None: ...

    @property
    def error_code(self) -> str | None: ...

    @property
    def sent_at(self) -> datetime | None: ...

    @property
    def delivered_at(self) -> datetime | None: ...

    @property
    def received_at(self) -> datetime | None: ...

    @property
    def updated_at(self) -> datetime | None: ...



def communication(row: CommunicationRow) -> dict[str, Any]:
    status = codes.communication_status_to_fhir(row.status)
    patient_ref = {"reference": f"Patient/{row.patient_id}"}
    org_ref = {"reference": f"Organization/{row.org_id}"}
    inbound = row.direction == "inbound"
    payload = [{"contentString": text} for text in (_text(row.subject), _text(row.body)) if text]
    category = codes.PURPOSE_CATEGORY.get(row.purpose or "")
    return validated(_drop_none({
        "resourceType": "Communication",
        "id": str(row.id),
        **_meta(row.updated_at),
        "identifier": [identifier("Communication", row.id)],
        "status": status,
        "statusReason": {"text": row.error_code} if status == "not-done" and _text(row.error_code) else None,
        "category": [{"coding": [{"system": codes.COMMUNICATION_CATEGORY_SYSTEM, "code": category}]}]
        if category else None,
        "medium": [{"coding": [{"system": codes.PARTICIPATION_MODE_SYSTEM,
                                "code": codes.CHANNEL_MEDIUM[row.channel]}], "text": row.channel}],
        "subject": patient_ref,
        "sent": _iso(row.received_at if inbound else row.sent_at),
        "received": _iso(row.received_at if inbound else row.delivered_at),
        "recipient": [org_ref if inbound else patient_ref],
        "sender": patient_ref if inbound else org_ref,
        "payload": payload or None,
    }))


# --- bundles and outcomes ------------------------------------------------------------------------


def operation_outcome(code: str, diagnostics: str, *, severity: str = "error",
                      expression: Sequence[str] = ()) -> dict[str, Any]:
    issue = _drop_none({"severity": severity, "code": code, "diagnostics": diagnostics,
                        "expression": list(expression) or None})
    return validated({"resourceType": "OperationOutcome", "issue": [issue]})
