"""Documentation and examples of the FHIR API (see `prm.core.apidocs`, `docs/api-examples.md`).

The `/fhir/R4` operations answer `application/fhir+json`; their errors are FHIR `OperationOutcome`s
with the statuses listed (the problem codes in the tables are kept in the outcome's diagnostics)."""

from __future__ import annotations

from prm.core.apidocs import Err, Op, ids, not_found

NOT_FOUND = {
    **not_found("connection", "fhir_connection_not_found", "EHR connection"),
    **not_found("sync_run", "fhir_sync_run_not_found", "Sync run"),
    **not_found("export", "fhir_export_not_found", "Bulk export"),
    **not_found("group", "fhir_resource_not_found", "Group"),
}
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
KICK_OFF_ERRORS = [
    Err(400, "bad_request", "Bulk export is asynchronous: send `Prefer: respond-async`",
        "No `Prefer: respond-async`, an unknown `_type` for the level, a bad `_since` or `_outputFormat` "
        "(OperationOutcome)"),
    Err(429, "rate_limited", "Export 0b6a7c3e-9f1d-4c2b-8a5e-6d4f3c2b1a09 of this client is still in progress",
        "This client already has an export in progress (OperationOutcome `throttled`, with `Retry-After`)"),
]

OPERATIONS = {
    "GET /fhir/R4/metadata": Op(),
    "GET /fhir/R4/{resource_type}": Op(
        path={"resource_type": "Patient"},
        query={"name": "garcia", "birthdate": "ge1980-01-01", "_count": 10},
        given=["patient"],
        errors=[Err(400, "invalid", "birthdate: 'yesterday' is not a FHIR date or dateTime",
                    "A parameter value that does not parse (OperationOutcome `invalid`; `code-invalid` for a code "
                    "outside its value set; `not-supported` for an unknown parameter under "
                    "`Prefer: handling=strict`)"),
                Err(404, "fhir_type_not_supported", "Resource type 'Observationz' is not supported here",
                    "The type is not in the CapabilityStatement (OperationOutcome `not-found`)")]),
    "GET /fhir/R4/{resource_type}/{id}": Op(
        path={"resource_type": "Patient", "id": ids.patient},
        errors=[Err(404, "fhir_resource_not_found", "Patient/7d0e0c8e-3b8a-4d6e-9a43-2f9f3f1c2a10 is not known",
                    "Unknown id, another organisation's resource, or a deleted patient (OperationOutcome "
                    "`not-found`)")]),
    "GET /.well-known/jwks.json": Op(given=["connection_smart"]),
    "POST /fhir/connections": Op(errors=[
        Err(422, "unsafe_url", "base_url: 'http://169.254.169.254/fhir' resolves to a private address",
            "The EHR URL or token URL points at a private, loopback or link-local address")]),
    "GET /fhir/connections": Op(given=["connection"]),
    "GET /fhir/connections/{connection_id}": Op(),
    "PATCH /fhir/connections/{connection_id}": Op(body={"name": "Hospital EHR (production)", "enabled": True},
                                                  errors=[Err(422, "validation_failed",
                                                              "rotate_key: only SMART connections have a "
                                                              "signing key", "`rotate_key` on a bearer "
                                                              "connection")]),
    "DELETE /fhir/connections/{connection_id}": Op(),
    "POST /fhir/connections/{connection_id}/sync": Op(
        body={"patient_id": ids.patient},
        errors=[Err(409, "fhir_connection_disabled", "The connection is disabled; enable it first",
                    "The connection is disabled"),
                Err(422, "unknown_reference", "patient_id: no patient with this id in this organisation",
                    "`patient_id` names no patient of the caller's organisation")]),
    "GET /fhir/sync-runs": Op(query={"patient_id": ids.patient, "limit": 20}, given=["sync_run"]),
    "GET /fhir/sync-runs/{sync_run_id}": Op(),
    "GET /fhir/connections/{connection_id}/links": Op(query={"patient_id": ids.patient}),
    "GET /fhir/R4/$export": Op(query={"_type": "Patient,Appointment"}, headers=ASYNC, errors=KICK_OFF_ERRORS),
    "POST /fhir/R4/$export": Op(headers=ASYNC, errors=KICK_OFF_ERRORS),
    "GET /fhir/R4/Patient/$export": Op(headers=ASYNC, errors=KICK_OFF_ERRORS),
    "POST /fhir/R4/Patient/$export": Op(headers=ASYNC, errors=KICK_OFF_ERRORS),
    "GET /fhir/R4/Group/{group_id}/$export": Op(path={"group_id": ids.practitioner}, headers=ASYNC,
                                                errors=KICK_OFF_ERRORS),
    "POST /fhir/R4/Group/{group_id}/$export": Op(path={"group_id": ids.practitioner}, headers=ASYNC,
                                                 errors=KICK_OFF_ERRORS),
    "GET /fhir/R4/$export-status/{export_id}": Op(path={"export_id": ids.completed_export}, errors=[
        Err(500, "exception", "The export failed: StorageError: the store could not be reached",
            "The export failed (OperationOutcome)")]),
    "DELETE /fhir/R4/$export-status/{export_id}": Op(),
    "GET /fhir/R4/$export-file/{export_id}/{name}": Op(
        path={"export_id": ids.completed_export, "name": "Patient.ndjson"},
        response='{"resourceType":"Patient","id":"7d0e0c8e-3b8a-4d6e-9a43-2f9f3f1c2a10","active":true}\n'),
}
