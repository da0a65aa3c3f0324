"""The patient record's rules: create, read, update, delete, search, duplicates, merge, consent,
timeline and the FHIR view.

Functions other modules call (stable names and signatures):

* `get(session, org_id, patient_id)`: the patient (also when merged); NotFound for an unknown id,
  another organisation's patient or a soft-deleted one.
* `resolve(session, org_id, patient_id)`: like `get`, but follows `merged_into_id` to the survivor.
* `find_by_phone(session, org_id, phone)`: the live patient with that number (any input format).
* `create_provisional(session, org_id, phone=..., source=...)`: a patient known only by a phone
  number (get-or-create: an existing live patient with that number is returned instead).
* `consent_allows(...)`, `set_consent(...)`, `data_sharing_allows(...)`: consent (see `consent.py`);
  `consents_allow(session, patient, channels=, purpose=)`: several channels in one statement.
* `to_fhir(patient)`: a validated FHIR R4B `Patient`.
* `search(session, who, filters, paging)`: (patients, total); `search_page` gives a `Found` that
  also says whether the total is exact (a one-word name search stops counting at 1,000).

Functions whose name the API uses take the acting `who: Principal` and write the audit log.
Everything flushes and never commits: the caller's transaction decides.

The code lives in one module per capability; this module is the published interface and
re-exports them: `validation` (input rules), `reads` (get, resolve, find by phone, the audited
read), `records` (create, update, delete, timeline), `search`, `deduplication` (duplicates and
merge) and `consents` (stored consent; the pure rules are in `consent.py`).
"""

from __future__ import annotations

from prm.patients import timeline as _own_timeline  # noqa: F401  (registers the "patients" source)
from prm.patients.consent import ConsentDecision
from prm.patients.consents import (
    ConsentOverview,
    change_consent,
    consent_allows,
    consent_overview,
    consents_allow,
    data_sharing_allows,
    set_consent,
)
from prm.patients.deduplication import (
    Candidate,
    MergeOutcome,
    _facts,
    duplicates_of,
    find_duplicates,
    merge,
)
from prm.patients.duplicates import Facts
from prm.patients.fhir_mapping import PRM_PATIENT_SYSTEM, to_fhir
from prm.patients.models import Patient, PatientEmail, PatientIdentifier, PatientPhone  # read-only queries (fhir)
from prm.patients.phones import try_normalise
from prm.patients.reads import (
    bookable,
    bookable_exists,
    create_provisional,
    find_by_phone,
    get,
    read,
    resolve,
)
from prm.patients.records import (
    create,
    delete_patient,
    timeline,
    update,
)
from prm.patients.search import (
    Filters,
    Found,
    active_ids,
    search,
    search_page,
)
from prm.patients.validation import (
    MAX_MERGE_CHAIN,
    OLDEST_BIRTH_DATE,
    PatientMoved,
    normalise_email,
    normalise_phone,
)

__all__ = [
    "MAX_MERGE_CHAIN",
    "OLDEST_BIRTH_DATE",
    "PRM_PATIENT_SYSTEM",
    "Candidate",
    "ConsentDecision",
    "ConsentOverview",
    "Facts",
    "Filters",
    "Found",
    "MergeOutcome",
    "Patient",
    "PatientEmail",
    "PatientIdentifier",
    "PatientMoved",
    "PatientPhone",
    "_facts",
    "active_ids",
    "bookable",
    "bookable_exists",
    "change_consent",
    "consent_allows",
    "consent_overview",
    "consents_allow",
    "create",
    "create_provisional",
    "data_sharing_allows",
    "delete_patient",
    "duplicates_of",
    "find_by_phone",
    "find_duplicates",
    "get",
    "merge",
    "normalise_email",
    "normalise_phone",
    "read",
    "resolve",
    "search",
    "search_page",
    "set_consent",
    "timeline",
    "to_fhir",
    "try_normalise",
    "update",
]
