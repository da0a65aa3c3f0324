"""The FHIR domain's published interface.

* Mappings: `validated(resource)` (our code check + the R4B model), the per-type mappings in
  `mapping`, `IDENTIFIER_SYSTEMS`.
* Read API: `read`, `search` (see `reads`); `capability_statement(...)`.
* Push sync: `enqueue(session, org_id, patient_id, trigger)` queues a push of a patient's chart to
  every enabled EHR connection; `chart_source` registers more of a chart; `SYNCED_EVENT` is published
  when a run succeeds.
"""

from __future__ import annotations

from prm.fhir.capability import statement as capability_statement
from prm.fhir.mapping import IDENTIFIER_SYSTEMS, MappingError, validated
from prm.fhir.reads import read, search
from prm.fhir.sync import SYNCED_EVENT, chart, chart_source, enqueue

__all__ = [
    "IDENTIFIER_SYSTEMS",
    "SYNCED_EVENT",
    "MappingError",
    "capability_statement",
    "chart",
    "chart_source",
    "enqueue",
    "read",
    "search",
    "validated",
]
