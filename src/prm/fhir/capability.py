"""The CapabilityStatement of `/fhir/R4`, generated from what the read API and the bulk export
actually support (`search_params.RESOURCES`, `BULK_OPERATIONS`), so it cannot list more. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prm.fhir import mapping, search_params

FHIR_VERSION = "4.0.1"
BULK_OPERATIONS = {
    "system": {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"},
    "Patient": {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"},
    "Group": {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"},
}
GROUP_DOC = ("A Group is a practitioner's panel: the patients with an appointment with that practitioner "
             "(Group id = the practitioner's id). Groups are only used for $export.")


def statement(*, base_url: str, software_version: str, published_at: datetime, bulk: bool = True
              ) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for spec in search_params.RESOURCES.values():
        entry: dict[str, Any] = {
            "type": spec.type,
            "interaction": [{"code": code} for code in spec.interactions],
            "versioning": "no-version",
            "readHistory": False,
            "updateCreate": False,
            "searchParam": [{"name": p.name, "type": p.type, "documentation": p.documentation}
                            for p in spec.params],
        }
        if spec.profile:
            entry["supportedProfile"] = [spec.profile]
        if spec.documentation:
            entry["documentation"] = spec.documentation
        if bulk and spec.type == "Patient":
            entry["operation"] = [{"name": BULK_OPERATIONS["Patient"]["name"],
                                   "definition": BULK_OPERATIONS["Patient"]["definition"]}]
        resources.append(entry)
    if bulk:
        resources.append({"type": "Group", "documentation": GROUP_DOC,
                          "operation": [dict(BULK_OPERATIONS["Group"])]})
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": "Read-only FHIR R4 view of the organisation's records. Every request is "
                         "scoped to the caller's organisation; another organisation's resources are "
                         "not found. Searches return `searchset` Bundles paged with `_count` (at most "
                         f"{search_params.MAX_COUNT}) and `_offset`; errors are OperationOutcome.",
        "security": {
            "cors": False,
            "description": "Bearer token (a staff access token or an API key, as for the rest of the "
                           "API) with the scope `fhir:read` (reads, searches and `$export`).",
        },
        "resource": resources,
    }
    if bulk:
        rest["operation"] = [dict(BULK_OPERATIONS["system"])]
    statement_: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published_at.isoformat(),
        "publisher": "PRM",
        "kind": "instance",
        "software": {"name": "PRM", "version": software_version},
        "implementation": {"description": "PRM FHIR R4 read API" + (" and Bulk Data export" if bulk else ""),
                           "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [rest],
    }
    if bulk:
        statement_["instantiates"] = ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]
    return mapping.validated(statement_)
