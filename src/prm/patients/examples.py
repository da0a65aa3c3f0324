"""Documentation and examples of the patients API (see `prm.core.apidocs`, `docs/api-examples.md`)."""

from __future__ import annotations

from prm.core.apidocs import Err, Op, ids, not_found

NOT_FOUND = not_found("patient", "patient_not_found", "Patient")

MARIA = {
    "given_name": "Maria", "family_name": "García López", "birth_date": "1984-05-12", "gender": "female",
    "phones": [{"number": "+34 612 34 56 78", "kind": "mobile", "is_primary": True}],
    "emails": [{"email": "maria.garcia@example.org", "kind": "personal", "is_primary": True}],
    "identifiers": [{"system": "mrn", "value": "MRN-004211", "label": "Clinic record number"}],
    "address": {"line": ["Calle Mayor 12, 3º B"], "city": "Madrid", "postal_code": "28013", "country": "ES"},
    "preferred_language": "es", "preferred_channel": "whatsapp", "timezone": "Europe/Madrid",
    "tags": ["new-patient"],
}

OPERATIONS = {
    "POST /patients": Op(body=MARIA, errors=[
        Err(422, "future_date", "birth_date: must not be in the future", "A birth date in the future",
            extra={"errors": [{"field": "birth_date", "in": "body", "message": "must not be in the future",
                               "type": "future_date"}]}),
        Err(422, "invalid_phone_number", "phones.0.number: invalid phone number", "A phone that does not parse"),
        Err(409, "identifier_taken", "Identifier mrn|MRN-004211 already belongs to another patient",
            "An identifier (system and value) already names another patient")]),
    "GET /patients": Op(query={"q": "garcia", "limit": 20}, given=["patient"]),
    "GET /patients/{patient_id}": Op(),
    "PATCH /patients/{patient_id}": Op(body={"preferred_channel": "sms", "tags": ["new-patient", "orthodontics"]}),
    "DELETE /patients/{patient_id}": Op(),
    "GET /patients/{patient_id}/duplicates": Op(
        query={"threshold": 0.5}, given=["duplicate"]),
    "POST /patients/{patient_id}/merge": Op(body={"duplicate_id": ids.duplicate}, errors=[
        Err(409, "merge_into_self", "A patient cannot be merged into itself", "`duplicate_id` is this patient"),
        Err(409, "already_merged", "Patient was already merged", "The duplicate was merged before"),
        Err(409, "survivor_merged", "Patient was merged", "This patient was itself merged into another")]),
    "GET /patients/{patient_id}/consent": Op(),
    "POST /patients/{patient_id}/consent": Op(body={"changes": [
        {"channel": "whatsapp", "purpose": "marketing", "granted": False, "source": "keyword:STOP",
         "note": "Replied STOP to the spring campaign"},
        {"purpose": "ai_processing", "granted": True, "source": "paper_form"}]}),
    "GET /patients/{patient_id}/timeline": Op(query={"limit": 20}),
    "GET /patients/{patient_id}/fhir": Op(
        "The patient as a FHIR R4B `Patient` resource (`application/fhir+json`): names, telecom, identifiers "
        "with their systems, address, gender and birth date, validated with `fhir.resources`. The read is audited."),
}
